"""The recogniser's greedy-CTC head on the host, for graphs that end at the logits.

The OpenVINO copy of a recogniser (server/ocr_server/fetch_models.py) stops before its softmax and
outputs the logits [N,T,C], in bf16 when it runs at bf16. From them this module computes what the
graph head computes elsewhere: the best class per timestep and its softmax probability. The
probability is computed only at the timesteps greedy CTC keeps (`kept_timesteps`, the rule
`recognize.ctc_greedy_decode` decodes by), 0 elsewhere: the decoder reads no others, and each costs
a pass over the C classes.
"""
from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor

import numpy as np

__all__ = ["CTC_LOGITS", "CTC_OUTPUTS", "greedy_ctc_head", "kept_timesteps", "bf16_bits_to_f32"]

#: Name of the logits output of a graph whose greedy-CTC head runs here.
CTC_LOGITS = "rec_logits"
#: What the head returns, as the recogniser's config.pbtxt names its outputs.
CTC_OUTPUTS = ("rec_char_ids", "rec_char_probs")


def kept_timesteps(char_ids: np.ndarray) -> np.ndarray:
    """The timesteps greedy CTC keeps, bool [N,T]: a class other than blank (0) that differs from the
    previous timestep's."""
    keep = char_ids != 0
    keep[:, 1:] &= char_ids[:, 1:] != char_ids[:, :-1]
    return keep


def bf16_bits_to_f32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 values given as their uint16 bit patterns -> float32 (exact: bf16 is f32's top half)."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def _argmax_bf16(bits: np.ndarray) -> np.ndarray:
    # As int16, bf16 bit patterns sort like the values when they are positive: a row whose largest
    # int16 is positive has its float arg-max there. Other rows (max <= 0) are converted and redone.
    signed = bits.view(np.int16)
    ids = signed.argmax(axis=-1)
    top = np.take_along_axis(signed, ids[..., None], axis=-1)[..., 0]
    redo = top <= 0
    if redo.any():
        ids[redo] = bf16_bits_to_f32(bits[redo]).argmax(axis=-1)
    return ids


def _in_halves(part: Callable[[int, int], np.ndarray], n: int, pool: Executor | None) -> np.ndarray:
    """part(0, n), computed as part(0, n/2) here and part(n/2, n) on `pool` when there is one."""
    if pool is None or n < 2:
        return part(0, n)
    half = n // 2
    second = pool.submit(part, half, n)
    first = part(0, half)
    return np.concatenate([first, second.result()])


def greedy_ctc_head(logits: np.ndarray, pool: Executor | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(char_ids INT32 [N,T], char_probs FP32 [N,T]) from logits [N,T,C]: float32, or bfloat16 given as
    uint16 bit patterns. char_ids is the arg-max over C (the first of equal maxima); char_probs is
    softmax(logits)[char_id] where greedy CTC keeps the timestep, 0 elsewhere. With a `pool`, half
    of the rows of each pass run on it (numpy releases the GIL in these loops), so that one request
    can use two cores."""
    if logits.ndim != 3:
        raise ValueError(f"expected logits [N,T,C], got shape {logits.shape}")
    bf16 = logits.dtype == np.uint16
    if not bf16 and logits.dtype != np.float32:
        raise ValueError(f"expected float32 logits or bfloat16 bits as uint16, got {logits.dtype}")
    n, t, c = logits.shape
    rows = logits.reshape(n * t, c)

    def argmax(lo: int, hi: int) -> np.ndarray:
        return _argmax_bf16(rows[lo:hi]) if bf16 else rows[lo:hi].argmax(axis=-1)

    ids = _in_halves(argmax, n * t, pool).reshape(n, t)
    kept = np.flatnonzero(kept_timesteps(ids))
    kept_ids = ids.reshape(-1)[kept]

    def probability(lo: int, hi: int) -> np.ndarray:
        picked = rows[kept[lo:hi]]  # a copy: safe to edit in place
        values = bf16_bits_to_f32(picked) if bf16 else picked
        values -= np.take_along_axis(values, kept_ids[lo:hi, None], axis=1)
        np.exp(values, out=values)
        return 1.0 / values.sum(axis=1)

    probs = np.zeros(n * t, np.float32)
    if kept.size:
        probs[kept] = _in_halves(probability, kept.size, pool)
    return ids.astype(np.int32), probs.reshape(n, t)
