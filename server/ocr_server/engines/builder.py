"""Build one engine with trtexec (when present) or the TensorRT Python API (imported lazily).

Both paths log every ONNX-parser / builder error, the network's inputs and outputs, and write a
full build log next to the plan (<engines>/<set>/<model>/build.log).
"""
from __future__ import annotations

import logging
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ocr_server.engines.commands import BuildSpec, format_command, trtexec_argv
from ocr_server.engines.precision import pin_fp32_layers

__all__ = ["BuildError", "BuildResult", "build_with_trtexec", "build_with_python", "import_tensorrt",
           "onnx_io_summary", "is_error_line"]

log = logging.getLogger(__name__)


class BuildError(RuntimeError):
    """An engine could not be built (the message carries the parser/builder errors and the log path)."""


@dataclass
class BuildResult:
    model: str
    plan: Path
    seconds: float
    plan_bytes: int
    builder: str
    fp32_layers: list[str] = field(default_factory=list)


def import_tensorrt() -> Any:
    """`import tensorrt` with an error that says what to install."""
    try:
        import tensorrt as trt  # noqa: PLC0415  (lazy: the CLI works without TensorRT)
    except ImportError as exc:
        raise BuildError("the TensorRT Python package is not installed: run inside the NGC TensorRT image "
                         "(docker compose --profile build run build-engines, see docs/gpu.md) or "
                         "`pip install tensorrt-cu12==<the TensorRT version of your server image>`") from exc
    major = int(str(trt.__version__).split(".")[0])
    if major < 10:
        raise BuildError(f"TensorRT {trt.__version__} found; this project builds with TensorRT 10.x "
                         "(the NGC 24.xx/25.xx images)")
    return trt


def onnx_io_summary(onnx_path: Path) -> str:
    """'inputs: det_input uint8[?,?,?,3]; outputs: prob_map uint8[?,1,?,?]' (best effort)."""
    try:
        import onnx  # noqa: PLC0415
    except ImportError:
        return "(install onnx to log the graph inputs/outputs)"
    try:
        g = onnx.load(str(onnx_path), load_external_data=False).graph
    except Exception as exc:  # best effort: the builder reports the real parse errors
        return f"(cannot read {onnx_path} with onnx: {exc})"

    def fmt(v: Any) -> str:
        dims = [str(d.dim_value) if d.dim_value else "?" for d in v.type.tensor_type.shape.dim]
        return f"{v.name} {onnx.TensorProto.DataType.Name(v.type.tensor_type.elem_type).lower()}[{','.join(dims)}]"

    inits = {i.name for i in g.initializer}
    return ("inputs: " + ", ".join(fmt(v) for v in g.input if v.name not in inits) +
            "; outputs: " + ", ".join(fmt(v) for v in g.output))


def is_error_line(line: str) -> bool:
    """trtexec / TensorRT error lines ('[E] ...', parser 'ERROR: ...', 'Assertion failed')."""
    return "[E]" in line or "ERROR" in line or "Assertion failed" in line


def build_with_trtexec(spec: BuildSpec, trtexec: str, out_path: Path) -> BuildResult:
    """Run trtexec; every error line is logged; raise BuildError on failure."""
    if spec.pin_sensitive and not spec.fp32_layers:
        raise BuildError(f"{spec.model}: no layer names to pin to FP32 for trtexec (pip install onnx, or install "
                         "the TensorRT Python package so layers are pinned by type)")
    argv = trtexec_argv(spec, trtexec, save_to=out_path)
    spec.log_path.parent.mkdir(parents=True, exist_ok=True)
    log.info("%s: %s", spec.model, onnx_io_summary(spec.onnx) if spec.onnx.exists() else spec.onnx)
    log.info("%s: %s", spec.model, format_command(argv))
    errors: list[str] = []
    t0 = time.monotonic()
    with open(spec.log_path, "w") as logf:
        logf.write(" ".join(argv) + "\n")
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            logf.write(line)
            if is_error_line(line):
                errors.append(line.rstrip())
                log.error("%s: %s", spec.model, line.rstrip())
        rc = proc.wait()
    seconds = time.monotonic() - t0
    if rc != 0 or not out_path.exists():
        detail = "\n  ".join(errors[-20:]) or "(no error lines; see the log)"
        raise BuildError(f"trtexec failed for {spec.model} ({spec.onnx}), exit code {rc}:\n  {detail}\n"
                         f"full log: {spec.log_path}")
    return BuildResult(spec.model, out_path, seconds, out_path.stat().st_size, "trtexec", list(spec.fp32_layers))


