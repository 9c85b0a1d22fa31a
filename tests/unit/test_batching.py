"""ppocr_steps.batching: how a runtime model groups the requests Triton hands it together."""
from __future__ import annotations

import numpy as np
import pytest

from ppocr_steps.batching import group_by_shape, run_grouped


def rows(n: int, width: int = 4, dtype: type = np.uint8, start: int = 0) -> np.ndarray:
    return (np.arange(n * width).reshape(n, width) + start).astype(dtype)


def test_groups_by_row_shape_and_dtype_in_first_seen_order() -> None:
    inputs: list[np.ndarray | BaseException] = [rows(2), rows(1, width=8), ValueError("bad"), rows(3),
                                                 rows(1, dtype=np.float32), rows(1, width=8)]
    assert group_by_shape(inputs) == [[0, 3], [1, 5], [4]]


def test_each_input_gets_its_own_rows_back() -> None:
    seen: list[tuple[int, ...]] = []

    def run(batch: np.ndarray, members: list[int]) -> list[np.ndarray]:
        seen.append(batch.shape)
        assert len(members) in (1, 2)
        return [batch.sum(axis=1), batch[:, :1] * 0 + len(batch)]

    a, b, c = rows(2), rows(3, start=100), rows(1, width=2)
    out = [o for o in run_grouped([a, b, c], run) if isinstance(o, list)]
    assert len(out) == 3
    assert seen == [(5, 4), (1, 2)]
    assert out[0][0].tolist() == a.sum(axis=1).tolist() and out[1][0].tolist() == b.sum(axis=1).tolist()
    assert out[0][1].ravel().tolist() == [5, 5] and out[2][1].ravel().tolist() == [1]


def test_a_failing_batch_fails_only_its_members_and_errors_pass_through() -> None:
    missing = KeyError("no input")

    def run(batch: np.ndarray, members: list[int]) -> list[np.ndarray]:
        if batch.shape[1] == 2:
            raise RuntimeError("runtime failed")
        return [batch]

    out = run_grouped([rows(1, width=2), missing, rows(2), rows(1, width=2)], run)
    assert isinstance(out[0], RuntimeError) and out[3] is out[0]
    assert out[1] is missing
    assert isinstance(out[2], list) and out[2][0].shape == (2, 4)


@pytest.mark.parametrize("n", [0, 1])
def test_no_or_one_request(n: int) -> None:
    out = run_grouped([rows(2)] * n, lambda batch, members: [batch])
    assert len(out) == n
