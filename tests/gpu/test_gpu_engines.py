"""Build real FP16 engines on this GPU, run the FP16 gate, check the manifest (marked gpu).

Slow (minutes per model set). Uses build/models/<set> (ocr-fetch-models) and writes into
a temporary engines directory, so it never touches build/engines.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module", params=["v4"])
def built(request, tmp_path_factory):
    model_set = request.param
    if not (ROOT / "build" / "models" / model_set / "rec.onnx").exists():
        pytest.skip(f"models not fetched: ocr-fetch-models --model-set {model_set}")
    out = tmp_path_factory.mktemp("engines")
    res = subprocess.run([sys.executable, "-m", "ocr_server.engines", "build", "--model-set", model_set,
                          "--out", str(out), "--calib-pages", "6", "--calib-crops", "128", "--timing-cache",
                          str(out / "timing.cache")],
                         cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=3600)
    print(res.stdout[-6000:], res.stderr[-3000:])
    assert res.returncode == 0, res.stderr[-3000:]
    return model_set, out, res.stdout


def _env() -> dict[str, str]:
    return dict(os.environ)


def test_engines_pass_the_fp16_gate(built):
    model_set, out, stdout = built
    manifest = json.loads((out / model_set / "manifest.json").read_text())
    assert set(manifest["models"]) == {"det_model", "cls_model", "rec_model"}
    for model, entry in manifest["models"].items():
        assert (out / model_set / entry["plan"]).stat().st_size == entry["plan_bytes"] > 0
        assert entry["precision"] in ("fp16", "fp16+fp32-layers")
        assert entry["gate"] and "skipped" not in entry["gate"], model
        assert entry["gate"].get("max_shape_run") == "ok", model
    assert "FP16 gate det_model" in stdout and "PASS" in stdout
    assert "built in" in stdout and "MiB" in stdout  # build time and engine sizes printed


def test_preflight_accepts_the_fresh_engines(built):
    model_set, out, _ = built
    res = subprocess.run([sys.executable, "-m", "ocr_server.engines", "check", "--model-set", model_set,
                          "--engines", str(out)],
                         cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr


def test_engines_match_onnxruntime_on_a_page(built):
    """Direct spot check of the det and rec engines against onnxruntime on one rendered page: det takes the
    resized uint8 NHWC image and returns its map as UINT8 round(255 p), rec returns rec_char_ids (INT32) and
    rec_char_probs (FP32)."""
    np = pytest.importorskip("numpy")
    pytest.importorskip("cv2")
    from ocr_server.engines.calibration import synthetic_calibration
    from ocr_server.engines.fp16_gate import OrtRunner, compare_det, compare_rec
    from ocr_server.engines.profiles import load_profiles
    from ocr_server.engines.runner import TrtRunner
    model_set, out, _ = built
    profiles = load_profiles()
    calib = synthetic_calibration(profiles, max_pages=1)
    page = calib.det[0]
    assert page.dtype == np.uint8 and page.shape[-1] == 3
    engine = lambda m: TrtRunner(out / model_set / m / "model.plan", outputs=profiles[m].outputs)  # noqa: E731
    onnx = lambda m: OrtRunner(ROOT / "build" / "models" / model_set / profiles[m].onnx,  # noqa: E731
                               outputs=profiles[m].outputs)
    ref, got = onnx("det_model")(page), engine("det_model")(page)
    assert got.shape == ref.shape and got.dtype == np.uint8
    assert compare_det([ref], [got]).figures["worst_mean_abs"] < 0.01
    rec_ref, rec_got = onnx("rec_model"), engine("rec_model")
    ref = [rec_ref(b) for b in calib.rec]
    got = [rec_got(b) for b in calib.rec]
    assert all(g[0].dtype == np.int32 and g[1].dtype == np.float32 for g in got)
    assert compare_rec(ref, got).figures["char_sim"] > 0.99
