"""PDF documents in image_bytes: rendering, limits and refusals (ppocr_steps.pdf, pipeline.preprocess)."""
from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from ppocr_steps.errors import InvalidInputError
from ppocr_steps.pdf import PdfLimits, is_pdf, rasterize_pdf
from ppocr_steps.pipeline import preprocess

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import pdf_samples as ps  # noqa: E402
from served import served_defaults, served_settings  # noqa: E402


def _scan_jpeg() -> tuple[bytes, int, int]:
    img = np.full((400, 300, 3), 255, np.uint8)
    cv2.putText(img, "SCAN 42", (20, 200), cv2.FONT_HERSHEY_SIMPLEX, 1.5, (0, 0, 0), 3)
    ok, buf = cv2.imencode(".jpg", img)
    assert ok
    return buf.tobytes(), 300, 400


def test_is_pdf_allows_leading_junk_but_not_images() -> None:
    assert is_pdf(b"%PDF-1.7\n...")
    assert is_pdf(b"\x00" * 100 + b"%PDF-1.4")
    assert not is_pdf(b"\x89PNG\r\n\x1a\n" + b"%PDF-" * 0)
    assert not is_pdf(b" " * 2000 + b"%PDF-1.4")


def test_pages_are_rendered_at_the_dpi_with_rotation_applied() -> None:
    jpeg, w, h = _scan_jpeg()
    doc = ps.build_pdf([ps.text_page(["HELLO"]), ps.image_page(jpeg, w, h), ps.text_page(["TURNED"], rotate=90)])
    pages = rasterize_pdf(doc, PdfLimits(dpi=72))
    assert [p.shape for p in pages] == [(842, 595, 3), (842, 595, 3), (595, 842, 3)]
    assert all(p.dtype == np.uint8 for p in pages)
    assert pages[0].min() == 0 and np.median(pages[0]) == 255  # black text on white paper
    half = rasterize_pdf(doc, PdfLimits(dpi=36))
    assert half[0].shape == (421, 298, 3)


@pytest.mark.parametrize(("make", "reason", "hint"), [
    (ps.encrypted_pdf, "pdf_encrypted", "remove the password"),
    (lambda: ps.page_count_bomb(1001), "pdf_too_many_pages", "split the document"),
    (ps.giant_mediabox, "pdf_page_too_large", "send smaller pages"),
    (lambda: ps.build_pdf([ps.text_page(["X"])])[:200], "pdf_broken", "send the complete, valid file"),
    (lambda: b"%PDF-1.7\n" + b"\x00" * 50, "pdf_broken", "send the complete, valid file"),
])
def test_hostile_documents_are_refused_with_what_to_do(make, reason: str, hint: str) -> None:
    with pytest.raises(InvalidInputError, match=hint) as info:
        rasterize_pdf(make(), PdfLimits(), "image_bytes[1]")
    assert info.value.reason == reason
    assert str(info.value).startswith("image_bytes[1] ")


def test_only_the_first_max_pages_pages_are_read() -> None:
    pages = rasterize_pdf(ps.page_count_bomb(40), PdfLimits(dpi=72, max_pages=10))
    assert len(pages) == 10


def test_lying_page_count_renders_only_the_real_pages() -> None:
    pages = rasterize_pdf(ps.build_pdf([ps.text_page(["A"])], count=10**9), PdfLimits(dpi=36))
    assert len(pages) == 1


def test_slow_document_is_stopped_at_the_deadline() -> None:
    with pytest.raises(InvalidInputError, match="took longer than 1 s") as info:
        rasterize_pdf(ps.slow_page(), PdfLimits(timeout_s=1))
    assert info.value.reason == "pdf_too_slow"


def test_memory_hungry_document_is_stopped_by_the_memory_limit() -> None:
    with pytest.raises(InvalidInputError, match="more than 400 MiB") as info:
        rasterize_pdf(ps.flate_bomb(600), PdfLimits(max_memory_mb=400))
    assert info.value.reason == "pdf_too_large"


def test_preprocess_maps_each_page_to_its_element_and_page() -> None:
    jpeg, w, h = _scan_jpeg()
    doc = ps.build_pdf([ps.text_page(["ONE"]), ps.image_page(jpeg, w, h)])
    png = cv2.imencode(".png", np.full((60, 200, 3), 255, np.uint8))[1].tobytes()
    s = served_settings(pdf_dpi=72)
    out = preprocess([png, doc, png], {}, served_defaults(), s)
    assert out.source_index.tolist() == [0, 1, 1, 2]
    assert out.page_index.tolist() == [-1, 0, 1, -1]
    assert out.det_input.shape[0] == out.images.shape[0] == out.image_info.shape[0] == 4
    assert out.image_info[1, 0:2].tolist() == [842, 595]  # original size of the page image


def test_pdf_pages_per_request_are_limited_across_documents() -> None:
    doc = ps.build_pdf([ps.text_page([str(i)], size=(100, 100)) for i in range(3)])
    s = served_settings(pdf_max_pages=5, pdf_dpi=72)
    out = preprocess([doc, doc], {}, served_defaults(), s)  # the second document: its first 2 pages
    assert out.source_index.tolist() == [0, 0, 0, 1, 1]
    assert out.page_index.tolist() == [0, 1, 2, 0, 1]
    refused = r"image_bytes\[2\] is a PDF, but .* \(10 images, 5 PDF pages\)"
    with pytest.raises(InvalidInputError, match=refused) as info:
        preprocess([doc, doc, doc], {}, served_defaults(), s)
    assert info.value.reason == "pdf_too_many_pages"


def test_pages_and_images_share_the_images_per_request_limit() -> None:
    doc = ps.build_pdf([ps.text_page([str(i)], size=(100, 100)) for i in range(6)])
    png = cv2.imencode(".png", np.full((60, 200, 3), 255, np.uint8))[1].tobytes()
    s = served_settings(max_images_per_request=4, pdf_dpi=72)  # the GPU target's detector batch
    out = preprocess([png, doc], {}, served_defaults(), s)
    assert out.page_index.tolist() == [-1, 0, 1, 2]
    with pytest.raises(InvalidInputError, match="4 images, 10 PDF pages"):
        preprocess([png, png, doc, doc], {}, served_defaults(), s)  # the first document fills the request
