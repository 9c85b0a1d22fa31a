"""Text-line classification (0/180) and CTC recognition on crops, with honest batching.

The model calls are injected, so this module runs with onnxruntime in tests and through Triton
BLS in the server: the classifier `cls_infer(batch) -> probs [N,2]`, the recogniser
`rec_infer(batch) -> (char_ids [N,T], char_probs [N,T])`, the greedy-CTC inputs the recogniser
graph computes from its softmax (server/ocr_server/onnx_edits.py). Crops of all images of a request are
batched together: sorted by aspect ratio (less padding), in chunks of at most the model's batch
size; zero crops means zero model calls.

Pipelining: a model object that also offers `submit(batch) -> wait`, where `wait()` returns what
the call would have returned, gets the next chunk prepared (resized, padded) while the current
one runs, and the finished one decoded while the next runs. At most two calls are in flight. A plain
callable runs the chunks one after the other.
"""
from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import cv2
import numpy as np

from ppocr_steps.ctc_head import kept_timesteps
from ppocr_steps.deadline import Deadline, checked

__all__ = ["CLS_SHAPE", "classify_and_flip", "recognize_crops", "ctc_greedy_decode", "rec_batch_plan",
           "crop_batch", "CROP_PAD", "pipelined", "RecResult", "load_dictionary", "Infer", "RecInfer"]

CLS_SHAPE = (48, 192, 3)  # cls_model input per crop: height, width, channels (UINT8)
CROP_PAD = 128  # grey that right-pads cls/rec inputs (see crop_batch)
MIN_REC_WIDTH = 8  # narrowest recogniser input ever sent (the GPU profiles' minimum)
Infer = Callable[[np.ndarray], np.ndarray]
RecInfer = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
K = TypeVar("K")


def pipelined(infer: Callable[[np.ndarray], Any], batches: Iterable[tuple[K, np.ndarray]]) -> Iterator[tuple[K, Any]]:
    """(key, infer(batch)) for each (key, batch), in order. `batches` is consumed lazily, so with
    `infer.submit` the next batch is built while the previous call runs (see the module docstring)."""
    submit = getattr(infer, "submit", None)
    if submit is None:
        for key, batch in batches:
            yield key, infer(batch)
        return
    pending: deque[tuple[K, Callable[[], Any]]] = deque()
    for key, batch in batches:
        pending.append((key, submit(batch)))
        if len(pending) > 1:
            done_key, wait = pending.popleft()
            yield done_key, wait()
    while pending:
        done_key, wait = pending.popleft()
        yield done_key, wait()


@dataclass(frozen=True)
class RecResult:
    text: str
    score: float


def load_dictionary(path: str) -> list[str]:
    """Dictionary file → CTC labels: blank at index 0, the file's characters, then ' ' (PaddleOCR)."""
    with open(path, encoding="utf-8") as f:
        chars = f.read().split("\n")
    if chars and chars[-1] == "":
        chars.pop()
    return ["blank", *chars, " "]


def crop_batch(crops: Sequence[np.ndarray], height: int, width: int) -> np.ndarray:
    """UINT8 [N,height,width,3] model input: each crop resized to `height` keeping its aspect ratio
    (at most `width` wide), right-padded with grey CROP_PAD.

    The networks normalise inside the graph, x / 127.5 - 1 per channel (server/ocr_server/onnx_edits.py), as
    PaddleOCR does in Python; PaddleOCR pads with 0 after normalising, i.e. grey 127.5, and
    CROP_PAD = 128 normalises to 1/127.5 (measured on the dev split: the same texts, boxes and
    H-means as the FP32 input padded with 0). A quarter of the FP32 bytes to copy to the model.
    """
    out = np.full((len(crops), height, width, 3), CROP_PAD, dtype=np.uint8)
    for j, img in enumerate(crops):
        h, w = img.shape[:2]
        resized_w = max(1, min(width, int(math.ceil(height * w / float(h)))))
        out[j, :, :resized_w] = cv2.resize(img, (resized_w, height))
    return out


