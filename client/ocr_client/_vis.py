"""Drawing OCR results on images (CLI ``--vis-dir``)."""
from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._results import OcrResult

__all__ = ["draw_result", "label_for", "write_visualisation"]

_LINE_COLOR = (0, 200, 0)
_TEXT_COLOR = (0, 0, 255)


def label_for(index: int, text: str, score: float) -> str:
    """The label drawn next to a line: index, score and text when cv2 can draw it (ASCII)."""
    if text.isascii() and text.isprintable():
        return f"{index} {score:.2f} {text}"
    return f"{index} {score:.2f}"


def draw_result(image: NDArray[Any], result: OcrResult) -> NDArray[Any]:
    """A BGR copy of ``image`` with each line's quad and label drawn."""
    import cv2

    if image.ndim == 2:
        canvas = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.shape[2] == 4:
        canvas = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    else:
        canvas = image.copy()
    h, w = canvas.shape[:2]
    thickness = max(1, round(max(h, w) / 600))
    scale = max(0.4, max(h, w) / 1600)
    for i, line in enumerate(result.lines):
        pts = np.round(np.array(line.poly, dtype=np.float64)).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(canvas, [pts], isClosed=True, color=_LINE_COLOR, thickness=thickness)
        x = int(min(max(pts[0, 0, 0], 0), w - 1))
        y = int(min(max(pts[0, 0, 1] - 3 * thickness, 10), h - 1))
        _, y_min, _, y_max = line.box
        size = max(0.3, min(scale, (y_max - y_min) / 40))  # small lines get small labels
        label = label_for(i, line.text, line.score)
        cv2.putText(canvas, label, (x, y), cv2.FONT_HERSHEY_SIMPLEX, size, (255, 255, 255),
                    3, cv2.LINE_AA)
        cv2.putText(canvas, label, (x, y), cv2.FONT_HERSHEY_SIMPLEX, size, _TEXT_COLOR, 1,
                    cv2.LINE_AA)
    return canvas


def write_visualisation(data: bytes, result: OcrResult, out_path: str) -> None:
    """Decode the encoded image ``data``, draw ``result`` and write a JPEG to ``out_path``."""
    import cv2

    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("OpenCV cannot decode the image")
    ok, buf = cv2.imencode(".jpg", draw_result(image, result), [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise ValueError("cv2.imencode failed")
    with open(out_path, "wb") as fh:
        fh.write(buf.tobytes())
