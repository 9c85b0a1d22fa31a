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


def set_defaults(name: str) -> dict[str, str]:
    """The set's defaults: config.pbtxt parameter values as MODEL.KEY -> value (notes left out)."""
    return {k: v for k, v in model_set(name).get("config", {}).items() if not k.startswith("_")}


def describe_sets() -> str:
    """Each set, its description and its request defaults (the default_* parameters), for --help."""
    lines = ["model sets (server/ocr_server/models.json) and their request defaults:"]
    for name in model_set_names():
        mark = " (default)" if name == default_model_set() else ""
        lines.append(f"  {name}{mark}: {model_set(name)['description']}")
        defaults = {k.split(".", 1)[1].removeprefix("default_"): v for k, v in set_defaults(name).items()
                    if k.startswith("det_preprocess.default_")}
        lines.append("      " + ", ".join(f"{k}={v}" for k, v in defaults.items()))
    return "\n".join(lines)
