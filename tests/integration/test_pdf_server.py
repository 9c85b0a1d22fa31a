"""PDF documents through the real server: gRPC client (one result per page) and `ocr-client infer`."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import pdf_samples as ps
import pytest
from helpers import norm, text_page

CLI = str(Path(sys.executable).parent / "ocr-client")
PAGE1 = ["INVOICE 2024", "TOTAL 1234.56"]
PAGE3 = ps.dense_lines()


@pytest.fixture(scope="module")
def document() -> tuple[bytes, list[str]]:
    """Page 1: text; page 2: a scanned (JPEG) page; page 3: a full text page shown turned by 90 degrees."""
    scan, scan_texts = text_page(4, seed=5)
    ok, jpeg = cv2.imencode(".jpg", scan, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    h, w = scan.shape[:2]
    pages = [ps.text_page(PAGE1, font_size=20), ps.image_page(jpeg.tobytes(), w, h, size=(w * 0.75, h * 0.75)),
             ps.text_page(PAGE3, font_size=14, rotate=90)]
    return ps.build_pdf(pages), scan_texts


def test_multi_page_pdf_over_grpc(client, document) -> None:
    doc, scan_texts = document
    results = client.ocr_document(doc)
    assert [(r.source, r.page) for r in results] == [(0, 0), (0, 1), (0, 2)]
    assert [norm(t) for t in results[0].texts] == [norm(t) for t in PAGE1]
    assert [norm(t) for t in results[1].texts] == [norm(t) for t in scan_texts]
    # the turned page is read upright: angle 90, lines in reading order, polygons on the page as sent
    assert [r.angle for r in results] == [0, 0, 90]
    turned = [norm(t) for t in results[2].texts]
    assert turned[0] == norm(PAGE3[0]) and turned[-1] == norm(PAGE3[-1])
    assert results[2].lines[0].box[0] > 1684 * 0.8  # the first line lies at the right edge (page 1684 x 1190)
    # polygons are in the page image's pixels (144 dpi: A4 is 1190 x 1684)
    xs = [x for line in results[0].lines for x, _ in line.poly]
    assert 0 <= min(xs) and max(xs) <= 1190


def test_images_and_pdfs_mixed_in_one_request(client, document) -> None:
    doc, _ = document
    img, texts = text_page(2, seed=9)
    ok, png = cv2.imencode(".png", img)
    results = client.ocr_batch([png.tobytes(), doc, png.tobytes()])
    assert [(r.source, r.page) for r in results] == [(0, None), (1, 0), (1, 1), (1, 2), (2, None)]
    assert [norm(t) for t in results[4].texts] == [norm(t) for t in texts]


def test_cli_writes_one_line_per_page_and_an_error_line(server, document, tmp_path) -> None:
    doc, scan_texts = document
    (tmp_path / "doc.pdf").write_bytes(doc)
    (tmp_path / "locked.pdf").write_bytes(ps.encrypted_pdf())
    out = tmp_path / "preds.jsonl"
    proc = subprocess.run([CLI, "infer", "-q", "--url", server.grpc_url, "--timeout", "240", "--jsonl", str(out),
                           str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr  # locked.pdf failed
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(Path(r["image"]).name, r.get("page")) for r in records] == [
        ("doc.pdf", 1), ("doc.pdf", 2), ("doc.pdf", 3), ("locked.pdf", None)], records
    assert [norm(x["text"]) for x in records[1]["lines"]] == [norm(t) for t in scan_texts]
    assert "password" in records[3]["error"] and "lines" not in records[3]
    assert "locked.pdf" in proc.stderr
