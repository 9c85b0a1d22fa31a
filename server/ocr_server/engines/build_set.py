"""Build an engine set: build each engine, run the FP16 gate (with FP32 fallback), write the manifest.

An engine only replaces `<model>/model.plan` after it passed the gate; if any model fails, the
set's manifest is removed so that the server refuses to start on a half-updated set.
"""
from __future__ import annotations

import datetime as _dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ocr_server.engines.builder import BuildError, BuildResult, build_with_python, build_with_trtexec
from ocr_server.engines.commands import BuildSpec
from ocr_server.engines.environment import GpuInfo
from ocr_server.engines.fp16_gate import GateResult, Tolerances
from ocr_server.engines.manifest import MANIFEST_NAME, EngineManifest, ModelEntry, normalize_trt_version, sha256_file
from ocr_server.engines.precision import sensitive_onnx_nodes
from ocr_server.engines.profiles import Profiles

__all__ = ["BuildOptions", "build_set", "make_gate", "Gate"]

log = logging.getLogger(__name__)

# (model, plan, onnx) -> GateResult; injected so the orchestration is testable without a GPU
Gate = Callable[[str, Path, Path], GateResult]


@dataclass
class BuildOptions:
    builder: str                       # "trtexec" | "python"
    trtexec: str | None = None
    gate: Gate | None = None           # None: --skip-fp16-gate
    fallback: bool = True              # FP32 for sensitive layers when the gate fails
    python_available: bool = False     # TensorRT Python API usable (fallback prefers it)
    tolerances: Tolerances = field(default_factory=Tolerances)


def _build(spec: BuildSpec, out: Path, opts: BuildOptions, prefer_python: bool = False) -> BuildResult:
    if opts.builder == "python" or (prefer_python and opts.python_available) or opts.trtexec is None:
        return build_with_python(spec, out)
    return build_with_trtexec(spec, opts.trtexec, out)


def _print_result(res: BuildResult) -> None:
    print(f"  {res.model}: built in {res.seconds:.1f} s with {res.builder}, engine {res.plan_bytes / 2**20:.1f} MiB"
          + (f", {len(res.fp32_layers)} layers pinned to FP32" if res.fp32_layers else ""), flush=True)


def _build_one(spec: BuildSpec, opts: BuildOptions) -> tuple[BuildResult, GateResult | None, str]:
    """Build + gate (+ fallback). Returns (result, gate result, precision label)."""
    tmp = spec.plan.with_name("model.plan.tmp")
    res = _build(spec, tmp, opts)
    _print_result(res)
    precision = spec.precision
    if opts.gate is None or spec.precision != "fp16":
        return res, None, precision
    gate = opts.gate(spec.model, tmp, spec.onnx)
    print("  " + gate.summary(), flush=True)
    if not gate.passed and opts.fallback:
        names = sensitive_onnx_nodes(spec.onnx)
        print(f"  {spec.model}: FP16 gate failed; rebuilding with FP16-sensitive layers in FP32 "
              f"({len(names)} ONNX nodes by name{' + layer types' if opts.python_available else ''})", flush=True)
        res = _build(spec.with_fp32_layers(names), tmp, opts, prefer_python=True)
        _print_result(res)
        gate = opts.gate(spec.model, tmp, spec.onnx)
        print("  " + gate.summary(), flush=True)
        precision = "fp16+fp32-layers"
    return res, gate, precision


def build_set(specs: Sequence[BuildSpec], profiles: Profiles, gpu: GpuInfo, trt_version: str,
              opts: BuildOptions) -> EngineManifest:
    """Build every spec; raise BuildError (after removing the set's manifest) if any model fails."""
    set_dir = specs[0].plan.parent.parent
    set_dir.mkdir(parents=True, exist_ok=True)
    existing = None
    if (set_dir / MANIFEST_NAME).exists():
        try:
            existing = EngineManifest.load(set_dir)
        except Exception:  # unreadable: replaced below
            existing = None
    entries: dict[str, ModelEntry] = {}
    failures: list[str] = []
    for spec in specs:
        print(f"[{spec.model}] {spec.onnx} -> {spec.plan}", flush=True)
        try:
            res, gate, precision = _build_one(spec, opts)
        except BuildError as exc:
            failures.append(str(exc))
            log.error("%s", exc)
            continue
        if gate is not None and not gate.passed:
            failures.append(f"{spec.model}: FP16 gate failed even with FP32 fallback ({'; '.join(gate.failures)}); "
                            "build it in FP32 with --precision fp32 --models " + spec.model)
            continue
        res.plan.replace(spec.plan)
        entries[spec.model] = ModelEntry(
            onnx=str(spec.onnx), onnx_sha256=sha256_file(spec.onnx), plan=f"{spec.model}/model.plan",
            plan_sha256=sha256_file(spec.plan), plan_bytes=spec.plan.stat().st_size, precision=precision,
            fp32_layers=res.fp32_layers, profile=spec.profile.as_dict(), build_seconds=round(res.seconds, 1),
            builder=res.builder, gate=dict(gate.figures) if gate else {"skipped": True})
    if failures:
        (set_dir / MANIFEST_NAME).unlink(missing_ok=True)
        raise BuildError("engine build failed:\n  " + "\n  ".join(failures) +
                         f"\n{set_dir / MANIFEST_NAME} removed: the server will refuse this set until a build passes")
    same_machine = (existing is not None and normalize_trt_version(existing.tensorrt_version) ==
                    normalize_trt_version(trt_version) and existing.compute_capability == gpu.compute_capability
                    and existing.profiles_sha256 == profiles.sha256)
    models = dict(existing.models) if same_machine and existing else {}
    models.update(entries)
    manifest = EngineManifest(model_set=specs[0].model_set, tensorrt_version=trt_version, gpu_name=gpu.name,
                              compute_capability=gpu.compute_capability, models=models,
                              profiles_sha256=profiles.sha256,
                              created_utc=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
    manifest.write(set_dir)
    return manifest


def make_gate(calib: Any, tolerances: Tolerances, smoke: bool, profiles: Profiles) -> Gate:
    """The real gate: TensorRT engine vs onnxruntime FP32 on `calib` (+ one run at the max shape)."""
    from ocr_server.engines.fp16_gate import OrtRunner, run_gate, smoke_max_shape  # noqa: PLC0415
    from ocr_server.engines.runner import TrtRunner  # noqa: PLC0415

    def gate(model: str, plan: Path, onnx: Path) -> GateResult:
        p = profiles[model]
        engine = TrtRunner(plan, outputs=p.outputs)
        result = run_gate(model, engine, OrtRunner(onnx, outputs=p.outputs), calib, tolerances)
        if smoke:
            problem = smoke_max_shape(model, engine, p.max, p.dtype)
            result.figures["max_shape_run"] = "ok" if not problem else "failed"
            if problem:
                result.passed = False
                result.failures.append(problem)
        return result

    return gate
