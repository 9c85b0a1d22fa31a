"""Checks run before tritonserver starts on the GPU target (scripts/serve.sh --gpu, docker entrypoint).

`check_engines` is static (files, hashes, manifest vs the given TensorRT/GPU); `preflight` adds the
machine facts (GPU present, TensorRT installed) and fails fast with a message saying what to do.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ocr_server.engines.environment import EnvironmentError_, gpu_info, tensorrt_version
from ocr_server.engines.layout import RUNTIME_MODELS, engine_dir_for
from ocr_server.engines.manifest import EngineManifest, EngineMismatchError, check_manifest, sha256_file
from ocr_server.engines.profiles import Profiles

__all__ = ["PreflightError", "PreflightReport", "check_engines", "preflight"]


class PreflightError(RuntimeError):
    """The GPU target cannot start here; the message says why and how to fix it."""


@dataclass(frozen=True)
class PreflightReport:
    gpu_name: str
    compute_capability: str
    tensorrt_version: str
    engine_dir: Path
    manifest: EngineManifest

    def summary(self) -> str:
        precisions = ", ".join(f"{m} {e.precision}" for m, e in self.manifest.models.items())
        return (f"GPU {self.gpu_name} (compute {self.compute_capability}), TensorRT {self.tensorrt_version}; "
                f"engines {self.manifest.model_set} in {self.engine_dir} ({precisions}), built "
                f"{self.manifest.created_utc or '?'}")


def check_engines(engines: Path, model_set: str, trt_version: str, gpu_name: str, compute_capability: str,
                  profiles: Profiles | None = None, models_dir: Path | None = None,
                  allow_other_gpu_model: bool = False) -> EngineManifest:
    """Raise EngineMismatchError unless the engine set is complete, intact, current and built for this machine."""
    directory = engine_dir_for(Path(engines), model_set)
    rebuild = f"rebuild with scripts/build_engines.sh --model-set {model_set}"
    manifest = EngineManifest.load(directory)
    if manifest.model_set != model_set:
        raise EngineMismatchError(f"{directory} holds engines for model set {manifest.model_set}, not {model_set}: "
                                  f"{rebuild}")
    check_manifest(manifest, trt_version, gpu_name, compute_capability,
                   allow_other_gpu_model=allow_other_gpu_model)
    missing = [m for m in RUNTIME_MODELS if m not in manifest.models]
    if missing:
        raise EngineMismatchError(f"the manifest in {directory} lacks {missing}: {rebuild}")
    for model, entry in manifest.models.items():
        plan = directory / entry.plan
        if not plan.exists():
            raise EngineMismatchError(f"{plan} is missing: {rebuild}")
        if entry.plan_sha256 and sha256_file(plan) != entry.plan_sha256:
            raise EngineMismatchError(f"{plan} does not match its manifest (partial copy or other build): {rebuild}")
        if models_dir is not None:
            onnx = Path(models_dir) / model_set / Path(entry.onnx).name
            if onnx.exists() and sha256_file(onnx) != entry.onnx_sha256:
                raise EngineMismatchError(f"{onnx} changed since {model} was built (the engine would run the old "
                                          f"weights): {rebuild}")
    if profiles is not None and manifest.profiles_sha256 and manifest.profiles_sha256 != profiles.sha256:
        raise EngineMismatchError(f"{profiles.path} changed since the engines were built (shape limits and "
                                  f"max_batch_size must match the engines): {rebuild}")
    return manifest


def preflight(engines: Path, model_set: str, profiles: Profiles | None = None, models_dir: Path | None = None,
              allow_other_gpu_model: bool = False) -> PreflightReport:
    """GPU present, TensorRT present, engines built for both: or PreflightError saying what is missing."""
    try:
        gpu = gpu_info()
        trt_version, _ = tensorrt_version()
    except EnvironmentError_ as exc:
        raise PreflightError(str(exc)) from exc
    try:
        manifest = check_engines(engines, model_set, trt_version, gpu.name, gpu.compute_capability, profiles,
                                 models_dir, allow_other_gpu_model)
    except EngineMismatchError as exc:
        raise PreflightError(str(exc)) from exc
    return PreflightReport(gpu.name, gpu.compute_capability, trt_version, engine_dir_for(Path(engines), model_set),
                           manifest)
