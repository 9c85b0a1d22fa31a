"""GPU profiles: profiles.json is consistent and covers every shape the CPU pipeline sends."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

from ocr_server.engines.layout import RUNTIME_MODELS, find_evaldata  # noqa: E402
from ocr_server.engines.profiles import ProfileError, load_profiles, shape_spec  # noqa: E402


@pytest.fixture(scope="module")
def profiles():
    return load_profiles()


def test_profiles_load_and_agree_with_limits(profiles):
    assert set(profiles.models) == set(RUNTIME_MODELS)
    lim = profiles.limits
    assert lim["det_max_side"] % lim["det_side_multiple"] == 0
    det = profiles["det_model"]
    assert (det.input, det.outputs, det.dtype, det.layout) == ("det_input", ("prob_map",), "uint8", "NHWC")
    assert det.max == (lim["det_max_batch"], lim["det_max_side"], lim["det_max_side"], 3)
    assert det.dim(det.opt, "H") == 736 and det.dim(det.opt, "W") == 1312
    for name in ("cls_model", "rec_model"):  # line crops: uint8 NHWC pixels like the detector's input
        assert (profiles[name].dtype, profiles[name].layout) == ("uint8", "NHWC")
    assert profiles["cls_model"].max == (lim["cls_max_batch"], 48, 192, 3)
    assert profiles["rec_model"].max == (lim["rec_max_batch"], 48, lim["rec_max_width"], 3)
    assert profiles["rec_model"].outputs == ("rec_char_ids", "rec_char_probs")


def test_shape_spec():
    assert shape_spec((1, 3, 48, 192)) == "1x3x48x192"


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["limits"].__setitem__("rec_max_width", 999), "limits.rec_max_width"),
    (lambda d: d["models"]["rec_model"].__setitem__("opt", [128, 48, 320, 3]), "min <= opt <= max"),
    (lambda d: d["models"]["det_model"].__setitem__("max", [4, 4000, 2000, 3]), "H and W"),
    (lambda d: d["models"]["det_model"].__setitem__("max", [4, 3, 4000, 4000]), "3 channels"),  # NCHW in NHWC
    (lambda d: d["models"]["det_model"].__setitem__("layout", "NWHC"), "layout in"),
    (lambda d: d["models"]["rec_model"].__setitem__("outputs", []), "outputs"),
    (lambda d: d["models"].pop("cls_model"), "no profile"),
])
def test_inconsistent_profiles_are_refused(tmp_path, edit, message):
    data = json.loads((ROOT / "model_repository" / "gpu" / "profiles.json").read_text())
    edit(data)
    bad = tmp_path / "profiles.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(ProfileError, match=message):
        load_profiles(bad)


def test_covers_and_reason(profiles):
    rec = profiles["rec_model"]
    assert rec.covers((64, 48, 3200, 3)) and rec.covers((1, 48, 8, 3))
    assert not rec.covers((65, 48, 320, 3))
    assert "dim 2 = 3208" in rec.why_not_covered((1, 48, 3208, 3))


# ---- coverage of the shapes the CPU pipeline produces (needs the pipeline package + OpenCV) ----

@pytest.fixture(scope="module")
def ctx(profiles):
    stats = pytest.importorskip("ocr_server.engines.stats")
    pytest.importorskip("cv2")
    try:
        return stats.pipeline_settings(overrides=profiles.step_parameters)
    except RuntimeError as exc:
        pytest.skip(str(exc))


def test_det_shape_arithmetic_matches_build_det_batch(ctx):
    """stats._det_shape reproduces det_preprocess.build_det_batch without allocating large planes."""
    import numpy as np
    from ocr_server.engines import stats
    det = ctx.mods["det"]
    cases = [([(720, 1280)], 736, "min"), ([(1000, 754), (600, 900)], 736, "min"), ([(40, 1200)], 736, "min"),
             ([(1200, 300)], 4096, "min"), ([(900, 1400)], 960, "max")]
    for sizes, limit, kind in cases:
        prepared = [det.prepare_source(np.zeros((h, w, 3), np.uint8), ctx.settings) for h, w in sizes]
        srcs, infos = [p[0] for p in prepared], [p[1] for p in prepared]
        batch, _ = det.build_det_batch(list(srcs), list(infos), limit, kind, ctx.settings)
        assert stats._det_shape(ctx, sizes, limit, kind) == batch.shape, (sizes, limit, kind)


def test_profiles_cover_dev_split(ctx, profiles):
    from ocr_server.engines import stats
    evaldata = find_evaldata()
    if evaldata is None:
        pytest.skip("no evaluation data (shared/evaldata or $OCR_EVALDATA)")
    samples = stats.dev_set_shapes(evaldata, ctx)
    assert {s.model for s in samples} == set(RUNTIME_MODELS)
    assert stats.uncovered(samples, profiles) == []


def test_profiles_cover_synthetic_extremes(ctx, profiles):
    from ocr_server.engines import stats
    bad = stats.uncovered(stats.extreme_shapes(ctx), profiles)
    assert bad == [], ("shapes the pipeline accepts but the GPU engines cannot run; clamp the pipeline "
                       "(python_backend/models/*/config.pbtxt parameters or the GPU step_parameters in "
                       "model_repository/gpu/profiles.json: max_images_per_request <= det_max_batch, "
                       "max_side_limit * 2 <= det_max_side, rec_max_width, *_batch_size) or widen the profiles "
                       "and rebuild:\n  " + "\n  ".join(bad))


def test_step_batch_sizes_fit_the_engines(profiles):
    from ocr_server.engines.stats import step_parameters
    params = step_parameters(overrides=profiles.step_parameters)
    if not params:
        pytest.skip("python step configs not present")
    assert int(params.get("cls_batch_size", 1)) <= profiles["cls_model"].max_batch
    assert int(params.get("rec_batch_size", 1)) <= profiles["rec_model"].max_batch
    rec = profiles["rec_model"]
    assert int(params.get("rec_max_width", 0)) <= rec.dim(rec.max, "W")
    # the planner never sends a width below 8 (ppocr_steps.recognize.MIN_REC_WIDTH), whatever rec_min_width says
    assert max(int(params.get("rec_min_width", 8)), 8) >= rec.dim(rec.min, "W")
    assert int(params.get("rec_image_height", 48)) == rec.dim(rec.max, "H")
    assert int(params.get("max_images_per_request", 1)) <= profiles["det_model"].max_batch
    assert 2 * int(params.get("max_side_limit", 0)) <= profiles["det_model"].max[2]


def test_step_overrides_name_known_parameters(profiles):
    """Every GPU step override names a step and a parameter that exist (assemble refuses unknown keys)."""
    from ocr_server import pbtxt
    for step, kv in profiles.step_parameters.items():
        cfg = ROOT / "python_backend" / "models" / step / "config.pbtxt"
        if not cfg.exists():
            pytest.skip(f"{cfg} not present")
        known = pbtxt.parameters(pbtxt.load(cfg))
        assert set(kv) <= set(known), (step, set(kv) - set(known))


def test_opt_shapes_come_from_the_dev_distribution(ctx, profiles):
    """opt lies within the inter-quartile range of the dev-split call shapes, per dimension."""
    import numpy as np
    from ocr_server.engines import stats
    evaldata = find_evaldata()
    if evaldata is None:
        pytest.skip("no evaluation data")
    samples = stats.dev_set_shapes(evaldata, ctx)
    for model in RUNTIME_MODELS:
        arr = np.asarray([s.shape for s in samples if s.model == model], dtype=float)
        lo, hi = np.percentile(arr, 25, axis=0), np.percentile(arr, 75, axis=0)
        opt = np.asarray(profiles[model].opt, dtype=float)
        p = profiles[model]
        slack = np.zeros(4)
        slack[[p.axis("H"), p.axis("W")]] = (32, 32) if model == "det_model" else (0, 8)
        assert np.all(opt >= lo - slack) and np.all(opt <= hi + slack), (model, opt, lo, hi)
