"""Exception hierarchy and the mapping from transport errors to it."""
from __future__ import annotations

import asyncio

__all__ = [
    "OcrError",
    "OcrInvalidInputError",
    "OcrServerError",
    "OcrTimeoutError",
    "OcrUnavailableError",
    "map_error",
]


class OcrError(Exception):
    """Base class of every error raised by ``ocr_client``.

    ``status`` is the transport status the error came from (e.g.
    ``"StatusCode.INVALID_ARGUMENT"`` for gRPC, ``"400"`` for HTTP), or None.
    """

    def __init__(self, message: str, status: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class OcrUnavailableError(OcrError):
    """The server cannot be reached or answered UNAVAILABLE (retried)."""


class OcrTimeoutError(OcrError):
    """The call ran past its timeout (client side or DEADLINE_EXCEEDED)."""


class OcrInvalidInputError(OcrError):
    """The request was rejected as invalid (locally, or INVALID_ARG / HTTP 400)."""


class OcrServerError(OcrError):
    """Any other server-side or protocol failure."""


_GRPC_CODES: dict[str, type[OcrError]] = {
    "StatusCode.INVALID_ARGUMENT": OcrInvalidInputError,
    "StatusCode.UNAVAILABLE": OcrUnavailableError,
    "StatusCode.DEADLINE_EXCEEDED": OcrTimeoutError,
}
_HTTP_CODES: dict[str, type[OcrError]] = {
    "400": OcrInvalidInputError,
    "413": OcrInvalidInputError,  # payload too large
    "502": OcrUnavailableError,
    "503": OcrUnavailableError,
    "408": OcrTimeoutError,
    "504": OcrTimeoutError,
}


# Triton's answer while a crashed or hung Python stub is being replaced by the server's watchdog.
_STUB_DOWN = "is not healthy"


def _from_status(status: str | None) -> type[OcrError]:
    if status is None:
        return OcrServerError
    return _GRPC_CODES.get(status) or _HTTP_CODES.get(status) or OcrServerError


def _is_connection_error(exc: BaseException) -> bool:
    """Connection-level failures of the HTTP stacks (geventhttpclient, aiohttp)."""
    if isinstance(exc, OSError):  # refused, reset, DNS failure, ...
        return True
    try:
        from geventhttpclient.response import HTTPConnectionClosed

        if isinstance(exc, HTTPConnectionClosed):
            return True
    except ImportError:  # pragma: no cover - http extra not installed
        pass
    try:
        import aiohttp

        if isinstance(exc, aiohttp.ClientConnectionError):
            return True
    except ImportError:  # pragma: no cover
        pass
    return False


def map_error(exc: BaseException) -> OcrError | None:
    """Translate a transport exception into an :class:`OcrError`.

    Returns None for exceptions that are not transport errors (programming
    errors), which the caller should let propagate unchanged.
    """
    if isinstance(exc, OcrError):
        return exc
    from tritonclient.utils import InferenceServerException

    if isinstance(exc, InferenceServerException):
        status = exc.status()
        message = exc.message() or str(exc)
        if _STUB_DOWN in message:  # Triton says INTERNAL, but the watchdog replaces the stub: retry
            return OcrUnavailableError(message, status)
        return _from_status(status)(message, status)
    # TimeoutError covers socket.timeout; asyncio.TimeoutError is distinct on 3.10.
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        detail = str(exc)
        return OcrTimeoutError("the server did not answer in time"
                               + (f" ({detail})" if detail and detail != "timed out" else ""))
    if _is_connection_error(exc):
        return OcrUnavailableError(f"cannot reach the server: {exc}")
    return None
