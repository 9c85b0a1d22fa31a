"""asyncio client of the ``ocr`` ensemble, the twin of :class:`OcrClient`."""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, TypeVar

from ._client import DEFAULT_MAX_MESSAGE_BYTES, _Base, _kw
from ._endpoints import UrlArg
from ._errors import OcrError, OcrTimeoutError, OcrUnavailableError, map_error
from ._images import ImageInput
from ._params import OcrParams
from ._results import OcrResult, results_from_outputs, single_result
from ._retry import retry_async
from ._triton import protocol_module, read_outputs

__all__ = ["AsyncOcrClient"]

log = logging.getLogger("ocr_client")
T = TypeVar("T")


async def _translate(coro: Awaitable[T], timeout: float) -> T:
    """Await ``coro`` within ``timeout`` seconds, raising transport errors as :class:`OcrError`."""
    try:
        return await asyncio.wait_for(coro, timeout)
    except asyncio.TimeoutError as exc:  # wait_for's expiry, or aiohttp's own timeouts
        raise OcrTimeoutError(f"no answer within {timeout:.3g} s") from exc
    except Exception as exc:
        err = map_error(exc)
        if err is None or err is exc:
            raise
        raise err from exc


class AsyncOcrClient(_Base):
    """asyncio client of the Triton ``ocr`` ensemble; same arguments as :class:`OcrClient`.

    The underlying connection is opened on first use, inside the running loop.
    Use ``async with AsyncOcrClient(...) as c:`` or ``await c.close()``.
    """

    def __init__(self, url: UrlArg = None, protocol: str = "grpc", model_name: str = "ocr",
                 timeout: float = 30.0, retries: int = 3,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, *, auth_token: str | None = None,
                 ssl: bool = False, root_certificates: str | None = None) -> None:
        super().__init__(url, protocol, model_name, timeout, retries, max_message_bytes, auth_token, ssl,
                         root_certificates)
        self._clients: dict[str, Any] = {}  # gRPC: one balancing channel; HTTP: one per endpoint
        self._closed = False

    async def __aenter__(self) -> AsyncOcrClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connections; the client cannot be used afterwards."""
        self._closed = True
        clients, self._clients = self._clients, {}
        for client in clients.values():
            await client.close()

    def _triton(self, address: str) -> Any:
        if self._closed:
            raise RuntimeError("AsyncOcrClient is closed")
        client = self._clients.get(address)
        if client is None:
            mod = protocol_module(self.protocol, aio=True)
            if self.protocol == "grpc":
                client = self._grpc_client(mod)
            else:  # deadlines come from asyncio.wait_for, not the session
                tls: dict[str, Any] = {}
                if self.ssl:
                    import ssl

                    tls = {"ssl": True, "ssl_context": ssl.create_default_context(cafile=self.root_certificates)}
                client = mod.InferenceServerClient(address, conn_timeout=None, **tls)
            self._clients[address] = client
        return client

    async def ocr(self, image: ImageInput, params: OcrParams | None = None, *,
                  timeout: float | None = None, **overrides: Any) -> OcrResult:
        """OCR one image (path, bytes, or OpenCV-style ndarray) or one-page PDF; see :meth:`OcrClient.ocr`."""
        results = await self.ocr_batch([image], params, timeout=timeout, **overrides)
        return single_result(results)

    async def ocr_document(self, document: ImageInput, params: OcrParams | None = None, *,
                           timeout: float | None = None, **overrides: Any) -> list[OcrResult]:
        """OCR a PDF (or an image): one result per page, in page order; see :meth:`OcrClient.ocr`."""
        return await self.ocr_batch([document], params, timeout=timeout, **overrides)

    async def ocr_batch(self, images: Sequence[ImageInput], params: OcrParams | None = None, *,
                        timeout: float | None = None, **overrides: Any) -> list[OcrResult]:
        """OCR several images (or PDFs) in one request; one result per image and per PDF page, in order."""
        params = OcrParams.merged(params, overrides)
        images = list(images)
        if not images:
            return []
        inputs, outputs = self._prepare(images, params)
        total = self._timeout(timeout)

        async def attempt(remaining: float) -> list[OcrResult]:
            address = self._pick()
            kw: dict[str, Any] = {"client_timeout": remaining} if self.protocol == "grpc" else {}
            try:
                client = self._triton(address)
                res = await _translate(client.infer(self.model_name, inputs, outputs=outputs,
                                                    headers=self.headers, **kw),
                                       remaining)
            except OcrError as err:
                self._record(address, err)
                raise
            self._record(address, None)
            return results_from_outputs(read_outputs(res), len(images))

        return await retry_async(attempt, retries=self.retries, timeout=total)

    async def _probe(self, fn: Callable[[Any, float | None], Awaitable[bool]],
                     timeout: float | None) -> bool:
        """Whether ``fn`` holds at some endpoint (gRPC: at the endpoint the channel picks)."""
        t = self._timeout(timeout)
        for address in self._all():
            try:
                if await _translate(fn(self._triton(address), t if self.protocol == "grpc" else None), t):
                    return True
            except OcrError as err:
                log.debug("health probe of %s failed: %s", address or self.url, err)
        return False

    async def is_live(self, *, timeout: float | None = None) -> bool:
        """Whether a server answers its liveness probe (False when none is reachable)."""
        async def live(c: Any, t: float | None) -> bool:
            return bool(await c.is_server_live(**_kw(t)))

        return await self._probe(live, timeout)

    async def is_ready(self, *, timeout: float | None = None) -> bool:
        """Whether a server and its model are ready (False when none is reachable)."""
        async def ready(c: Any, t: float | None) -> bool:
            return bool(await c.is_server_ready(**_kw(t)) and await c.is_model_ready(self.model_name, **_kw(t)))

        return await self._probe(ready, timeout)

    async def wait_until_ready(self, timeout: float = 60.0, *, interval: float = 0.25) -> None:
        """Poll :meth:`is_ready` until it holds; raise :class:`OcrUnavailableError` after ``timeout``."""
        deadline = time.monotonic() + timeout
        probe_timeout = min(max(timeout, 0.05), 5.0)
        while time.monotonic() < deadline:
            if await self.is_ready(timeout=probe_timeout):
                return
            await asyncio.sleep(min(interval, max(0.0, deadline - time.monotonic())))
        raise OcrUnavailableError(
            f"model '{self.model_name}' at {self.url} ({self.protocol}) not ready after {timeout:g} s")
