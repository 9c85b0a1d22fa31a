"""Inputs of the CPU runtime models (det_model, cls_model, rec_model) checked as hostile, and run in
pieces whose size is bounded, so that one request never makes onnxruntime allocate more than one
bounded piece needs.

Limits come from the model's config.pbtxt parameters: the assembler copies det_preprocess's input limits
into det_model and rec_pipeline's recogniser widths into rec_model (scripts/assemble_repository.py), so
a direct call is bounded exactly like the `ocr` path. `max_run_pixels` caps rows x height x width of one
onnxruntime run.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ppocr_steps.errors import InvalidInputError
from ppocr_steps.recognize import MIN_REC_WIDTH
from ppocr_steps.settings import InputLimits
from ppocr_steps.validate import DET_MULTIPLE, check_batch_pixels, det_side_bound, require_array

__all__ = ["check_runtime_input", "padding_extent", "run_det_batch", "run_chunks"]

Run = Callable[[np.ndarray], list[np.ndarray]]


def check_runtime_input(name: str, arr: np.ndarray, s: InputLimits) -> None:
    """det_input UINT8 [N,H,W,3] (N <= max_images_per_request, sides multiples of 32 up to 2 x
    max_side_limit); rec_input UINT8 [N,48,W,3] (MIN_REC_WIDTH <= W <= rec_max_width); cls_input's
    shape is fixed by its config (Triton checks it)."""
    require_array(name, arr, np.uint8, 4, {3: 3})
    if arr.shape[0] == 0:
        raise InvalidInputError(f"input '{name}' holds no rows", "bad_tensor")
    if name == "det_input":
        n, h, w = arr.shape[:3]
        if n > s.max_images_per_request:
            raise InvalidInputError(f"input 'det_input' holds {n} images; allowed 1 to {s.max_images_per_request}",
                                    "bad_tensor")
        bound = det_side_bound(s)
        for side in (h, w):
            if not (DET_MULTIPLE <= side <= bound and side % DET_MULTIPLE == 0):
                raise InvalidInputError(f"input 'det_input' is {h}x{w} (HxW); each side must be a multiple of "
                                        f"{DET_MULTIPLE} from {DET_MULTIPLE} to {bound}", "bad_tensor")
        check_batch_pixels(name, n, h, w, s)
    elif name == "rec_input":
        h, w = arr.shape[1:3]
        if h != s.rec_image_height or not MIN_REC_WIDTH <= w <= s.rec_max_width:
            raise InvalidInputError(f"input 'rec_input' is {h}x{w} (HxW); height must be {s.rec_image_height} "
                                    f"and width {MIN_REC_WIDTH} to {s.rec_max_width}", "bad_tensor")


def padding_extent(img: np.ndarray, multiple: int) -> tuple[int, int]:
    """(h, w) of `img` [H,W,C] without its trailing all-zero rows and columns, rounded up to `multiple`
    (at least `multiple`): the part of a zero-padded batch entry that holds the image."""
    # max over uint8 rows is a vectorised reduction, which any() over two axes of a 3-D array is not
    rows = np.flatnonzero(img.reshape(img.shape[0], -1).max(axis=1))
    cols = np.flatnonzero(img.max(axis=0).max(axis=1))
    h = int(rows[-1]) + 1 if rows.size else 1
    w = int(cols[-1]) + 1 if cols.size else 1

    def up(v: int, limit: int) -> int:
        return min(limit, max(multiple, -(-v // multiple) * multiple))

    return up(h, img.shape[0]), up(w, img.shape[1])


def run_chunks(run: Run, batch: np.ndarray, max_run_pixels: int) -> list[np.ndarray]:
    """`run` over row chunks of `batch` [N,H,W,...] with rows x H x W <= max_run_pixels (at least one row)."""
    per_row = max(1, int(np.prod(batch.shape[1:3])))
    rows = max(1, max_run_pixels // per_row)
    if rows >= len(batch):
        return run(batch)
    parts = [run(np.ascontiguousarray(batch[i:i + rows])) for i in range(0, len(batch), rows)]
    return [np.concatenate(outs) for outs in zip(*parts, strict=False)]


def run_det_batch(run: Run, batch: np.ndarray, max_run_pixels: int) -> np.ndarray:
    """The detector over a zero-padded batch [N,H,W,3] → prob_map [N,1,H,W], each image run at its own
    extent (padding_extent): images of very different shapes never make one huge padded run. Images
    of the same extent run together (rows x H x W <= max_run_pixels); the padding's output is 0."""
    n, h, w = batch.shape[:3]
    # one image is its own batch: nothing to scan for padding
    extents = [padding_extent(batch[i], DET_MULTIPLE) for i in range(n)] if n > 1 else [(h, w)]
    if len(set(extents)) == 1 and extents[0] == (h, w):
        return run_chunks(run, batch, max_run_pixels)[0]
    out = np.zeros((n, 1, h, w), dtype=np.uint8)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, extent in enumerate(extents):
        groups.setdefault(extent, []).append(i)
    for (eh, ew), members in groups.items():
        piece = np.ascontiguousarray(batch[members, :eh, :ew])
        prob = run_chunks(run, piece, max_run_pixels)[0]
        out[members, :, :eh, :ew] = prob
    return out
