"""Crop rectification: perspective-warp each quad to a horizontal crop, rotate tall crops by 90°."""
from __future__ import annotations

import cv2
import numpy as np

__all__ = ["crop_quad", "crop_all", "VERTICAL_RATIO"]

VERTICAL_RATIO = 1.5  # a crop with h / w >= this is treated as vertical text and turned by 90°


def _upright_slice(img: np.ndarray, pts: np.ndarray) -> np.ndarray | None:
    """The pixels of an upright rectangle with integer corners inside `img`, or None for any other quad.

    For such a quad the warp is a shift by whole pixels: INTER_CUBIC samples at integer positions
    return the pixels themselves, so a copy of the slice is the warp's result, bit for bit, at a
    fraction of the cost (tests/unit/test_crops.py). Most boxes of documents are upright.
    """
    (x0, y0), (x1, y1), (x2, y2), (x3, y3) = pts.tolist()
    if not (y0 == y1 and y2 == y3 and x0 == x3 and x1 == x2 and x0.is_integer() and y0.is_integer()
            and x1.is_integer() and y2.is_integer()):
        return None
    if not (0 <= x0 < x1 <= img.shape[1] and 0 <= y0 < y2 <= img.shape[0]):
        return None
    return img[int(y0):int(y2), int(x0):int(x1)].copy()


def crop_quad(img: np.ndarray, quad: np.ndarray) -> np.ndarray:
    """Warp the tl,tr,br,bl quad of `img` to an upright rectangle (INTER_CUBIC, BORDER_REPLICATE)."""
    pts = quad.astype(np.float32)
    crop = _upright_slice(img, pts)
    if crop is None:
        w = int(max(np.linalg.norm(pts[0] - pts[1]), np.linalg.norm(pts[2] - pts[3])))
        h = int(max(np.linalg.norm(pts[0] - pts[3]), np.linalg.norm(pts[1] - pts[2])))
        w, h = max(w, 1), max(h, 1)
        dst = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float32)
        m = cv2.getPerspectiveTransform(pts, dst)
        crop = cv2.warpPerspective(img, m, (w, h), borderMode=cv2.BORDER_REPLICATE, flags=cv2.INTER_CUBIC)
    if crop.shape[0] / crop.shape[1] >= VERTICAL_RATIO:
        crop = np.ascontiguousarray(np.rot90(crop))
    return crop


def crop_all(images: list[np.ndarray], boxes: np.ndarray, image_index: np.ndarray) -> list[np.ndarray]:
    """One crop per box; `image_index[i]` says which image box i belongs to."""
    return [crop_quad(images[int(k)], box) for box, k in zip(boxes, image_index, strict=True)]
