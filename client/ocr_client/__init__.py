"""Client library for the PP-OCR ensemble ``ocr`` served by NVIDIA Triton.

Example::

    from ocr_client import OcrClient

    with OcrClient("localhost:8001") as client:
        result = client.ocr("page.png", limit_side_len=960)
        for line in result.lines:
            print(line.score, line.text)
"""
from __future__ import annotations

from ._aio import AsyncOcrClient
from ._client import OcrClient
from ._errors import (
    OcrError,
    OcrInvalidInputError,
    OcrServerError,
    OcrTimeoutError,
    OcrUnavailableError,
)
from ._images import ImageInput
from ._params import OcrParams
from ._results import OcrResult, TextLine

__version__ = "0.1.0"

__all__ = [
    "AsyncOcrClient",
    "ImageInput",
    "OcrClient",
    "OcrError",
    "OcrInvalidInputError",
    "OcrParams",
    "OcrResult",
    "OcrServerError",
    "OcrTimeoutError",
    "OcrUnavailableError",
    "TextLine",
    "__version__",
]
