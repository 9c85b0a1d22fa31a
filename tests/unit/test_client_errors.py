"""Exception mapping, retries and timeouts of OcrClient / AsyncOcrClient against fakes."""
from __future__ import annotations

import asyncio
import socket
from typing import Any

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

import ocr_client._retry as retry_mod
from ocr_client import (
    AsyncOcrClient,
    OcrClient,
    OcrError,
    OcrInvalidInputError,
    OcrServerError,
    OcrTimeoutError,
    OcrUnavailableError,
)
from ocr_client._errors import map_error


@pytest.mark.parametrize(("status", "cls"), [
    ("StatusCode.INVALID_ARGUMENT", OcrInvalidInputError),
    ("StatusCode.UNAVAILABLE", OcrUnavailableError),
    ("StatusCode.DEADLINE_EXCEEDED", OcrTimeoutError),
    ("StatusCode.INTERNAL", OcrServerError),
    ("StatusCode.NOT_FOUND", OcrServerError),
    ("StatusCode.RESOURCE_EXHAUSTED", OcrServerError),
    ("400", OcrInvalidInputError),
    ("503", OcrUnavailableError),
    ("504", OcrTimeoutError),
    ("500", OcrServerError),
    (None, OcrServerError),
])
def test_map_inference_server_exception(status: str | None, cls: type[OcrError]) -> None:
    exc = InferenceServerException("limit_type must be 'min' or 'max'", status=status)
    err = map_error(exc)
    assert type(err) is cls
    assert err is not None and err.message == "limit_type must be 'min' or 'max'"
    assert err.status == status


@pytest.mark.parametrize(("exc", "cls"), [
    (ConnectionRefusedError(111, "Connection refused"), OcrUnavailableError),
    (socket.gaierror(-2, "Name or service not known"), OcrUnavailableError),
    (TimeoutError("timed out"), OcrTimeoutError),  # socket.timeout
    (asyncio.TimeoutError(), OcrTimeoutError),
])
def test_map_transport_exceptions(exc: BaseException, cls: type[OcrError]) -> None:
    assert type(map_error(exc)) is cls


def test_map_http_library_exceptions() -> None:
    aiohttp = pytest.importorskip("aiohttp")
    assert type(map_error(aiohttp.ServerDisconnectedError())) is OcrUnavailableError
    from geventhttpclient.response import HTTPConnectionClosed

    assert type(map_error(HTTPConnectionClosed("closed"))) is OcrUnavailableError


def test_programming_errors_are_not_mapped() -> None:
    assert map_error(ValueError("bug")) is None
    err = OcrServerError("x")
    assert map_error(err) is err


def test_hierarchy() -> None:
    for cls in (OcrUnavailableError, OcrTimeoutError, OcrInvalidInputError, OcrServerError):
        assert issubclass(cls, OcrError)


# --------------------------------------------------------------------------- fakes
class FakeResult:
    def __init__(self, n_images: int) -> None:
        self.arrays = {
            "texts": np.array([b"hello"] * n_images, dtype=np.object_),
            "scores": np.full(n_images, 0.9, dtype=np.float32),
            "polys": np.zeros((n_images, 4, 2), dtype=np.float32),
            "image_index": np.arange(n_images, dtype=np.int32),
            "flipped": np.zeros(n_images, dtype=np.bool_),
        }

    def as_numpy(self, name: str) -> np.ndarray | None:
        return self.arrays.get(name)


class FakeTriton:
    """Stands in for tritonclient's InferenceServerClient: raises ``errors`` in turn, then answers."""

    def __init__(self, errors: list[BaseException] | None = None) -> None:
        self.errors = list(errors or [])
        self.calls: list[dict[str, Any]] = []
        self.closed = False

    def infer(self, model_name: str, inputs: list[Any], outputs: Any = None, **kw: Any) -> FakeResult:
        self.calls.append({"model_name": model_name, "inputs": inputs, **kw})
        if self.errors:
            raise self.errors.pop(0)
        n = next(int(i.shape()[0]) for i in inputs if i.name() == "image_bytes")
        return FakeResult(n)

    def is_server_live(self, **kw: Any) -> bool:
        if self.errors:
            raise self.errors.pop(0)
        return True

    is_server_ready = is_server_live

    def is_model_ready(self, name: str, **kw: Any) -> bool:
        return self.is_server_live()

    def close(self) -> None:
        self.closed = True


