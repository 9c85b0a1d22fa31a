"""The served settings, read from the real python_backend/models/*/config.pbtxt (the one source of them).

Unit tests build settings and per-request defaults through these helpers instead of writing values
of their own, so a test runs with what the server runs.
"""
from __future__ import annotations

from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any

from ocr_server import pbtxt

from ppocr_steps.params import OcrParams
from ppocr_steps.settings import PipelineSettings, defaults_from_parameters, pipeline_settings_from_parameters

STEPS_DIR = Path(__file__).resolve().parents[2] / "python_backend" / "models"


@cache
def step_parameters(step: str) -> dict[str, str]:
    """`parameters` of python_backend/models/<step>/config.pbtxt."""
    return pbtxt.parameters(pbtxt.load(STEPS_DIR / step / "config.pbtxt"))


def all_step_parameters() -> dict[str, str]:
    merged: dict[str, str] = {}
    for step in ("det_preprocess", "det_postprocess", "rec_pipeline"):
        merged.update(step_parameters(step))
    return merged


def served_settings(**changes: Any) -> PipelineSettings:
    """Every step's served settings, with `changes` applied on top."""
    return replace(pipeline_settings_from_parameters(all_step_parameters()), **changes)


def served_defaults(**changes: Any) -> OcrParams:
    """The served per-request defaults (det_preprocess `default_*`), with `changes` applied on top."""
    return replace(defaults_from_parameters(step_parameters("det_preprocess")), **changes)
