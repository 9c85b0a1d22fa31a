"""FP16 accuracy gate: the engine against onnxruntime FP32 on the same calibration inputs.

Figures (all printed):
  det  mean |p16 - p32| per page (maps read as 0..1; the served graph outputs UINT8 255 p), IoU of
       the text masks (p > 0.3, PaddleOCR's `thresh`) per page;
  cls  argmax agreement over crops, max |Δp|;
  rec  share of lines whose greedy-CTC label sequence is identical, mean character similarity
       (1 - edit distance / length), mean |Δ confidence| (mean of max probabilities).
The inputs are what the engines take (det: the resized uint8 NHWC image, normalised by the graph);
rec compares the graph's greedy-CTC outputs (rec_char_ids: best class per timestep, rec_char_probs:
its probability). Comparing label sequences needs no dictionary: equal sequences are equal texts.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Tolerances", "GateResult", "compare_det", "compare_cls", "compare_rec", "ctc_sequences",
           "edit_distance", "run_gate", "OrtRunner", "smoke_max_shape"]

Infer = Callable[[Any], Any]


@dataclass(frozen=True)
class Tolerances:
    """Pass thresholds. Defaults: FP16 must not change what the pipeline outputs in practice."""

    det_mean_abs: float = 0.01      # per page
    det_mask_iou: float = 0.95      # per page with >= det_min_text_pixels text pixels
    det_min_text_pixels: int = 64
    det_thresh: float = 0.3
    cls_agreement: float = 0.99
    cls_max_abs: float = 0.05
    rec_exact: float = 0.97
    rec_char_sim: float = 0.995
    rec_score_abs: float = 0.02


@dataclass
class GateResult:
    model: str
    passed: bool
    figures: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def summary(self) -> str:
        figs = ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in self.figures.items())
        verdict = "PASS" if self.passed else "FAIL: " + "; ".join(self.failures)
        return f"FP16 gate {self.model}: {figs} -> {verdict}"


def _probabilities(x: Any) -> Any:
    """A probability map as float32 0..1: the served detector writes UINT8 round(255 p)."""
    import numpy as np  # noqa: PLC0415
    x = np.asarray(x)
    return x.astype(np.float32) / np.float32(255.0) if x.dtype == np.uint8 else x.astype(np.float32)


def compare_det(ref: Sequence[Any], test: Sequence[Any], tol: Tolerances = Tolerances()) -> GateResult:
    """Per-page probability-map agreement (ref = FP32 graph, test = engine); maps in 0..1 or UINT8 0..255."""
    import numpy as np  # noqa: PLC0415
    worst_abs, worst_iou, ious, failures = 0.0, 1.0, [], []
    for i, (a, b) in enumerate(zip(ref, test, strict=True)):
        a, b = _probabilities(a), _probabilities(b)
        if a.shape != b.shape:
            failures.append(f"page {i}: shape {b.shape} != {a.shape}")
            continue
        mean_abs = float(np.abs(a - b).mean())
        ma, mb = a > tol.det_thresh, b > tol.det_thresh
        union = int(np.logical_or(ma, mb).sum())
        iou = float(np.logical_and(ma, mb).sum()) / union if union else 1.0
        worst_abs = max(worst_abs, mean_abs)
        if int(ma.sum()) >= tol.det_min_text_pixels:
            ious.append(iou)
            worst_iou = min(worst_iou, iou)
            if iou < tol.det_mask_iou:
                failures.append(f"page {i}: mask IoU {iou:.4f} < {tol.det_mask_iou}")
        if mean_abs > tol.det_mean_abs:
            failures.append(f"page {i}: mean |Δp| {mean_abs:.4f} > {tol.det_mean_abs}")
    figures = {"pages": len(ref), "worst_mean_abs": worst_abs, "worst_mask_iou": worst_iou,
               "mean_mask_iou": float(np.mean(ious)) if ious else 1.0}
    return GateResult("det_model", not failures, figures, failures)


def compare_cls(ref: Sequence[Any], test: Sequence[Any], tol: Tolerances = Tolerances()) -> GateResult:
    """0/180 label agreement over all crops."""
    import numpy as np  # noqa: PLC0415
    a = np.concatenate([np.asarray(x, np.float32) for x in ref]) if ref else np.zeros((0, 2), np.float32)
    b = np.concatenate([np.asarray(x, np.float32) for x in test]) if test else np.zeros((0, 2), np.float32)
    agree = float((a.argmax(1) == b.argmax(1)).mean()) if len(a) else 1.0
    max_abs = float(np.abs(a - b).max()) if len(a) else 0.0
    failures = []
    if agree < tol.cls_agreement:
        failures.append(f"label agreement {agree:.4f} < {tol.cls_agreement}")
    if max_abs > tol.cls_max_abs:
        failures.append(f"max |Δp| {max_abs:.4f} > {tol.cls_max_abs}")
    return GateResult("cls_model", not failures, {"crops": len(a), "agreement": agree, "max_abs": max_abs},
                      failures)


def ctc_sequences(char_ids: Any, char_probs: Any) -> tuple[list[tuple[int, ...]], list[float]]:
    """Greedy CTC label sequences (repeats collapsed, blank 0 dropped) and confidences (mean probability of
    the kept timesteps) from the best class per timestep [N,T] and its probability [N,T]."""
    import numpy as np  # noqa: PLC0415
    idx = np.asarray(char_ids)
    maxp = np.asarray(char_probs, np.float32)
    seqs, scores = [], []
    for row, conf in zip(idx, maxp, strict=True):
        keep = np.ones(len(row), bool)
        keep[1:] = row[1:] != row[:-1]
        keep &= row != 0
        seqs.append(tuple(int(c) for c in row[keep]))
        scores.append(float(conf[keep].mean()) if keep.any() else 0.0)
    return seqs, scores


def edit_distance(a: Sequence[int], b: Sequence[int]) -> int:
    """Levenshtein distance."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def compare_rec(ref: Sequence[Any], test: Sequence[Any], tol: Tolerances = Tolerances()) -> GateResult:
    """Recognised-text agreement over all lines (batches of (rec_char_ids [n,T], rec_char_probs [n,T]))."""
    exact, sims, dscore, n, failures = 0, [], [], 0, []
    for i, (a, b) in enumerate(zip(ref, test, strict=True)):
        shapes = [tuple(x.shape) for x in (*a, *b)]
        if len(set(shapes)) != 1:
            failures.append(f"batch {i}: shapes {shapes[2:]} != {shapes[:2]}")
            continue
        sa, ca = ctc_sequences(*a)
        sb, cb = ctc_sequences(*b)
        for x, y, u, v in zip(sa, sb, ca, cb, strict=True):
            n += 1
            exact += x == y
            sims.append(1.0 - edit_distance(x, y) / max(len(x), len(y), 1))
            dscore.append(abs(u - v))
    figures = {"lines": n, "exact": exact / n if n else 1.0, "char_sim": sum(sims) / n if n else 1.0,
               "score_abs": sum(dscore) / n if n else 0.0}
    if figures["exact"] < tol.rec_exact:
        failures.append(f"identical texts {figures['exact']:.4f} < {tol.rec_exact}")
    if figures["char_sim"] < tol.rec_char_sim:
        failures.append(f"character similarity {figures['char_sim']:.4f} < {tol.rec_char_sim}")
    if figures["score_abs"] > tol.rec_score_abs:
        failures.append(f"mean |Δconfidence| {figures['score_abs']:.4f} > {tol.rec_score_abs}")
    return GateResult("rec_model", not failures, figures, failures)


