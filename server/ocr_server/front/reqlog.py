"""One JSON line per request from the front, written off the request path and rate-limited."""
from __future__ import annotations

import json
import logging
import logging.handlers
import queue
import sys
import threading
import time
from typing import IO, Any

__all__ = ["RequestLog"]


class RequestLog:
    """Request lines go through a queue to a writer thread; above `rate` lines/s they are counted, not
    written, and the next written line says how many were suppressed. json.dumps escapes every client
    string (ids, model names, error texts), so no client can forge a line."""

    def __init__(self, stream: IO[str] | None = None, enabled: bool = True, rate: float = 100.0,
                 burst: int = 200) -> None:
        self.enabled = enabled
        self.rate, self.burst = rate, float(burst)
        self._tokens, self._stamp = float(burst), time.monotonic()
        self._suppressed = 0
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        handler = logging.StreamHandler(stream or sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        self._listener = logging.handlers.QueueListener(self._queue, handler)
        self._logger = logging.Logger("ocr_front.requests")
        self._logger.addHandler(logging.handlers.QueueHandler(self._queue))
        self._logger.propagate = False
        if enabled:
            self._listener.start()

    def _take(self) -> int | None:
        """None when over the rate; else the number of lines suppressed since the last one written."""
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            if self._tokens < 1.0:
                self._suppressed += 1
                return None
            self._tokens -= 1.0
            suppressed, self._suppressed = self._suppressed, 0
            return suppressed

    def record(self, **fields: Any) -> None:
        if not self.enabled:
            return
        suppressed = self._take()
        if suppressed is None:
            return
        line: dict[str, Any] = {"ts": round(time.time(), 3), "event": "request", **fields}
        if suppressed:
            line["suppressed_before"] = suppressed
        self._logger.info(json.dumps(line, ensure_ascii=True, separators=(",", ":"), default=str))

    def close(self) -> None:
        if self.enabled:
            self._listener.stop()
