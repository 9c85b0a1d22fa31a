"""A corpus of malformed, hostile and unusual requests for the `ocr` ensemble, generated in code.

Every case is named and says what the server must answer:
  * "invalid": INVALID_ARGUMENT whose message contains every `needles` string (what to fix); `reason`
    is the `InvalidInputError.reason` our code raises (counted in `ocr_rejected_inputs_total`), or
    None when Triton core refuses the request before our code (wrong dtype, shape, unknown input);
  * "ok": a normal answer (unusual but valid images: 16-bit, CMYK, alpha, EXIF, palette, ...), with at
    least `min_lines` recognised lines;
  * "ok_or_invalid": either (fuzz-like corruption that a decoder may tolerate), never anything else.

`cases()` returns them all; nothing is read from disk, images are drawn with OpenCV and written with
OpenCV or Pillow, then damaged byte by byte.
"""
from __future__ import annotations

import base64
import io
import struct
import zlib
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import cv2
import numpy as np

__all__ = ["Case", "RawTensor", "cases", "text_image", "OK_PARAMS"]

# keep the detector input small for the "ok" cases: the corpus is about decoding, not accuracy
OK_PARAMS: dict[str, Any] = {"limit_type": "max", "limit_side_len": 960}
MAX_IMAGE_BYTES = 32 * 1024 * 1024  # det_preprocess max_image_bytes (repository default)
PARAM_TYPES = {"limit_side_len": ("INT32", np.int32), "limit_type": ("BYTES", np.object_),
               "thresh": ("FP32", np.float32), "box_thresh": ("FP32", np.float32),
               "unclip_ratio": ("FP32", np.float32), "use_textline_orientation": ("BOOL", np.bool_),
               "text_rec_score_thresh": ("FP32", np.float32)}


@dataclass(frozen=True)
class RawTensor:
    name: str
    datatype: str
    data: np.ndarray


@dataclass
class Case:
    name: str
    blobs: list[bytes] | None = None          # sent as image_bytes BYTES [n]
    params: dict[str, Any] = field(default_factory=dict)
    tensors: list[RawTensor] | None = None    # replaces image_bytes + params entirely
    outputs: list[str] | None = None          # requested outputs (default: all)
    expect: str = "invalid"                   # "invalid" | "ok" | "ok_or_invalid"
    needles: tuple[str, ...] = ()
    reason: str | None = None
    min_lines: int = 0

    def inputs(self) -> list[RawTensor]:
        if self.tensors is not None:
            return list(self.tensors)
        out = [RawTensor("image_bytes", "BYTES", np.array(self.blobs or [], dtype=np.object_))]
        for name, value in self.params.items():
            dtype, np_type = PARAM_TYPES[name]
            out.append(RawTensor(name, dtype, np.array([value], dtype=np_type)))
        return out


# ---------------------------------------------------------------------------------------------- images
@cache
def _text_image() -> bytes:
    img = np.full((120, 520, 3), 255, np.uint8)
    cv2.putText(img, "TOTAL 1234.56", (20, 50), cv2.FONT_HERSHEY_SIMPLEX, 1.1, (0, 0, 0), 2, cv2.LINE_AA)
    cv2.putText(img, "CASH 99.10", (20, 100), cv2.FONT_HERSHEY_SIMPLEX, 1.1, (0, 0, 0), 2, cv2.LINE_AA)
    return img.tobytes()


def text_image() -> np.ndarray:
    """120x520 BGR page with two printed lines."""
    return np.frombuffer(_text_image(), np.uint8).reshape(120, 520, 3).copy()


def _cv(img: np.ndarray, ext: str, *params: int) -> bytes:
    ok, buf = cv2.imencode(ext, img, list(params))
    assert ok, ext
    return buf.tobytes()


def _pil(img: Any, fmt: str, **kw: Any) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **kw)
    return out.getvalue()


def _pil_rgb(bgr: np.ndarray) -> Any:
    from PIL import Image

    return Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def _noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png_patch_ihdr(png: bytes, **fields_: int) -> bytes:
    """Rewrite IHDR fields (width, height, depth, color, interlace) with a valid CRC."""
    w, h, depth, color, comp, filt, inter = struct.unpack(">IIBBBBB", png[16:29])
    vals = {"width": w, "height": h, "depth": depth, "color": color, "interlace": inter}
    vals.update(fields_)
    ihdr = struct.pack(">IIBBBBB", vals["width"], vals["height"], vals["depth"], vals["color"], comp, filt,
                       vals["interlace"])
    return png[:8] + _png_chunk(b"IHDR", ihdr) + png[33:]


