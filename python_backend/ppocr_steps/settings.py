"""Server-side settings, parsed once from a model's config.pbtxt `parameters`.

The dataclasses carry no defaults: config.pbtxt (plus the model-set manifest and --param, applied at
assembly) is the one source of every value, and a missing key is an error naming it.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, TypeVar, get_type_hints

from ppocr_steps.params import OcrParams, parse_params

__all__ = ["PreprocessSettings", "PostprocessSettings", "RecognitionSettings", "PipelineSettings", "InputLimits",
           "STEP_SETTINGS", "settings_from_parameters", "defaults_from_parameters",
           "pipeline_settings_from_parameters", "limits_from_parameters", "INPUT_LIMIT_KEYS"]

T = TypeVar("T")


@dataclass(frozen=True)
class PreprocessSettings:
    """det_preprocess: input limits and source-image preparation (RapidOCR/PaddleX behaviour)."""

    max_images_per_request: int
    max_image_bytes: int
    max_image_pixels: int
    min_image_side: int
    max_batch_pixels: int
    # PDF documents in image_bytes (ppocr_steps.pdf): render resolution and limits
    pdf_dpi: float
    pdf_max_pages: int
    pdf_max_document_pages: int
    pdf_max_page_pixels: int
    pdf_render_timeout_s: float
    pdf_render_max_memory_mb: int
    max_side_limit: int
    min_side_len: int
    letterbox_min_height: int
    letterbox_max_wh_ratio: float
    # page orientation classifier (ori_model) calls
    ori_batch_size: int


@dataclass(frozen=True)
class PostprocessSettings:
    """det_postprocess: DB post-processing."""

    max_candidates: int
    use_dilation: bool
    score_mode: str
    min_box_size: int
    max_boxes_per_request: int


@dataclass(frozen=True)
class RecognitionSettings:
    """rec_pipeline: classification and recognition batching."""

    cls_thresh: float
    cls_verify_flips: bool
    cls_batch_size: int
    rec_batch_size: int
    rec_batch_total_width: int
    rec_image_height: int
    rec_min_width: int
    rec_max_width: int
    rec_width_multiple: int
    max_crop_pixels: int
    max_request_seconds: float  # the most one request may hold the step (ppocr_steps.deadline)


@dataclass(frozen=True)
class PipelineSettings(RecognitionSettings, PostprocessSettings, PreprocessSettings):
    """Every step's settings, for running the whole pipeline in one process (bench, engine tooling, tests)."""


@dataclass(frozen=True)
class InputLimits:
    """The `ocr` path's limits that every later step and CPU runtime model also enforces on tensors a
    client sends it directly (ppocr_steps.validate). Each is set in one step's config.pbtxt and copied
    into the others' by the assembler (SHARED_LIMITS in server/ocr_server/assemble.py)."""

    max_images_per_request: int
    max_image_pixels: int
    min_image_side: int
    max_side_limit: int
    min_side_len: int
    max_batch_pixels: int
    max_boxes_per_request: int
    rec_image_height: int
    rec_max_width: int


INPUT_LIMIT_KEYS = frozenset(f.name for f in fields(InputLimits))


# Which step's config.pbtxt holds which settings (python_backend/models/<step>/config.pbtxt).
STEP_SETTINGS: dict[str, type] = {"det_preprocess": PreprocessSettings, "det_postprocess": PostprocessSettings,
                                  "rec_pipeline": RecognitionSettings}


def _coerce(key: str, value: str, kind: Any) -> Any:
    if kind is bool:
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"config parameter '{key}': not a boolean: {value!r}")
    try:
        return kind(value)
    except ValueError:
        raise ValueError(f"config parameter '{key}': not a{'n' if kind is int else ''} {kind.__name__}: "
                         f"{value!r}") from None


def settings_from_parameters(params: Mapping[str, str], cls: type[T], ignore: set[str] | None = None) -> T:
    """Build `cls` from `{key: string_value}`. Every field is required; unknown keys are an error unless
    in `ignore` (`default_<name>` per-request defaults are always allowed)."""
    types = get_type_hints(cls)
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    allowed = (ignore or set()) | {f"default_{f.name}" for f in fields(OcrParams)}
    unknown = sorted(set(params) - known - allowed)
    if unknown:
        raise ValueError(f"unknown config parameter(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    missing = sorted(known - set(params))
    if missing:
        raise ValueError(f"config parameter(s) {', '.join(missing)} missing: {cls.__name__} needs them in the "
                         "model's config.pbtxt `parameters`")
    settings = cls(**{key: _coerce(key, params[key], types[key]) for key in known})
    score_mode = getattr(settings, "score_mode", "fast")
    if score_mode not in ("fast", "slow"):
        raise ValueError(f"score_mode must be 'fast' or 'slow', got {score_mode!r}")
    return settings


def defaults_from_parameters(params: Mapping[str, str]) -> OcrParams:
    """Per-request defaults from the `default_<name>` keys (every one required; validated like a request)."""
    types = get_type_hints(OcrParams)
    missing = [f"default_{f.name}" for f in fields(OcrParams) if f"default_{f.name}" not in params]
    if missing:
        raise ValueError(f"config parameter(s) {', '.join(missing)} missing: the per-request defaults go in "
                         "det_preprocess's config.pbtxt `parameters`")
    raw = {f.name: _coerce(f"default_{f.name}", params[f"default_{f.name}"], types[f.name])
           for f in fields(OcrParams)}
    return parse_params(raw, OcrParams(**raw))


def pipeline_settings_from_parameters(params: Mapping[str, str]) -> PipelineSettings:
    """PipelineSettings from the merged `parameters` of all steps (keys that are not settings are skipped)."""
    known = {f.name for f in fields(PipelineSettings)}
    return settings_from_parameters({k: v for k, v in params.items() if k in known}, PipelineSettings)


def limits_from_parameters(params: Mapping[str, str]) -> InputLimits:
    """InputLimits from a model's `parameters` (every limit required; the other keys are skipped)."""
    return settings_from_parameters({k: v for k, v in params.items() if k in INPUT_LIMIT_KEYS}, InputLimits)
