"""Build, check and gate the FP16 TensorRT engines of the GPU target.

`tensorrt` (and numpy / onnxruntime, used by the FP16 gate) are imported lazily inside the
functions that need them, so `--dry-run`, `check` and `preflight` work on machines without them.

    python -m trt_build build --model-set v4 [--dry-run]
    python -m trt_build check --engines build/engines --model-set v4
    python -m trt_build preflight --engines build/engines --model-set v4
"""
from __future__ import annotations

from trt_build.layout import MODEL_SETS, RUNTIME_MODELS, repo_root
from trt_build.manifest import EngineManifest, EngineMismatchError, check_manifest
from trt_build.profiles import ModelProfile, Profiles, load_profiles

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
