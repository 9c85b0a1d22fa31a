"""Decode encoded image bytes to a BGR uint8 array, refusing what cannot be decoded or is too large."""
from __future__ import annotations

import struct

import cv2
import numpy as np

from ppocr_steps.errors import InvalidInputError

__all__ = ["decode_image", "peek_size", "SUPPORTED_FORMATS"]

SUPPORTED_FORMATS = "JPEG, PNG, BMP, WebP, TIFF"


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i = 2
    n = len(data)
    while i + 9 < n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        seg_len = struct.unpack(">H", data[i + 2:i + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">HH", data[i + 5:i + 9])
            return w, h
        i += 2 + seg_len
    return None


def peek_size(data: bytes) -> tuple[str, int, int] | None:
    """(format, width, height) read from the header without decoding, or None if unknown."""
    try:
        if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
            w, h = struct.unpack(">II", data[16:24])
            return "png", w, h
        if data[:2] == b"\xff\xd8":
            wh = _jpeg_size(data)
            return ("jpeg", *wh) if wh else ("jpeg", -1, -1)
        if data[:2] == b"BM" and len(data) >= 26:
            w, h = struct.unpack("<ii", data[18:26])
            return "bmp", abs(w), abs(h)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
            chunk = data[12:16]
            if chunk == b"VP8X":
                w = 1 + int.from_bytes(data[24:27], "little")
                h = 1 + int.from_bytes(data[27:30], "little")
                return "webp", w, h
            if chunk == b"VP8 ":
                w, h = struct.unpack("<HH", data[26:30])
                return "webp", w & 0x3FFF, h & 0x3FFF
            if chunk == b"VP8L":
                b = int.from_bytes(data[21:25], "little")
                return "webp", (b & 0x3FFF) + 1, ((b >> 14) & 0x3FFF) + 1
        if data[:4] in (b"II*\x00", b"MM\x00*"):
            return "tiff", -1, -1
        if data[:6] in (b"GIF87a", b"GIF89a"):
            w, h = struct.unpack("<HH", data[6:10])
            return "gif", w, h
    except struct.error:
        return None
    return None


def _to_bgr8(img: np.ndarray) -> np.ndarray:
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype in (np.float32, np.float64):
        img = np.clip(img * (255.0 if img.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    elif img.dtype != np.uint8:
        img = cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    channels = img.shape[2]
    if channels == 1:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if channels == 4:  # composite over white: transparent backgrounds become paper, not black
        alpha = img[:, :, 3:4].astype(np.float32) / 255.0
        rgb = img[:, :, :3].astype(np.float32)
        return (rgb * alpha + 255.0 * (1.0 - alpha) + 0.5).astype(np.uint8)
    if channels == 3:
        return img
    raise InvalidInputError(f"image has {channels} channels; 1, 3 or 4 are supported", "bad_image")


def decode_image(data: bytes, max_pixels: int, min_side: int, max_bytes: int, name: str = "image") -> np.ndarray:
    """Decode `data` to a contiguous HxWx3 BGR uint8 array.

    JPEG EXIF orientation is applied (as cameras intend); alpha is composited over white; 16-bit
    and float images are scaled to 8 bits. Raises InvalidInputError with what to fix.
    """
    if len(data) == 0:
        raise InvalidInputError(f"{name} is empty (0 bytes); send the encoded file contents", "empty")
    if len(data) > max_bytes:
        raise InvalidInputError(f"{name} is {len(data)} bytes; the limit is {max_bytes} bytes", "too_large")
    header = peek_size(data)
    if header is None:
        raise InvalidInputError(
            f"{name} is not a supported image (unknown file signature); send {SUPPORTED_FORMATS} bytes",
            "bad_image")
    fmt, w, h = header
    if fmt == "gif":
        raise InvalidInputError(f"{name} is a GIF, which is not supported; send {SUPPORTED_FORMATS}",
                                "unsupported_format")
    if w > 0 and h > 0 and w * h > max_pixels:
        raise InvalidInputError(
            f"{name} declares {w}x{h} = {w * h} pixels; the limit is {max_pixels} pixels: downscale it",
            "too_large")
    buf = np.frombuffer(data, dtype=np.uint8)
    flags = cv2.IMREAD_COLOR if fmt == "jpeg" else cv2.IMREAD_UNCHANGED
    try:
        img = cv2.imdecode(buf, flags)
    except cv2.error as exc:
        raise InvalidInputError(f"{name} could not be decoded as {fmt}: {exc.msg.strip() if hasattr(exc, 'msg') else exc}",
                                "bad_image") from None
    if img is None or img.size == 0:
        raise InvalidInputError(f"{name} could not be decoded as {fmt} (corrupt or truncated file?)", "bad_image")
    if img.shape[0] * img.shape[1] > max_pixels:
        raise InvalidInputError(f"{name} is {img.shape[1]}x{img.shape[0]} pixels; the limit is {max_pixels}",
                                "too_large")
    if min(img.shape[:2]) < min_side:
        raise InvalidInputError(
            f"{name} is {img.shape[1]}x{img.shape[0]} pixels; each side must be at least {min_side}", "too_small")
    return np.ascontiguousarray(_to_bgr8(img))
