"""The front's request checks (server/ocr_server/front), without a server."""
from __future__ import annotations

import json
import struct

import pytest
from ocr_server.front.grpc_front import check_infer_request
from ocr_server.front.http_front import check_json_request, parse_json
from ocr_server.front.policy import (
    Limits,
    Refusal,
    Refused,
    check_bytes_framing,
    json_depth,
    model_spec_from_metadata,
)
from tritonclient.grpc import service_pb2

SPEC = model_spec_from_metadata({
    "name": "ocr", "versions": ["1"],
    "inputs": [{"name": "image_bytes", "datatype": "BYTES", "shape": [-1]},
               {"name": "limit_side_len", "datatype": "INT32", "shape": [1]},
               {"name": "thresh", "datatype": "FP32", "shape": [1]}],
    "outputs": [{"name": "texts", "datatype": "BYTES", "shape": [-1]}]})
LIMITS = Limits()


def framed(*items: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(x)) + x for x in items)


@pytest.mark.parametrize(("text", "depth"), [(b"{}", 1), (b'{"a":[[1]]}', 3), (b'"[[[[["', 0),
                                             (b'{"a":"\\"[[[["}', 1), (b"[" * 5000 + b"]" * 5000, 5000), (b"", 0)])
def test_json_depth_counts_nesting_outside_strings(text, depth):
    assert json_depth(text) == depth


def test_deep_json_is_refused_before_parsing():
    with pytest.raises(Refused, match="nests 100000 levels"):
        parse_json(b"[" * 100000 + b"]" * 100000, LIMITS)
    with pytest.raises(Refused, match="not a JSON number"):
        parse_json(b'{"a": NaN}', LIMITS)


def test_bytes_framing():
    check_bytes_framing(framed(b"ab", b""), 2, "x")
    for buf, count in [(framed(b"ab"), 2), (framed(b"ab", b"c"), 1), (struct.pack("<I", 9) + b"ab", 1),
                       (b"\x01\x00", 1)]:
        with pytest.raises(Refused):
            check_bytes_framing(buf, count, "x")


def http_request(**changes):
    req = {"inputs": [{"name": "image_bytes", "shape": [1], "datatype": "BYTES",
                       "parameters": {"binary_data_size": 7}}],
           "outputs": [{"name": "texts", "parameters": {"binary_data": True}}]}
    req.update(changes)
    return req


def test_json_request_is_made_canonical():
    header, images = check_json_request(http_request(id="r1"), SPEC, memoryview(framed(b"abc")), LIMITS)
    assert images == 1 and header["id"] == "r1"
    assert header["inputs"][0]["parameters"] == {"binary_data_size": 7}
    json.dumps(header)  # serialisable as is


@pytest.mark.parametrize("outputs", [[{"name": "texts", "parameters": {"classification": 2}}],
                                     [{"name": "texts", "parameters": {"shared_memory_region": "r"}}],
                                     [{"name": "image_info"}], [{"name": "texts"}, {"name": "texts"}]])
def test_json_request_refuses_output_extensions(outputs):
    with pytest.raises(Refused) as info:
        check_json_request(http_request(outputs=outputs), SPEC, memoryview(framed(b"abc")), LIMITS)
    assert info.value.kind is Refusal.INVALID


@pytest.mark.parametrize("inputs", [
    [{"name": "image_bytes", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": 7}}],
    [{"name": "image_bytes", "shape": [1], "datatype": "FP32", "parameters": {"binary_data_size": 7}}],
    [{"name": "image_bytes", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 8}}],
    [{"name": "det_input", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 7}}],
    [{"name": "limit_side_len", "shape": [1], "datatype": "INT32", "data": [2 ** 40]}],
    [{"name": "thresh", "shape": [1], "datatype": "FP32", "data": [True]}],
    [{"name": "image_bytes", "shape": [1], "datatype": "BYTES", "data": ["\ud800"]}],
    [{"name": "image_bytes", "shape": [1], "datatype": "BYTES", "data": [["a"], ["b"]]}],
])
def test_json_request_refuses_bad_inputs(inputs):
    with pytest.raises(Refused):
        check_json_request(http_request(inputs=inputs), SPEC, memoryview(framed(b"abc")), LIMITS)


