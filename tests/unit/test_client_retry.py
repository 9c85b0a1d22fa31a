"""Backoff and deadline logic of ocr_client._retry with a fake clock."""
from __future__ import annotations

import asyncio

import pytest

from ocr_client import OcrInvalidInputError, OcrTimeoutError, OcrUnavailableError
from ocr_client._retry import backoff_delay, retry_async, retry_sync


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.now += s


def test_backoff_doubles_with_jitter_and_cap() -> None:
    assert [backoff_delay(a, rng=lambda: 1.0) for a in range(3)] == [0.1, 0.2, 0.4]
    assert backoff_delay(0, rng=lambda: 0.0) == pytest.approx(0.05)
    assert backoff_delay(30, rng=lambda: 1.0) == 2.0


def test_retries_only_unavailable_then_succeeds() -> None:
    clock = FakeClock()
    seen: list[float] = []

    def fn(remaining: float) -> str:
        seen.append(remaining)
        if len(seen) < 3:
            raise OcrUnavailableError("down")
        return "ok"

    assert retry_sync(fn, retries=3, timeout=10.0, sleep=clock.sleep, clock=clock,
                      rng=lambda: 1.0) == "ok"
    assert clock.sleeps == [0.1, 0.2]
    assert seen == pytest.approx([10.0, 9.9, 9.7])  # each attempt gets what is left


def test_gives_up_after_retries() -> None:
    clock = FakeClock()
    calls = []

    def fn(remaining: float) -> None:
        calls.append(remaining)
        raise OcrUnavailableError("down")

    with pytest.raises(OcrUnavailableError):
        retry_sync(fn, retries=2, timeout=10.0, sleep=clock.sleep, clock=clock, rng=lambda: 1.0)
    assert len(calls) == 3


def test_zero_retries() -> None:
    clock = FakeClock()
    with pytest.raises(OcrUnavailableError):
        retry_sync(lambda r: (_ for _ in ()).throw(OcrUnavailableError("x")), retries=0,
                   timeout=1.0, sleep=clock.sleep, clock=clock)
    assert clock.sleeps == []


def test_no_retry_past_the_deadline() -> None:
    clock = FakeClock()
    calls = []

    def fn(remaining: float) -> None:
        calls.append(clock.now)
        clock.now += min(0.25, remaining)  # each attempt takes 0.25 s, bounded by its timeout
        raise OcrUnavailableError("down")

    with pytest.raises(OcrUnavailableError):
        retry_sync(fn, retries=10, timeout=1.0, sleep=clock.sleep, clock=clock, rng=lambda: 1.0)
    assert calls == pytest.approx([0.0, 0.35, 0.8])  # attempts start at 0, after 0.1 and 0.2 s sleeps
    assert clock.now <= 1.0 + 1e-9


def test_other_errors_are_raised_at_once() -> None:
    clock = FakeClock()
    calls = []

    def fn(remaining: float) -> None:
        calls.append(remaining)
        raise OcrInvalidInputError("bad")

    with pytest.raises(OcrInvalidInputError):
        retry_sync(fn, retries=5, timeout=1.0, sleep=clock.sleep, clock=clock)
    assert len(calls) == 1 and clock.sleeps == []


def test_expired_before_first_attempt() -> None:
    clock = FakeClock()

    def slow_clock() -> float:
        clock.now += 1.0
        return clock.now

    with pytest.raises(OcrTimeoutError):
        retry_sync(lambda r: "never", retries=1, timeout=0.5, sleep=clock.sleep, clock=slow_clock)


def test_async_twin() -> None:
    attempts = []

    async def fn(remaining: float) -> int:
        attempts.append(remaining)
        if len(attempts) == 1:
            raise OcrUnavailableError("down")
        return 7

    assert asyncio.run(retry_async(fn, retries=1, timeout=5.0, rng=lambda: 0.0)) == 7
    assert len(attempts) == 2
