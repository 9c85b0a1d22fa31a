"""Hostile-input checks for tensors that reach a step directly (not only through the `ocr` ensemble).

Every internal step and runtime model can be called by any client, so each checks what it is sent
against the limits of the public path: the shapes det_preprocess can produce from images within its
limits (config.pbtxt parameters, ppocr_steps.settings), finite values, consistent counts. A failed
check raises InvalidInputError naming the input and what is allowed.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ppocr_steps.det_preprocess import IMAGE_INFO_COLUMNS
from ppocr_steps.errors import InvalidInputError
from ppocr_steps.settings import InputLimits

__all__ = ["require_array", "check_batch_pixels", "det_side_bound", "source_side_bound", "check_prob_map",
           "check_image_info", "check_images", "check_boxes", "crop_sizes"]

DET_MULTIPLE = 32  # the detector's input sides are multiples of 32 (det_preprocess._round32)


def _refuse(message: str, reason: str = "bad_tensor") -> InvalidInputError:
    return InvalidInputError(message, reason)


def require_array(name: str, arr: np.ndarray, dtype: type | tuple[type, ...], ndim: int,
                  fixed: dict[int, int] | None = None) -> np.ndarray:
    """`arr` as a `dtype` array (or one of several) of rank `ndim` whose axes in `fixed` ({axis: size})
    have those sizes."""
    allowed: list[np.dtype[Any]] = [np.dtype(d) for d in (dtype if isinstance(dtype, tuple) else (dtype,))]
    if arr.dtype not in allowed:
        raise _refuse(f"input '{name}' must be {' or '.join(d.name for d in allowed)}, got {arr.dtype.name}")
    if arr.ndim != ndim:
        raise _refuse(f"input '{name}' must have {ndim} dimensions, got shape {list(arr.shape)}")
    for axis, size in (fixed or {}).items():
        if arr.shape[axis] != size:
            raise _refuse(f"input '{name}' must have size {size} in dimension {axis}, got shape {list(arr.shape)}")
    return arr


def det_side_bound(s: InputLimits) -> int:
    """Largest side of a detector input det_preprocess produces (det_input_size caps at 2 x max_side_limit)."""
    return 2 * s.max_side_limit


def source_side_bound(s: InputLimits) -> int:
    """Largest side of a source image det_preprocess produces: an image no larger than max_side_limit whose
    short side (at least min_image_side) is enlarged to min_side_len, rounded to a multiple of 32."""
    enlarged = s.max_side_limit * max(1.0, s.min_side_len / s.min_image_side)
    return int(math.ceil(enlarged / DET_MULTIPLE) * DET_MULTIPLE)


def _count(name: str, n: int, s: InputLimits) -> None:
    if not 1 <= n <= s.max_images_per_request:
        raise _refuse(f"input '{name}' holds {n} images; allowed 1 to {s.max_images_per_request}")


def check_batch_pixels(name: str, n: int, h: int, w: int, s: InputLimits) -> None:
    """A zero-padded batch of n images of h x w holds at most max_batch_pixels (det_preprocess's limit)."""
    if n * h * w > s.max_batch_pixels:
        raise _refuse(f"input '{name}' holds {n}x{h}x{w} = {n * h * w} pixels; the limit is {s.max_batch_pixels}")


def check_prob_map(prob_map: np.ndarray, s: InputLimits) -> None:
    """prob_map: UINT8 [N,1,H,W] (served) or FP32 probabilities in [0, 1], N images, sides at most what
    the detector input can have."""
    require_array("prob_map", prob_map, (np.uint8, np.float32), 4, {1: 1})
    if prob_map.dtype == np.float32 and not ((prob_map >= 0) & (prob_map <= 1)).all():
        raise _refuse("input 'prob_map' holds values outside [0, 1] (or NaN)")
    _count("prob_map", prob_map.shape[0], s)
    h, w = prob_map.shape[2:]
    bound = det_side_bound(s)
    if not (1 <= h <= bound and 1 <= w <= bound):
        raise _refuse(f"input 'prob_map' is {h}x{w} (HxW); each side must be 1 to {bound}")
    check_batch_pixels("prob_map", prob_map.shape[0], h, w, s)


def check_image_info(info: np.ndarray, n: int, s: InputLimits, det_hw: tuple[int, int] | None = None,
                     src_hw: tuple[int, int] | None = None) -> None:
    """image_info FP32 [n,IMAGE_INFO_COLUMNS] (ppocr_steps.det_preprocess.ImageInfo) with finite values in
    the ranges the public path produces: det region inside `det_hw` (the prob map), source size inside
    `src_hw`, a right angle."""
    require_array("image_info", info, np.float32, 2, {1: IMAGE_INFO_COLUMNS})
    if info.shape[0] != n:
        raise _refuse(f"input 'image_info' has {info.shape[0]} rows but there are {n} images; send one row per image")
    if not np.isfinite(info).all():
        raise _refuse("input 'image_info' holds NaN or infinite values")
    side = source_side_bound(s)
    orig_side = s.max_image_pixels // max(1, s.min_image_side)
    for i, row in enumerate(info.tolist()):
        orig_h, orig_w, src_h, src_w, pad_top, det_h, det_w, scale_x, scale_y, angle = row
        where = f"input 'image_info' row {i}"
        if not (1 <= orig_h <= orig_side and 1 <= orig_w <= orig_side and orig_h * orig_w <= s.max_image_pixels):
            raise _refuse(f"{where}: original size {orig_w:g}x{orig_h:g} is outside 1..{orig_side} per side and "
                          f"{s.max_image_pixels} pixels")
        max_h, max_w = src_hw if src_hw is not None else (side, side)
        if not (1 <= src_h <= max_h and 1 <= src_w <= max_w):
            raise _refuse(f"{where}: source size {src_w:g}x{src_h:g} must be 1..{max_w} x 1..{max_h}")
        if not 0 <= pad_top < src_h:
            raise _refuse(f"{where}: pad_top {pad_top:g} must be in [0, {src_h:g})")
        if det_hw is not None and not (1 <= det_h <= det_hw[0] and 1 <= det_w <= det_hw[1]):
            raise _refuse(f"{where}: detector region {det_w:g}x{det_h:g} must lie within prob_map's "
                          f"{det_hw[1]}x{det_hw[0]}")
        if not (0 < scale_x <= orig_side and 0 < scale_y <= orig_side):
            raise _refuse(f"{where}: scales {scale_x:g}, {scale_y:g} must be in (0, {orig_side}]")
        if angle not in (0, 90, 180, 270):
            raise _refuse(f"{where}: angle {angle:g} must be 0, 90, 180 or 270")


def check_images(images: np.ndarray, s: InputLimits) -> None:
    """images: UINT8 [N,H,W,3] source images, sides at most what det_preprocess produces."""
    require_array("images", images, np.uint8, 4, {3: 3})
    _count("images", images.shape[0], s)
    h, w = images.shape[1:3]
    side = source_side_bound(s)
    if not (1 <= h <= side and 1 <= w <= side):
        raise _refuse(f"input 'images' is {h}x{w} (HxW) per image; each side must be 1 to {side}")
    check_batch_pixels("images", images.shape[0], h, w, s)


def crop_sizes(quads: np.ndarray) -> np.ndarray:
    """[K,2] (width, height) of the crops ppocr_steps.crops.crop_quad cuts for tl,tr,br,bl quads [K,4,2]."""
    p = quads.astype(np.float64)
    w = np.maximum(np.linalg.norm(p[:, 0] - p[:, 1], axis=1), np.linalg.norm(p[:, 2] - p[:, 3], axis=1))
    h = np.maximum(np.linalg.norm(p[:, 0] - p[:, 3], axis=1), np.linalg.norm(p[:, 1] - p[:, 2], axis=1))
    return np.maximum(np.stack([w, h], axis=1).astype(np.int64), 1)


def check_boxes(boxes: np.ndarray, box_image_index: np.ndarray, image_info: np.ndarray, s: InputLimits,
                max_crop_pixels: int) -> None:
    """boxes FP32 [K,4,2] inside their image's source area, box_image_index INT32 [K] naming an image;
    K and the crops' total pixels within the limits (max_boxes_per_request, max_crop_pixels)."""
    require_array("boxes", boxes, np.float32, 3, {1: 4, 2: 2})
    require_array("box_image_index", box_image_index, np.int32, 1)
    k = boxes.shape[0]
    if box_image_index.shape[0] != k:
        raise _refuse(f"input 'box_image_index' has {box_image_index.shape[0]} values but 'boxes' has {k} boxes; "
                      "send one image index per box")
    if k > s.max_boxes_per_request:
        raise _refuse(f"input 'boxes' holds {k} boxes; the limit is {s.max_boxes_per_request}", "too_many_boxes")
    if k == 0:
        return
    n = image_info.shape[0]
    if box_image_index.min() < 0 or box_image_index.max() >= n:
        raise _refuse(f"input 'box_image_index' must hold image indices 0 to {n - 1}")
    if not np.isfinite(boxes).all():
        raise _refuse("input 'boxes' holds NaN or infinite coordinates")
    src_w = image_info[box_image_index, 3][:, None]
    src_h = image_info[box_image_index, 2][:, None]
    xs, ys = boxes[:, :, 0], boxes[:, :, 1]
    outside = (xs < 0) | (ys < 0) | (xs > src_w) | (ys > src_h)
    if outside.any():
        i = int(np.flatnonzero(outside.any(axis=1))[0])
        raise _refuse(f"input 'boxes': box {i} has corners outside its image's source area "
                      f"{image_info[box_image_index[i], 3]:g}x{image_info[box_image_index[i], 2]:g} (WxH)")
    total = int(crop_sizes(boxes).prod(axis=1).sum())
    if total > max_crop_pixels:
        raise _refuse(f"input 'boxes': the crops would hold {total} pixels; the limit is {max_crop_pixels}",
                      "too_large")
