"""Engine manifest: what an engine set was built from and for, and the check that refuses mismatches.

`build/engines/<set>/manifest.json` records the model set, each ONNX file's SHA-256, the TensorRT
version, GPU name and compute capability, precision, profiles and the FP16-gate figures. A TensorRT
plan only loads on the TensorRT version and GPU architecture it was built with, so the server's
preflight calls `check_manifest` and refuses to start with a message that says how to rebuild.
"""
from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["EngineManifest", "ModelEntry", "EngineMismatchError", "check_manifest", "normalize_trt_version",
           "normalize_compute_capability", "sha256_file", "MANIFEST_NAME"]

MANIFEST_NAME = "manifest.json"
FORMAT = 1


class EngineMismatchError(RuntimeError):
    """The engines cannot run here (other TensorRT / GPU, missing or stale files)."""


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def normalize_trt_version(version: str) -> str:
    """'10.4.0.26' / '10.4.0' / '10.4.0.26-1+cuda12.6' -> '10.4.0' (plans are bound to major.minor.patch)."""
    nums = re.findall(r"\d+", str(version))
    if len(nums) < 2:
        raise ValueError(f"not a TensorRT version: {version!r}")
    return ".".join((nums + ["0"])[:3])


def normalize_compute_capability(cc: Any) -> str:
    """'7.5' / 'sm_75' / '75' / (7, 5) -> '7.5'."""
    if isinstance(cc, (tuple, list)):
        return f"{int(cc[0])}.{int(cc[1])}"
    text = str(cc).strip().lower().removeprefix("sm_").removeprefix("sm")
    if "." in text:
        major, minor = text.split(".", 1)
        return f"{int(major)}.{int(minor)}"
    if text.isdigit() and len(text) >= 2:
        return f"{int(text[:-1])}.{int(text[-1])}"
    raise ValueError(f"not a compute capability: {cc!r}")


def sm(cc: str) -> str:
    """'7.5' -> 'sm_75'."""
    return "sm_" + normalize_compute_capability(cc).replace(".", "")


@dataclass
class ModelEntry:
    """One engine of the set."""

    onnx: str
    onnx_sha256: str
    plan: str                       # relative to the manifest's directory
    plan_sha256: str = ""
    plan_bytes: int = 0
    precision: str = "fp16"         # fp16 | fp16+fp32-layers | fp32
    fp32_layers: list[str] = field(default_factory=list)
    profile: dict[str, Any] = field(default_factory=dict)
    build_seconds: float = 0.0
    builder: str = ""               # trtexec | python
    gate: dict[str, Any] = field(default_factory=dict)


@dataclass
class EngineManifest:
    """The manifest of one engine set (build/engines/<set>/manifest.json)."""

    model_set: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    models: dict[str, ModelEntry]
    profiles_sha256: str = ""
    created_utc: str = ""
    format: int = FORMAT

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=False) + "\n"

    def write(self, directory: Path) -> Path:
        path = Path(directory) / MANIFEST_NAME
        path.write_text(self.to_json())
        return path

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EngineManifest:
        try:
            models = {name: ModelEntry(**entry) for name, entry in data["models"].items()}
            return cls(model_set=data["model_set"], tensorrt_version=data["tensorrt_version"],
                       gpu_name=data["gpu_name"], compute_capability=data["compute_capability"], models=models,
                       profiles_sha256=data.get("profiles_sha256", ""), created_utc=data.get("created_utc", ""),
                       format=int(data.get("format", FORMAT)))
        except (KeyError, TypeError) as exc:
            raise EngineMismatchError(f"malformed engine manifest ({exc}); rebuild with scripts/build_engines.sh "
                                      f"--model-set {data.get('model_set', 'v4')}") from exc

    @classmethod
    def load(cls, directory: Path) -> EngineManifest:
        path = Path(directory) / MANIFEST_NAME
        if not path.exists():
            raise EngineMismatchError(f"no engine manifest at {path}: build the engines first with "
                                      f"scripts/build_engines.sh --model-set {Path(directory).name}")
        return cls.from_dict(json.loads(path.read_text()))


def check_manifest(manifest: EngineManifest | Mapping[str, Any], running_trt_version: str, gpu_name: str,
                   compute_capability: Any, *, allow_other_gpu_model: bool = False) -> None:
    """Raise EngineMismatchError unless the engines were built for this TensorRT and GPU.

    TensorRT versions are compared on major.minor.patch; the compute capability must be equal;
    the GPU name must be equal too unless `allow_other_gpu_model` (same architecture, other board).
    """
    m = manifest if isinstance(manifest, EngineManifest) else EngineManifest.from_dict(manifest)
    built_trt, run_trt = normalize_trt_version(m.tensorrt_version), normalize_trt_version(running_trt_version)
    built_cc, run_cc = normalize_compute_capability(m.compute_capability), normalize_compute_capability(
        compute_capability)
    name_differs = m.gpu_name.strip() != gpu_name.strip()
    if built_trt != run_trt or built_cc != run_cc or (name_differs and not allow_other_gpu_model):
        raise EngineMismatchError(
            f"engine built for TensorRT {built_trt} on {sm(built_cc)} ({m.gpu_name}), running TensorRT "
            f"{run_trt} on {sm(run_cc)} ({gpu_name}): rebuild with scripts/build_engines.sh --model-set "
            f"{m.model_set} on this machine (inside the same container image that serves them)")
