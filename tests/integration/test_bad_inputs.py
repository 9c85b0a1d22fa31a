"""The bad-input corpus (tests/integration/bad_inputs.py) against the real server.

Every malformed or hostile request gets INVALID_ARGUMENT (HTTP 400) with a message that names the
input and what to fix; unusual but valid images are read correctly; afterwards the server is ready,
a valid request succeeds, no stub process died and the rejections were counted by reason.
"""
from __future__ import annotations

import http.client
import json
import time
import urllib.request

import numpy as np
import pytest
from bad_inputs import OK_PARAMS, Case, cases, text_image
from helpers import norm, png
from ocr_server.launcher import stub_processes

CASES = cases()
EXPECTED_TEXT = {norm("TOTAL 1234.56"), norm("CASH 99.10")}


def test_corpus_is_large_and_varied():
    assert len(CASES) >= 100
    kinds = {c.expect for c in CASES}
    assert kinds == {"invalid", "ok", "ok_or_invalid"}
    assert sum(c.reason is None and c.expect == "invalid" for c in CASES) >= 15   # refused by Triton core
    assert len({c.reason for c in CASES if c.reason}) >= 7


@pytest.fixture(scope="module")
def stubs_before(server):
    return {(s.model, s.pid) for s in stub_processes(server.proc.pid) if s.alive}


@pytest.fixture(scope="module")
def grpc(server):
    import tritonclient.grpc as grpcclient

    with grpcclient.InferenceServerClient(server.grpc_url) as c:
        yield c


def send(grpc, case: Case):
    import tritonclient.grpc as grpcclient

    inputs = []
    for t in case.inputs():
        x = grpcclient.InferInput(t.name, list(t.data.shape), t.datatype)
        x.set_data_from_numpy(t.data)
        inputs.append(x)
    outputs = [grpcclient.InferRequestedOutput(n) for n in case.outputs] if case.outputs else None
    return grpc.infer("ocr", inputs, outputs=outputs, client_timeout=120)


def metric_sum(server, name: str, **labels: str) -> float:
    import re

    with urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    total = 0.0
    for m in re.finditer(rf"^{name}(\{{[^}}]*\}})?\s+(\S+)$", text, re.M):
        have = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(m.group(2))
    return total


@pytest.fixture(scope="module")
def rejected_before(server):
    return metric_sum(server, "ocr_rejected_inputs_total")


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_corpus(server, grpc, stubs_before, rejected_before, case: Case):
    from tritonclient.utils import InferenceServerException

    try:
        result = send(grpc, case)
    except InferenceServerException as exc:
        status, message = str(exc.status()), exc.message() or ""
        assert case.expect in ("invalid", "ok_or_invalid"), f"expected a result, got {status}: {message}"
        assert status == "StatusCode.INVALID_ARGUMENT", f"{status}: {message}"
        for needle in case.needles:
            assert needle in message, f"{needle!r} not in: {message}"
        assert "Traceback" not in message and "internal error" not in message
        return
    texts = result.as_numpy("texts")
    assert case.expect in ("ok", "ok_or_invalid"), f"expected INVALID_ARGUMENT, got a result: {texts}"
    if case.min_lines:
        found = {norm(t.decode()) for t in texts}
        assert len(texts) >= case.min_lines and EXPECTED_TEXT <= found, found


# name: (body, extra headers, expected HTTP status). Triton's HTTP frontend answers 500 for a body it
# cannot parse as JSON at all (documented); anything it can parse but is wrong is a 400.
HTTP_CASES = {
    "malformed_json": (b'{"inputs": [', {}, 500),
    "json_without_inputs": (b'{"outputs": []}', {}, 500),
    "json_wrong_datatype": (json.dumps({"inputs": [{"name": "image_bytes", "shape": [1], "datatype": "FP32",
                                                    "data": [1.0]}]}).encode(), {}, 400),
    "json_shape_data_mismatch": (json.dumps({"inputs": [{"name": "image_bytes", "shape": [1000000000],
                                                         "datatype": "BYTES", "data": ["x"]}]}).encode(), {}, 400),
    "json_string_not_image": (json.dumps({"inputs": [{"name": "image_bytes", "shape": [1], "datatype": "BYTES",
                                                      "data": ["hello"]}]}).encode(), {}, 400),
    "binary_header_length_past_body": (b'{"inputs": []}', {"Inference-Header-Content-Length": "100000"}, 400),
}


