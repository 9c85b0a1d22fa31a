"""What the public front lets through to Triton: pure checks shared by the gRPC and HTTP fronts.

Triton's own frontends crash (SIGSEGV, SIGFPE) on some well-framed but hostile requests (docs/front.md),
so the front admits only the shape of request the ``ocr`` model serves: known inputs and outputs with
their datatypes and ranks, bounded element counts, consistent tensor framing and a whitelist of
parameters. Everything else is refused here, before a byte reaches Triton.
"""
from __future__ import annotations

import math
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np

__all__ = [
    "FIXED_SIZES",
    "Limits",
    "ModelSpec",
    "Refusal",
    "Refused",
    "TensorSpec",
    "check_bytes_framing",
    "check_parameters",
    "check_shape",
    "check_tensor_bytes",
    "json_depth",
    "model_spec_from_metadata",
]

FIXED_SIZES: dict[str, int] = {
    "BOOL": 1, "UINT8": 1, "UINT16": 2, "UINT32": 4, "UINT64": 8, "INT8": 1, "INT16": 2, "INT32": 4,
    "INT64": 8, "FP16": 2, "FP32": 4, "FP64": 8, "BF16": 2,
}

# parameters the client library (tritonclient) may send; anything else (classification, shared memory,
# sequence ids, ...) is an extension this server does not offer
REQUEST_PARAMETERS: dict[str, type] = {"priority": int, "timeout": int, "binary_data_output": bool}
HTTP_INPUT_PARAMETERS: dict[str, type] = {"binary_data_size": int}
HTTP_OUTPUT_PARAMETERS: dict[str, type] = {"binary_data": bool}


class Refusal(Enum):
    """Why a request is refused; each front maps it to its own status code."""

    INVALID = "invalid_argument"
    NOT_FOUND = "not_found"
    TOO_LARGE = "too_large"
    UNAVAILABLE = "unavailable"
    UNAUTHENTICATED = "unauthenticated"


