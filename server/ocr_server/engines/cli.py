"""Command line: build | check | preflight | gate | profiles | step-params (`ocr-engines <cmd> --help`)."""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ocr_server.engines.layout import (
    MODEL_SETS,
    RUNTIME_MODELS,
    default_engines_dir,
    default_models_dir,
    default_profiles_path,
    engine_dir_for,
    find_evaldata,
)
from ocr_server.manifest import default_model_set

if TYPE_CHECKING:
    from ocr_server.engines.commands import BuildSpec
    from ocr_server.engines.profiles import Profiles

__all__ = ["main"]

log = logging.getLogger("ocr_server.engines")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model-set", choices=MODEL_SETS, default=default_model_set(),
                   help="model set (default: the manifest's default_set)")
    p.add_argument("--profiles", type=Path, default=default_profiles_path(), help="profiles.json")
    p.add_argument("--models-dir", type=Path, default=default_models_dir(), help="fetched ONNX root (build/models)")
    p.add_argument("-v", "--verbose", action="store_true")


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="ocr-engines", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)

    b = sub.add_parser("build", help="build FP16 engines + FP16 gate + manifest",
                       description="Build the det/cls/rec TensorRT engines of a model set from the same ONNX files "
                                   "as the CPU target, gate FP16 against onnxruntime FP32, write the manifest.")
    _common(b)
    b.add_argument("--out", type=Path, default=default_engines_dir(), help="engines root (build/engines)")
    b.add_argument("--models", default=",".join(RUNTIME_MODELS), help="comma list (default: all three)")
    b.add_argument("--precision", choices=("fp16", "fp32"), default="fp16")
    b.add_argument("--workspace", type=int, default=2048, metavar="MIB", help="builder workspace (MiB)")
    b.add_argument("--builder", choices=("auto", "trtexec", "python"), default="auto",
                   help="auto: trtexec when found ($TRTEXEC, PATH, /usr/src/tensorrt/bin), else the Python API")
    b.add_argument("--gpu-target", metavar="CC", help="expected compute capability, e.g. 7.5 / sm_75 (T4): "
                                                      "refuse to build on another GPU")
    b.add_argument("--timing-cache", type=Path, help="TensorRT timing cache file (faster rebuilds)")
    b.add_argument("--calib-dir", type=Path, help="evaluation images (<subset>/labels.jsonl); default: "
                                                  "$OCR_EVALDATA or shared/evaldata, synthetic when absent")
    b.add_argument("--calib-pages", type=int, default=16)
    b.add_argument("--calib-crops", type=int, default=384)
    b.add_argument("--no-fallback", action="store_true", help="fail instead of pinning sensitive layers to FP32")
    b.add_argument("--skip-fp16-gate", action="store_true", help="do not compare with FP32 (not recommended)")
    b.add_argument("--no-max-shape-run", action="store_true", help="skip the run at each profile's max shape")
    b.add_argument("--dry-run", action="store_true", help="print the exact build commands and exit")
    b.add_argument("--show-fallback", action="store_true", help="with --dry-run: also print FP32-fallback commands")

    for name, helptext in (("check", "verify an engine set against this (or a given) TensorRT/GPU"),
                           ("preflight", "fail fast unless GPU, TensorRT and matching engines are present")):
        c = sub.add_parser(name, help=helptext, description=helptext)
        _common(c)
        c.add_argument("--engines", type=Path, default=default_engines_dir(),
                       help="engines root (build/engines) or a set directory (build/engines/v4)")
        c.add_argument("--allow-other-gpu-model", action="store_true",
                       help="accept another GPU board of the same compute capability")
        if name == "check":
            c.add_argument("--trt-version", help="compare with this TensorRT version instead of the installed one")
            c.add_argument("--gpu-name", help="compare with this GPU name instead of nvidia-smi's")
            c.add_argument("--compute-capability", help="compare with this compute capability, e.g. 7.5")

    g = sub.add_parser("gate", help="run the FP16 gate on built engines")
    _common(g)
    g.add_argument("--engines", type=Path, default=default_engines_dir())
    g.add_argument("--calib-dir", type=Path)

    sp = sub.add_parser("step-params", help="print the GPU target's python-step overrides, one MODEL.KEY=VALUE "
                                            "per line (for server/ocr_server/assemble.py --param)")
    sp.add_argument("--profiles", type=Path, default=default_profiles_path())

    s = sub.add_parser("profiles", help="print the profiles and the dev-set shape distribution behind opt")
    _common(s)
    s.add_argument("--evaldata", type=Path, help="dev split (default: $OCR_EVALDATA or shared/evaldata)")
    return ap