def _png_bomb(side: int) -> bytes:
    """side x side 1-bit gray PNG of zeros: a few KB encoded, side^2 pixels decoded."""
    row = b"\x00" + b"\x00" * ((side + 7) // 8)
    comp = zlib.compressobj(9)
    data = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", data)
            + _png_chunk(b"IEND", b""))


def _jpeg_segments(jpeg: bytes) -> list[tuple[int, int, int]]:
    """[(marker, start, end)] of the header segments up to and including SOS."""
    out, i = [], 2
    while i < len(jpeg):
        marker = jpeg[i + 1]
        length = struct.unpack(">H", jpeg[i + 2:i + 4])[0]
        out.append((marker, i, i + 2 + length))
        if marker == 0xDA:
            break
        i += 2 + length
    return out


def _jpeg_patch_sof(jpeg: bytes, width: int | None = None, height: int | None = None,
                    marker: int | None = None, precision: int | None = None) -> bytes:
    b = bytearray(jpeg)
    for m, start, _ in _jpeg_segments(jpeg):
        if m in (0xC0, 0xC1, 0xC2):
            if marker is not None:
                b[start + 1] = marker
            if precision is not None:
                b[start + 4] = precision
            if height is not None:
                b[start + 5:start + 7] = struct.pack(">H", height)
            if width is not None:
                b[start + 7:start + 9] = struct.pack(">H", width)
            return bytes(b)
    raise AssertionError("no SOF")


def _jpeg_drop(jpeg: bytes, marker: int) -> bytes:
    for m, start, end in _jpeg_segments(jpeg):
        if m == marker:
            return jpeg[:start] + jpeg[end:]
    raise AssertionError(hex(marker))


def _jpeg_exif_rotated() -> bytes:
    """JPEG stored upside down with EXIF Orientation=3: decoders that honour EXIF read it upright."""
    from PIL import Image

    img = _pil_rgb(cv2.rotate(text_image(), cv2.ROTATE_180))
    exif = Image.Exif()
    exif[0x0112] = 3
    return _pil(img, "JPEG", quality=95, exif=exif.tobytes())


def _jpeg_with_app1(jpeg: bytes, payload: bytes) -> bytes:
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def _tiff_patch_first_ifd(tiff: bytes, tags: dict[int, int]) -> bytes:
    """Overwrite SHORT/LONG values of tags in the first IFD (little-endian TIFF)."""
    assert tiff[:4] == b"II*\x00"
    b = bytearray(tiff)
    ifd = struct.unpack("<I", b[4:8])[0]
    n = struct.unpack("<H", b[ifd:ifd + 2])[0]
    for k in range(n):
        e = ifd + 2 + 12 * k
        tag, typ = struct.unpack("<HH", b[e:e + 4])
        if tag in tags:
            if typ == 3:
                b[e + 8:e + 10] = struct.pack("<H", tags[tag] & 0xFFFF)
            else:
                b[e + 2:e + 4] = struct.pack("<H", 4)
                b[e + 8:e + 12] = struct.pack("<I", tags[tag])
    return bytes(b)


def _webp_vp8x_canvas(webp: bytes, width: int, height: int) -> bytes:
    """Wrap a simple lossy WebP in a VP8X container that declares a width x height canvas."""
    assert webp[12:16] == b"VP8 "
    vp8 = webp[12:]
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\x00\x00\x00\x00" + (width - 1).to_bytes(3, "little") \
        + (height - 1).to_bytes(3, "little")
    body = b"WEBP" + vp8x + vp8
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _gif(frames: int) -> bytes:
    from PIL import Image

    imgs = [Image.fromarray(np.full((40, 60), 60 * i, np.uint8)).convert("P") for i in range(frames)]
    return _pil(imgs[0], "GIF", save_all=frames > 1, append_images=imgs[1:], duration=100, loop=0)


def _bmp_patch_size(bmp: bytes, width: int, height: int) -> bytes:
    return bmp[:18] + struct.pack("<ii", width, height) + bmp[26:]


