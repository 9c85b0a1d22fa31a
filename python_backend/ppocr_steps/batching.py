"""Grouping of the requests a runtime model receives together (Triton dynamic batching).

Requests whose inputs share a row shape and dtype run as one batch; each request gets back its own
rows. Triton-free so the CPU runtime model (model_repository/cpu/onnx_model.py) stays a thin adapter.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import cast

import numpy as np

__all__ = ["group_by_shape", "run_grouped"]

Outcome = list[np.ndarray] | BaseException


def group_by_shape(inputs: Sequence[np.ndarray | BaseException]) -> list[list[int]]:
    """Indices of the inputs that can be concatenated along axis 0 (same row shape and dtype), in
    first-seen order; inputs that are already errors belong to no group."""
    groups: dict[tuple[tuple[int, ...], str], list[int]] = {}
    for i, array in enumerate(inputs):
        if isinstance(array, np.ndarray):
            groups.setdefault((array.shape[1:], array.dtype.str), []).append(i)
    return list(groups.values())


def run_grouped(inputs: Sequence[np.ndarray | BaseException],
                run: Callable[[np.ndarray, list[int]], Sequence[np.ndarray]]) -> list[Outcome]:
    """Run each group of `inputs` as one batch through `run(batch, members)` (which returns output arrays
    with the batch's rows first; `members` are the inputs' indices, in batch order) and split the outputs
    back per input. An input that is an exception is its own outcome; a batch that raises fails only the
    inputs in that batch."""
    outcomes: list[Outcome | None] = [a if isinstance(a, BaseException) else None for a in inputs]
    for members in group_by_shape(inputs):
        arrays = [cast(np.ndarray, inputs[i]) for i in members]
        try:
            batch = np.concatenate(arrays) if len(arrays) > 1 else arrays[0]
            results = run(batch, members)
            start = 0
            for i, array in zip(members, arrays, strict=True):
                n = len(array)
                outcomes[i] = [r[start:start + n] for r in results]
                start += n
        except Exception as exc:  # noqa: BLE001 - the batch's failure is each member's error
            for i in members:
                outcomes[i] = exc
    return cast(list[Outcome], outcomes)  # every input is an error or in a group
