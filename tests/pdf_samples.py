"""Generated PDF documents for the tests: good ones (text, scanned-image and rotated pages) and hostile ones.

Written object by object in PDF syntax so that every byte is under the test's control (no PDF library
may "repair" a hostile structure on writing). Fonts are the standard 14 (no embedding needed).
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field

__all__ = ["Page", "build_pdf", "text_page", "dense_lines", "image_page", "encrypted_pdf", "page_count_bomb",
           "giant_mediabox", "slow_page", "flate_bomb", "A4"]

A4 = (595.0, 842.0)


@dataclass
class Page:
    """One page: its content stream, an optional JPEG image XObject `/Im0`, /Rotate, MediaBox."""

    content: bytes
    size: tuple[float, float] = A4
    rotate: int = 0
    jpeg: bytes | None = None
    jpeg_size: tuple[int, int] = (0, 0)
    compress: bool = False
    extra: dict[str, bytes] = field(default_factory=dict)


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def text_page(lines: list[str], size: tuple[float, float] = A4, font_size: float = 16, rotate: int = 0) -> Page:
    """Black Helvetica lines from the top-left margin, 1.6 line spacing."""
    ops = [b"BT", f"/F1 {font_size:g} Tf".encode(), f"{font_size * 1.6:g} TL".encode(),
           f"60 {size[1] - 80:g} Td".encode()]
    for line in lines:
        ops.append(f"({_escape(line)}) Tj T*".encode())
    ops.append(b"ET")
    return Page(b"\n".join(ops), size=size, rotate=rotate)


def dense_lines(n: int = 30) -> list[str]:
    """Lines that fill a page (the page-orientation classifier needs a page's worth of text)."""
    words = ["TOTAL", "CASH", "CHANGE", "INVOICE", "ROUNDING", "QTY", "PRICE", "ITEM", "DATE", "TAX"]
    return [f"{words[i % 10]} {1000 + 37 * i}.{i:02d} {words[(i * 3) % 10]} AND MORE TEXT ON LINE {i}"
            for i in range(n)]


def image_page(jpeg: bytes, width_px: int, height_px: int, size: tuple[float, float] = A4, rotate: int = 0) -> Page:
    """A scanned page: the JPEG stretched over the whole MediaBox."""
    content = f"q {size[0]:g} 0 0 {size[1]:g} 0 0 cm /Im0 Do Q".encode()
    return Page(content, size=size, rotate=rotate, jpeg=jpeg, jpeg_size=(width_px, height_px))


def build_pdf(pages: list[Page], count: int | None = None, encrypt: bytes | None = None) -> bytes:
    """A complete PDF with `pages`; `count` overrides /Count of the page tree (lying counts);
    `encrypt` is the body of an /Encrypt dictionary added to the trailer."""
    objects: list[bytes] = []

    def add(body: bytes) -> int:
        objects.append(body)
        return len(objects)

    catalog = add(b"")  # filled in below
    pages_obj = add(b"")
    font = add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    kids = []
    for p in pages:
        data = zlib.compress(p.content) if p.compress else p.content
        filt = b" /Filter /FlateDecode" if p.compress else b""
        content = add(b"<< /Length %d%s >>\nstream\n" % (len(data), filt) + data + b"\nendstream")
        resources = b"<< /Font << /F1 %d 0 R >>" % font
        if p.jpeg is not None:
            w, h = p.jpeg_size
            img = add(b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceRGB "
                      b"/BitsPerComponent 8 /Filter /DCTDecode /Length %d >>\nstream\n" % (w, h, len(p.jpeg))
                      + p.jpeg + b"\nendstream")
            resources += b" /XObject << /Im0 %d 0 R >>" % img
        resources += b" >>"
        extra = b"".join(b" /" + k.encode() + b" " + v for k, v in p.extra.items())
        page = add(b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 %s %s] /Rotate %d /Resources %s /Contents %d 0 R%s >>"
                   % (pages_obj, f"{p.size[0]:g}".encode(), f"{p.size[1]:g}".encode(), p.rotate, resources,
                      content, extra))
        kids.append(page)
    n = len(kids) if count is None else count
    objects[pages_obj - 1] = (b"<< /Type /Pages /Kids [" + b" ".join(b"%d 0 R" % k for k in kids)
                              + b"] /Count %d >>" % n)
    objects[catalog - 1] = b"<< /Type /Catalog /Pages %d 0 R >>" % pages_obj
    enc_ref = add(encrypt) if encrypt is not None else None
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for i, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    trailer = b"<< /Size %d /Root %d 0 R" % (len(objects) + 1, catalog)
    if enc_ref is not None:
        trailer += b" /Encrypt %d 0 R /ID [<0123456789abcdef0123456789abcdef> <0123456789abcdef0123456789abcdef>]" \
            % enc_ref
    out += b"trailer\n" + trailer + b" >>\nstartxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)


# ---------------------------------------------------------------------------------------------- hostile
def encrypted_pdf() -> bytes:
    """Standard security handler (RC4, R3) whose /U entry matches no empty password: a user password is needed."""
    enc = (b"<< /Filter /Standard /V 2 /R 3 /Length 128 /P -3904 "
           b"/O <" + b"ab" * 32 + b"> /U <" + b"cd" * 32 + b"> >>")
    return build_pdf([text_page(["SECRET"])], encrypt=enc)


def page_count_bomb(real_pages: int = 40) -> bytes:
    """More real pages than any request may hold (each is tiny)."""
    return build_pdf([text_page([f"PAGE {i}"], size=(100, 100)) for i in range(real_pages)])


def giant_mediabox() -> bytes:
    """One page of 14400 x 14400 pt (200 x 200 inches, the largest PDF allows): 829 Mpx at 144 dpi."""
    return build_pdf([text_page(["HUGE"], size=(14400, 14400))])


def slow_page(strokes: int = 3_000_000) -> bytes:
    """A small file whose single page holds millions of stroked curves (compressed content stream)."""
    body = b"1 w\n" + b"10 10 m 500 800 20 30 580 820 c S\n" * strokes
    page = Page(body, compress=True)
    return build_pdf([page])


def _repeated_deflate(chunk: bytes, times: int) -> bytes:
    """zlib stream of `chunk` repeated `times` times, built in O(len(chunk)): after a full flush the
    compressor has no history, so every further copy of the chunk compresses to the same bytes."""
    comp = zlib.compressobj(9)
    first = comp.compress(chunk) + comp.flush(zlib.Z_FULL_FLUSH)
    body = comp.compress(chunk) + comp.flush(zlib.Z_FULL_FLUSH)
    final = comp.flush()  # empty final block + Adler-32 of two chunks: replaced below
    adler = 1
    for _ in range(times):
        adler = zlib.adler32(chunk, adler)
    return first + body * (times - 1) + final[:-4] + adler.to_bytes(4, "big")


def flate_bomb(megabytes: int = 3000) -> bytes:
    """A content stream that inflates to `megabytes` MiB of whitespace (a few MB of file)."""
    data = _repeated_deflate(b" " * (1 << 20), megabytes)
    assert zlib.decompressobj().decompress(data[:100_000], 1 << 20) == b" " * (1 << 20)
    pdf = build_pdf([Page(b"PLACEHOLDER")])
    return pdf.replace(b"<< /Length 11 >>\nstream\nPLACEHOLDER",
                       b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(data) + data)