class Refused(Exception):
    """A request the front does not forward; the message says what to fix."""

    def __init__(self, kind: Refusal, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def invalid(message: str) -> Refused:
    return Refused(Refusal.INVALID, message)


@dataclass(frozen=True)
class Limits:
    max_request_bytes: int = 64 << 20   # whole message / body
    max_json_depth: int = 8             # the deepest legitimate KServe JSON is 5 levels
    max_elements: int = 4096            # elements of one tensor
    max_tensors: int = 16               # inputs or outputs in one request
    max_string: int = 256               # ids, names, parameter keys and string parameter values


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    shape: tuple[int, ...]  # -1: any size


@dataclass(frozen=True)
class ModelSpec:
    name: str
    versions: tuple[str, ...]
    inputs: Mapping[str, TensorSpec]
    outputs: Mapping[str, TensorSpec]

    def input(self, name: object) -> TensorSpec:
        spec = self.inputs.get(name) if isinstance(name, str) else None
        if spec is None:
            raise invalid(f"unknown input {_show(name)}; model '{self.name}' has inputs {sorted(self.inputs)}")
        return spec

    def output(self, name: object) -> TensorSpec:
        spec = self.outputs.get(name) if isinstance(name, str) else None
        if spec is None:
            raise invalid(f"unknown output {_show(name)}; model '{self.name}' has outputs {sorted(self.outputs)}")
        return spec

    def check_version(self, version: str) -> None:
        if version and version not in self.versions:
            raise Refused(Refusal.NOT_FOUND, f"model '{self.name}' has no version {_show(version)}")


def model_spec_from_metadata(meta: Mapping[str, Any]) -> ModelSpec:
    """A ModelSpec from KServe model metadata (the JSON form: name, versions, inputs, outputs)."""
    def tensors(items: list[Mapping[str, Any]]) -> dict[str, TensorSpec]:
        return {t["name"]: TensorSpec(t["name"], t["datatype"], tuple(int(d) for d in t["shape"])) for t in items}

    return ModelSpec(meta["name"], tuple(meta.get("versions", ())), tensors(meta["inputs"]), tensors(meta["outputs"]))


def _show(value: object, limit: int = 64) -> str:
    """A client value quoted for an error message: repr, truncated (control characters stay escaped)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "...'"


def check_string(value: object, what: str, limits: Limits) -> str:
    if not isinstance(value, str):
        raise invalid(f"{what} must be a string, got {type(value).__name__}")
    if len(value) > limits.max_string:
        raise invalid(f"{what} is longer than {limits.max_string} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise invalid(f"{what} is not valid Unicode (lone surrogate)") from None
    return value


def check_parameters(params: Mapping[str, object], allowed: Mapping[str, type], where: str, limits: Limits) -> None:
    """Only the `allowed` parameters, each of its type (bool is not an int here)."""
    for key, value in params.items():
        check_string(key, f"a parameter name of {where}", limits)
        kind = allowed.get(key)
        if kind is None:
            extension = ("the classification extension" if key == "classification" else
                         "shared memory" if key.startswith("shared_memory") else f"parameter {_show(key)}")
            raise invalid(f"{where}: {extension} is not supported by this server")
        if type(value) is not kind:
            raise invalid(f"{where}: parameter '{key}' must be {kind.__name__}, got {type(value).__name__}")
        if kind is int and not 0 <= value < 2 ** 63:  # type: ignore[operator]
            raise invalid(f"{where}: parameter '{key}' is out of range")


def check_shape(spec: TensorSpec, shape: object, datatype: object, limits: Limits) -> int:
    """The element count of a tensor `shape` for input `spec`; its datatype and rank must match."""
    if datatype != spec.datatype:
        raise invalid(f"input '{spec.name}' has datatype {spec.datatype}, got {_show(datatype)}")
    if not isinstance(shape, (list, tuple)) or not all(type(d) is int for d in shape):
        raise invalid(f"input '{spec.name}': shape must be a list of integers")
    if len(shape) != len(spec.shape):
        raise invalid(f"input '{spec.name}' has {len(spec.shape)} dimension(s) {list(spec.shape)}, got {list(shape)}")
    for got, want in zip(shape, spec.shape, strict=True):
        if got < 0 or (want >= 0 and got != want):
            raise invalid(f"input '{spec.name}' must have shape {list(spec.shape)}, got {list(shape)}")
    count = math.prod(shape)
    if count > limits.max_elements:
        raise invalid(f"input '{spec.name}' has {count} elements; at most {limits.max_elements} are served")
    return count


def check_bytes_framing(buf: bytes | memoryview, count: int, name: str) -> None:
    """A BYTES tensor in raw form: exactly `count` elements, each a 4-byte little-endian length and its bytes."""
    view = memoryview(buf)
    pos, n, size = 0, 0, len(view)
    while pos < size:
        if pos + 4 > size:
            raise invalid(f"input '{name}': truncated element length at byte {pos}")
        (length,) = struct.unpack_from("<I", view, pos)
        pos += 4 + length
        n += 1
        if pos > size:
            raise invalid(f"input '{name}': element {n - 1} claims {length} bytes past the end of the tensor")
        if n > count:
            break
    if n != count:
        raise invalid(f"input '{name}': its data holds {n} or more element(s), its shape says {count}")


def check_tensor_bytes(spec: TensorSpec, buf: bytes | memoryview, count: int) -> None:
    """Raw tensor data agrees with the shape: framing for BYTES, exact byte size for fixed-size types."""
    if spec.datatype == "BYTES":
        check_bytes_framing(buf, count, spec.name)
        return
    want = count * FIXED_SIZES[spec.datatype]
    if len(buf) != want:
        raise invalid(f"input '{spec.name}': {len(buf)} bytes of data, its shape and datatype need {want}")


_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_OPEN, _CLOSE = np.frombuffer(b"[{", np.uint8), np.frombuffer(b"]}", np.uint8)


def json_depth(data: bytes) -> int:
    """The deepest nesting of arrays and objects in `data`, found without a recursive parser.

    Strings are blanked first so brackets inside them do not count; malformed JSON may give any
    depth, and the parser that runs next (only when the depth is small) rejects it."""
    stripped = _STRING.sub(b'""', data)
    arr = np.frombuffer(stripped, np.uint8)
    steps = np.isin(arr, _OPEN).astype(np.int32) - np.isin(arr, _CLOSE).astype(np.int32)
    return int(np.cumsum(steps).max(initial=0))
