"""Build, check and gate the FP16 TensorRT engines of the GPU target.

`tensorrt` (and numpy / onnxruntime, used by the FP16 gate) are imported lazily inside the
functions that need them, so `--dry-run`, `check` and `preflight` work on machines without them.

    ocr-engines build --model-set v4 [--dry-run]
    ocr-engines check --engines build/engines --model-set v4
    ocr-engines preflight --engines build/engines --model-set v4
"""
from __future__ import annotations

from ocr_server.engines.layout import MODEL_SETS, RUNTIME_MODELS, repo_root
from ocr_server.engines.manifest import EngineManifest, EngineMismatchError, check_manifest
from ocr_server.engines.profiles import ModelProfile, Profiles, load_profiles

__all__ = [
    "MODEL_SETS",
    "RUNTIME_MODELS",
    "EngineManifest",
    "EngineMismatchError",
    "ModelProfile",
    "Profiles",
    "check_manifest",
    "load_profiles",
    "repo_root",
]
