"""What the gRPC and HTTP fronts share: drain state, in-flight count, the bearer token, the request log."""
from __future__ import annotations

import asyncio
import hmac
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from .policy import Limits, ModelSpec, Refusal, Refused
from .reqlog import RequestLog

__all__ = ["FrontState", "Upstream", "new_request_id"]

MODEL = "ocr"  # the only model clients may reach; the internal steps stay behind the front


@dataclass(frozen=True)
class Upstream:
    """Triton's own frontends, bound to loopback."""

    grpc: str   # host:port
    http: str   # host:port


def new_request_id() -> str:
    return uuid.uuid4().hex


def clean_request_id(value: str | None) -> str | None:
    """A client's request id if it is short printable ASCII, else None (a new one is made)."""
    if value and len(value) <= 128 and value.isascii() and value.isprintable():
        return value
    return None


@dataclass
class FrontState:
    upstream: Upstream
    limits: Limits = field(default_factory=Limits)
    token: str | None = None
    log: RequestLog = field(default_factory=lambda: RequestLog(enabled=False))
    draining: bool = False
    in_flight: int = 0
    spec: ModelSpec | None = None
    _idle: asyncio.Event | None = None

    def authorize(self, authorization: str | None) -> None:
        """Refuse unless `authorization` is 'Bearer <token>' (when a token is configured)."""
        if self.token is None:
            return
        expected = f"Bearer {self.token}".encode()
        if authorization is None or not hmac.compare_digest(authorization.encode("utf-8", "replace"), expected):
            raise Refused(Refusal.UNAUTHENTICATED, "missing or wrong bearer token (send 'authorization: Bearer ...')")

    @contextmanager
    def admit(self) -> Iterator[None]:
        """Count one inference in flight; refused once the drain has begun."""
        if self.draining:
            raise Refused(Refusal.UNAVAILABLE, "the server is shutting down; retry (another replica)")
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1
            if self.in_flight == 0 and self._idle is not None:
                self._idle.set()

    async def drain(self, grace: float) -> int:
        """Stop admitting and wait up to `grace` s for the requests in flight; returns how many were left."""
        self.draining = True
        deadline = time.monotonic() + grace
        while self.in_flight and time.monotonic() < deadline:
            self._idle = asyncio.Event()
            try:
                await asyncio.wait_for(self._idle.wait(), max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                break
        return self.in_flight
