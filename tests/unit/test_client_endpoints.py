"""Several endpoints: parsing, the balancing gRPC target, HTTP rotation and failover (no server)."""
from __future__ import annotations

import json
from typing import Any

import pytest
from test_client_errors import FakeTriton, unavailable
from tritonclient.utils import InferenceServerException

import ocr_client._retry as retry_mod
from ocr_client import OcrClient, OcrTimeoutError, OcrUnavailableError
from ocr_client._endpoints import EndpointRotation, Endpoints, grpc_target, parse_endpoints
from ocr_client._triton import grpc_channel_args


def test_parse_endpoints_forms() -> None:
    assert parse_endpoints(None, "grpc") == Endpoints(("localhost:8001",))
    assert parse_endpoints("h:1", "http") == Endpoints(("h:1",))
    assert parse_endpoints("a:1, b:2,a:1", "grpc") == Endpoints(("a:1", "b:2"))
    assert parse_endpoints(["a:1", "[::1]:2"], "http").addresses == ("a:1", "[::1]:2")
    dns = parse_endpoints("dns:///ocr.svc:8001", "grpc")
    assert dns.resolver_uri == "dns:///ocr.svc:8001" and str(dns) == "dns:///ocr.svc:8001"
    assert str(parse_endpoints(["a:1", "b:2"], "grpc")) == "a:1,b:2"


@pytest.mark.parametrize(("url", "protocol", "match"), [
    ("http://h:8000", "http", "scheme"), (["a:1", "dns:///b:2"], "grpc", "whole url"),
    ("dns:///b:2", "http", "gRPC"), ("a:1,,b:2", "grpc", "empty"), (["a:1", "b"], "grpc", "HOST:PORT"),
    (["a:1", "b:x"], "grpc", "HOST:PORT"), (None, "ftp", "protocol"),
])
def test_parse_endpoints_errors(url: Any, protocol: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_endpoints(url, protocol)


def test_grpc_target() -> None:
    def resolve(host: str, port: int) -> list[tuple[int, str]]:
        table = {"two": [(4, f"10.0.0.1:{port}"), (6, f"[fd00::1]:{port}"), (4, f"10.0.0.2:{port}")],
                 "v6only": [(6, f"[fd00::9]:{port}")]}
        return table[host]

    def target(*addresses: str) -> str:
        return grpc_target(Endpoints(addresses), resolve)

    assert target("one.example:8001") == "one.example:8001"  # gRPC's DNS resolver balances its addresses
    assert target("127.0.0.1:8001", "127.0.0.1:9001") == "ipv4:127.0.0.1:8001,127.0.0.1:9001"
    assert target("two:7", "10.0.0.3:7") == "ipv4:10.0.0.1:7,10.0.0.2:7,10.0.0.3:7"
    assert target("[::1]:1", "v6only:2", "two:3") == "ipv6:[::1]:1,[fd00::9]:2,[fd00::1]:3"
    with pytest.raises(ValueError, match="address family"):
        target("10.0.0.1:1", "v6only:2")
    assert grpc_target(Endpoints((), "dns:///x:1")) == "dns:///x:1"


def test_grpc_channel_balances_round_robin() -> None:
    args = dict(grpc_channel_args(1024))
    assert json.loads(str(args["grpc.service_config"])) == {"loadBalancingConfig": [{"round_robin": {}}]}
    assert args["grpc.service_config_disable_resolution"] == 1
    assert 0 < int(args["grpc.initial_reconnect_backoff_ms"]) <= int(args["grpc.max_reconnect_backoff_ms"])


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rotation_round_robin_rest_and_return() -> None:
    clock = Clock()
    r = EndpointRotation(["a", "b", "c"], clock)
    assert [r.pick() for _ in range(4)] == ["a", "b", "c", "a"]
    r.failed("b")
    assert [r.pick() for _ in range(4)] == ["c", "a", "c", "a"]
    assert r.resting() == ["b"]
    clock.now += 1.01  # the first rest is over
    assert "b" in [r.pick() for _ in range(3)]
    r.failed("b")  # failed again: rests twice as long
    clock.now += 1.5
    assert r.resting() == ["b"]
    clock.now += 0.6
    assert r.resting() == []
    r.succeeded("b")
    r.failed("b")
    clock.now += 1.01
    assert r.resting() == []  # success reset the rest to its first length


def test_rotation_all_resting_tries_the_one_due_first() -> None:
    clock = Clock()
    r = EndpointRotation(["a", "b"], clock)
    r.failed("a")
    r.failed("a")
    r.failed("b")
    assert r.pick() == "b" and r.pick() == "b"
    with pytest.raises(ValueError):
        EndpointRotation([])


def test_http_client_fails_over_to_the_endpoint_that_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retry_mod, "BASE_DELAY", 0.001)
    fakes = {"a:1": FakeTriton([unavailable()] * 100), "b:2": FakeTriton()}
    client = OcrClient(["a:1", "b:2"], protocol="http", retries=2)
    client._triton = lambda timeout, address: fakes[address]  # type: ignore[method-assign]
    results = [client.ocr(b"img") for _ in range(6)]
    assert all(r.texts == ["hello"] for r in results)
    assert len(fakes["a:1"].calls) == 1  # tried once, then rested
    assert len(fakes["b:2"].calls) == 6
    assert client.is_ready() is True  # some endpoint is ready


def test_every_endpoint_down_is_unavailable() -> None:
    for protocol in ("grpc", "http"):
        with OcrClient(["127.0.0.1:1", "127.0.0.1:2"], protocol=protocol, timeout=5.0, retries=1) as client:
            with pytest.raises(OcrUnavailableError):
                client.ocr(b"img")
            assert client.is_live() is False


def test_async_http_client_fails_over(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from test_client_errors import AsyncFakeTriton

    from ocr_client import AsyncOcrClient

    monkeypatch.setattr(retry_mod, "BASE_DELAY", 0.001)
    fakes = {"a:1": AsyncFakeTriton([unavailable()] * 100), "b:2": AsyncFakeTriton()}

    async def go() -> None:
        async with AsyncOcrClient("a:1,b:2", protocol="http", retries=2) as client:
            client._triton = lambda address: fakes[address]  # type: ignore[method-assign]
            results = await asyncio.gather(*(client.ocr(b"img") for _ in range(4)))
            assert all(r.texts == ["hello"] for r in results)
            assert await client.is_live() is True

    asyncio.run(go())
    assert len(fakes["b:2"].calls) == 4
    assert 1 <= len(fakes["a:1"].calls) <= 4  # concurrent first attempts may all start there; then it rests


def test_http_endpoint_that_times_out_rests(monkeypatch: pytest.MonkeyPatch) -> None:
    timeout = InferenceServerException("timed out", status="StatusCode.DEADLINE_EXCEEDED")
    fakes = {"a:1": FakeTriton([timeout]), "b:2": FakeTriton()}
    client = OcrClient(["a:1", "b:2"], protocol="http")
    client._triton = lambda timeout, address: fakes[address]  # type: ignore[method-assign]
    with pytest.raises(OcrTimeoutError):
        client.ocr(b"img")  # a timeout is not retried: the call's deadline is spent
    assert [client.ocr(b"img").texts for _ in range(3)] == [["hello"]] * 3
    assert len(fakes["a:1"].calls) == 1 and len(fakes["b:2"].calls) == 3
