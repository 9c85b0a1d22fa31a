"""Crop rectification: perspective-warp each quad to a horizontal crop, rotate tall crops by 90°."""
from __future__ import annotations

import cv2
import numpy as np

__all__ = ["crop_quad", "crop_all", "VERTICAL_RATIO"]

VERTICAL_RATIO = 1.5  # a crop with h / w >= this is treated as vertical text and turned by 90°


def crop_quad(img: np.ndarray, quad: np.ndarray) -> np.ndarray:
    """Warp the tl,tr,br,bl quad of `img` to an upright rectangle (INTER_CUBIC, BORDER_REPLICATE)."""
    pts = quad.astype(np.float32)
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
    return [crop_quad(images[int(k)], box) for box, k in zip(boxes, image_index)]
