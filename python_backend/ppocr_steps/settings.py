"""Server-side settings, parsed once from a model's config.pbtxt `parameters`."""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping, TypeVar

from ppocr_steps.params import OcrParams, parse_params

__all__ = ["PipelineSettings", "settings_from_parameters", "defaults_from_parameters"]

T = TypeVar("T")


@dataclass(frozen=True)
class PipelineSettings:
    """Tunables that are not per request. Names match config.pbtxt `parameters` keys."""

    # input limits
    max_images_per_request: int = 8
    max_image_bytes: int = 32 * 1024 * 1024
    max_image_pixels: int = 50_000_000
    min_image_side: int = 8
    max_batch_pixels: int = 33_554_432
    # source-image preparation (RapidOCR/PaddleX behaviour before detection)
    max_side_limit: int = 2000
    min_side_len: int = 30
    letterbox_min_height: int = 30
    letterbox_max_wh_ratio: float = 8.0
    # DB post-processing
    max_candidates: int = 1000
    use_dilation: bool = True
    score_mode: str = "fast"
    min_box_size: int = 3
    # classification / recognition
    cls_thresh: float = 0.9
    cls_verify_flips: bool = True
    cls_batch_size: int = 6
    rec_batch_size: int = 6
    rec_batch_total_width: int = 0
    rec_image_height: int = 48
    rec_min_width: int = 320
    rec_max_width: int = 3200
    rec_width_multiple: int = 1
    max_boxes_per_request: int = 2000
    max_crop_pixels: int = 50_000_000


def _coerce(value: str, like: Any) -> Any:
    if isinstance(like, bool):
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"not a boolean: {value!r}")
    return type(like)(value)


def _from_parameters(cls: type[T], params: Mapping[str, str], ignore: set[str]) -> T:
    defaults = cls()
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    values = {}
    for key, raw in params.items():
        if key in known:
            values[key] = _coerce(raw, getattr(defaults, key))
        elif key not in ignore:
            raise ValueError(f"unknown config parameter '{key}' (known: {', '.join(sorted(known | ignore))})")
    return cls(**values)


def settings_from_parameters(params: Mapping[str, str], ignore: set[str] | None = None) -> PipelineSettings:
    """Build settings from `{key: string_value}`; unknown keys are an error unless in `ignore`."""
    ignore = (ignore or set()) | {f"default_{f.name}" for f in fields(OcrParams)}
    s = _from_parameters(PipelineSettings, params, ignore)
    if s.score_mode not in ("fast", "slow"):
        raise ValueError(f"score_mode must be 'fast' or 'slow', got {s.score_mode!r}")
    return s


def defaults_from_parameters(params: Mapping[str, str]) -> OcrParams:
    """Per-request defaults from `default_<name>` keys (validated like a request)."""
    raw: dict[str, Any] = {}
    base = OcrParams()
    for f in fields(OcrParams):
        key = f"default_{f.name}"
        if key in params:
            raw[f.name] = _coerce(params[key], getattr(base, f.name))
    return parse_params(raw, base)
