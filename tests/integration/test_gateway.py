"""The PaddleX serving API gateway (`POST /ocr`) against the real server, over real HTTP (uvicorn)."""
from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import pdf_samples as ps
import pytest
from helpers import norm, png, text_page
from ocr_server.local_server import free_port

requests = pytest.importorskip("requests")
uvicorn = pytest.importorskip("uvicorn")

EXAMPLES = Path(__file__).parent / "paddlex_examples"


@pytest.fixture(scope="module")
def gateway(server):
    from ocr_server.paddlex import GatewaySettings, create_gateway_app

    port = free_port()
    app = create_gateway_app(GatewaySettings(triton_url=server.grpc_url, timeout_s=120,
                                             max_body_bytes=8 * 1024 * 1024))
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.started, "the gateway did not start"
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


def _post(url: str, body) -> Any:  # a requests.Response
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return requests.post(url + "/ocr", data=data, headers={"Content-Type": "application/json"}, timeout=300)


@pytest.mark.parametrize("example", ["ocr_client_v2.py", "ocr_client_v3.py"])
def test_paddlex_example_client_runs_unchanged(gateway, tmp_path, example) -> None:
    img, texts = text_page(3, seed=31)
    cv2.imwrite(str(tmp_path / "demo.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    code = (EXAMPLES / example).read_text()
    code = code.replace('API_URL = "http://localhost:8080/ocr"', f'API_URL = "{gateway}/ocr"')
    (tmp_path / example).write_text(code)
    proc = subprocess.run([sys.executable, example], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    for t in texts:
        assert t in proc.stdout
    picture = cv2.imread(str(tmp_path / ("out_0.jpg" if "v2" in example else "ocr_0.jpg")))
    assert picture.shape[:2] == (img.shape[0], 2 * img.shape[1])  # the page | the texts


def test_response_shape_and_new_fields(gateway) -> None:
    from ppocr_steps.pdf import PdfLimits, rasterize_pdf

    texts = ps.dense_lines()
    [img] = rasterize_pdf(ps.build_pdf([ps.text_page(texts, font_size=14)]), PdfLimits())
    turned = cv2.rotate(img, cv2.ROTATE_90_CLOCKWISE)
    body = {"file": base64.b64encode(png(turned)).decode(), "useDocOrientationClassify": True,
            "textRecScoreThresh": 0.3, "visualize": False}
    r = _post(gateway, body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["errorCode"] == 0 and out["errorMsg"] == "Success" and re.fullmatch(r"[0-9a-f-]{36}", out["logId"])
    [res] = out["result"]["ocrResults"]
    pruned = res["prunedResult"]
    got = [norm(t) for t in pruned["rec_texts"]]
    assert got[0] == norm(texts[0]) and got[-1] == norm(texts[-1])  # the upright page's reading order
    assert len(set(got) & {norm(t) for t in texts}) >= 0.9 * len(texts)
    assert pruned["doc_preprocessor_res"]["angle"] == 90 and pruned["text_rec_score_thresh"] == 0.3
    assert len(pruned["rec_polys"]) == len(pruned["rec_boxes"]) == len(pruned["rec_scores"]) == len(got)
    first = pruned["rec_polys"][0]  # the first line lies at the right edge of the page as sent
    assert min(x for x, _ in first) > turned.shape[1] * 0.8
    assert all(len(b) == 4 for b in pruned["rec_boxes"]) and pruned["dt_polys"] == pruned["rec_polys"]
    assert res["ocrImage"] is None and res["image"] is None
    assert out["result"]["dataInfo"] == {"type": "image", "width": turned.shape[1], "height": turned.shape[0]}


def test_pdf_document_one_result_per_page(gateway) -> None:
    scan, scan_texts = text_page(3, seed=33)
    jpeg = cv2.imencode(".jpg", scan, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    h, w = scan.shape[:2]
    doc = ps.build_pdf([ps.text_page(["INVOICE 2024", "TOTAL 1234.56"], font_size=20),
                        ps.image_page(jpeg, w, h, size=(w * 0.75, h * 0.75)),
                        ps.text_page(ps.dense_lines(), font_size=14, rotate=90)])
    r = _post(gateway, {"file": base64.b64encode(doc).decode(), "fileType": 1})  # as PaddleX's example sends it
    assert r.status_code == 200, r.text
    out = r.json()["result"]
    assert out["dataInfo"]["type"] == "pdf" and out["dataInfo"]["numPages"] == 3
    results = out["ocrResults"]
    assert [norm(t["text"]) for t in results[0]["texts"]] == [norm("INVOICE 2024"), norm("TOTAL 1234.56")]
    assert [norm(t) for t in results[1]["prunedResult"]["rec_texts"]] == [norm(t) for t in scan_texts]
    turned = [norm(t) for t in results[2]["prunedResult"]["rec_texts"]]
    assert turned[0] == norm(ps.dense_lines()[0]) and turned[-1] == norm(ps.dense_lines()[-1])
    assert results[2]["prunedResult"]["doc_preprocessor_res"]["angle"] == 90
    assert all(base64.b64decode(x["ocrImage"])[:2] == b"\xff\xd8" for x in results)


@pytest.mark.parametrize(("body", "status", "needle"), [
    (b"{not json", 422, "invalid request body"),
    ({"fileType": 1}, 422, "file"),
    ({"file": "!!!not base64!!!"}, 422, "base64"),
    ({"file": "http://example.com/a.jpg"}, 422, "fetches no URLs"),
    ({"file": base64.b64encode(b"%PDF-1.4 junk").decode(), "fileType": 1}, 422, "not a readable PDF"),
    ({"file": base64.b64encode(b"hello").decode()}, 422, "not a supported image"),
    ({"file": base64.b64encode(ps.encrypted_pdf()).decode()}, 422, "password"),
    ({"file": base64.b64encode(png(text_page(1)[0])).decode(), "useDocUnwarping": True}, 422, "use_doc_unwarping"),
    ({"file": base64.b64encode(png(text_page(1)[0])).decode(), "textDetThresh": "high"}, 422, "textDetThresh"),
    ({"file": base64.b64encode(png(text_page(1)[0])).decode(), "textDetBoxThresh": 7}, 422, "box_thresh"),
    ({"file": "A" * (9 * 1024 * 1024)}, 413, "limit"),
])
def test_bad_bodies_get_the_paddlex_error_shape(gateway, body, status, needle) -> None:
    r = _post(gateway, body)
    assert r.status_code == status, r.text
    out = r.json()
    assert set(out) == {"logId", "errorCode", "errorMsg"} and out["errorCode"] == status
    assert needle in out["errorMsg"] and "Traceback" not in out["errorMsg"]


def test_metrics_and_openapi(gateway) -> None:
    metrics = requests.get(gateway + "/metrics/", timeout=30).text
    assert re.search(r'ocr_gateway_requests_total\{status="200"\} [1-9]', metrics)
    assert re.search(r'ocr_gateway_errors_total\{error_code="422"\} [1-9]', metrics)
    assert "ocr_gateway_request_seconds_bucket" in metrics
    schema = requests.get(gateway + "/openapi.json", timeout=30).json()
    assert "/ocr" in schema["paths"] and "OcrRequest" in json.dumps(schema)
    assert requests.get(gateway + "/docs", timeout=30).status_code == 200