def _cmd_build(args: argparse.Namespace) -> int:
    from ocr_server.engines.commands import plan_builds  # noqa: PLC0415
    from ocr_server.engines.dryrun import render_plan  # noqa: PLC0415
    from ocr_server.engines.environment import find_trtexec  # noqa: PLC0415
    from ocr_server.engines.profiles import load_profiles  # noqa: PLC0415
    profiles = load_profiles(args.profiles)
    specs = plan_builds(args.model_set, profiles, args.models_dir, args.out,
                        [m.strip() for m in args.models.split(",") if m.strip()], args.precision, args.workspace,
                        args.timing_cache)
    trtexec = find_trtexec() if args.builder in ("auto", "trtexec") else None
    builder = "trtexec" if trtexec else "python"
    calib = args.calib_dir or find_evaldata()
    gate_desc = ("skipped (--skip-fp16-gate)" if args.skip_fp16_gate else
                 f"engine vs onnxruntime FP32 on {calib or 'synthetic pages'}; "
                 "tolerances in ocr_server.engines/fp16_gate.py")
    if args.dry_run:
        sys.stdout.write(render_plan(specs, profiles, trtexec, builder, gate_desc, args.gpu_target,
                                     args.show_fallback))
        return 0
    if args.builder == "trtexec" and trtexec is None:
        raise SystemExit("--builder trtexec: trtexec not found (set $TRTEXEC or add it to PATH)")
    return _real_build(args, profiles, specs, trtexec, calib)


def _real_build(args: argparse.Namespace, profiles: Profiles, specs: list[BuildSpec], trtexec: str | None,
                calib_dir: Path | None) -> int:
    import time  # noqa: PLC0415

    from ocr_server.engines.build_set import BuildOptions, build_set, make_gate  # noqa: PLC0415
    from ocr_server.engines.environment import gpu_info, has_module, tensorrt_version  # noqa: PLC0415
    from ocr_server.engines.manifest import normalize_compute_capability  # noqa: PLC0415
    gpu = gpu_info()
    trt_version, where = tensorrt_version()
    print(f"GPU {gpu.name} (compute {gpu.compute_capability}); TensorRT {trt_version} ({where})", flush=True)
    if args.gpu_target and normalize_compute_capability(args.gpu_target) != normalize_compute_capability(
            gpu.compute_capability):
        raise SystemExit(f"--gpu-target {args.gpu_target} but this GPU is compute {gpu.compute_capability}: build "
                         "on the GPU model that will serve (engines are architecture-specific)")
    missing = [str(s.onnx) for s in specs if not s.onnx.exists()]
    if missing:
        raise SystemExit(f"missing ONNX files {missing}: run ocr-fetch-models --model-set "
                         f"{args.model_set}")
    python_ok = has_module("tensorrt")
    if trtexec is None and not python_ok:
        raise SystemExit("neither trtexec nor the TensorRT Python package is available: run inside the NGC image "
                         "(docker compose -f docker/docker-compose.yml --profile build run --rm build-engines) or "
                         "install TensorRT 10.x; --dry-run shows the commands")
    gate = None
    if not args.skip_fp16_gate and args.precision == "fp16":
        lacking = [m for m in ("tensorrt", "numpy", "onnxruntime", "cv2") if not has_module(m)]
        if lacking:
            raise SystemExit(f"the FP16 gate needs {lacking} (pip install onnxruntime opencv-python-headless numpy; "
                             "tensorrt comes with the NGC TensorRT image) - or pass --skip-fp16-gate")
        from ocr_server.engines.calibration import load_calibration  # noqa: PLC0415
        from ocr_server.engines.fp16_gate import Tolerances  # noqa: PLC0415
        calib = load_calibration(profiles, calib_dir, args.calib_pages, args.calib_crops)
        print(f"FP16 gate calibration: {calib.describe()}", flush=True)
        gate = make_gate(calib, Tolerances(), not args.no_max_shape_run, profiles)
    opts = BuildOptions(builder="trtexec" if trtexec else "python", trtexec=trtexec, gate=gate,
                        fallback=not args.no_fallback, python_available=python_ok)
    t0 = time.monotonic()
    manifest = build_set(specs, profiles, gpu, trt_version, opts)
    total = sum(e.plan_bytes for e in manifest.models.values())
    print(f"engines for {args.model_set} ready in {time.monotonic() - t0:.0f} s: "
          + ", ".join(f"{m} {e.precision} {e.plan_bytes / 2**20:.1f} MiB" for m, e in manifest.models.items())
          + f" (total {total / 2**20:.1f} MiB); manifest {engine_dir_for(args.out, args.model_set)}/manifest.json",
          flush=True)
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from ocr_server.engines.environment import gpu_info, tensorrt_version  # noqa: PLC0415
    from ocr_server.engines.preflight import check_engines  # noqa: PLC0415
    from ocr_server.engines.profiles import load_profiles  # noqa: PLC0415
    profiles = load_profiles(args.profiles)
    trt_version = args.trt_version or tensorrt_version()[0]
    if args.gpu_name and args.compute_capability:
        name, cc = args.gpu_name, args.compute_capability
    else:
        gpu = gpu_info()
        name, cc = args.gpu_name or gpu.name, args.compute_capability or gpu.compute_capability
    m = check_engines(args.engines, args.model_set, trt_version, name, cc, profiles, args.models_dir,
                      args.allow_other_gpu_model)
    print(f"engines {m.model_set} OK for TensorRT {trt_version} on {name} (compute {cc})")
    return 0


