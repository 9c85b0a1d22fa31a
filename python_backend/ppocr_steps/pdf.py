"""Rasterise PDF documents to BGR page images with PDFium (pypdfium2), bounded in time and memory.

A PDF is hostile input of a much richer kind than an image, so PDFium never runs in the server's
process: each document is rendered by a child interpreter (`python -m ppocr_steps.pdf`) with an
address-space limit and a wall-clock deadline; the parent kills it when the deadline passes. Before
any page is rendered the child refuses password-protected and unreadable files, documents with more
pages than any real document (page-count bombs) and pages whose MediaBox at the render resolution
exceeds the pixel limit (giant-MediaBox bombs). Only the first `max_pages` pages are read. Errors
come back as InvalidInputError saying what to do.

Child protocol: stdin = one JSON line of limits, then the PDF bytes; stdout = one JSON line
(`{"pages": [[h, w], ...]}` or `{"error": ..., "reason": ...}`), then the pages' BGR pixels in order.
"""
from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, BinaryIO

from ppocr_steps.errors import InvalidInputError

if TYPE_CHECKING:  # the child process never imports numpy (it only starts faster without)
    import numpy as np

__all__ = ["PdfLimits", "is_pdf", "rasterize_pdf", "render_in_process", "main"]

# PDF files may carry up to 1 KiB of junk before the header (PDF 32000-1 implementation note 13).
_HEADER_WINDOW = 1024
_POINTS_PER_INCH = 72.0


@dataclass(frozen=True)
class PdfLimits:
    """Rendering settings and limits (config.pbtxt `pdf_*` parameters of det_preprocess)."""

    dpi: float = 144.0
    max_pages: int = 10  # pages read (the first ones), as PaddleX's serving API does
    max_document_pages: int = 1000  # documents with more pages are refused (page-count bombs)
    max_page_pixels: int = 25_000_000
    timeout_s: float = 10.0
    max_memory_mb: int = 1024


def is_pdf(data: bytes) -> bool:
    """Whether `data` starts (within its first KiB) with a PDF header."""
    return b"%PDF-" in data[:_HEADER_WINDOW]


def _refuse(name: str, message: str, reason: str) -> InvalidInputError:
    return InvalidInputError(f"{name} {message}".strip(), reason)



# ---------------------------------------------------------------------------------------------- child side
def _open_error(exc: Exception) -> tuple[str, str]:
    """(message, reason) for a PDF that PDFium cannot open; the message ends in what to do."""
    text = str(exc).lower()
    if "password" in text:
        return ("is a password-protected (encrypted) PDF; remove the password (e.g. `qpdf --decrypt "
                "--password=... in.pdf out.pdf`) and send the decrypted file", "pdf_encrypted")
    if "security" in text:
        return ("uses an unsupported PDF security handler; save it without encryption and send it again",
                "pdf_encrypted")
    return ("is not a readable PDF (PDFium: " + str(exc).strip() + "); send the complete, valid file "
            "or render its pages to PNG/JPEG", "pdf_broken")


def render_in_process(data: bytes, limits: PdfLimits, name: str = "document") -> list[np.ndarray]:
    """Render the first `limits.max_pages` pages of `data` to BGR uint8 arrays in this process.

    Raises InvalidInputError (its message starting with `name`) for refused documents. Only run this
    unbounded in a process you can kill: a hostile document can make PDFium slow or hungry.
    """
    return [_to_array(raw) for raw in _render_raw(data, limits, name)]


def _to_array(raw: _RawPage) -> np.ndarray:
    """A rendered page's BGR uint8 array (stride and any fourth channel dropped)."""
    import numpy as np

    h, w, channels, stride, buf = raw
    rows = np.frombuffer(buf, dtype=np.uint8, count=h * stride).reshape(h, stride)
    return np.ascontiguousarray(rows[:, :w * channels].reshape(h, w, channels)[:, :, :3])


# (height, width, channels, stride, pixels): what the child sends, without numpy (faster child start)
_RawPage = tuple[int, int, int, int, bytes]


