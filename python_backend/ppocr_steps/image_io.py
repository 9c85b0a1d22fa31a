"""Decode encoded image bytes to a BGR uint8 array, refusing what cannot be decoded or is too large.

Defence in depth against hostile input, before any pixel is decoded:
  * the byte limit, then the file signature (only JPEG, PNG, BMP, WebP and TIFF reach a decoder;
    recognisable mistakes such as PDF, base64 text or data URLs get a specific hint);
  * the header structure: PNG chunks and IHDR CRC, JPEG marker segments up to the scan and the
    end-of-image marker, the RIFF size of WebP, the first TIFF IFD; truncated and corrupt files are
    refused with what is wrong instead of being half-decoded;
  * the declared size (and TIFF tile size) against the pixel limit: decompression bombs are refused
    without allocating anything;
  * the decoder's own limit: OpenCV refuses to allocate more than OPENCV_IO_MAX_IMAGE_PIXELS (read once,
    when cv2 is loaded; the launcher sets it to det_preprocess's max_image_pixels), so a header that
    the checks above read differently from the decoder (e.g. a TIFF with duplicate size tags) cannot
    make it decode a larger image.
"""
from __future__ import annotations

import base64
import binascii
import os
import re
import struct
import zlib

import cv2
import numpy as np

from ppocr_steps.errors import InvalidInputError

__all__ = ["decode_image", "peek_size", "SUPPORTED_FORMATS", "decoder_limit_problem"]