def _cmd_preflight(args: argparse.Namespace) -> int:
    from ocr_server.engines.preflight import preflight  # noqa: PLC0415
    from ocr_server.engines.profiles import load_profiles  # noqa: PLC0415
    report = preflight(args.engines, args.model_set, load_profiles(args.profiles), args.models_dir,
                       args.allow_other_gpu_model)
    print(f"GPU preflight OK: {report.summary()}")
    return 0


def _cmd_gate(args: argparse.Namespace) -> int:
    from ocr_server.engines.build_set import make_gate  # noqa: PLC0415
    from ocr_server.engines.calibration import load_calibration  # noqa: PLC0415
    from ocr_server.engines.fp16_gate import Tolerances  # noqa: PLC0415
    from ocr_server.engines.profiles import load_profiles  # noqa: PLC0415
    profiles = load_profiles(args.profiles)
    calib = load_calibration(profiles, args.calib_dir or find_evaldata())
    print(f"calibration: {calib.describe()}")
    gate = make_gate(calib, Tolerances(), False, profiles)
    directory = engine_dir_for(args.engines, args.model_set)
    ok = True
    for model, p in profiles.models.items():
        res = gate(model, directory / model / "model.plan", args.models_dir / args.model_set / p.onnx)
        print(res.summary())
        ok &= res.passed
    return 0 if ok else 1


def _cmd_profiles(args: argparse.Namespace) -> int:
    from ocr_server.engines.profiles import load_profiles  # noqa: PLC0415
    profiles = load_profiles(args.profiles)
    for m, p in profiles.models.items():
        print(f"{m:10s} {p.input:10s} {p.dtype} {p.layout} min {list(p.min)} opt {list(p.opt)} max {list(p.max)}"
              f" -> {', '.join(p.outputs)}")
    print("limits: " + ", ".join(f"{k}={v}" for k, v in profiles.limits.items()))
    evaldata = args.evaldata or find_evaldata()
    if evaldata is None:
        print("no evaluation data found (set --evaldata): opt derivation skipped")
        return 0
    from ocr_server.engines import stats  # noqa: PLC0415
    ctx = stats.pipeline_settings(overrides=profiles.step_parameters)
    samples = stats.dev_set_shapes(evaldata, ctx)
    print(f"dev split {evaldata}: {len(samples)} calls (chunks of <= {ctx.cls_batch} cls / {ctx.rec_batch} rec; "
          f"GPU step parameters {' '.join(profiles.step_overrides())})")
    for m in RUNTIME_MODELS:
        p = profiles[m]
        median = stats.median_shape(samples, m, 32 if m == "det_model" else 8, (p.axis("H"), p.axis("W")))
        print(f"  {m}: per-dimension median {list(median)} (profile opt {list(p.opt)}, {p.layout})")
    bad = stats.uncovered(samples + stats.extreme_shapes(ctx), profiles)
    print("coverage: " + ("all dev-split and extreme shapes inside the profiles" if not bad else
                          "OUTSIDE the profiles:\n  " + "\n  ".join(bad)))
    return 0 if not bad else 1


def _cmd_step_params(args: argparse.Namespace) -> int:
    from ocr_server.engines.profiles import load_profiles  # noqa: PLC0415
    for item in load_profiles(args.profiles).step_overrides():
        print(item)
    return 0


_COMMANDS = {"build": _cmd_build, "check": _cmd_check, "preflight": _cmd_preflight, "gate": _cmd_gate,
             "profiles": _cmd_profiles, "step-params": _cmd_step_params}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code. Errors are printed as one message saying what to do."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO,
                        format="%(levelname)s %(message)s")
    from ocr_server.engines.builder import BuildError  # noqa: PLC0415
    from ocr_server.engines.environment import EnvironmentError_  # noqa: PLC0415
    from ocr_server.engines.manifest import EngineMismatchError  # noqa: PLC0415
    from ocr_server.engines.preflight import PreflightError  # noqa: PLC0415
    from ocr_server.engines.profiles import ProfileError  # noqa: PLC0415
    try:
        return _COMMANDS[args.cmd](args)
    except (BuildError, EnvironmentError_, EngineMismatchError, PreflightError, ProfileError) as exc:
        print(f"ocr-engines {args.cmd}: {exc}", file=sys.stderr)
        return 1