class AsyncFakeTriton(FakeTriton):
    async def infer(self, *a: Any, **kw: Any) -> FakeResult:  # type: ignore[override]
        return FakeTriton.infer(self, *a, **kw)

    async def is_server_live(self, **kw: Any) -> bool:  # type: ignore[override]
        return FakeTriton.is_server_live(self, **kw)

    is_server_ready = is_server_live  # type: ignore[assignment]

    async def is_model_ready(self, name: str, **kw: Any) -> bool:  # type: ignore[override]
        return await self.is_server_live()

    async def close(self) -> None:  # type: ignore[override]
        self.closed = True


def unavailable() -> InferenceServerException:
    return InferenceServerException("failed to connect", status="StatusCode.UNAVAILABLE")


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retry_mod, "BASE_DELAY", 0.001)


def sync_client(fake: FakeTriton, **kw: Any) -> OcrClient:
    client = OcrClient("fake:1", **kw)
    client._triton = lambda timeout, address: fake  # type: ignore[method-assign]
    return client


def test_success_sends_one_request_for_a_batch() -> None:
    fake = FakeTriton()
    results = sync_client(fake).ocr_batch([b"a", b"b", b"c"], limit_side_len=640)
    assert [r.texts for r in results] == [["hello"]] * 3
    assert len(fake.calls) == 1
    names = [i.name() for i in fake.calls[0]["inputs"]]
    assert names == ["image_bytes", "limit_side_len"]
    assert fake.calls[0]["model_name"] == "ocr"


def test_unavailable_is_retried_then_succeeds() -> None:
    fake = FakeTriton([unavailable(), unavailable()])
    assert sync_client(fake, retries=3).ocr(b"img").texts == ["hello"]
    assert len(fake.calls) == 3


def test_a_stub_being_replaced_is_retried() -> None:
    """Triton answers INTERNAL while the watchdog replaces a crashed stub; the client retries that."""
    down = InferenceServerException("in ensemble 'ocr', Stub process 'det_postprocess_0_0' is not healthy.",
                                    status="StatusCode.INTERNAL")
    assert type(map_error(down)) is OcrUnavailableError
    fake = FakeTriton([down])
    assert sync_client(fake, retries=3).ocr(b"img").texts == ["hello"]
    assert len(fake.calls) == 2


def test_unavailable_gives_up_after_retries() -> None:
    fake = FakeTriton([unavailable()] * 10)
    with pytest.raises(OcrUnavailableError, match="failed to connect"):
        sync_client(fake, retries=2).ocr(b"img")
    assert len(fake.calls) == 3


@pytest.mark.parametrize(("status", "cls"), [
    ("StatusCode.INVALID_ARGUMENT", OcrInvalidInputError),
    ("StatusCode.DEADLINE_EXCEEDED", OcrTimeoutError),
    ("StatusCode.INTERNAL", OcrServerError),
])
def test_other_errors_are_not_retried(status: str, cls: type[OcrError]) -> None:
    fake = FakeTriton([InferenceServerException("unsupported image format", status=status)])
    with pytest.raises(cls, match="unsupported image format") as info:
        sync_client(fake, retries=5).ocr(b"img")
    assert len(fake.calls) == 1
    assert isinstance(info.value.__cause__, InferenceServerException)


def test_timeout_is_forwarded_and_overridable() -> None:
    fake = FakeTriton()
    client = sync_client(fake, timeout=7.0)
    client.ocr(b"img")
    client.ocr(b"img", timeout=0.5)
    assert 6.0 < fake.calls[0]["client_timeout"] <= 7.0
    assert 0.0 < fake.calls[1]["client_timeout"] <= 0.5


