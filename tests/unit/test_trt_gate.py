"""FP16 gate figures and calibration data (pure numpy / onnxruntime; no TensorRT)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts" / "trt"))

from trt_build.fp16_gate import (  # noqa: E402
    OrtRunner,
    Tolerances,
    compare_cls,
    compare_det,
    compare_rec,
    ctc_sequences,
    edit_distance,
    run_gate,
    smoke_max_shape,
)
from trt_build.profiles import load_profiles  # noqa: E402

RNG = np.random.default_rng(0)


def _page() -> np.ndarray:
    p = np.zeros((1, 1, 64, 96), np.float32)
    p[0, 0, 10:20, 10:80] = 0.9
    p[0, 0, 30:40, 5:60] = 0.8
    return p


def test_det_identical_passes_and_drift_fails():
    ref = [_page(), _page()]
    assert compare_det(ref, [x.copy() for x in ref]).passed
    shifted = [np.roll(x, 6, axis=3) for x in ref]
    res = compare_det(ref, shifted)
    assert not res.passed and "mask IoU" in res.failures[0]
    noisy = [x + np.float32(0.05) for x in ref]
    assert any("mean |Δp|" in f for f in compare_det(ref, noisy).failures)
    assert "worst_mask_iou" in res.figures and res.summary().startswith("FP16 gate det_model")


def test_cls_agreement():
    a = RNG.dirichlet([1, 1], size=100).astype(np.float32)
    assert compare_cls([a], [a + 0.001]).passed
    b = a.copy()
    b[:5] = b[:5, ::-1]
    res = compare_cls([a], [b])
    assert not res.passed and res.figures["agreement"] <= 0.95 + 1e-6


def _probs(seq: list[int], t: int = 12, c: int = 7) -> np.ndarray:
    p = np.full((t, c), 0.01, np.float32)
    for i in range(t):
        p[i, seq[i] if i < len(seq) else 0] = 0.94
    return p


def test_ctc_sequences_collapse_repeats_and_blanks():
    seqs, scores = ctc_sequences(np.stack([_probs([1, 1, 0, 1, 2, 2, 0, 3])]))
    assert seqs == [(1, 1, 2, 3)] and 0.9 < scores[0] < 1.0


def test_edit_distance():
    assert edit_distance((1, 2, 3), (1, 3)) == 1 and edit_distance((), (4, 5)) == 2 and edit_distance("ab", "ab") == 0


def test_rec_identical_passes_and_changed_text_fails():
    batch = np.stack([_probs([1, 2, 3]), _probs([4, 4, 0, 4]), _probs([5])])
    assert compare_rec([batch], [batch.copy()]).passed
    other = batch.copy()
    other[0] = _probs([1, 2, 6])
    res = compare_rec([batch], [other], Tolerances(rec_exact=0.9))
    assert not res.passed and res.figures["exact"] == pytest.approx(2 / 3)
    assert "shape" in compare_rec([batch], [batch[:, :5]]).failures[0]


def test_run_gate_with_onnxruntime_reference():
    onnx = ROOT / "build" / "models" / "v4" / "cls.onnx"
    if not onnx.exists():
        pytest.skip("models not fetched (python scripts/fetch_models.py --model-set v4)")
    from trt_build.calibration import CalibrationSet
    ref = OrtRunner(onnx)
    calib = CalibrationSet(cls=[RNG.uniform(-1, 1, (8, 3, 48, 192)).astype(np.float32)])
    assert run_gate("cls_model", ref, ref, calib).passed
    flip = run_gate("cls_model", lambda x: ref(x)[:, ::-1], ref, calib)
    assert not flip.passed
    assert not run_gate("det_model", ref, ref, calib).passed  # no calibration pages -> fail, not pass


def test_smoke_max_shape_reports_problems():
    assert smoke_max_shape("cls_model", lambda x: x[:, :2, 0, 0], (2, 3, 4, 4)) == ""
    assert "non-finite" in smoke_max_shape("cls_model", lambda x: x * np.inf, (1, 3, 2, 2))

    def boom(x):
        raise RuntimeError("profile exceeded")
    assert "profile exceeded" in smoke_max_shape("rec_model", boom, (1, 3, 48, 8))


def test_synthetic_calibration_fits_the_profiles():
    pytest.importorskip("cv2")
    from trt_build.calibration import synthetic_calibration
    profiles = load_profiles()
    calib = synthetic_calibration(profiles, max_pages=3)
    assert len(calib.det) == 3 and calib.cls and calib.rec
    for model, batches in (("det_model", calib.det), ("cls_model", calib.cls), ("rec_model", calib.rec)):
        for b in batches:
            assert b.dtype == np.float32 and profiles[model].covers(b.shape), (model, b.shape)
    assert max(b.shape[3] for b in calib.rec) > 1000  # the long line exercises wide rec shapes
    assert -1.01 <= float(calib.rec[0].min()) and float(calib.rec[0].max()) <= 1.01


def test_evaldata_calibration_fits_the_profiles():
    pytest.importorskip("cv2")
    from trt_build.calibration import load_calibration
    from trt_build.layout import find_evaldata
    evaldata = find_evaldata()
    if evaldata is None:
        pytest.skip("no evaluation data")
    profiles = load_profiles()
    calib = load_calibration(profiles, evaldata, max_pages=4, max_crops=40)
    assert len(calib.det) == 4 and "evaluation images" in calib.source
    for model, batches in (("det_model", calib.det), ("cls_model", calib.cls), ("rec_model", calib.rec)):
        assert all(profiles[model].covers(b.shape) for b in batches), model
