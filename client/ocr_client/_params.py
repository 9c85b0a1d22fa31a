"""Request parameters and the input tensors of the ``ocr`` ensemble."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from ._errors import OcrInvalidInputError

__all__ = ["IMAGE_INPUT", "LIMIT_TYPES", "OcrParams", "Tensor", "build_tensors"]

IMAGE_INPUT = "image_bytes"
LIMIT_TYPES = ("min", "max")
_BOOLEANS = ("use_textline_orientation", "use_doc_orientation_classify", "use_doc_unwarping")


class Tensor(NamedTuple):
    """A named input tensor, protocol-neutral: Triton datatype + numpy data."""

    name: str
    datatype: str
    data: NDArray[Any]


@dataclass(frozen=True)
class OcrParams:
    """Optional per-request knobs (PaddleOCR names). None leaves the server default."""

    limit_side_len: int | None = None
    limit_type: str | None = None
    thresh: float | None = None
    box_thresh: float | None = None
    unclip_ratio: float | None = None
    use_textline_orientation: bool | None = None
    text_rec_score_thresh: float | None = None
    use_doc_orientation_classify: bool | None = None
    use_doc_unwarping: bool | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Light client-side checks; the server remains the authority."""
        if self.limit_side_len is not None:
            v = self.limit_side_len
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
                raise OcrInvalidInputError(f"limit_side_len must be a positive int, got {v!r}")
        if self.limit_type is not None and self.limit_type not in LIMIT_TYPES:
            raise OcrInvalidInputError(f"limit_type must be one of {LIMIT_TYPES}, got {self.limit_type!r}")
        for name in ("thresh", "box_thresh", "unclip_ratio", "text_rec_score_thresh"):
            v = getattr(self, name)
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)) \
                    or not math.isfinite(float(v)):
                raise OcrInvalidInputError(f"{name} must be a finite number, got {v!r}")
        if self.unclip_ratio is not None and self.unclip_ratio <= 0:
            raise OcrInvalidInputError(f"unclip_ratio must be > 0, got {self.unclip_ratio!r}")
        for name in _BOOLEANS:
            flag = getattr(self, name)
            if flag is not None and not isinstance(flag, (bool, np.bool_)):
                raise OcrInvalidInputError(f"{name} must be a bool, got {flag!r}")

    def as_kwargs(self) -> dict[str, Any]:
        """The parameters that are set, as keyword arguments for ``ocr()``."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    def to_tensors(self) -> list[Tensor]:
        """One [1]-shaped tensor per parameter that is set, in declaration order."""
        out: list[Tensor] = []
        if self.limit_side_len is not None:
            out.append(Tensor("limit_side_len", "INT32", np.array([self.limit_side_len], dtype=np.int32)))
        if self.limit_type is not None:
            out.append(Tensor("limit_type", "BYTES", _bytes_array([self.limit_type.encode()])))
        for name in ("thresh", "box_thresh", "unclip_ratio"):
            v = getattr(self, name)
            if v is not None:
                out.append(Tensor(name, "FP32", np.array([v], dtype=np.float32)))
        if self.use_textline_orientation is not None:
            out.append(Tensor("use_textline_orientation", "BOOL",
                              np.array([bool(self.use_textline_orientation)], dtype=np.bool_)))
        if self.text_rec_score_thresh is not None:
            out.append(Tensor("text_rec_score_thresh", "FP32",
                              np.array([self.text_rec_score_thresh], dtype=np.float32)))
        for name in _BOOLEANS[1:]:
            flag = getattr(self, name)
            if flag is not None:
                out.append(Tensor(name, "BOOL", np.array([bool(flag)], dtype=np.bool_)))
        return out


def _bytes_array(items: Sequence[bytes]) -> NDArray[Any]:
    arr = np.empty(len(items), dtype=np.object_)
    for i, item in enumerate(items):
        arr[i] = item
    return arr


def build_tensors(images: Sequence[bytes], params: OcrParams) -> list[Tensor]:
    """All input tensors of one request: ``image_bytes`` [N] then the set parameters."""
    if not images:
        raise OcrInvalidInputError("no images to send")
    return [Tensor(IMAGE_INPUT, "BYTES", _bytes_array(images)), *params.to_tensors()]
