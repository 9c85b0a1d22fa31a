"""FP16 gate figures and calibration data (pure numpy / onnxruntime; no TensorRT)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]

from ocr_server.engines.fp16_gate import (  # noqa: E402
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
from ocr_server.engines.profiles import load_profiles  # noqa: E402

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


def _rec(seqs: list[list[int]], t: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """A rec_model output batch: (rec_char_ids INT32 [n,T], rec_char_probs FP32 [n,T]); blank (0) after `seq`."""
    ids = np.zeros((len(seqs), t), np.int32)
    for row, seq in enumerate(seqs):
        ids[row, :len(seq)] = seq
    probs = np.where(ids > 0, np.float32(0.94), np.float32(0.99)).astype(np.float32)
    return ids, probs


def test_ctc_sequences_collapse_repeats_and_blanks():
    ids, probs = _rec([[1, 1, 0, 1, 2, 2, 0, 3]])
    probs[0, :4] = [0.9, 0.5, 0.99, 0.7]
    seqs, scores = ctc_sequences(ids, probs)
    # kept timesteps 0, 3, 4, 7: the score is the mean of their probabilities (as ctc_greedy_decode's)
    assert seqs == [(1, 1, 2, 3)] and scores[0] == pytest.approx((0.9 + 0.7 + 0.94 + 0.94) / 4)
    assert ctc_sequences(*_rec([[]])) == ([()], [0.0])


def test_edit_distance():
    assert edit_distance((1, 2, 3), (1, 3)) == 1 and edit_distance((), (4, 5)) == 2
    assert edit_distance((7, 8), (7, 8)) == 0


def test_rec_identical_passes_and_changed_text_fails():
    batch = _rec([[1, 2, 3], [4, 4, 0, 4], [5]])
    assert compare_rec([batch], [tuple(x.copy() for x in batch)]).passed
    other = _rec([[1, 2, 6], [4, 4, 0, 4], [5]])
    res = compare_rec([batch], [other], Tolerances(rec_exact=0.9))
    assert not res.passed and res.figures["exact"] == pytest.approx(2 / 3)
    assert res.figures["char_sim"] == pytest.approx(1 - 1 / 9)
    drift = (batch[0], batch[1] - np.float32(0.05))
    res = compare_rec([batch], [drift])
    assert res.figures["exact"] == 1.0 and res.figures["score_abs"] == pytest.approx(0.05, abs=1e-6)
    assert not res.passed and "confidence" in res.failures[0]
    assert "shape" in compare_rec([batch], [tuple(x[:, :5] for x in batch)]).failures[0]


def test_run_gate_with_onnxruntime_reference():
    onnx = ROOT / "build" / "models" / "v4" / "cls.onnx"
    if not onnx.exists():
        pytest.skip("models not fetched (ocr-fetch-models --model-set v4)")
    from ocr_server.engines.calibration import CalibrationSet
    ref = OrtRunner(onnx)
    calib = CalibrationSet(cls=[RNG.integers(0, 256, (8, 48, 192, 3), dtype=np.uint8)])
    assert run_gate("cls_model", ref, ref, calib).passed
    flip = run_gate("cls_model", lambda x: ref(x)[:, ::-1], ref, calib)
    assert not flip.passed
    assert not run_gate("det_model", ref, ref, calib).passed  # no calibration pages -> fail, not pass


@pytest.mark.parametrize("model_set", ["v4", "v5"])
def test_onnxruntime_reference_of_the_served_graphs(model_set):
    """The reference runs the served graphs as the engines do: uint8 NHWC pixels in, rec's two outputs."""
    models = ROOT / "build" / "models" / model_set
    if not (models / "rec.onnx").exists():
        pytest.skip(f"models not fetched (ocr-fetch-models --model-set {model_set})")
    profiles = load_profiles()
    from ocr_server.engines.calibration import CalibrationSet
    page = np.full((1, 64, 96, 3), 255, np.uint8)
    page[0, 20:40, 10:80] = 0
    det = OrtRunner(models / "det.onnx", outputs=profiles["det_model"].outputs)
    prob_map = det(page)
    assert prob_map.dtype == np.uint8 and prob_map.shape == (1, 1, 64, 96)
    assert run_gate("det_model", det, det, CalibrationSet(det=[page])).passed
    rec = OrtRunner(models / "rec.onnx", outputs=profiles["rec_model"].outputs)
    crops = RNG.integers(0, 256, (2, 48, 160, 3), dtype=np.uint8)
    ids, probs = rec(crops)
    assert ids.dtype == np.int32 and probs.dtype == np.float32 and ids.shape == probs.shape == (2, 20)
    res = run_gate("rec_model", rec, rec, CalibrationSet(rec=[crops]))
    assert res.passed and res.figures["lines"] == 2


def test_smoke_max_shape_reports_problems():
    assert smoke_max_shape("cls_model", lambda x: x[:, :2, 0, 0], (2, 3, 4, 4)) == ""
    assert "non-finite" in smoke_max_shape("cls_model", lambda x: x * np.inf, (1, 3, 2, 2))
    seen = []

    def det(x: np.ndarray) -> np.ndarray:
        seen.append(x)
        return x[:, None, :, :, 0] / 255.0

    assert smoke_max_shape("det_model", det, (1, 8, 8, 3), "uint8") == ""
    assert seen[0].dtype == np.uint8 and seen[0].max() > 128  # random pixels, not [-1, 1] floats
    rec = lambda x: (np.zeros((1, 4), np.int32), np.full((1, 4), np.nan, np.float32))  # noqa: E731
    assert "non-finite" in smoke_max_shape("rec_model", rec, (1, 48, 32, 3), "uint8")

    def boom(x):
        raise RuntimeError("profile exceeded")
    assert "profile exceeded" in smoke_max_shape("rec_model", boom, (1, 48, 8, 3), "uint8")


def test_synthetic_calibration_fits_the_profiles():
    pytest.importorskip("cv2")
    from ocr_server.engines.calibration import synthetic_calibration
    profiles = load_profiles()
    calib = synthetic_calibration(profiles, max_pages=3)
    assert len(calib.det) == 3 and calib.cls and calib.rec
    for model, batches in (("det_model", calib.det), ("cls_model", calib.cls), ("rec_model", calib.rec)):
        for b in batches:
            assert b.dtype == profiles[model].dtype and profiles[model].covers(b.shape), (model, b.dtype, b.shape)
    assert calib.det[0].max() > 128  # pixels: the det graph normalises
    assert max(b.shape[2] for b in calib.rec) > 1000  # the long line exercises wide rec shapes
    assert float(calib.rec[0].max()) > 128  # pixels: the cls/rec graphs normalise


def test_evaldata_calibration_fits_the_profiles():
    pytest.importorskip("cv2")
    from ocr_server.engines.calibration import load_calibration
    from ocr_server.engines.layout import find_evaldata
    evaldata = find_evaldata()
    if evaldata is None:
        pytest.skip("no evaluation data")
    profiles = load_profiles()
    calib = load_calibration(profiles, evaldata, max_pages=4, max_crops=40)
    assert len(calib.det) == 4 and "evaluation images" in calib.source
    for model, batches in (("det_model", calib.det), ("cls_model", calib.cls), ("rec_model", calib.rec)):
        assert all(b.dtype == profiles[model].dtype and profiles[model].covers(b.shape) for b in batches), model
