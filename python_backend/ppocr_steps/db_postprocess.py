"""DB (Differentiable Binarization) post-processing: probability map → text quadrilaterals.

Same knobs and semantics as PaddleOCR's DBPostProcess (thresh, box_thresh, unclip_ratio,
max_candidates, use_dilation, score_mode fast|slow, min size), followed by the box filtering of
PaddleOCR/RapidOCR's TextDetector (clockwise order, clip, drop boxes of side ≤ 3 px) and the
reading-order sort.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import pyclipper

__all__ = ["DBConfig", "db_boxes", "order_points_clockwise", "filter_boxes", "sort_reading_order",
           "detect_boxes"]

_DILATE_KERNEL = np.ones((2, 2), dtype=np.uint8)


@dataclass(frozen=True)
class DBConfig:
    thresh: float = 0.3
    box_thresh: float = 0.6
    unclip_ratio: float = 1.5
    max_candidates: int = 1000
    use_dilation: bool = False
    score_mode: str = "fast"
    min_size: int = 3


def _mini_box(contour: np.ndarray) -> tuple[np.ndarray, float]:
    rect = cv2.minAreaRect(contour)
    points = sorted(cv2.boxPoints(rect).tolist(), key=lambda p: p[0])  # float32 values, as Python floats
    i1, i4 = (0, 1) if points[1][1] > points[0][1] else (1, 0)
    i2, i3 = (2, 3) if points[3][1] > points[2][1] else (3, 2)
    return np.array([points[i1], points[i2], points[i3], points[i4]], dtype=np.float32), min(rect[1])


def _clamp(v: int, hi: int) -> int:
    return min(max(v, 0), hi)


def _score_fast(pred: np.ndarray, box: np.ndarray) -> float:
    h, w = pred.shape
    xs, ys = box[:, 0].tolist(), box[:, 1].tolist()  # scalar maths in Python: no numpy call per value
    xmin, xmax = _clamp(math.floor(min(xs)), w - 1), _clamp(math.ceil(max(xs)), w - 1)
    ymin, ymax = _clamp(math.floor(min(ys)), h - 1), _clamp(math.ceil(max(ys)), h - 1)
    mask = np.zeros((ymax - ymin + 1, xmax - xmin + 1), dtype=np.uint8)
    shifted = box - np.array([xmin, ymin], dtype=box.dtype)
    cv2.fillPoly(mask, [shifted.reshape(-1, 2).astype(np.int32)], (1,))
    return float(cv2.mean(pred[ymin:ymax + 1, xmin:xmax + 1], mask)[0])


def _score_slow(pred: np.ndarray, contour: np.ndarray) -> float:
    h, w = pred.shape
    c = contour.reshape(-1, 2).copy()
    xmin, xmax = int(np.clip(c[:, 0].min(), 0, w - 1)), int(np.clip(c[:, 0].max(), 0, w - 1))
    ymin, ymax = int(np.clip(c[:, 1].min(), 0, h - 1)), int(np.clip(c[:, 1].max(), 0, h - 1))
    mask = np.zeros((ymax - ymin + 1, xmax - xmin + 1), dtype=np.uint8)
    c -= np.array([xmin, ymin], dtype=c.dtype)
    cv2.fillPoly(mask, [c.reshape(-1, 2).astype(np.int32)], (1,))
    return float(cv2.mean(pred[ymin:ymax + 1, xmin:xmax + 1], mask)[0])


def _unclip(box: np.ndarray, ratio: float) -> np.ndarray | None:
    (x0, y0), (x1, y1), (x2, y2), (x3, y3) = box.tolist()
    # the quad's area (shoelace) and perimeter, as shapely's Polygon gives them, in plain floats
    area = abs((x0 * y1 - x1 * y0) + (x1 * y2 - x2 * y1) + (x2 * y3 - x3 * y2) + (x3 * y0 - x0 * y3)) / 2.0
    length = (math.hypot(x1 - x0, y1 - y0) + math.hypot(x2 - x1, y2 - y1) + math.hypot(x3 - x2, y3 - y2)
              + math.hypot(x0 - x3, y0 - y3))
    if length <= 0:
        return None
    distance = area * ratio / length
    offset = pyclipper.PyclipperOffset()
    offset.AddPath(box.tolist(), pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
    paths = offset.Execute(distance)
    if not paths:
        return None
    # several paths only happen for degenerate shapes; their points together still bound the text
    return np.concatenate([np.asarray(p, dtype=np.float32) for p in paths]).reshape(-1, 1, 2)


def db_boxes(prob: np.ndarray, dest_h: int, dest_w: int, cfg: DBConfig) -> tuple[np.ndarray, np.ndarray]:
    """Boxes [K,4,2] (int-valued, in a dest_h x dest_w image) and their scores from one HxW prob map.

    The map is float probabilities (0..1) or, as the served detector writes it, UINT8 round(255 p):
    then a pixel is text when p > thresh, read as q > 255 thresh, and a box's score is its mean q / 255.
    """
    height, width = prob.shape
    if prob.dtype == np.uint8:  # q > 255 thresh  <=>  q > floor(255 thresh) for integer q
        scale = 255.0
        bitmap = cv2.threshold(prob, math.floor(cfg.thresh * scale), 255, cv2.THRESH_BINARY)[1]
    else:
        scale = 1.0
        bitmap = (prob > cfg.thresh).astype(np.uint8) * np.uint8(255)
    if cfg.use_dilation:
        bitmap = cv2.dilate(bitmap, _DILATE_KERNEL)
    contours, _ = cv2.findContours(bitmap, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    map_size = np.array([width, height], dtype=np.float32)
    dest_size = np.array([dest_w, dest_h], dtype=np.float32)
    boxes: list[np.ndarray] = []
    scores: list[float] = []
    for contour in contours[:cfg.max_candidates]:
        points, sside = _mini_box(contour)
        if sside < cfg.min_size:
            continue
        score = _score_fast(prob, points.reshape(-1, 2)) if cfg.score_mode == "fast" else _score_slow(prob, contour)
        score /= scale
        if cfg.box_thresh > score:
            continue
        expanded = _unclip(points, cfg.unclip_ratio)
        if expanded is None or len(expanded) < 3:
            continue
        box, sside = _mini_box(expanded)
        if sside < cfg.min_size + 2:
            continue
        # float32 throughout, x and y in one pass: round(x / width * dest_w) clipped to [0, dest_w]
        boxes.append(np.clip(np.round(box / map_size * dest_size), 0, dest_size).astype(np.int32))
        scores.append(score)
    if not boxes:
        return np.zeros((0, 4, 2), dtype=np.int32), np.zeros((0,), dtype=np.float32)
    return np.stack(boxes), np.asarray(scores, dtype=np.float32)


def _clockwise(p: list[list[float]]) -> list[list[float]]:
    """order_points_clockwise on the 4 points as Python lists."""
    by_x = sorted(range(4), key=lambda i: p[i][0])
    tl, bl = sorted(by_x[:2], key=lambda i: p[i][1])
    tr, br = sorted(by_x[2:], key=lambda i: p[i][1])
    return [p[tl], p[tr], p[br], p[bl]]


def order_points_clockwise(pts: np.ndarray) -> np.ndarray:
    """tl, tr, br, bl (imutils' rule, as PaddleOCR/RapidOCR use after DB): the two leftmost points
    (stable sort by x) are tl over bl, the two others tr over br (stable sort by y)."""
    return np.array(_clockwise(np.asarray(pts, dtype=np.float32).tolist()), dtype=np.float32)


def filter_boxes(boxes: np.ndarray, scores: np.ndarray, img_h: int, img_w: int) -> tuple[np.ndarray, np.ndarray]:
    """Order clockwise, clip to the image (integer pixels), drop boxes with a side of 3 px or less."""
    kept, kept_scores = [], []
    for box, score in zip(boxes, scores, strict=True):
        corners = [(int(min(max(x, 0.0), img_w - 1)), int(min(max(y, 0.0), img_h - 1)))
                   for x, y in _clockwise(box.astype(np.float32).tolist())]
        (x0, y0), (x1, y1), _, (x3, y3) = corners
        if int(math.hypot(x0 - x1, y0 - y1)) <= 3 or int(math.hypot(x0 - x3, y0 - y3)) <= 3:
            continue
        kept.append(corners)
        kept_scores.append(score)
    if not kept:
        return np.zeros((0, 4, 2), dtype=np.float32), np.zeros((0,), dtype=np.float32)
    return np.asarray(kept, dtype=np.float32), np.asarray(kept_scores, dtype=np.float32)


def sort_reading_order(boxes: np.ndarray) -> np.ndarray:
    """Indices that sort boxes top-to-bottom, then left-to-right within a 10 px line band."""
    n = len(boxes)
    order = sorted(range(n), key=lambda i: (boxes[i][0][1], boxes[i][0][0]))
    for i in range(n - 1):
        for j in range(i, -1, -1):
            a, b = boxes[order[j]], boxes[order[j + 1]]
            if abs(b[0][1] - a[0][1]) < 10 and b[0][0] < a[0][0]:
                order[j], order[j + 1] = order[j + 1], order[j]
            else:
                break
    return np.asarray(order, dtype=np.int64)


def detect_boxes(prob: np.ndarray, src_h: int, src_w: int, cfg: DBConfig) -> tuple[np.ndarray, np.ndarray]:
    """Full det post-processing of one image's valid prob-map region: boxes [K,4,2] float32 in source pixels."""
    boxes, scores = db_boxes(prob, src_h, src_w, cfg)
    boxes, scores = filter_boxes(boxes, scores, src_h, src_w)
    if len(boxes) == 0:
        return boxes, scores
    order = sort_reading_order(boxes)
    return boxes[order], scores[order]