def grpc_request(**changes) -> service_pb2.ModelInferRequest:
    req = service_pb2.ModelInferRequest(model_name="ocr")
    req.inputs.add(name="image_bytes", datatype="BYTES", shape=[1])
    req.raw_input_contents.append(framed(b"abc"))
    req.outputs.add(name="texts")
    for key, value in changes.items():
        setattr(req, key, value)
    return req


def test_grpc_request_checks():
    assert check_infer_request(grpc_request(), SPEC, LIMITS) == 1
    with pytest.raises(Refused) as info:
        check_infer_request(grpc_request(model_name="det_model"), SPEC, LIMITS)
    assert info.value.kind is Refusal.NOT_FOUND
    req = grpc_request()
    req.outputs[0].parameters["classification"].int64_param = 2
    with pytest.raises(Refused, match="classification"):
        check_infer_request(req, SPEC, LIMITS)
    req = grpc_request()
    req.inputs[0].parameters["shared_memory_region"].string_param = "r"
    with pytest.raises(Refused, match="shared memory"):
        check_infer_request(req, SPEC, LIMITS)
    req = grpc_request()
    req.raw_input_contents.append(b"")
    with pytest.raises(Refused, match="raw_input_contents"):
        check_infer_request(req, SPEC, LIMITS)
    req = grpc_request()
    del req.raw_input_contents[:]
    req.inputs[0].contents.bytes_contents.extend([b"a", b"b"])
    with pytest.raises(Refused, match="contents"):
        check_infer_request(req, SPEC, LIMITS)


def test_request_log_escapes_and_rate_limits():
    import io
    import time

    from ocr_server.front.reqlog import RequestLog

    out = io.StringIO()
    log = RequestLog(out, rate=0.001, burst=2)
    for i in range(5):
        log.record(request_id=f'id{i}"\n{{"forged":1}}', outcome="OK")
    time.sleep(0.2)
    log.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2  # the burst; the rest is counted, not written
    assert all(json.loads(line)["request_id"].startswith("id") for line in lines)


def test_drain_refuses_new_work_and_waits_for_the_rest():
    import asyncio

    from ocr_server.front.state import FrontState, Upstream

    async def scenario() -> tuple[int, int]:
        state = FrontState(Upstream("a:1", "a:2"))

        async def request() -> None:
            with state.admit():
                await asyncio.sleep(0.2)

        task = asyncio.create_task(request())
        await asyncio.sleep(0.05)
        left = await state.drain(5.0)
        with pytest.raises(Refused) as info:
            with state.admit():
                pass
        await task
        return left, int(info.value.kind is Refusal.UNAVAILABLE)

    assert asyncio.run(scenario()) == (0, 1)


def test_extra_routers_sit_behind_the_token_and_the_drain():
    from fastapi import APIRouter
    from fastapi.testclient import TestClient
    from ocr_server.front.http_front import create_app
    from ocr_server.front.state import FrontState, Upstream

    router = APIRouter()

    @router.post("/ocr")
    async def ocr() -> dict[str, str]:
        return {"ok": "yes"}

    state = FrontState(Upstream("127.0.0.1:9", "127.0.0.1:9"), token="t0ken")
    with TestClient(create_app(state, routers=[router])) as client:
        assert client.post("/ocr").status_code == 401
        assert client.post("/ocr", headers={"authorization": "Bearer t0ken"}).json() == {"ok": "yes"}
        assert client.post("/v2/models/ocr/generate", json={}).status_code == 400
        assert client.get("/v2/health/live").status_code == 200
        assert client.get("/v2/health/ready").status_code == 503  # no Triton behind it
        assert client.get("/nothing/here").json()["error"].startswith("no such endpoint")
        state.draining = True
        assert client.post("/ocr", headers={"authorization": "Bearer t0ken"}).status_code == 503


def test_the_watchdogs_probe_tag_cannot_come_from_a_client():
    """Probes are left out of the ocr_* metrics by a request parameter; clients may not send it."""
    from ppocr_steps.metrics import PROBE_PARAMETER

    req = grpc_request()
    req.parameters[PROBE_PARAMETER].bool_param = True
    with pytest.raises(Refused, match=PROBE_PARAMETER):
        check_infer_request(req, SPEC, LIMITS)
    with pytest.raises(Refused, match=PROBE_PARAMETER):
        check_json_request(http_request(parameters={PROBE_PARAMETER: True}), SPEC, memoryview(framed(b"abc")), LIMITS)
