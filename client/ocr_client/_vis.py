"""The result picture (CLI ``--vis-dir``, the gateway's ``visualize``): PaddleOCR's side-by-side layout.

Left: the image with each line's box filled in a translucent colour and numbered; right: a white
canvas of the same size with each box outlined in the same colour and its text written inside it.
Text is drawn with Noto Sans CJK (SIL OFL 1.1, from the ``cvttf-NotoSansCJK-Regular`` wheel; its
SHA-256 is checked before use), so Chinese, Japanese and Korean show; without that package Pillow's
built-in font is used, which draws Latin text only.
"""
from __future__ import annotations

import colorsys
import hashlib
import logging
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._results import OcrResult

__all__ = ["FONT_SHA256", "draw_result", "encode_jpeg", "font_path", "label_for", "write_visualisation"]

log = logging.getLogger("ocr_client")

#: SHA-256 of NotoSansCJKtc-Regular.otf in cvttf-NotoSansCJK-Regular 1.0.
FONT_SHA256 = "f57e46120a3dd025ac993801981849622405d1359b32093b1f046490f7885711"


@lru_cache(maxsize=1)
def font_path() -> str | None:
    """The checked CJK font file, or None (not installed, or its checksum differs)."""
    try:
        import cvttf_NotoSansCJK_Regular as pkg  # type: ignore[import-untyped]

        path = str(pkg.get_TTF_path())
    except (ImportError, FileNotFoundError):
        log.warning("cvttf-NotoSansCJK-Regular is not installed: result pictures draw Latin text only")
        return None
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    if h.hexdigest() != FONT_SHA256:
        log.warning("%s: SHA-256 %s is not the pinned %s; not using it", path, h.hexdigest(), FONT_SHA256)
        return None
    return path


@lru_cache(maxsize=64)
def _font(size: int) -> Any:
    from PIL import ImageFont

    path = font_path()
    if path is None:
        return ImageFont.load_default(size=size)
    return ImageFont.truetype(path, size)


def label_for(index: int, text: str, score: float) -> str:
    """A line's caption in summaries: index, score and text."""
    return f"{index} {score:.2f} {text}"


def _color(i: int) -> tuple[int, int, int]:
    """Well separated, stable colours (golden-ratio hues), RGB."""
    r, g, b = colorsys.hsv_to_rgb((i * 0.618034) % 1.0, 0.75, 0.9)
    return int(r * 255), int(g * 255), int(b * 255)


def _to_rgb(image: NDArray[Any]) -> NDArray[Any]:
    import cv2

    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _draw_text_in_box(draw: Any, poly: NDArray[Any], text: str) -> None:
    """Write `text` inside the quad: horizontally along a wide box, one character per row in a tall one."""
    w = float(np.hypot(*(poly[1] - poly[0])))
    h = float(np.hypot(*(poly[3] - poly[0])))
    x0, y0 = float(poly[:, 0].min()), float(poly[:, 1].min())
    if h > 2 * w and len(text) > 1:  # vertical text column
        size = max(8, int(min(w * 0.9, h / len(text))))
        font = _font(size)
        for k, ch in enumerate(text):
            draw.text((x0 + (w - size) / 2, y0 + k * size), ch, fill=(0, 0, 0), font=font)
        return
    size = max(8, int(h * 0.8))
    length = draw.textlength(text, font=_font(size))
    if length > w > 0:
        size = max(8, int(size * w / length))
    draw.text((x0 + 1, y0 + max(0.0, (h - size) / 2)), text, fill=(0, 0, 0), font=_font(size))


def draw_result(image: NDArray[Any], result: OcrResult) -> NDArray[Any]:
    """PaddleOCR's result picture for a BGR (or gray / BGRA) image: numbered boxes | texts. BGR, H x 2W."""
    from PIL import Image, ImageDraw

    rgb = _to_rgb(image)
    h, w = rgb.shape[:2]
    left = Image.fromarray(rgb)
    fill = left.copy()
    right = Image.new("RGB", (w, h), (255, 255, 255))
    draw_fill, draw_right = ImageDraw.Draw(fill), ImageDraw.Draw(right)
    width = max(1, round(max(h, w) / 800))
    for i, line in enumerate(result.lines):
        poly = np.asarray(line.poly, dtype=np.float64).reshape(4, 2)
        pts = [(float(x), float(y)) for x, y in poly]
        color = _color(i)
        draw_fill.polygon(pts, fill=color)
        draw_right.polygon(pts, outline=color, width=width)
        _draw_text_in_box(draw_right, poly, line.text)
    left = Image.blend(left, fill, 0.5)
    draw_left = ImageDraw.Draw(left)
    number_size = max(10, min(28, round(max(h, w) / 60)))
    for i, line in enumerate(result.lines):
        x, y = line.poly[0]
        label = str(i)
        at = (min(max(x, 0.0), w - 1.0), max(y - number_size - 2, 0.0))  # above the box, inside the picture
        box = draw_left.textbbox(at, label, font=_font(number_size))
        draw_left.rectangle(box, fill=(255, 255, 255))
        draw_left.text(at, label, fill=_color(i), font=_font(number_size))
    canvas = Image.new("RGB", (2 * w, h), (255, 255, 255))
    canvas.paste(left, (0, 0))
    canvas.paste(right, (w, 0))
    out = np.asarray(canvas)[:, :, ::-1]
    return np.ascontiguousarray(out)


def encode_jpeg(image: NDArray[Any], quality: int = 90) -> bytes:
    """JPEG bytes of a BGR picture."""
    import cv2

    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("cv2.imencode failed")
    return buf.tobytes()


def write_visualisation(data: bytes, result: OcrResult, out_path: str) -> None:
    """Decode the encoded image ``data``, draw ``result`` and write a JPEG to ``out_path``.

    The image is turned as the server reads it (EXIF orientation), so the polygons fit.
    """
    import cv2

    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("OpenCV cannot decode the image")
    with open(out_path, "wb") as fh:
        fh.write(encode_jpeg(draw_result(image, result)))
