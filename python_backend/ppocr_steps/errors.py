"""Error types the steps raise; the Triton adapter maps them to error codes."""
from __future__ import annotations

__all__ = ["InvalidInputError", "one_line"]


class InvalidInputError(ValueError):
    """The request is wrong (bad image, parameter out of range, ...): Triton INVALID_ARG.

    `reason` is a short machine label (for the rejected-inputs metric); the message says what to fix.
    """

    def __init__(self, message: str, reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason


def one_line(text: str) -> str:
    """`text` with backslashes, control and non-ASCII characters escaped: text a client sent (JSON keys,
    names) cannot start a forged line in the server log."""
    return text.encode("unicode_escape").decode("ascii")
