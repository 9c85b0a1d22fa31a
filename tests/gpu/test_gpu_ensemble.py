"""The GPU ensemble end to end (marked gpu).

Needs a running GPU server: either OCR_GPU_TRITON_URL (gRPC host:port of a server started with
`scripts/serve.sh --gpu` or `docker compose -f docker/docker-compose.yml up`), or, when unset, the
test starts `scripts/serve.sh --gpu` itself on free ports if engines are built (build/engines/v4).
"""
from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.gpu


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def grpc_url():
    url = os.environ.get("OCR_GPU_TRITON_URL")
    if url:
        yield url
        return
    if not (ROOT / "build" / "engines" / "v4" / "manifest.json").exists():
        pytest.skip("no engines: run scripts/build_engines.sh --model-set v4 (or set OCR_GPU_TRITON_URL)")
    http, grpc, metrics = _free_port(), _free_port(), _free_port()
    proc = subprocess.Popen([str(ROOT / "scripts" / "serve.sh"), "--gpu", "--http-port", str(http), "--grpc-port",
                             str(grpc), "--metrics-port", str(metrics)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    tritonclient = pytest.importorskip("tritonclient.grpc")
    client = tritonclient.InferenceServerClient(f"127.0.0.1:{grpc}")
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail("serve.sh --gpu exited:\n" + (proc.stdout.read() if proc.stdout else ""))
            try:
                if client.is_server_ready():
                    break
            except Exception:
                pass
            time.sleep(2)
        else:
            pytest.fail("GPU server not ready within 300 s")
        yield f"127.0.0.1:{grpc}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _page(text_lines: list[str]) -> bytes:
    cv2 = pytest.importorskip("cv2")
    np = pytest.importorskip("numpy")
    img = np.full((100 + 70 * len(text_lines), 1200, 3), 255, np.uint8)
    for i, line in enumerate(text_lines):
        cv2.putText(img, line, (40, 90 + 70 * i), cv2.FONT_HERSHEY_SIMPLEX, 1.6, (0, 0, 0), 3, cv2.LINE_AA)
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return buf.tobytes()


def test_gpu_ensemble_reads_a_page(grpc_url):
    grpcclient = pytest.importorskip("tritonclient.grpc")
    np = pytest.importorskip("numpy")
    client = grpcclient.InferenceServerClient(grpc_url)
    for model in ("det_model", "cls_model", "rec_model"):
        cfg = client.get_model_config(model).config
        assert cfg.platform == "tensorrt_plan", f"{model} is not the TensorRT engine (is this the GPU target?)"
    lines = ["HELLO TRITON 2024", "GPU FP16 ENGINE"]
    data = np.array([_page(lines)], dtype=np.object_)
    inp = grpcclient.InferInput("image_bytes", [1], "BYTES")
    inp.set_data_from_numpy(data)
    res = client.infer("ocr", [inp], outputs=[grpcclient.InferRequestedOutput(n) for n in
                                             ("texts", "scores", "polys", "image_index")], client_timeout=120)
    texts = [t.decode() if isinstance(t, bytes) else str(t) for t in res.as_numpy("texts")]
    joined = " ".join(texts).upper().replace(" ", "")
    assert "HELLOTRITON" in joined and "FP16" in joined, texts
    assert res.as_numpy("polys").shape == (len(texts), 4, 2)
    assert set(res.as_numpy("image_index").tolist()) == {0}


def test_gpu_ensemble_handles_empty_and_batched_requests(grpc_url):
    grpcclient = pytest.importorskip("tritonclient.grpc")
    np = pytest.importorskip("numpy")
    client = grpcclient.InferenceServerClient(grpc_url)
    blank = _page([])
    data = np.array([blank, _page(["SECOND IMAGE"])], dtype=np.object_)
    inp = grpcclient.InferInput("image_bytes", [2], "BYTES")
    inp.set_data_from_numpy(data)
    res = client.infer("ocr", [inp], client_timeout=120)
    idx = res.as_numpy("image_index").tolist()
    assert idx and set(idx) == {1}