class OrtRunner:
    """onnxruntime FP32 reference on CPU for a single-input graph: `runner(x) -> y` like TrtRunner
    (the output array, or a tuple in `outputs` order when there are several)."""

    def __init__(self, onnx_path: Path, threads: int = 0, outputs: Sequence[str] | None = None) -> None:
        import onnxruntime as ort  # noqa: PLC0415
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        self.sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        self.input = self.sess.get_inputs()[0].name
        self.outputs = list(outputs or [o.name for o in self.sess.get_outputs()])

    def __call__(self, x: Any) -> Any:
        outs = self.sess.run(self.outputs, {self.input: x})
        return outs[0] if len(outs) == 1 else tuple(outs)


_COMPARE = {"det_model": ("det", compare_det), "cls_model": ("cls", compare_cls), "rec_model": ("rec", compare_rec),
            "ori_model": ("ori", compare_cls)}  # label agreement, as for the 0/180 classifier


def run_gate(model: str, engine: Infer, reference: Infer, calib: Any, tol: Tolerances = Tolerances()) -> GateResult:
    """Run both on the model's calibration inputs and compare."""
    attr, compare = _COMPARE[model]
    inputs = getattr(calib, attr)
    if not inputs:
        return GateResult(model, False, {}, ["no calibration inputs"])
    ref = [reference(x) for x in inputs]
    test = [engine(x) for x in inputs]
    return compare(ref, test, tol)


def smoke_max_shape(model: str, engine: Infer, max_shape: Sequence[int], dtype: str = "float32") -> str:
    """Run the engine once at the profile's max shape (random pixels for a uint8 input, values in [-1, 1] for
    a normalised float one); '' when every output is finite, else the reason."""
    import numpy as np  # noqa: PLC0415
    rng = np.random.default_rng(0)
    if np.dtype(dtype) == np.uint8:
        x = rng.integers(0, 256, size=tuple(max_shape), dtype=np.uint8)
    else:
        x = rng.uniform(-1, 1, size=tuple(max_shape)).astype(dtype)
    try:
        y = engine(x)
    except Exception as exc:  # the reason is reported, the build fails
        return f"{model}: run at max shape {tuple(max_shape)} failed: {exc}"
    if not all(np.isfinite(out).all() for out in (y if isinstance(y, tuple) else (y,))):
        return f"{model}: non-finite outputs at max shape {tuple(max_shape)} (FP16 overflow?)"
    return ""