def _make_logger(trt: Any, model: str, logf: Any) -> Any:
    class _Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            logf.write(f"[{severity}] {msg}\n")
            if severity in (trt.ILogger.Severity.ERROR, trt.ILogger.Severity.INTERNAL_ERROR):
                self.errors.append(msg)
                log.error("%s: %s", model, msg)
            elif severity == trt.ILogger.Severity.WARNING:
                log.debug("%s: %s", model, msg)

    return _Logger()


def _parser_errors(parser: Any) -> list[str]:
    out = []
    for i in range(parser.num_errors):
        e = parser.get_error(i)
        where = []
        for attr in ("node_name", "node_operator"):
            fn = getattr(e, attr, None)
            if callable(fn) and fn():
                where.append(f"{attr}={fn()}")
        out.append(f"ONNX parser error {i}: {e.desc()} (code {e.code()}, node {e.node()}"
                   f"{', ' + ', '.join(where) if where else ''})")
    return out


def _check_network_io(trt: Any, spec: BuildSpec, ins: list[Any], outs: list[Any]) -> None:
    """Refuse a graph whose inputs/outputs are not the profile's (not renamed, or from before a graph edit)."""
    import numpy as np  # noqa: PLC0415
    p = spec.profile
    dtypes = [np.dtype(trt.nptype(t.dtype)).name for t in ins]
    shapes = [tuple(t.shape) for t in ins]
    fits = (len(ins) == 1 and ins[0].name == p.input and dtypes[0] == p.dtype and len(shapes[0]) == len(p.min)
            and all(d < 0 or lo <= d <= hi for d, lo, hi in zip(shapes[0], p.min, p.max, strict=True)))
    if not fits or sorted(t.name for t in outs) != sorted(p.outputs):
        got = [f"{t.name} {dt}{list(sh)}" for t, dt, sh in zip(ins, dtypes, shapes, strict=True)]
        raise BuildError(f"{spec.onnx} has inputs {got} and outputs {[t.name for t in outs]}, "
                         f"expected {p.input} {p.dtype} {p.layout} within {list(p.min)}..{list(p.max)} "
                         f"and {list(p.outputs)}: re-run server/ocr_server/fetch_models.py "
                         f"--model-set {spec.model_set} (it renames and edits the graphs)")


def build_with_python(spec: BuildSpec, out_path: Path) -> BuildResult:
    """Build with the TensorRT Python API; raise BuildError with every parser/builder error."""
    trt = import_tensorrt()
    spec.log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(spec.log_path, "w") as logf:
        logger = _make_logger(trt, spec.model, logf)
        builder = trt.Builder(logger)
        network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(spec.onnx)):
            errors = _parser_errors(parser)
            for err in errors:
                log.error("%s: %s", spec.model, err)
                logf.write(err + "\n")
            raise BuildError(f"cannot parse {spec.onnx}:\n  " + "\n  ".join(errors) + f"\nfull log: {spec.log_path}")
        ins = [network.get_input(i) for i in range(network.num_inputs)]
        outs = [network.get_output(i) for i in range(network.num_outputs)]
        log.info("%s: network inputs %s; outputs %s", spec.model,
                 [(t.name, tuple(t.shape), str(t.dtype)) for t in ins],
                 [(t.name, tuple(t.shape), str(t.dtype)) for t in outs])
        _check_network_io(trt, spec, ins, outs)
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, spec.workspace_mib << 20)
        if spec.precision == "fp16":
            if not builder.platform_has_fast_fp16:
                log.warning("%s: this GPU has no fast FP16; the engine will be slow", spec.model)
            config.set_flag(trt.BuilderFlag.FP16)
        profile = builder.create_optimization_profile()
        p = spec.profile
        profile.set_shape(p.input, p.min, p.opt, p.max)
        config.add_optimization_profile(profile)
        pinned: list[str] = []
        if spec.pin_sensitive:
            pinned = pin_fp32_layers(network, trt, spec.fp32_layers)
            config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
            log.info("%s: %d layers pinned to FP32", spec.model, len(pinned))
        cache = None
        if spec.timing_cache is not None:
            blob = spec.timing_cache.read_bytes() if spec.timing_cache.exists() else b""
            cache = config.create_timing_cache(blob)
            config.set_timing_cache(cache, False)
        t0 = time.monotonic()
        serialized = builder.build_serialized_network(network, config)
        seconds = time.monotonic() - t0
        if serialized is None:
            raise BuildError(f"TensorRT could not build {spec.model}:\n  " + "\n  ".join(logger.errors[-20:]) +
                             f"\nfull log: {spec.log_path}")
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_bytes(bytes(serialized))
        if cache is not None and spec.timing_cache is not None:
            spec.timing_cache.write_bytes(bytes(cache.serialize()))
    return BuildResult(spec.model, out_path, seconds, out_path.stat().st_size, "python", pinned)