def _render_raw(data: bytes, limits: PdfLimits, name: str) -> list[_RawPage]:
    import pypdfium2 as pdfium  # the child imports PDFium; the parent process never does

    try:
        doc = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        message, reason = _open_error(exc)
        raise _refuse(name, message, reason) from None
    try:
        count = len(doc)
        if count == 0:
            raise _refuse(name, "is a PDF with no pages; send a document with at least one page", "pdf_empty")
        if count > limits.max_document_pages:
            raise _refuse(name, f"is a PDF of {count} pages; documents of more than {limits.max_document_pages} "
                                "pages are refused: split the document", "pdf_too_many_pages")
        count = min(count, limits.max_pages)
        scale = limits.dpi / _POINTS_PER_INCH
        for i in range(count):  # every page's size is checked before any pixel is rendered
            try:
                page = doc[i]
            except pdfium.PdfiumError as exc:
                raise _refuse(name, f"is a PDF whose page {i + 1} cannot be loaded ({exc}); repair or re-save "
                                    "the document", "pdf_broken") from None
            w_pt, h_pt = page.get_size()
            page.close()
            w, h = round(w_pt * scale), round(h_pt * scale)
            if w < 1 or h < 1:
                raise _refuse(name, f"is a PDF whose page {i + 1} has an empty MediaBox ({w_pt:g} x {h_pt:g} pt); "
                                     "repair the document", "pdf_broken")
            if w * h > limits.max_page_pixels:
                raise _refuse(name, f"is a PDF whose page {i + 1} is {w_pt:g} x {h_pt:g} pt, {w}x{h} = {w * h} "
                                     f"pixels at {limits.dpi:g} dpi; the limit is {limits.max_page_pixels} pixels per "
                                     "page: send smaller pages or render them to images yourself",
                              "pdf_page_too_large")
        pages: list[_RawPage] = []
        for i in range(count):
            page = doc[i]
            try:
                bitmap = page.render(scale=scale, may_draw_forms=True, fill_color=(255, 255, 255, 255))
                pages.append((bitmap.height, bitmap.width, bitmap.n_channels, bitmap.stride,
                              bytes(bitmap.buffer)[:bitmap.height * bitmap.stride]))
                bitmap.close()
            finally:
                page.close()
        return pages
    finally:
        doc.close()


def _write_all(stream: BinaryIO, chunks: list[bytes]) -> None:
    for c in chunks:
        stream.write(c)
    stream.flush()


def main() -> int:
    """Child entry point: read limits + PDF from stdin, write pages to stdout (see the module doc)."""
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    limits = PdfLimits(**json.loads(stdin.readline()))
    max_bytes = limits.max_memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (max_bytes, max_bytes))  # before PDFium allocates anything
    data = stdin.read()
    try:
        pages = _render_raw(data, limits, name="")
    except InvalidInputError as exc:
        _write_all(stdout, [json.dumps({"error": str(exc), "reason": exc.reason}).encode() + b"\n"])
        return 0
    header = json.dumps({"pages": [list(p[:4]) for p in pages]}).encode() + b"\n"
    _write_all(stdout, [header, *(p[4] for p in pages)])
    return 0


# ---------------------------------------------------------------------------------------------- parent side
def _python() -> str:
    """The interpreter of this environment (inside Triton's stub `sys.executable` is not Python)."""
    exe = sys.executable
    if exe and os.path.basename(exe).startswith("python"):
        return exe
    found = shutil.which("python3")
    if found is None:
        raise RuntimeError("no python3 on PATH to render PDFs with")
    return found


def rasterize_pdf(data: bytes, limits: PdfLimits, name: str = "image_bytes") -> list[np.ndarray]:
    """Render the PDF `data` to BGR uint8 page images in a bounded child process.

    Raises InvalidInputError saying what to do for every refused document, including ones that
    take longer than `limits.timeout_s` or more than `limits.max_memory_mb` to render.
    """
    proc = subprocess.Popen([_python(), "-m", "ppocr_steps.pdf"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, close_fds=True)
    payload = json.dumps(asdict(limits)).encode() + b"\n" + data
    try:
        out, err = proc.communicate(payload, timeout=limits.timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise _refuse(name, f"is a PDF that took longer than {limits.timeout_s:g} s to render; simplify it "
                            "(e.g. print it to a new PDF or rasterise the pages to PNG/JPEG) and send that",
                      "pdf_too_slow") from None
    newline = out.find(b"\n")
    header = json.loads(out[:newline]) if proc.returncode == 0 and newline > 0 else None
    if header is None:
        if proc.returncode in (-9, -6, -11) or b"MemoryError" in err or b"std::bad_alloc" in err:
            raise _refuse(name, f"is a PDF that needs more than {limits.max_memory_mb} MiB to render; simplify it "
                                "or rasterise the pages to PNG/JPEG and send those", "pdf_too_large")
        raise RuntimeError(f"the PDF renderer failed (exit {proc.returncode}): "
                           f"{err.decode('utf-8', 'replace')[-500:]}")
    if "error" in header:
        raise _refuse(name, str(header["error"]), str(header["reason"]))
    pages, offset = [], newline + 1
    for h, w, channels, stride in header["pages"]:
        pages.append(_to_array((h, w, channels, stride, out[offset:offset + h * stride])))
        offset += h * stride
    return pages


if __name__ == "__main__":
    sys.exit(main())
