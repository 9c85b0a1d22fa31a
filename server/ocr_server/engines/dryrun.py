"""`--dry-run`: print the exact build commands (no TensorRT, no GPU, ONNX files not needed)."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ocr_server.engines.commands import BuildSpec, format_command, trtexec_argv
from ocr_server.engines.manifest import sha256_file
from ocr_server.engines.precision import sensitive_onnx_nodes
from ocr_server.engines.profiles import Profiles

__all__ = ["render_plan"]


def _rel(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


def _rel_spec(spec: BuildSpec) -> BuildSpec:
    from dataclasses import replace  # noqa: PLC0415
    cache = Path(_rel(spec.timing_cache)) if spec.timing_cache else None
    return replace(spec, onnx=Path(_rel(spec.onnx)), plan=Path(_rel(spec.plan)), timing_cache=cache)


def render_plan(specs: Sequence[BuildSpec], profiles: Profiles, trtexec: str | None, builder: str,
                gate: str, gpu_target: str | None, show_fallback: bool = False) -> str:
    """The build plan as a shell-like script: comments + one trtexec command per engine."""
    first = specs[0]
    set_dir = first.plan.parent.parent
    used = (f"trtexec ({trtexec})" if builder == "trtexec" else
            "TensorRT Python API (trtexec not found; it applies the same settings as the commands below)")
    lines = [
        f"# TensorRT engine build plan: model set {first.model_set}, precision {first.precision}",
        f"# builder: {used}",
        f"# profiles: {_rel(profiles.path)} (sha256 {profiles.sha256[:16]}...)",
        f"# output: {_rel(set_dir)}/<model>/model.plan + {_rel(set_dir)}/manifest.json",
        f"# FP16 gate: {gate}",
    ]
    if gpu_target:
        lines.append(f"# GPU target: compute capability {gpu_target} (the build refuses to run on another GPU)")
    exe = trtexec or "trtexec"
    for spec in specs:
        p = spec.profile
        status = (f"sha256 {sha256_file(spec.onnx)}" if spec.onnx.exists() else
                  f"not fetched yet: run ocr-fetch-models --model-set {spec.model_set}")
        lines += ["", f"# {spec.model}: {_rel(spec.onnx)} ({status})",
                  f"#   {p.input} {p.dtype} {p.layout}: min {list(p.min)} opt {list(p.opt)} max {list(p.max)}"
                  f" -> {', '.join(p.outputs)}",
                  f"mkdir -p {_rel(spec.plan.parent)}",
                  format_command(trtexec_argv(_rel_spec(spec), exe))]
        if spec.precision == "fp16":
            names = sensitive_onnx_nodes(spec.onnx) if spec.onnx.exists() else []
            lines.append(f"# if the FP16 gate fails for {spec.model}: rebuild with {len(names) or 'the'} "
                         "FP16-sensitive layers (LayerNorm/Softmax/Reduce/Pow/Sqrt) pinned to FP32 and re-check")
            if show_fallback and names:
                lines.append(format_command(trtexec_argv(_rel_spec(spec.with_fp32_layers(names)), exe)))
    return "\n".join(lines) + "\n"
