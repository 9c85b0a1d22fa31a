"""Retry with exponential backoff on OcrUnavailableError, within one deadline."""
from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ._errors import OcrTimeoutError, OcrUnavailableError

__all__ = ["backoff_delay", "retry_async", "retry_sync"]

T = TypeVar("T")
log = logging.getLogger("ocr_client")

BASE_DELAY = 0.1
MAX_DELAY = 2.0


def backoff_delay(attempt: int, rng: Callable[[], float] = random.random) -> float:
    """Delay before retry ``attempt`` (0-based): BASE_DELAY doubling up to MAX_DELAY, times a jitter in [0.5, 1)."""
    return float(min(MAX_DELAY, BASE_DELAY * 2.0 ** attempt) * (0.5 + 0.5 * rng()))


def _next_delay(err: OcrUnavailableError, attempt: int, retries: int, remaining: float,
                rng: Callable[[], float]) -> float:
    """The sleep before the next attempt, or re-raise ``err`` when out of attempts or time."""
    if attempt >= retries:
        raise err
    delay = backoff_delay(attempt, rng)
    if delay >= remaining:
        raise err
    log.debug("server unavailable (%s), retry %d/%d in %.2f s", err.message, attempt + 1, retries, delay)
    return delay


def _expired(timeout: float) -> OcrTimeoutError:
    return OcrTimeoutError(f"no answer within the timeout of {timeout:g} s")


def retry_sync(fn: Callable[[float], T], *, retries: int, timeout: float,
               sleep: Callable[[float], None] = time.sleep,
               clock: Callable[[], float] = time.monotonic,
               rng: Callable[[], float] = random.random) -> T:
    """Call ``fn(remaining_seconds)``; retry on :class:`OcrUnavailableError` only."""
    deadline = clock() + timeout
    attempt = 0
    while True:
        remaining = deadline - clock()
        if remaining <= 0:
            raise _expired(timeout)
        try:
            return fn(remaining)
        except OcrUnavailableError as err:
            sleep(_next_delay(err, attempt, retries, deadline - clock(), rng))
            attempt += 1


async def retry_async(fn: Callable[[float], Awaitable[T]], *, retries: int, timeout: float,
                      clock: Callable[[], float] = time.monotonic,
                      rng: Callable[[], float] = random.random) -> T:
    """Async twin of :func:`retry_sync`."""
    deadline = clock() + timeout
    attempt = 0
    while True:
        remaining = deadline - clock()
        if remaining <= 0:
            raise _expired(timeout)
        try:
            return await fn(remaining)
        except OcrUnavailableError as err:
            await asyncio.sleep(_next_delay(err, attempt, retries, deadline - clock(), rng))
            attempt += 1
