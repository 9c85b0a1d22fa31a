"""Request parameters and the input tensors of the ``ocr`` ensemble.

:class:`OcrParams` is the one definition of the per-request knobs: the client methods, the CLI
flags and the request tensors are all derived from its fields and their metadata.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from ._errors import OcrInvalidInputError

__all__ = ["IMAGE_INPUT", "LIMIT_TYPES", "OcrParams", "ParamSpec", "Tensor", "build_tensors", "param_specs"]

IMAGE_INPUT = "image_bytes"
LIMIT_TYPES = ("min", "max")
_NUMPY_TYPES: dict[str, Any] = {"INT32": np.int32, "FP32": np.float32, "BOOL": np.bool_, "BYTES": np.object_}


class Tensor(NamedTuple):
    """A named input tensor, protocol-neutral: Triton datatype + numpy data."""

    name: str
    datatype: str
    data: NDArray[Any]


@dataclass(frozen=True)
class ParamSpec:
    """How one parameter travels (Triton datatype) and how it is checked and documented."""

    datatype: str  # INT32 | FP32 | BOOL | BYTES
    help: str
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    positive: bool = False


def _param(datatype: str, help: str, metavar: str | None = None, choices: tuple[str, ...] | None = None,
           positive: bool = False) -> Any:
    spec = ParamSpec(datatype, help, metavar, choices, positive)
    return dataclasses.field(default=None, metadata={"spec": spec})


@dataclass(frozen=True)
class OcrParams:
    """Optional per-request knobs (PaddleOCR names); None leaves the server default."""

    limit_side_len: int | None = _param(
        "INT32", "detection resize target for the image side chosen by limit_type", "N", positive=True)
    limit_type: str | None = _param(
        "BYTES", "min: shortest side >= N; max: longest side <= N", choices=LIMIT_TYPES)
    thresh: float | None = _param("FP32", "DB binarisation threshold", "F")
    box_thresh: float | None = _param("FP32", "DB box score threshold", "F")
    unclip_ratio: float | None = _param("FP32", "DB box expansion", "F", positive=True)
    use_textline_orientation: bool | None = _param("BOOL", "0/180 degree text line classifier")
    text_rec_score_thresh: float | None = _param("FP32", "drop lines recognised with a lower score", "F")
    use_doc_orientation_classify: bool | None = _param(
        "BOOL", "turn pages lying at 90/180/270 degrees upright before reading them")
    use_doc_unwarping: bool | None = _param("BOOL", "unwarp curved pages (not available: the server refuses true)")

    def __post_init__(self) -> None:
        self.validate()

    @classmethod
    def merged(cls, params: OcrParams | None, overrides: Mapping[str, Any]) -> OcrParams:
        """``params`` (or the defaults) with the keyword ``overrides`` applied; unknown names raise TypeError."""
        base = params if params is not None else cls()
        if not isinstance(base, cls):
            raise TypeError(f"params must be an OcrParams, got {type(base).__name__}")
        if not overrides:
            return base
        unknown = sorted(set(overrides) - {s.name for s in param_specs()})
        if unknown:
            raise TypeError(f"unexpected OCR parameter(s) {', '.join(unknown)}; "
                            f"known: {', '.join(s.name for s in param_specs())}")
        return dataclasses.replace(base, **overrides)

    def validate(self) -> None:
        """Light client-side checks; the server remains the authority."""
        for p in param_specs():
            _check(p.name, getattr(self, p.name), p.spec)

    def as_kwargs(self) -> dict[str, Any]:
        """The parameters that are set, as keyword arguments for ``ocr()``."""
        return {p.name: getattr(self, p.name) for p in param_specs() if getattr(self, p.name) is not None}

    def to_tensors(self) -> list[Tensor]:
        """One [1]-shaped tensor per parameter that is set, in declaration order."""
        out: list[Tensor] = []
        for p in param_specs():
            v = getattr(self, p.name)
            if v is None:
                continue
            if p.spec.datatype == "BYTES":
                out.append(Tensor(p.name, "BYTES", _bytes_array([str(v).encode()])))
            else:
                dtype = _NUMPY_TYPES[p.spec.datatype]
                out.append(Tensor(p.name, p.spec.datatype, np.array([v], dtype=dtype)))
        return out


class _Field(NamedTuple):
    name: str
    spec: ParamSpec


def param_specs() -> list[_Field]:
    """Every field of :class:`OcrParams` with its :class:`ParamSpec`, in declaration order."""
    return [_Field(f.name, f.metadata["spec"]) for f in fields(OcrParams)]


def _check(name: str, v: Any, spec: ParamSpec) -> None:
    if v is None:
        return
    if spec.datatype == "INT32":
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or (spec.positive and v <= 0):
            raise OcrInvalidInputError(f"{name} must be a {'positive ' if spec.positive else ''}int, got {v!r}")
    elif spec.datatype == "FP32":
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.floating, np.integer)) \
                or not math.isfinite(float(v)):
            raise OcrInvalidInputError(f"{name} must be a finite number, got {v!r}")
        if spec.positive and v <= 0:
            raise OcrInvalidInputError(f"{name} must be > 0, got {v!r}")
    elif spec.datatype == "BOOL":
        if not isinstance(v, (bool, np.bool_)):
            raise OcrInvalidInputError(f"{name} must be a bool, got {v!r}")
    elif spec.choices is not None and v not in spec.choices:
        raise OcrInvalidInputError(f"{name} must be one of {spec.choices}, got {v!r}")
    elif not isinstance(v, str):
        raise OcrInvalidInputError(f"{name} must be a str, got {v!r}")


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
