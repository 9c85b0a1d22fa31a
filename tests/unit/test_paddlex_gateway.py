"""The PaddleX gateway's pure parts: the `file` field, fileType, parameter mapping (no server)."""
from __future__ import annotations

import asyncio
import base64

import pytest

pytest.importorskip("fastapi")

from ocr_server.paddlex.files import FILE_TYPE_IMAGE, FILE_TYPE_PDF, GatewayError, load_file  # noqa: E402
from ocr_server.paddlex.router import _ocr_params  # noqa: E402
from ocr_server.paddlex.schemas import OcrRequest  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 40
PDF = b"%PDF-1.7\n..."


def _load(value: str, file_type: int | None = None, hosts: frozenset[str] = frozenset(), max_bytes: int = 1 << 20):
    return asyncio.run(load_file(value, file_type, hosts, max_bytes, 5.0))


def test_base64_and_data_urls_and_inferred_types() -> None:
    assert _load(base64.b64encode(PNG).decode()).file_type == FILE_TYPE_IMAGE
    got = _load(base64.b64encode(PDF).decode())
    assert (got.data, got.file_type) == (PDF, FILE_TYPE_PDF)
    wrapped = "data:application/pdf;base64," + base64.encodebytes(PDF).decode()  # with newlines
    assert _load(wrapped).file_type == FILE_TYPE_PDF


@pytest.mark.parametrize(("value", "file_type", "status", "needle"), [
    ("not base64 at all!", None, 422, "base64"),
    ("", None, 422, "empty"),
    ("https://example.com/a.pdf", None, 422, "fetches no URLs"),
    ("A" * 4000, None, 413, "more than"),
])
def test_refusals_say_what_to_do(value: str, file_type: int | None, status: int, needle: str) -> None:
    with pytest.raises(GatewayError) as info:
        _load(value, file_type, max_bytes=1000)
    assert info.value.status == status and needle in info.value.message


def test_the_bytes_decide_the_file_type() -> None:
    # PaddleX's example client sends fileType 1 for every file
    assert _load(base64.b64encode(PDF).decode(), 1).file_type == FILE_TYPE_PDF
    assert _load(base64.b64encode(PNG).decode(), 0).file_type == FILE_TYPE_IMAGE


def test_urls_only_from_allowed_hosts() -> None:
    with pytest.raises(GatewayError, match="host 'evil.example'"):
        _load("http://evil.example/x.jpg", hosts=frozenset({"files.example"}))


def test_paddlex_fields_map_to_the_ensemble_parameters() -> None:
    body = OcrRequest(file="x", inferenceParams={"maxLongSide": 960}, useDocOrientationClassify=False,
                      textDetBoxThresh=0.6, textRecScoreThresh=0.2)
    assert _ocr_params(body) == {"limit_side_len": 960, "limit_type": "max", "box_thresh": 0.6,
                                 "text_rec_score_thresh": 0.2, "use_doc_orientation_classify": False}
    newer = OcrRequest(file="x", inferenceParams={"maxLongSide": 960}, textDetLimitSideLen=736,
                       textDetLimitType="min")
    assert _ocr_params(newer) == {"limit_side_len": 736, "limit_type": "min"}
    with pytest.raises(GatewayError, match="unclip_ratio"):
        _ocr_params(OcrRequest(file="x", textDetUnclipRatio=-1))


@pytest.fixture(scope="module")
def file_server():
    """A local HTTP server: /page.png (200), /big.png (too large), /moved (a redirect), else 404."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            if self.path == "/moved":
                self.send_response(302)
                self.send_header("Location", "http://169.254.169.254/")
                self.end_headers()
                return
            body = {"/page.png": PNG, "/big.png": PNG * 100}.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: object) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def test_allowed_urls_are_fetched_with_limits(file_server: str) -> None:
    hosts = frozenset({"127.0.0.1"})
    got = _load(file_server + "/page.png", hosts=hosts)
    assert (got.data, got.file_type) == (PNG, FILE_TYPE_IMAGE)
    for path, status, needle in (("/missing.png", 422, "HTTP 404"), ("/moved", 422, "redirects are not followed"),
                                 ("/big.png", 413, "larger than")):
        with pytest.raises(GatewayError) as info:
            _load(file_server + path, hosts=hosts, max_bytes=1000)
        assert info.value.status == status and needle in info.value.message
