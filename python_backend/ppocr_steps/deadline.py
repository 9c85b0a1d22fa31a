"""A per-request time bound for the steps' long loops (the recognition chunks): no request holds a step
longer than its model's configured `max_request_seconds`."""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from ppocr_steps.errors import InvalidInputError

__all__ = ["Deadline", "checked"]

T = TypeVar("T")


class Deadline:
    """Started on creation; `check()` refuses the request once `seconds` have passed.

    The refusal is INVALID_ARG, not UNAVAILABLE: the request's own size makes it this slow, so a client
    retrying it unchanged would only hold the step again; it must send less per request.
    """

    def __init__(self, seconds: float, step: str, clock: Callable[[], float] = time.monotonic) -> None:
        if seconds <= 0:
            raise ValueError(f"max_request_seconds of {step} must be > 0, got {seconds}")
        self.seconds, self.step, self.clock = seconds, step, clock
        self.start = clock()

    def check(self) -> None:
        elapsed = self.clock() - self.start
        if elapsed > self.seconds:
            raise InvalidInputError(
                f"{self.step} stopped this request after {elapsed:.1f} s: the limit is max_request_seconds = "
                f"{self.seconds:g} s per request; send fewer or smaller text boxes or images per request",
                "time_limit")


def checked(items: Iterable[T], deadline: Deadline | None) -> Iterator[T]:
    """`items`, with `deadline` checked before each one is produced (lazily: before each chunk is built)."""
    for item in items:
        if deadline is not None:
            deadline.check()
        yield item
