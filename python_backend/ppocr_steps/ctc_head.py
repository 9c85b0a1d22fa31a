"""The recogniser's greedy-CTC head on the host, for graphs that end at the logits.

The OpenVINO copy of a recogniser (server/ocr_server/fetch_models.py) stops before its softmax and
outputs the logits [N,T,C], in bf16 when it runs at bf16. From them this module computes what the
graph head computes elsewhere: the best class per timestep and its softmax probability. The
probability is computed only at the timesteps greedy CTC keeps (a class other than blank that differs
from the previous timestep's), 0 elsewhere: those are the only ones `recognize.ctc_greedy_decode`
reads, and over C classes each costs a pass that the others do not need.
"""
from __future__ import annotations

import numpy as np

__all__ = ["CTC_LOGITS", "CTC_OUTPUTS", "greedy_ctc_head", "bf16_bits_to_f32"]

#: Name of the logits output of a graph whose greedy-CTC head runs here.
CTC_LOGITS = "rec_logits"
#: What the head returns, as the recogniser's config.pbtxt names its outputs.
CTC_OUTPUTS = ("rec_char_ids", "rec_char_probs")


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


def greedy_ctc_head(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(char_ids INT32 [N,T], char_probs FP32 [N,T]) from logits [N,T,C]: float32, or bfloat16 given as
    uint16 bit patterns. char_ids is the arg-max over C (the first of equal maxima); char_probs is
    softmax(logits)[char_id] where greedy CTC keeps the timestep, 0 elsewhere."""
    if logits.ndim != 3:
        raise ValueError(f"expected logits [N,T,C], got shape {logits.shape}")
    bf16 = logits.dtype == np.uint16
    if not bf16 and logits.dtype != np.float32:
        raise ValueError(f"expected float32 logits or bfloat16 bits as uint16, got {logits.dtype}")
    ids = _argmax_bf16(logits) if bf16 else logits.argmax(axis=-1)
    keep = ids != 0
    keep[:, 1:] &= ids[:, 1:] != ids[:, :-1]
    probs = np.zeros(ids.shape, np.float32)
    if keep.any():
        rows = bf16_bits_to_f32(logits[keep]) if bf16 else logits[keep]  # a copy: safe to edit in place
        rows -= np.take_along_axis(rows, ids[keep][:, None], axis=1)
        np.exp(rows, out=rows)
        probs[keep] = 1.0 / rows.sum(axis=1)
    return ids.astype(np.int32), probs