SUPPORTED_FORMATS = "JPEG, PNG, BMP, WebP, TIFF"
FORMAT_NAMES = {"jpeg": "JPEG", "png": "PNG", "bmp": "BMP", "webp": "WebP", "tiff": "TIFF", "gif": "GIF"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_BASE64_RE = re.compile(rb"^[A-Za-z0-9+/\r\n]{16,}={0,2}\s*$")


class _Corrupt(Exception):
    """The header of a recognised format is inconsistent (detail says what)."""


# ---------------------------------------------------------------------------------------------- sniffing
def _signature(data: bytes) -> str | None:
    if data[:8] == PNG_SIGNATURE:
        return "png"
    if data[:2] == b"\xff\xd8":
        return "jpeg"
    if data[:2] == b"BM":
        return "bmp"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    return None


def _unsupported_hint(data: bytes) -> str | None:
    """What to do instead, for inputs that are recognisably not a supported image."""
    head = data[:64]
    if head.startswith(b"%PDF-"):
        return "is a PDF document; render the page to an image (e.g. PNG at 200-300 dpi) and send that"
    if head[:5].lower() == b"data:" and b";base64," in data[:256]:
        return "is a data URL; strip the 'data:...;base64,' prefix, base64-decode the rest and send the raw bytes"
    if _BASE64_RE.match(data[:4096]) and len(data) >= 16:
        try:
            decoded = base64.b64decode(data[:64].strip()[:64 // 4 * 4], validate=False)
        except (binascii.Error, ValueError):
            decoded = b""
        if _signature(decoded) is not None:
            return "looks base64-encoded; base64-decode it and send the raw file bytes"
    if head[4:8] == b"ftyp":
        brand = head[8:12].decode("ascii", "replace")
        return (f"is an ISO media file (brand '{brand}', e.g. HEIC/AVIF), which is not supported; "
                "convert it to JPEG or PNG")
    if head[:4] in (b"II+\x00", b"MM\x00+"):
        return "is a BigTIFF, which is not supported; save it as a classic TIFF, PNG or JPEG"
    return None


# ---------------------------------------------------------------------------------------------- headers
def _png_header(data: bytes) -> tuple[int, int]:
    """(width, height) of a structurally sound PNG; walks the chunk list (no decompression)."""
    if len(data) < 33:
        raise _Corrupt("the file ends inside the IHDR header (truncated)")
    length, kind = struct.unpack(">I4s", data[8:16])
    if kind != b"IHDR" or length != 13:
        raise _Corrupt("the first chunk is not a 13-byte IHDR")
    if struct.unpack(">I", data[29:33])[0] != zlib.crc32(data[12:29]):
        raise _Corrupt("the IHDR checksum (CRC) is wrong")
    w, h = struct.unpack(">II", data[16:24])
    if w == 0 or h == 0 or w > 0x7FFFFFFF or h > 0x7FFFFFFF:
        raise _Corrupt(f"IHDR declares an invalid size {w}x{h}")
    i, n, seen_idat = 33, len(data), False
    while True:
        if i == n:
            raise _Corrupt("the file ends before the IEND chunk (truncated)")
        if i + 12 > n:
            raise _Corrupt("the file ends inside a chunk header (truncated)")
        length, kind = struct.unpack(">I4s", data[i:i + 8])
        if length > 0x7FFFFFFF or i + 12 + length > n:
            raise _Corrupt(f"chunk {kind!r} of {length} bytes runs past the end of the data (truncated or corrupt)")
        if kind == b"IDAT":
            seen_idat = True
        elif kind == b"IEND":
            break
        i += 12 + length
    if not seen_idat:
        raise _Corrupt("there is no image data (IDAT chunk)")
    return w, h


_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_header(data: bytes) -> tuple[int, int]:
    """(width, height) from the frame header; the marker segments up to the first scan must be sound."""
    i, n = 2, len(data)
    size: tuple[int, int] | None = None
    while True:
        if i >= n:
            raise _Corrupt("the file ends before the image data (truncated header)")
        if data[i] != 0xFF:
            raise _Corrupt(f"garbage where a marker is expected at byte {i} (corrupt header)")
        while i < n and data[i] == 0xFF:  # fill bytes
            i += 1
        if i >= n:
            raise _Corrupt("the file ends before the image data (truncated header)")
        marker = data[i]
        i += 1
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # standalone markers
            continue
        if marker in (0xD8, 0xD9):
            raise _Corrupt("an image marker appears before the image data (corrupt header)")
        if i + 2 > n:
            raise _Corrupt("the file ends inside a marker segment (truncated header)")
        seg_len = struct.unpack(">H", data[i:i + 2])[0]
        if seg_len < 2 or i + seg_len > n:
            raise _Corrupt(f"marker segment 0x{marker:02X} runs past the end of the data (truncated or corrupt)")
        if marker in _JPEG_SOF:
            if seg_len < 8:
                raise _Corrupt("the frame header (SOF) is too short")
            h, w = struct.unpack(">HH", data[i + 3:i + 7])
            if w == 0 or h == 0:
                raise _Corrupt(f"the frame header declares an invalid size {w}x{h}")
            size = (w, h)
        if marker == 0xDA:  # start of scan: the entropy-coded data follows
            if size is None:
                raise _Corrupt("there is no frame header (SOF) before the image data")
            if data.rfind(b"\xff\xd9", i + seg_len) < 0:
                raise _Corrupt("there is no end-of-image marker: the file is truncated")
            return size
        i += seg_len


def _bmp_header(data: bytes) -> tuple[int, int]:
    if len(data) < 26:
        raise _Corrupt("the file ends inside the header (truncated)")
    header_size = struct.unpack("<I", data[14:18])[0]
    if header_size == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
        w, h = struct.unpack("<HH", data[18:22])
    else:
        w, h = struct.unpack("<ii", data[18:26])
    w, h = abs(w), abs(h)
    if w == 0 or h == 0:
        raise _Corrupt(f"the header declares an invalid size {w}x{h}")
    return w, h


def _webp_header(data: bytes) -> tuple[int, int]:
    if len(data) < 30:
        raise _Corrupt("the file ends inside the header (truncated)")
    riff_size = struct.unpack("<I", data[4:8])[0]
    if riff_size + 8 > len(data):
        raise _Corrupt(f"the RIFF container declares {riff_size + 8} bytes but only {len(data)} were sent (truncated)")
    chunk = data[12:16]
    if chunk == b"VP8X":
        return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
    if chunk == b"VP8 ":
        w, h = struct.unpack("<HH", data[26:30])
        return w & 0x3FFF, h & 0x3FFF
    if chunk == b"VP8L":
        b = int.from_bytes(data[21:25], "little")
        return (b & 0x3FFF) + 1, ((b >> 14) & 0x3FFF) + 1
    raise _Corrupt(f"unknown WebP chunk {chunk!r}")


def _tiff_header(data: bytes) -> tuple[int, int, int]:
    """(width, height, pixels per tile or strip buffer) from the first IFD."""
    e = "<" if data[:2] == b"II" else ">"
    if len(data) < 8:
        raise _Corrupt("the file ends inside the header (truncated)")
    ifd = struct.unpack(e + "I", data[4:8])[0]
    if ifd < 8 or ifd + 2 > len(data):
        raise _Corrupt("the first IFD offset points past the end of the data (truncated or corrupt)")
    count = struct.unpack(e + "H", data[ifd:ifd + 2])[0]
    if ifd + 2 + 12 * count > len(data):
        raise _Corrupt("the first IFD runs past the end of the data (truncated)")
    tags: dict[int, int] = {}  # the largest value of each tag: a repeated tag must not hide a larger size
    for k in range(count):
        entry = data[ifd + 2 + 12 * k: ifd + 14 + 12 * k]
        tag, typ, n = struct.unpack(e + "HHI", entry[:8])
        if n == 1 and typ == 3:
            tags[tag] = max(tags.get(tag, 0), struct.unpack(e + "H", entry[8:10])[0])
        elif n == 1 and typ == 4:
            tags[tag] = max(tags.get(tag, 0), struct.unpack(e + "I", entry[8:12])[0])
    w, h = tags.get(256, 0), tags.get(257, 0)
    if w == 0 or h == 0:
        raise _Corrupt(f"the first IFD declares an invalid size {w}x{h}")
    tile = tags.get(322, 0) * tags.get(323, 0)
    return w, h, tile


def peek_size(data: bytes) -> tuple[str, int, int] | None:
    """(format, width, height) read from the header without decoding, or None if unknown.

    (-1, -1) when the format is known but its size is not read here (TIFF) or the header is broken.
    """
    fmt = _signature(data)
    try:
        if fmt == "png":
            if len(data) < 24:
                return None
            w, h = struct.unpack(">II", data[16:24])
            return "png", w, h
        if fmt == "jpeg":
            try:
                return ("jpeg", *_jpeg_header(data))
            except _Corrupt:
                return "jpeg", -1, -1
        if fmt == "bmp" and len(data) >= 26:
            try:
                return ("bmp", *_bmp_header(data))
            except _Corrupt:
                return None
        if fmt == "webp" and len(data) >= 30:
            try:
                return ("webp", *_webp_header(data))
            except _Corrupt:
                return None
        if fmt == "tiff":
            return "tiff", -1, -1
        if fmt == "gif" and len(data) >= 10:
            w, h = struct.unpack("<HH", data[6:10])
            return "gif", w, h
    except struct.error:
        return None
    return None


def decoder_limit_problem(max_pixels: int, env: dict[str, str] | None = None) -> str | None:
    """What is wrong with OpenCV's own pixel limit (OPENCV_IO_MAX_IMAGE_PIXELS, read when cv2 loads) for
    `max_pixels`, or None when the decoder enforces at most that."""
    value = (os.environ if env is None else env).get("OPENCV_IO_MAX_IMAGE_PIXELS")
    if value is None or not value.isdigit() or int(value) > max_pixels:
        return (f"OPENCV_IO_MAX_IMAGE_PIXELS is {value!r}, not at most max_image_pixels ({max_pixels}): the decoder "
                "does not enforce the pixel limit itself (start the server with ocr-serve / the launcher)")
    return None


# ---------------------------------------------------------------------------------------------- pixels
def _composite_over_white(color: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """uint8 color (H,W,C) over white with uint8 alpha (H,W,1), in integers (no float copies)."""
    a = alpha.astype(np.uint16)
    out = color.astype(np.uint16) * a
    out += (np.uint16(255) - a) * np.uint16(255) + np.uint16(127)
    out //= np.uint16(255)
    return out.astype(np.uint8)


def _to_bgr8(img: np.ndarray) -> np.ndarray:
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype in (np.float16, np.float32, np.float64):
        img = np.nan_to_num(img.astype(np.float32), nan=0.0, posinf=255.0, neginf=0.0)
        img = np.clip(img * (255.0 if img.size and img.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    elif img.dtype != np.uint8:
        img = cv2.normalize(img, np.empty_like(img), 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    channels = img.shape[2]
    if channels == 1:
        return cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2BGR)
    if channels == 2:  # gray + alpha
        return cv2.cvtColor(_composite_over_white(img[:, :, :1], img[:, :, 1:2])[:, :, 0], cv2.COLOR_GRAY2BGR)
    if channels == 4:  # composite over white: transparent backgrounds become paper, not black
        return _composite_over_white(img[:, :, :3], img[:, :, 3:4])
    if channels == 3:
        return img
    raise InvalidInputError(f"image has {channels} channels; send 1 (gray), 3 (color) or 4 (color + alpha) channels",
                            "bad_image")


def _refuse_corrupt(name: str, fmt: str, detail: str) -> InvalidInputError:
    return InvalidInputError(
        f"{name} could not be decoded as {FORMAT_NAMES[fmt]}: {detail}; send the complete, valid file "
        f"(or re-encode it as PNG or JPEG)", "bad_image")


def decode_image(data: bytes, max_pixels: int, min_side: int, max_bytes: int, name: str = "image") -> np.ndarray:
    """Decode `data` to a contiguous HxWx3 BGR uint8 array.

    JPEG EXIF orientation is applied (as cameras intend); alpha is composited over white; 16-bit
    and float images are scaled to 8 bits; the first frame/page of animated or multi-page files is
    used. Raises InvalidInputError with what to fix.
    """
    if len(data) == 0:
        raise InvalidInputError(f"{name} is empty (0 bytes); send the encoded file contents", "empty")
    if len(data) > max_bytes:
        raise InvalidInputError(f"{name} is {len(data)} bytes; the limit is {max_bytes} bytes: "
                                "downscale or compress the image", "too_large")
    fmt = _signature(data)
    if fmt is None:
        hint = _unsupported_hint(data)
        if hint is not None:
            raise InvalidInputError(f"{name} {hint} (supported: {SUPPORTED_FORMATS})", "bad_image")
        raise InvalidInputError(
            f"{name} is not a supported image (unknown file signature); send {SUPPORTED_FORMATS} bytes", "bad_image")
    if fmt == "gif":
        raise InvalidInputError(f"{name} is a GIF, which is not supported; convert it to {SUPPORTED_FORMATS}",
                                "unsupported_format")
    tile = 0
    try:
        if fmt == "png":
            w, h = _png_header(data)
        elif fmt == "jpeg":
            w, h = _jpeg_header(data)
        elif fmt == "bmp":
            w, h = _bmp_header(data)
        elif fmt == "webp":
            w, h = _webp_header(data)
        else:
            w, h, tile = _tiff_header(data)
    except (_Corrupt, struct.error) as exc:
        detail = str(exc) if isinstance(exc, _Corrupt) else "the header is truncated"
        raise _refuse_corrupt(name, fmt, detail) from None
    if w * h > max_pixels:
        raise InvalidInputError(
            f"{name} declares {w}x{h} = {w * h} pixels; the limit is {max_pixels} pixels: downscale it", "too_large")
    if tile > max_pixels:
        raise InvalidInputError(
            f"{name} declares TIFF tiles of {tile} pixels; the limit is {max_pixels} pixels: re-save it with "
            "smaller tiles or as PNG", "too_large")
    buf = np.frombuffer(data, dtype=np.uint8)
    flags = cv2.IMREAD_COLOR if fmt == "jpeg" else cv2.IMREAD_UNCHANGED
    try:
        img = cv2.imdecode(buf, flags)
    except cv2.error as exc:
        if "CV_IO_MAX_IMAGE" in str(exc):  # the decoder read a size beyond its limit from the file
            raise InvalidInputError(f"{name} decodes to more pixels than the limit of {max_pixels}: "
                                    "downscale it", "too_large") from None
        img = None
    if img is None or img.size == 0:
        raise _refuse_corrupt(name, fmt, "the decoder rejected the data (corrupt or truncated file)")
    if img.shape[0] * img.shape[1] > max_pixels:
        raise InvalidInputError(f"{name} is {img.shape[1]}x{img.shape[0]} pixels; the limit is {max_pixels}: "
                                "downscale it", "too_large")
    if min(img.shape[:2]) < min_side:
        raise InvalidInputError(
            f"{name} is {img.shape[1]}x{img.shape[0]} pixels; each side must be at least {min_side} "
            "(upscale or pad it)", "too_small")
    return np.ascontiguousarray(_to_bgr8(img))
