"""Detection pre-processing: source-image preparation, limit_side_len resize, batching.

Coordinates: the *source* image is the decoded image after the optional whole-image resize
(`max_side_limit` / `min_side_len`) and letterbox padding for very flat images (RapidOCR's
behaviour). Detection runs on the source image resized to multiples of 32; crops are cut from the
source image; output polygons are mapped back to the original image with `ImageInfo`.
The detector input is the resized image itself (UINT8 NHWC): normalisation is part of the
detector graph (server/ocr_server/onnx_edits.py), so no Python code touches every pixel of it.
"""
from __future__ import annotations

from dataclasses import astuple, dataclass, replace

import cv2
import numpy as np

from ppocr_steps.orientation import upright_to_sent
from ppocr_steps.settings import PreprocessSettings

__all__ = ["ImageInfo", "prepare_source", "source_size", "det_resize_shape", "det_input_size", "build_det_batch",
           "IMAGE_INFO_COLUMNS"]

IMAGE_INFO_COLUMNS = 10


@dataclass(frozen=True)
class ImageInfo:
    """One row of the `image_info` tensor (FP32 [N, 10]).

    orig_h/orig_w are the upright image's; `angle` is how the image as sent is turned from upright
    (ppocr_steps.orientation), applied last by `to_original`.
    """

    orig_h: float
    orig_w: float
    src_h: float      # source image (what crops are cut from)
    src_w: float
    pad_top: float    # letterbox rows added above the content, in source pixels
    det_h: float      # valid region of the detection input / prob_map
    det_w: float
    scale_x: float    # original = source * scale (after removing the padding)
    scale_y: float
    angle: float = 0.0

    def to_row(self) -> list[float]:
        return list(astuple(self))

    @classmethod
    def from_row(cls, row: np.ndarray) -> ImageInfo:
        return cls(*(float(v) for v in row[:IMAGE_INFO_COLUMNS]))

    def to_original(self, pts: np.ndarray) -> np.ndarray:
        """Map source-image points [..., 2] to pixel coordinates of the image as sent (clipped)."""
        out = pts.astype(np.float32).copy()
        out[..., 1] -= self.pad_top
        out[..., 0] *= self.scale_x
        out[..., 1] *= self.scale_y
        out[..., 0] = np.clip(out[..., 0], 0, self.orig_w)
        out[..., 1] = np.clip(out[..., 1], 0, self.orig_h)
        return upright_to_sent(out, int(self.angle), self.orig_w, self.orig_h)


def _round32(v: float) -> int:
    return max(int(round(v / 32) * 32), 32)


def _whole_size(h: int, w: int, ratio: float) -> tuple[int, int]:
    return _round32(int(h * ratio)), _round32(int(w * ratio))


def _source_plan(orig_h: int, orig_w: int, s: PreprocessSettings
                 ) -> tuple[tuple[int, int] | None, tuple[int, int] | None, int]:
    """What prepare_source does to an orig_h x orig_w image: the (h, w) it shrinks it to (or None), the
    (h, w) it then enlarges it to (or None), and the letterbox rows added above and below."""
    h, w = orig_h, orig_w
    shrink = enlarge = None
    if max(h, w) > s.max_side_limit:
        shrink = h, w = _whole_size(h, w, s.max_side_limit / max(h, w))
    if min(h, w) < s.min_side_len:
        enlarge = h, w = _whole_size(h, w, s.min_side_len / min(h, w))
    pad = 0
    if h <= s.letterbox_min_height or w / h > s.letterbox_max_wh_ratio:
        new_h = max(int(w / s.letterbox_max_wh_ratio), s.letterbox_min_height) * 2
        pad = int(abs(new_h - h) / 2)
    return shrink, enlarge, pad


def source_size(orig_h: int, orig_w: int, s: PreprocessSettings) -> tuple[int, int]:
    """(H, W) of the source image prepare_source makes from an orig_h x orig_w image, without making it."""
    shrink, enlarge, pad = _source_plan(orig_h, orig_w, s)
    h, w = enlarge or shrink or (orig_h, orig_w)
    return h + 2 * pad, w


def prepare_source(img: np.ndarray, s: PreprocessSettings) -> tuple[np.ndarray, ImageInfo]:
    """Shrink huge / enlarge tiny images and letterbox very flat ones (RapidOCR 1.4.4 semantics)."""
    orig_h, orig_w = img.shape[:2]
    shrink, enlarge, pad = _source_plan(orig_h, orig_w, s)
    src = img
    for size in (shrink, enlarge):
        if size is not None:
            src = cv2.resize(src, (size[1], size[0]))
    h, w = src.shape[:2]
    scale_x, scale_y = orig_w / w, orig_h / h
    if pad:
        src = cv2.copyMakeBorder(src, pad, pad, 0, 0, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    sh, sw = src.shape[:2]
    info = ImageInfo(orig_h, orig_w, sh, sw, pad, 0, 0, scale_x, scale_y)
    return src, info


def det_resize_shape(h: int, w: int, limit_side_len: int, limit_type: str) -> tuple[int, int]:
    """PaddleOCR DetResizeForTest (type 0): scale by the limit, round each side to a multiple of 32."""
    if limit_type == "max":
        ratio = limit_side_len / max(h, w) if max(h, w) > limit_side_len else 1.0
    elif limit_type == "min":
        ratio = limit_side_len / min(h, w) if min(h, w) < limit_side_len else 1.0
    else:
        raise ValueError(f"limit_type must be 'min' or 'max', got {limit_type!r}")
    return _round32(int(h * ratio)), _round32(int(w * ratio))


def det_input_size(h: int, w: int, limit_side_len: int, limit_type: str, s: PreprocessSettings) -> tuple[int, int]:
    """(H, W) the detector gets for an h x w source image: det_resize_shape, capped at
    2 * max_side_limit so that even limit_type=min on a thin image stays bounded."""
    dh, dw = det_resize_shape(h, w, limit_side_len, limit_type)
    cap = s.max_side_limit * 2
    if max(dh, dw) > cap:
        dh, dw = det_resize_shape(dh, dw, cap, "max")
    return dh, dw


def build_det_batch(sources: list[np.ndarray], infos: list[ImageInfo], limit_side_len: int, limit_type: str,
                    s: PreprocessSettings) -> tuple[np.ndarray, list[ImageInfo]]:
    """Resize each source image and stack them as UINT8 [N,H,W,3], zero (black) padded to the largest.

    Black is also what letterboxing pads with; the padding lies outside every image's valid region
    (`det_h` x `det_w`), which is all det_postprocess reads.
    """
    resized_images = []
    out_infos = []
    for src, info in zip(sources, infos, strict=True):
        dh, dw = det_input_size(src.shape[0], src.shape[1], limit_side_len, limit_type, s)
        resized_images.append(cv2.resize(src, (dw, dh)))
        out_infos.append(replace(info, det_h=dh, det_w=dw))
    if len(resized_images) == 1:
        return np.ascontiguousarray(resized_images[0][None]), out_infos
    H = max(r.shape[0] for r in resized_images)
    W = max(r.shape[1] for r in resized_images)
    batch = np.zeros((len(resized_images), H, W, 3), dtype=np.uint8)
    for i, r in enumerate(resized_images):
        batch[i, :r.shape[0], :r.shape[1]] = r
    return batch, out_infos
