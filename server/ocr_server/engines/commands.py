"""The build plan: one BuildSpec per runtime model, and the exact trtexec command for it.

Everything here is plain data and string formatting, so `--dry-run` prints complete commands on a
machine without TensorRT and before the ONNX files are fetched.
"""
from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from ocr_server.engines.layout import RUNTIME_MODELS
from ocr_server.engines.profiles import ModelProfile, Profiles, shape_spec

__all__ = ["BuildSpec", "plan_builds", "trtexec_argv", "format_command", "PRECISIONS"]

PRECISIONS = ("fp16", "fp32")


@dataclass(frozen=True)
class BuildSpec:
    """How to build one engine."""

    model_set: str
    model: str
    onnx: Path
    plan: Path
    profile: ModelProfile
    precision: str = "fp16"
    fp32_layers: tuple[str, ...] = ()   # ONNX node names pinned to FP32 (FP16 fallback)
    pin_sensitive: bool = False         # pin FP16-sensitive layers (names above + layer types)
    workspace_mib: int = 2048
    timing_cache: Path | None = None

    @property
    def log_path(self) -> Path:
        return self.plan.with_name("build.log")

    def with_fp32_layers(self, layers: Sequence[str]) -> BuildSpec:
        """The FP16 fallback: same build with FP16-sensitive layers pinned to FP32."""
        return replace(self, fp32_layers=tuple(layers), pin_sensitive=True)


def plan_builds(model_set: str, profiles: Profiles, models_dir: Path, engines_dir: Path,
                models: Sequence[str] | None = None, precision: str = "fp16", workspace_mib: int = 2048,
                timing_cache: Path | None = None) -> list[BuildSpec]:
    """BuildSpecs for `models` (default all three) of `model_set`; engines go to engines_dir/<set>/<model>/."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    chosen = list(models) if models else list(RUNTIME_MODELS)
    unknown = [m for m in chosen if m not in RUNTIME_MODELS]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; choose from {list(RUNTIME_MODELS)}")
    out_dir = Path(engines_dir) / model_set
    specs = []
    for model in chosen:
        prof = profiles[model]
        specs.append(BuildSpec(model_set, model, Path(models_dir) / model_set / prof.onnx,
                               out_dir / model / "model.plan", prof, precision, (), False, workspace_mib,
                               timing_cache))
    return specs


def trtexec_argv(spec: BuildSpec, trtexec: str = "trtexec", save_to: Path | None = None) -> list[str]:
    """trtexec arguments that build `spec` (build only, no benchmark run)."""
    p = spec.profile
    argv = [trtexec, f"--onnx={spec.onnx}", f"--saveEngine={save_to or spec.plan}"]
    if spec.precision == "fp16":
        argv.append("--fp16")
    argv += [f"--minShapes={p.input}:{shape_spec(p.min)}",
             f"--optShapes={p.input}:{shape_spec(p.opt)}",
             f"--maxShapes={p.input}:{shape_spec(p.max)}",
             f"--memPoolSize=workspace:{spec.workspace_mib}"]  # MiB
    if spec.fp32_layers:
        pins = ",".join(f"{name}:fp32" for name in spec.fp32_layers)
        argv += ["--precisionConstraints=obey", f"--layerPrecisions={pins}", f"--layerOutputTypes={pins}"]
    if spec.timing_cache is not None:
        argv.append(f"--timingCacheFile={spec.timing_cache}")
    argv.append("--skipInference")
    return argv


def format_command(argv: Sequence[str]) -> str:
    """Shell-quoted, one option per line (copy-pasteable)."""
    parts = [shlex.quote(a) for a in argv]
    return " \\\n    ".join(parts)