def test_local_input_errors_happen_before_the_network(tmp_path: Any) -> None:
    fake = FakeTriton()
    client = sync_client(fake)
    with pytest.raises(OcrInvalidInputError, match="no such file"):
        client.ocr(tmp_path / "missing.png")
    with pytest.raises(OcrInvalidInputError, match="limit_type"):
        client.ocr(b"img", limit_type="middle")
    with pytest.raises(OcrInvalidInputError, match="uint8"):
        client.ocr(np.zeros((4, 4), dtype=np.float32))
    assert fake.calls == []
    assert client.ocr_batch([]) == []


def test_health_probes() -> None:
    assert sync_client(FakeTriton()).is_live() is True
    assert sync_client(FakeTriton()).is_ready() is True
    assert sync_client(FakeTriton([unavailable()])).is_live() is False
    fake = FakeTriton([unavailable()] * 3)
    with pytest.raises(OcrUnavailableError, match="not ready"):
        sync_client(fake).wait_until_ready(0.3)
    sync_client(FakeTriton([unavailable()] * 2)).wait_until_ready(5.0)


def test_unreachable_server_maps_to_unavailable() -> None:
    # Port 1 on localhost: connection refused, no server needed.
    with OcrClient("127.0.0.1:1", protocol="grpc", timeout=5.0, retries=1) as client:
        with pytest.raises(OcrUnavailableError):
            client.ocr(b"img")
        assert client.is_live() is False
    with OcrClient("127.0.0.1:1", protocol="http", timeout=5.0, retries=1) as client:
        with pytest.raises(OcrUnavailableError):
            client.ocr(b"img")
        assert client.is_ready() is False


def test_constructor_and_close() -> None:
    with pytest.raises(ValueError):
        OcrClient(protocol="ftp")
    with pytest.raises(ValueError):
        OcrClient(timeout=0)
    client = OcrClient("h:1", protocol="http")
    assert client.url == "h:1" and client.protocol == "http"
    client.close()
    with pytest.raises(RuntimeError, match="closed"):
        client.ocr(b"img")


# --------------------------------------------------------------------------- async twin
def async_client(fake: AsyncFakeTriton, **kw: Any) -> AsyncOcrClient:
    client = AsyncOcrClient("fake:1", **kw)
    client._triton = lambda address: fake  # type: ignore[method-assign]
    return client


def test_async_retry_and_mapping() -> None:
    async def go() -> None:
        fake = AsyncFakeTriton([unavailable()])
        async with async_client(fake) as client:
            results = await client.ocr_batch([b"a", b"b"], thresh=0.2)
            assert [r.texts for r in results] == [["hello"], ["hello"]]
            assert len(fake.calls) == 2
            assert await client.is_ready() is True
        bad = AsyncFakeTriton([InferenceServerException("bad", status="StatusCode.INVALID_ARGUMENT")])
        with pytest.raises(OcrInvalidInputError, match="bad"):
            await async_client(bad).ocr(b"img")
        assert len(bad.calls) == 1

    asyncio.run(go())


def test_async_client_timeout() -> None:
    class Slow(AsyncFakeTriton):
        async def infer(self, *a: Any, **kw: Any) -> FakeResult:  # type: ignore[override]
            await asyncio.sleep(5)
            raise AssertionError("not reached")

    async def go() -> None:
        with pytest.raises(OcrTimeoutError):
            await async_client(Slow()).ocr(b"img", timeout=0.2)

    asyncio.run(go())


def test_async_unreachable_server() -> None:
    async def go(protocol: str) -> None:
        async with AsyncOcrClient("127.0.0.1:1", protocol=protocol, timeout=5.0, retries=1) as c:
            with pytest.raises(OcrUnavailableError):
                await c.ocr(b"img")
            assert await c.is_live() is False

    asyncio.run(go("grpc"))
    asyncio.run(go("http"))