@pytest.mark.parametrize("name", sorted(HTTP_CASES))
def test_http_bad_requests(server, name):
    body, headers, expected = HTTP_CASES[name]
    host, port = server.http_url.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request("POST", "/v2/models/ocr/infer", body=body,
                 headers={"Content-Type": "application/octet-stream", **headers})
    response = conn.getresponse()
    payload = response.read().decode(errors="replace")
    conn.close()
    assert response.status == expected, (response.status, payload)
    assert json.loads(payload).get("error"), payload


def test_server_healthy_after_the_corpus(server, grpc, stubs_before, rejected_before):
    """Runs after the corpus (file order): nothing died, the next valid request succeeds."""
    from ocr_client import OcrClient

    assert grpc.is_server_ready() and grpc.is_model_ready("ocr")
    stubs_after = {(s.model, s.pid) for s in stub_processes(server.proc.pid) if s.alive}
    assert stubs_after == stubs_before, "a Python stub died or was restarted during the corpus"
    with OcrClient(server.grpc_url, timeout=60) as client:
        result = client.ocr(text_image(), **OK_PARAMS)
    assert EXPECTED_TEXT <= {norm(t) for t in result.texts}
    ours = sum(1 for c in CASES if c.expect == "invalid" and c.reason is not None)
    deadline = time.monotonic() + 10  # the steps apply metric updates a moment later, off the request path
    while metric_sum(server, "ocr_rejected_inputs_total") - rejected_before < ours and time.monotonic() < deadline:
        time.sleep(0.1)
    assert metric_sum(server, "ocr_rejected_inputs_total") - rejected_before >= ours
    assert server.proc.poll() is None


def test_limits_are_configurable(tmp_path):
    """A server with small limits refuses what the default one accepts, naming the limit."""
    from ocr_server.local_server import start_server, stop_server

    from ocr_client import OcrClient, OcrInvalidInputError

    overrides = {"det_preprocess": {"max_images_per_request": "2", "max_image_bytes": "200000",
                                    "max_image_pixels": "250000", "min_image_side": "16"},
                 "det_postprocess": {"max_boxes_per_request": "3"}}
    srv = start_server(tmp_path, overrides=overrides)
    try:
        page = text_image()                                   # 520x120 = 62400 px, 2 lines
        with OcrClient(srv.grpc_url, timeout=60) as client:
            assert len(client.ocr(page, **OK_PARAMS).lines) == 2
            with pytest.raises(OcrInvalidInputError, match="at most 2"):
                client.ocr_batch([page] * 3, **OK_PARAMS)
            with pytest.raises(OcrInvalidInputError, match="limit is 250000 pixels"):
                client.ocr(np.full((600, 600, 3), 255, np.uint8))
            noisy = np.random.default_rng(0).integers(0, 256, (300, 300, 3), dtype=np.uint8)
            with pytest.raises(OcrInvalidInputError, match="limit is 200000 bytes"):
                client.ocr(png(noisy))
            with pytest.raises(OcrInvalidInputError, match="at least 16"):
                client.ocr(np.full((12, 200, 3), 255, np.uint8))
            with pytest.raises(OcrInvalidInputError, match="the limit is 3"):
                client.ocr_batch([page, page], **OK_PARAMS)       # 4 boxes in one request
            assert client.is_ready()
    finally:
        stop_server(srv)
