"""The peer: RapidOCR 1.4.4 (rapidocr_onnxruntime) run in-process on the same ONNX files as the server.

``RapidOCR(**kwargs)`` passes its kwargs through ``UpdateParameters``: a global ``intra_op_num_threads``
is copied into the Det, Cls and Rec sections (``update_global_to_module``), and ``OrtInferSession`` sets
``SessionOptions.intra_op_num_threads`` from it when 1 <= n <= os.cpu_count() (otherwise onnxruntime's
default). ``det_model_path`` / ``cls_model_path`` / ``rec_model_path`` select the model files; the dictionary
comes from the rec model's ``character`` metadata (``rec_keys_path`` only when a model has none).
:func:`make_engine` checks the thread count actually set on the three sessions.

A RapidOCR engine mutates its own state per call (``box_thresh`` etc. on the detector, ``text_score``),
so it is not shared between threads: every worker has its own engine.
"""
from __future__ import annotations

import queue
import time
from pathlib import Path
from typing import Any

__all__ = ["PEER_VERSION", "engine_threads", "make_engine", "peer_lines", "process_worker"]

PEER_VERSION = "1.4.4"


def _import_rapidocr() -> Any:
    try:
        import rapidocr_onnxruntime
    except ImportError as exc:
        raise RuntimeError("the peer needs rapidocr-onnxruntime==1.4.4 in this venv "
                           "(scripts/setup_env.sh test installs it), or run with --no-peer") from exc
    return rapidocr_onnxruntime


def engine_threads(engine: Any) -> dict[str, int]:
    """intra_op_num_threads of the det / cls / rec onnxruntime sessions (0 = onnxruntime's default)."""
    sessions = {"det": engine.text_det.infer.session, "cls": engine.text_cls.infer.session,
                "rec": engine.text_rec.session.session}
    return {k: int(s.get_session_options().intra_op_num_threads) for k, s in sessions.items()}


def make_engine(threads: int, model_dir: Path | None = None) -> Any:
    """A RapidOCR engine whose three sessions run ``threads`` intra-op threads; models from ``model_dir``
    (``original/{det,cls,rec}.onnx``: the wheels' graphs the server's are made from, byte for byte, and
    ``dict.txt``) or the wheel's own."""
    mod = _import_rapidocr()
    kwargs: dict[str, Any] = {"intra_op_num_threads": int(threads)}
    if model_dir is not None:
        original = model_dir / "original"
        kwargs.update(det_model_path=str(original / "det.onnx"), cls_model_path=str(original / "cls.onnx"),
                      rec_model_path=str(original / "rec.onnx"))
    try:  # the dictionary from the rec model's "character" metadata, as RapidOCR does by default
        engine = mod.RapidOCR(**kwargs)
    except ValueError:  # "character must not be None": a rec model without that metadata
        if model_dir is None:
            raise
        engine = mod.RapidOCR(**kwargs, rec_keys_path=str(model_dir / "dict.txt"))
    got = engine_threads(engine)
    if any(v != threads for v in got.values()):
        raise RuntimeError(f"RapidOCR sessions run {got} intra-op threads, asked for {threads} "
                           f"(1..os.cpu_count() is honoured)")
    return engine


def peer_lines(result: Any) -> list[dict[str, Any]]:
    """RapidOCR's ``[[box, text, score], ...]`` (or None) -> ocr_eval.py lines."""
    lines = []
    for box, text, score in result or []:
        lines.append({"poly": [[float(x), float(y)] for x, y in box], "text": str(text), "score": float(score)})
    return lines


def process_worker(threads: int, model_dir: str | None, image_paths: list[str], warmup: int,
                   tasks: Any, results: Any) -> None:
    """Body of a peer worker process (``--peer-mode process``): build and warm an engine, say "ready",
    then OCR image indices from ``tasks`` until None, putting ``(index, latency_s, lines, error)``."""
    try:
        images = [Path(p).read_bytes() for p in image_paths]
        engine = make_engine(threads, Path(model_dir) if model_dir else None)
        for i in range(min(warmup, len(images))):
            engine(images[i])
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        results.put(("failed", repr(exc)))
        return
    results.put(("ready", None))
    while True:
        try:
            index = tasks.get(timeout=3600)
        except queue.Empty:
            return
        if index is None:
            return
        t0 = time.perf_counter()
        try:
            result, _ = engine(images[index % len(images)])
            results.put((index, time.perf_counter() - t0, peer_lines(result), None))
        except Exception as exc:  # noqa: BLE001
            results.put((index, time.perf_counter() - t0, None, repr(exc)))
