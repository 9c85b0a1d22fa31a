"""Where things live: repository root, model sets, runtime-model ↔ ONNX-file mapping, default dirs."""
from __future__ import annotations

import os
from pathlib import Path

from ocr_server.manifest import model_set_names
from ocr_server.paths import REPO_ROOT

__all__ = ["MODEL_SETS", "RUNTIME_MODELS", "repo_root", "default_models_dir", "default_engines_dir",
           "default_profiles_path", "engine_dir_for", "find_evaldata"]

MODEL_SETS = tuple(model_set_names())
# runtime model name (Triton) -> ONNX file role in build/models/<set>/<role>.onnx
RUNTIME_MODELS = {"det_model": "det", "cls_model": "cls", "rec_model": "rec", "ori_model": "ori"}


def repo_root() -> Path:
    """The repository root (where build/, model_repository/ and python_backend/ are)."""
    return REPO_ROOT


def default_models_dir() -> Path:
    """Fetched, renamed ONNX files: build/models/<set>/{det,cls,rec}.onnx (server/ocr_server/fetch_models.py)."""
    return repo_root() / "build" / "models"


def default_engines_dir() -> Path:
    """Engine output root: build/engines/<set>/<model>/model.plan + build/engines/<set>/manifest.json."""
    return repo_root() / "build" / "engines"


def default_profiles_path() -> Path:
    """The single source of the GPU shape limits and optimization profiles."""
    return repo_root() / "model_repository" / "gpu" / "profiles.json"


def engine_dir_for(engines: Path, model_set: str) -> Path:
    """Accept either the engines root (build/engines) or a set directory (build/engines/v4)."""
    if (engines / "manifest.json").exists() or engines.name == model_set:
        return engines
    return engines / model_set


def find_evaldata() -> Path | None:
    """The evaluation images.

    First of: $OCR_EVALDATA, $OCR_SHARED_DIR/evaldata, <repo>/shared/evaldata, <repo>/../shared/evaldata.
    """
    candidates = [os.environ.get("OCR_EVALDATA", "")]
    if os.environ.get("OCR_SHARED_DIR"):
        candidates.append(os.path.join(os.environ["OCR_SHARED_DIR"], "evaldata"))
    root = repo_root()
    candidates += [str(root / "shared" / "evaldata"), str(root.parent / "shared" / "evaldata")]
    for c in candidates:
        if c and Path(c).is_dir():
            return Path(c)
    return None