def classify_and_flip(crops: list[np.ndarray], infer: Infer, batch_size: int, thresh: float,
                      deadline: Deadline | None = None) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Run the 0/180 classifier; turn crops whose '180' score exceeds `thresh`. `deadline` is checked
    before each chunk.

    Returns (crops, flipped[bool N], score_of_predicted_label[N]).
    """
    n = len(crops)
    flipped = np.zeros(n, dtype=bool)
    scores = np.zeros(n, dtype=np.float32)
    if n == 0:
        return crops, flipped, scores
    out = list(crops)
    order = np.argsort([c.shape[1] / float(c.shape[0]) for c in crops], kind="stable")
    ch, cw, _ = CLS_SHAPE
    chunks = checked((order[start:start + batch_size] for start in range(0, n, batch_size)), deadline)
    for idx, probs in pipelined(infer, ((idx, crop_batch([crops[i] for i in idx], ch, cw)) for idx in chunks)):
        labels = probs.argmax(axis=1)
        for j, i in enumerate(idx):
            scores[i] = probs[j, labels[j]]
            if labels[j] == 1 and probs[j, 1] > thresh:
                out[i] = cv2.rotate(crops[i], cv2.ROTATE_180)
                flipped[i] = True
    return out, flipped, scores


def rec_batch_plan(ratios: Sequence[float], batch_size: int, height: int, min_width: int, max_width: int,
                   width_multiple: int, total_width: int = 0) -> list[tuple[np.ndarray, int]]:
    """[(crop indices, padded width)] for recognition: sorted by w/h, chunked, width = widest in chunk.

    A chunk holds at most `batch_size` crops and, when `total_width` > 0, at most as many as keep
    (crops × padded width) <= `total_width`, so that narrow crops go in large chunks and wide ones in
    small chunks (a crop wider than `total_width` goes alone). 0: chunks of `batch_size`.
    """
    def padded(ratio: float) -> int:
        width = int(height * max(min_width / height, ratio))
        if width_multiple > 1:
            width = int(math.ceil(width / width_multiple) * width_multiple)
        return max(MIN_REC_WIDTH, min(width, max_width))

    order = np.argsort(np.asarray(ratios, dtype=np.float64), kind="stable")
    plan: list[tuple[np.ndarray, int]] = []
    start = 0
    for end in range(1, len(order) + 1):
        # ascending order: the chunk [start, end) is as wide as its last crop
        full = end - start == batch_size
        if end < len(order) and not full and total_width > 0:
            full = (end - start + 1) * padded(ratios[order[end]]) > total_width
        if full or end == len(order):
            plan.append((order[start:end], padded(ratios[order[end - 1]])))
            start = end
    return plan


def ctc_greedy_decode(char_ids: np.ndarray, char_probs: np.ndarray, labels: Sequence[str]) -> list[RecResult]:
    """Greedy CTC over the best class per timestep [N,T] and its probability [N,T]: collapse repeats,
    drop blanks (class 0); score = mean probability of the characters kept."""
    keep = kept_timesteps(char_ids)
    n_labels = len(labels)
    results = []
    for row in range(char_ids.shape[0]):
        sel = keep[row]
        chars = char_ids[row][sel]
        conf = char_probs[row][sel]
        text = "".join(labels[c] if c < n_labels else "" for c in chars.tolist())
        results.append(RecResult(text, float(conf.mean()) if conf.size else 0.0))
    return results


def recognize_crops(crops: list[np.ndarray], infer: RecInfer, labels: Sequence[str], batch_size: int, height: int,
                    min_width: int, max_width: int, width_multiple: int = 1, total_width: int = 0,
                    deadline: Deadline | None = None) -> list[RecResult]:
    """Recognise every crop; results in the input order. Chunks: :func:`rec_batch_plan`; `deadline` is
    checked before each chunk is built."""
    results: list[RecResult | None] = [None] * len(crops)
    ratios = [c.shape[1] / float(c.shape[0]) for c in crops]
    plan = rec_batch_plan(ratios, batch_size, height, min_width, max_width, width_multiple, total_width)
    batches = ((idx, crop_batch([crops[i] for i in idx], height, width))
               for idx, width in checked(plan, deadline))
    for idx, (char_ids, char_probs) in pipelined(infer, batches):
        for i, res in zip(idx, ctc_greedy_decode(char_ids, char_probs, labels), strict=True):
            results[i] = res
    return [r for r in results if r is not None]
