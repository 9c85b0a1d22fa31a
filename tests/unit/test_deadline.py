"""The per-request time bound of the steps (ppocr_steps.deadline), with a fake clock."""
from __future__ import annotations

import numpy as np
import pytest

from ppocr_steps.deadline import Deadline, checked
from ppocr_steps.errors import InvalidInputError
from ppocr_steps.recognize import classify_and_flip, recognize_crops

LABELS = ["blank", "a", " "]


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_within_the_bound_passes_and_past_it_refuses_naming_the_limit() -> None:
    clock = FakeClock()
    deadline = Deadline(5.0, "rec_pipeline", clock)
    clock.now += 5.0
    deadline.check()  # exactly at the bound: still allowed
    clock.now += 0.1
    with pytest.raises(InvalidInputError, match="max_request_seconds = 5 s") as err:
        deadline.check()
    assert err.value.reason == "time_limit"
    assert "rec_pipeline" in str(err.value) and "fewer" in str(err.value)


def test_a_bound_that_is_not_positive_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="max_request_seconds"):
        Deadline(0, "rec_pipeline")


def test_checked_checks_before_each_item_lazily() -> None:
    clock = FakeClock()
    deadline = Deadline(1.0, "rec_pipeline", clock)
    produced = []
    items = checked(iter(range(5)), deadline)
    produced.append(next(items))
    produced.append(next(items))
    clock.now += 2.0
    with pytest.raises(InvalidInputError):
        next(items)
    assert produced == [0, 1]
    assert list(checked([1, 2], None)) == [1, 2]


def _rec_infer(clock: FakeClock, seconds_per_call: float, calls: list[int]):
    def infer(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        calls.append(len(batch))
        clock.now += seconds_per_call
        return np.ones((len(batch), 2), np.int64), np.ones((len(batch), 2), np.float32)
    return infer


def test_recognition_stops_between_chunks_once_the_bound_is_passed() -> None:
    clock = FakeClock()
    calls: list[int] = []
    wide = [np.zeros((47, 7519, 3), np.uint8)] * 60  # each crop its own chunk (wider than total_width)
    with pytest.raises(InvalidInputError, match="max_request_seconds"):
        recognize_crops(wide, _rec_infer(clock, 0.3, calls), LABELS, 32, 48, 0, 3200, 1, 2000,
                        deadline=Deadline(2.0, "rec_pipeline", clock))
    assert len(calls) == 7  # 0.3 s a call: the 8th chunk starts past 2 s and is never built


def test_recognition_within_the_bound_reads_every_crop() -> None:
    clock = FakeClock()
    calls: list[int] = []
    crops = [np.zeros((32, 100, 3), np.uint8)] * 40
    results = recognize_crops(crops, _rec_infer(clock, 0.3, calls), LABELS, 32, 48, 0, 3200, 1, 2000,
                              deadline=Deadline(2.0, "rec_pipeline", clock))
    assert [r.text for r in results] == ["a"] * 40 and sum(calls) == 40


def test_classification_stops_between_chunks_once_the_bound_is_passed() -> None:
    clock = FakeClock()
    calls: list[int] = []

    def cls_infer(batch: np.ndarray) -> np.ndarray:
        calls.append(len(batch))
        clock.now += 1.5
        return np.tile(np.array([1.0, 0.0], np.float32), (len(batch), 1))

    crops = [np.zeros((32, 100, 3), np.uint8)] * 64
    with pytest.raises(InvalidInputError, match="time_limit|max_request_seconds"):
        classify_and_flip(crops, cls_infer, 16, 0.9, Deadline(2.0, "rec_pipeline", clock))
    assert calls == [16, 16]
