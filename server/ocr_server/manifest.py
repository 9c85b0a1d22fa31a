"""The model-set manifest (models.json): the one list of model sets, their files and their defaults."""
from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from ocr_server.paths import MODEL_MANIFEST


@lru_cache(maxsize=1)
def load_manifest() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(MODEL_MANIFEST.read_text())
    return data


def model_set_names() -> list[str]:
    """Every model set the manifest defines, in its order."""
    return list(load_manifest()["sets"])


def default_model_set() -> str:
    """The set `ocr-serve` serves unless told otherwise."""
    name: str = load_manifest()["default_set"]
    return name


def model_set(name: str) -> dict[str, Any]:
    spec: dict[str, Any] = load_manifest()["sets"][name]
    return spec