def _flip_bytes(data: bytes, start_frac: float, n: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    b = bytearray(data)
    start = int(len(b) * start_frac)
    for i in range(start, min(len(b), start + n)):
        b[i] = int(rng.integers(0, 256))
    return bytes(b)


# ---------------------------------------------------------------------------------------------- cases
IMG = "image_bytes"
FIX_FORMATS = "JPEG, PNG"  # every "unsupported/undecodable" message lists the accepted formats


def _image_cases() -> list[Case]:
    from PIL import Image

    page = text_image()
    gray = cv2.cvtColor(page, cv2.COLOR_BGR2GRAY)
    png = _cv(page, ".png")
    jpg = _cv(page, ".jpg", cv2.IMWRITE_JPEG_QUALITY, 92)
    bmp = _cv(page, ".bmp")
    webp = _cv(page, ".webp", cv2.IMWRITE_WEBP_QUALITY, 90)
    tiff = _pil(_pil_rgb(page), "TIFF")
    tiny = _cv(_noise(1, 1), ".png")
    cases: list[Case] = []

    def bad(name: str, blob: bytes, reason: str, *needles: str) -> None:
        cases.append(Case(name, [blob], needles=(IMG, *needles), reason=reason))

    def ok(name: str, blob: bytes, min_lines: int = 2) -> None:
        cases.append(Case(name, [blob], dict(OK_PARAMS), expect="ok", min_lines=min_lines))

    def either(name: str, blob: bytes) -> None:
        cases.append(Case(name, [blob], dict(OK_PARAMS), expect="ok_or_invalid", needles=(IMG,)))

    # --- not images at all
    bad("zero_bytes", b"", "empty", "empty", "send the encoded file")
    bad("one_null_byte", b"\x00", "bad_image", FIX_FORMATS)
    bad("plain_text", b"hello, this is not an image", "bad_image", FIX_FORMATS)
    bad("random_bytes_1k", np.random.default_rng(1).bytes(1024), "bad_image", FIX_FORMATS)
    bad("all_zero_4k", b"\x00" * 4096, "bad_image", FIX_FORMATS)
    bad("html", b"<!DOCTYPE html><html><body><img src='a.png'></body></html>", "bad_image", FIX_FORMATS)
    bad("json", b'{"image": "a.png"}', "bad_image", FIX_FORMATS)
    bad("elf_header", b"\x7fELF\x02\x01\x01" + b"\x00" * 57, "bad_image", FIX_FORMATS)
    bad("zip_archive", b"PK\x03\x04" + b"\x00" * 60, "bad_image", FIX_FORMATS)
    bad("svg", b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', "bad_image", FIX_FORMATS)
    bad("utf16_text", "not an image".encode("utf-16"), "bad_image", FIX_FORMATS)
    bad("base64_png", base64.b64encode(png), "bad_image", "base64", "raw")
    bad("base64_jpeg", base64.b64encode(jpg), "bad_image", "base64", "raw")
    bad("data_url_png", b"data:image/png;base64," + base64.b64encode(png), "bad_image", "base64", "raw")
    bad("file_path_not_bytes", b"/home/user/receipt.jpg", "bad_image", FIX_FORMATS)
    # --- formats OpenCV could decode but the server does not accept (smaller attack surface)
    bad("ppm_p6", b"P6\n4 4\n255\n" + b"\x80" * 48, "bad_image", FIX_FORMATS)
    bad("pgm_p5", b"P5\n4 4\n255\n" + b"\x80" * 16, "bad_image", FIX_FORMATS)
    bad("jpeg2000", b"\x00\x00\x00\x0cjP  \r\n\x87\n" + b"\x00" * 64, "bad_image", FIX_FORMATS)
    bad("openexr", b"\x76\x2f\x31\x01" + b"\x00" * 64, "bad_image", FIX_FORMATS)
    bad("radiance_hdr", b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 4 +X 4\n" + b"\x00" * 64, "bad_image",
        FIX_FORMATS)
    bad("pfm", b"PF\n4 4\n-1.0\n" + b"\x00" * 192, "bad_image", FIX_FORMATS)
    bad("sun_raster", b"\x59\xa6\x6a\x95" + b"\x00" * 64, "bad_image", FIX_FORMATS)
    bad("photoshop_psd", b"8BPS\x00\x01" + b"\x00" * 64, "bad_image", FIX_FORMATS)
    bad("heic", b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 32, "bad_image", FIX_FORMATS)
    bad("avif", b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf" + b"\x00" * 32, "bad_image",
        FIX_FORMATS)
    bad("bigtiff", b"II+\x00\x08\x00\x00\x00" + b"\x00" * 64, "bad_image", FIX_FORMATS)
    bad("gif_static", _gif(1), "unsupported_format", "GIF", FIX_FORMATS)
    bad("gif_animated", _gif(3), "unsupported_format", "GIF", FIX_FORMATS)
    # --- wrong magic / signature only
    bad("png_signature_only", png[:8], "bad_image", "PNG")
    bad("jpeg_soi_only", b"\xff\xd8", "bad_image", "JPEG")
    bad("bmp_magic_only", b"BM", "bad_image", "BMP", "truncated")
    bad("riff_webp_header_only", b"RIFF\x10\x00\x00\x00WEBP", "bad_image", "WebP", "truncated")
    bad("tiff_magic_only", b"II*\x00", "bad_image", "TIFF")
    bad("png_body_with_jpeg_magic", b"\xff\xd8\xff\xe0" + png[4:], "bad_image", "JPEG")
    bad("jpeg_body_with_png_magic", b"\x89PNG\r\n\x1a\n" + jpg[8:], "bad_image", "PNG")
    bad("bmp_body_with_tiff_magic", b"II*\x00" + bmp[4:], "bad_image", "TIFF")
    # --- truncated / corrupt PNG
    bad("png_truncated_16", png[:16], "bad_image", "PNG")
    bad("png_truncated_after_ihdr", png[:33], "bad_image", "PNG")
    bad("png_truncated_half", png[:len(png) // 2], "bad_image", "PNG")
    bad("png_bad_ihdr_crc", png[:29] + b"\x00\x00\x00\x00" + png[33:], "bad_image", "PNG")
    bad("png_corrupt_zlib", _flip_bytes(png, 0.3, 64, 2), "bad_image", "PNG")
    bad("png_zero_width", _png_patch_ihdr(png, width=0), "bad_image", "PNG")
    bad("png_zero_height", _png_patch_ihdr(png, height=0), "bad_image", "PNG")
    bad("png_bad_bit_depth", _png_patch_ihdr(png, depth=3), "bad_image", "PNG")
    bad("png_bad_color_type", _png_patch_ihdr(png, color=5), "bad_image", "PNG")
    bad("png_bad_interlace", _png_patch_ihdr(png, interlace=7), "bad_image", "PNG")
    bad("png_idat_length_huge", png[:33] + struct.pack(">I", 0x7FFFFFF0) + png[37:], "bad_image", "PNG")
    either("png_no_iend", png[:-12])
    # --- truncated / corrupt JPEG
    bad("jpeg_truncated_header", jpg[:40], "bad_image", "JPEG")
    bad("jpeg_truncated_half", jpg[:len(jpg) // 2], "bad_image", "JPEG", "complete")
    bad("jpeg_truncated_no_eoi", jpg[:-2], "bad_image", "JPEG", "complete")
    bad("jpeg_no_sof", _jpeg_drop(jpg, 0xC0), "bad_image", "JPEG")
    bad("jpeg_sof_zero_size", _jpeg_patch_sof(jpg, width=0, height=0), "bad_image", "JPEG")
    bad("jpeg_segment_length_past_end", jpg[:4] + b"\xff\xf0" + jpg[6:], "bad_image", "JPEG")
    bad("jpeg_garbage_between_markers", jpg[:20] + b"\x12\x34\x56" + jpg[20:], "bad_image", "JPEG")
    either("jpeg_corrupt_entropy_data", _flip_bytes(jpg, 0.6, 200, 3))
    either("jpeg_sof3_lossless_marker", _jpeg_patch_sof(jpg, marker=0xC3))
    either("jpeg_12bit_precision", _jpeg_patch_sof(jpg, precision=12))
    # --- truncated / corrupt BMP, WebP, TIFF
    bad("bmp_truncated_header", bmp[:30], "bad_image", "BMP")
    bad("bmp_truncated_pixels", bmp[:len(bmp) // 3], "bad_image", "BMP")
    bad("bmp_zero_size", _bmp_patch_size(bmp, 0, 0), "bad_image", "BMP")
    bad("bmp_bad_bits_per_pixel", bmp[:28] + struct.pack("<H", 7) + bmp[30:], "bad_image", "BMP")
    bad("webp_truncated", webp[:len(webp) // 2], "bad_image", "WebP")
    bad("webp_bad_chunk", webp[:12] + b"XXXX" + webp[16:], "bad_image", "WebP")
    bad("tiff_truncated", tiff[:len(tiff) // 2], "bad_image", "TIFF")
    bad("tiff_ifd_offset_past_end", tiff[:4] + struct.pack("<I", 10 ** 8) + tiff[8:], "bad_image", "TIFF")
    # --- sizes: too small, decompression bombs, huge declared dimensions
    bad("png_1x1", tiny, "too_small", "at least")
    bad("jpeg_1x1", _cv(_noise(1, 1), ".jpg"), "too_small", "at least")
    bad("bmp_1x1", _cv(_noise(1, 1), ".bmp"), "too_small", "at least")
    bad("webp_1x1", _cv(_noise(1, 1), ".webp"), "too_small", "at least")
    bad("tiff_1x1", _pil(Image.new("RGB", (1, 1)), "TIFF"), "too_small", "at least")
    bad("png_7x7", _cv(_noise(7, 7), ".png"), "too_small", "at least")
    bad("png_1x2000_line", _cv(_noise(1, 2000), ".png"), "too_small", "at least")
    bad("png_2000x1_column", _cv(_noise(2000, 1), ".png"), "too_small", "at least")
    bad("png_declares_100000x100000", _png_patch_ihdr(png, width=100000, height=100000), "too_large",
        "pixels", "downscale")
    bad("png_declares_2e9_wide", _png_patch_ihdr(png, width=2 ** 31 - 1, height=1), "too_large", "pixels")
    bad("png_bomb_12000x12000_1bit", _png_bomb(12000), "too_large", "pixels", "downscale")
    bad("jpeg_declares_65500x65500", _jpeg_patch_sof(jpg, width=65500, height=65500), "too_large", "pixels")
    bad("bmp_declares_100000x100000", _bmp_patch_size(bmp, 100000, 100000), "too_large", "pixels")
    bad("bmp_declares_negative_huge", _bmp_patch_size(bmp, 100000, -100000), "too_large", "pixels")
    bad("webp_vp8x_16384x16384", _webp_vp8x_canvas(webp, 16384, 16384), "too_large", "pixels")
    bad("tiff_declares_100000x100000", _tiff_patch_first_ifd(tiff, {256: 100000, 257: 100000}), "too_large",
        "pixels")
    bad("tiff_huge_tiles", _tiff_tiled(page, tile_size=1 << 16), "too_large", "tile")
    cases.append(Case("png_8x8_smallest_accepted", [_cv(np.full((8, 8, 3), 255, np.uint8), ".png")],
                      expect="ok"))
    # --- unusual but valid images: decoded correctly, text found
    ok("png_rgb_8bit", png)
    ok("png_gray_8bit", _cv(gray, ".png"))
    ok("png_rgb_16bit", _cv(page.astype(np.uint16) * 257, ".png"))
    ok("png_gray_16bit", _cv(gray.astype(np.uint16) * 257, ".png"))
    alpha_page = np.dstack([page, np.full(page.shape[:2], 255, np.uint8)])
    ok("png_rgba_opaque", _cv(alpha_page, ".png"))
    transparent = np.zeros((*page.shape[:2], 4), np.uint8)       # black text on a transparent background
    transparent[..., 3] = 255 - gray
    ok("png_rgba_transparent_background", _cv(transparent, ".png"))
    ok("png_rgba_16bit", _cv(alpha_page.astype(np.uint16) * 257, ".png"))
    ok("png_gray_alpha", _pil(Image.fromarray(np.dstack([gray, np.full_like(gray, 255)]), "LA"), "PNG"))
    ok("png_palette", _pil(_pil_rgb(page).convert("P"), "PNG"))
    ok("png_palette_transparency", _pil(_pil_rgb(page).convert("P"), "PNG", transparency=7))
    ok("png_1bit", _pil(Image.fromarray(gray).convert("1"), "PNG"))
    ok("png_interlaced", _png_adam7(page))
    ok("png_animated_apng", _pil(_pil_rgb(page), "PNG", save_all=True, append_images=[_pil_rgb(page)]))
    ok("jpeg_baseline", jpg)
    ok("jpeg_gray", _cv(gray, ".jpg"))
    ok("jpeg_progressive", _cv(page, ".jpg", cv2.IMWRITE_JPEG_PROGRESSIVE, 1))
    ok("jpeg_restart_markers", _cv(page, ".jpg", cv2.IMWRITE_JPEG_RST_INTERVAL, 4))
    ok("jpeg_cmyk", _pil(_pil_rgb(page).convert("CMYK"), "JPEG", quality=95))
    ok("jpeg_exif_orientation_180", _jpeg_exif_rotated())
    ok("jpeg_fill_bytes_before_marker", jpg[:2] + b"\xff\xff\xff" + jpg[2:])
    ok("jpeg_trailing_garbage_after_eoi", jpg + b"\x00garbage" * 8)
    ok("jpeg_no_huffman_tables_mjpeg_style", _jpeg_drop(jpg, 0xC4))  # decoders use the standard tables
    ok("jpeg_malformed_exif", _jpeg_with_app1(jpg, b"Exif\x00\x00II*\x00\xff\xff\xff\x7f" + b"\x00" * 20))
    ok("bmp_24bit", bmp)
    ok("bmp_32bit_zero_alpha", _bmp32_zero_alpha(page))
    ok("bmp_8bit_palette", _pil(_pil_rgb(page).convert("P"), "BMP"))
    ok("bmp_1bit", _pil(Image.fromarray(gray).convert("1"), "BMP"))
    ok("bmp_top_down", _bmp_top_down(page))
    ok("webp_lossy", webp)
    ok("webp_lossless_alpha", _cv(alpha_page, ".webp", cv2.IMWRITE_WEBP_QUALITY, 101))
    ok("webp_animated_first_frame", _pil(_pil_rgb(page), "WEBP", save_all=True, append_images=[_pil_rgb(255 - page)],
                                         duration=100))
    ok("tiff_rgb", tiff)
    ok("tiff_lzw", _pil(_pil_rgb(page), "TIFF", compression="tiff_lzw"))
    ok("tiff_jpeg_compressed", _pil(_pil_rgb(page), "TIFF", compression="jpeg"))
    ok("tiff_gray_16bit", _pil(Image.fromarray(gray.astype(np.uint16) * 257), "TIFF"))
    ok("tiff_float32", _pil(Image.fromarray(gray.astype(np.float32) / 255.0), "TIFF"))
    ok("tiff_cmyk", _pil(_pil_rgb(page).convert("CMYK"), "TIFF"))
    ok("tiff_rgba", _pil(_pil_rgb(page).convert("RGBA"), "TIFF"))
    ok("tiff_multipage", _pil(_pil_rgb(page), "TIFF", save_all=True, append_images=[_pil_rgb(_noise(64, 64))]))
    ok("tiff_1bit", _pil(Image.fromarray(gray).convert("1"), "TIFF"))
    ok("tiff_big_endian", _tiff_big_endian(page))
    ok("tiff_tiled", _tiff_tiled(page, tile_size=1024))
    return cases


def _png_adam7(page: np.ndarray) -> bytes:
    """Adam7-interlaced RGB PNG, built by hand (neither OpenCV nor Pillow writes interlaced PNG)."""
    rgb = cv2.cvtColor(page, cv2.COLOR_BGR2RGB)
    h, w = rgb.shape[:2]
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
    raw = bytearray()
    for x0, y0, dx, dy in passes:
        sub = rgb[y0::dy, x0::dx]
        if sub.size == 0:
            continue
        for row in sub:
            raw += b"\x00" + row.tobytes()
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 1)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(bytes(raw)))
            + _png_chunk(b"IEND", b""))


def _bmp32_zero_alpha(page: np.ndarray) -> bytes:
    """32-bit BI_RGB BMP whose 4th byte is 0 (what many writers emit: 'unused', not transparency)."""
    h, w = page.shape[:2]
    pixels = np.dstack([page, np.zeros((h, w), np.uint8)])[::-1].tobytes()
    header = struct.pack("<IiiHHIIiiII", 40, w, h, 1, 32, 0, len(pixels), 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + 40 + len(pixels), 0, 0, 54) + header + pixels


def _bmp_top_down(page: np.ndarray) -> bytes:
    """24-bit BMP with a negative height (rows stored top to bottom)."""
    h, w = page.shape[:2]
    stride = (w * 3 + 3) & ~3
    rows = b"".join(page[y].tobytes().ljust(stride, b"\x00") for y in range(h))
    header = struct.pack("<IiiHHIIiiII", 40, w, -h, 1, 24, 0, len(rows), 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + 40 + len(rows), 0, 0, 54) + header + rows


def _tiff(entries: list[tuple[int, int, int]], data: bytes, big_endian: bool = False) -> bytes:
    """Minimal one-IFD TIFF: entries [(tag, type 3|4, value)], the value 0xDA7A is the data offset."""
    e = ">" if big_endian else "<"
    entries = sorted(entries)
    data_offset = 8 + 2 + 12 * len(entries) + 4
    out = bytearray((b"MM\x00*" if big_endian else b"II*\x00") + struct.pack(e + "I", 8)
                    + struct.pack(e + "H", len(entries)))
    for tag, typ, value in entries:
        value = data_offset if value == 0xDA7A else value
        if typ == 3:
            out += struct.pack(e + "HHIHH", tag, typ, 1, value, 0)
        else:
            out += struct.pack(e + "HHII", tag, typ, 1, value)
    return bytes(out + struct.pack(e + "I", 0) + data)


def _tiff_big_endian(page: np.ndarray) -> bytes:
    """Uncompressed big-endian ("MM") RGB TIFF."""
    h, w = page.shape[:2]
    pixels = cv2.cvtColor(page, cv2.COLOR_BGR2RGB).tobytes()
    return _tiff([(256, 4, w), (257, 4, h), (258, 3, 8), (259, 3, 1), (262, 3, 2), (273, 4, 0xDA7A),
                  (277, 3, 3), (278, 4, h), (279, 4, len(pixels))], pixels, big_endian=True)


def _tiff_tiled(page: np.ndarray, tile_size: int) -> bytes:
    """Uncompressed 8-bit gray TIFF in one tile of tile_size^2 (a huge tile is a memory bomb)."""
    gray = cv2.cvtColor(page, cv2.COLOR_BGR2GRAY)
    h, w = gray.shape
    side = min(tile_size, 1024)   # a larger tile is declared, not stored: it must be refused unread
    assert max(h, w) <= side
    tile = np.full((side, side), 255, np.uint8)
    tile[:h, :w] = gray
    data = tile.tobytes()
    return _tiff([(256, 4, w), (257, 4, h), (258, 3, 8), (259, 3, 1), (262, 3, 1), (277, 3, 1),
                  (322, 4, tile_size), (323, 4, tile_size), (324, 4, 0xDA7A), (325, 4, len(data))], data)


def _request_cases() -> list[Case]:
    png = _cv(text_image(), ".png")
    small = _cv(np.full((32, 32, 3), 255, np.uint8), ".png")
    cases: list[Case] = []

    def t(name: str, datatype: str, data: Any) -> RawTensor:
        return RawTensor(name, datatype, np.asarray(data))

    img = t(IMG, "BYTES", np.array([small], dtype=np.object_))

    def core(name: str, tensors: list[RawTensor], *needles: str, outputs: list[str] | None = None) -> None:
        cases.append(Case(name, tensors=tensors, outputs=outputs, needles=needles, reason=None))

    # --- wrong dtypes / shapes / names, refused by Triton core before any Python step
    core("image_bytes_as_uint8", [t(IMG, "UINT8", np.frombuffer(small, np.uint8))], IMG, "BYTES")
    core("image_bytes_as_fp32", [t(IMG, "FP32", np.zeros(4, np.float32))], IMG, "BYTES")
    core("image_bytes_as_int64", [t(IMG, "INT64", np.zeros(1, np.int64))], IMG, "BYTES")
    core("image_bytes_rank2", [t(IMG, "BYTES", np.array([[small]], dtype=np.object_))], IMG, "shape")
    core("image_bytes_rank3", [t(IMG, "BYTES", np.array([[[small]]], dtype=np.object_))], IMG, "shape")
    # Triton 2.51 does not check that a required ensemble input is present when another input is: the
    # ensemble cannot start and says so (documented in the README; the client library always sends it)
    core("image_bytes_missing", [t("thresh", "FP32", np.array([0.3], np.float32))], "at least one output is not set")
    core("unknown_input_name", [img, t("language", "BYTES", np.array([b"en"], dtype=np.object_))], "language")
    core("unknown_output_requested", [img], "boxes", outputs=["texts", "boxes"])
    for name, dtype, value, expected in [
        ("limit_side_len", "FP32", np.array([736.0], np.float32), "INT32"),
        ("limit_side_len", "INT64", np.array([736], np.int64), "INT32"),
        ("thresh", "FP64", np.array([0.3], np.float64), "FP32"),
        ("thresh", "FP16", np.array([0.3], np.float16), "FP32"),
        ("box_thresh", "INT32", np.array([1], np.int32), "FP32"),
        ("unclip_ratio", "BYTES", np.array([b"1.6"], dtype=np.object_), "FP32"),
        ("use_textline_orientation", "INT32", np.array([1], np.int32), "BOOL"),
        ("use_textline_orientation", "BYTES", np.array([b"true"], dtype=np.object_), "BOOL"),
        ("limit_type", "INT32", np.array([0], np.int32), "BYTES"),
        ("text_rec_score_thresh", "BOOL", np.array([True]), "FP32"),
    ]:
        core(f"param_{name}_as_{dtype.lower()}", [img, t(name, dtype, value)], name, expected)
    core("param_thresh_two_values", [img, t("thresh", "FP32", np.array([0.3, 0.4], np.float32))], "thresh",
         "shape")
    core("param_thresh_rank2", [img, t("thresh", "FP32", np.array([[0.3]], np.float32))], "thresh", "shape")
    core("param_limit_type_empty_tensor", [img, t("limit_type", "BYTES", np.array([], dtype=np.object_))],
         "limit_type", "shape")
    # --- request-level limits and parameters, refused by our code
    cases.append(Case("zero_images", tensors=[t(IMG, "BYTES", np.array([], dtype=np.object_))],
                      needles=(IMG, "at least one"), reason="empty"))
    cases.append(Case("eleven_images", [small] * 11, needles=(IMG, "at most 10", "split"), reason="too_many_images"))
    cases.append(Case("sixty_four_images", [small] * 64, needles=(IMG, "at most 10"), reason="too_many_images"))
    cases.append(Case("oversize_payload_32mib_plus_one", [b"\x89PNG\r\n\x1a\n" + b"\x00" * (MAX_IMAGE_BYTES - 7)],
                      needles=(IMG, "bytes", "limit"), reason="too_large"))
    cases.append(Case("second_image_corrupt", [png, png[:100]], dict(OK_PARAMS), needles=("image_bytes[1]",),
                      reason="bad_image"))
    cases.append(Case("third_image_too_small", [small, small, _cv(_noise(2, 2), ".png")],
                      needles=("image_bytes[2]", "at least"), reason="too_small"))
    for name, value, needle in [
        ("thresh", 0.0, "(0.0, 1.0)"), ("thresh", 1.0, "(0.0, 1.0)"), ("thresh", -1.0, "allowed"),
        ("thresh", float("nan"), "allowed"), ("thresh", float("inf"), "allowed"),
        ("box_thresh", 1.01, "[0.0, 1.0]"), ("box_thresh", -0.01, "allowed"), ("box_thresh", float("-inf"), "allowed"),
        ("unclip_ratio", 0.0, "(0.0, 10.0]"), ("unclip_ratio", -1.0, "allowed"), ("unclip_ratio", 10.5, "allowed"),
        ("unclip_ratio", float("nan"), "allowed"),
        ("limit_side_len", 0, "[32, 4096]"), ("limit_side_len", 31, "allowed"), ("limit_side_len", 4097, "allowed"),
        ("limit_side_len", -5, "allowed"), ("limit_side_len", 2 ** 31 - 1, "allowed"),
        ("text_rec_score_thresh", -0.1, "allowed"), ("text_rec_score_thresh", 1.1, "allowed"),
        ("text_rec_score_thresh", float("nan"), "allowed"),
        ("limit_type", "middle", "'min' or 'max'"), ("limit_type", "", "'min' or 'max'"),
        ("limit_type", "MIN ", "'min' or 'max'"), ("limit_type", b"\xff\xfe", "'min' or 'max'"),
    ]:
        label = str(value).replace("-", "minus").replace(".", "_").replace(" ", "_")
        if isinstance(value, bytes):
            label = "invalid_utf8"
        label = label or "empty"
        cases.append(Case(f"param_{name}_{label}", [small], {name: value}, needles=(name, needle),
                          reason="bad_parameter"))
    return cases


def _pdf_cases() -> list[Case]:
    """Hostile PDF documents: each refused with INVALID_ARG saying what to do, before or while rendering."""
    import pdf_samples as ps

    def bad(name: str, blob: bytes, reason: str, *needles: str) -> Case:
        return Case(name, [blob], needles=(IMG, "PDF", *needles), reason=reason)

    return [
        bad("pdf_not_a_document", b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n%%EOF\n", "pdf_broken", "valid file"),
        bad("pdf_truncated", ps.build_pdf([ps.text_page(["TOTAL 1"])])[:300], "pdf_broken", "valid file"),
        bad("pdf_encrypted", ps.encrypted_pdf(), "pdf_encrypted", "remove the password"),
        bad("pdf_page_count_bomb", ps.page_count_bomb(5000), "pdf_too_many_pages", "split the document"),
        bad("pdf_giant_mediabox", ps.giant_mediabox(), "pdf_page_too_large", "send smaller pages"),
        bad("pdf_slow_to_render", ps.slow_page(), "pdf_too_slow", "took longer than", "simplify it"),
        bad("pdf_inflation_bomb", ps.flate_bomb(3000), "pdf_too_large", "MiB to render"),
    ]


def cases() -> list[Case]:
    all_cases = _image_cases() + _request_cases() + _pdf_cases()
    names = [c.name for c in all_cases]
    assert len(names) == len(set(names)), "duplicate case names"
    return all_cases
