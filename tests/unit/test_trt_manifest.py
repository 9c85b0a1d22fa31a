"""Engine manifest: engines built for another TensorRT / GPU / ONNX / profile set are refused."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]

from ocr_server.engines.cli import main  # noqa: E402
from ocr_server.engines.layout import RUNTIME_MODELS  # noqa: E402
from ocr_server.engines.manifest import (  # noqa: E402
    EngineManifest,
    EngineMismatchError,
    ModelEntry,
    check_manifest,
    normalize_compute_capability,
    normalize_trt_version,
)
from ocr_server.engines.preflight import check_engines  # noqa: E402
from ocr_server.engines.profiles import load_profiles  # noqa: E402


def _manifest(**kw) -> EngineManifest:
    base: dict[str, Any] = dict(model_set="v4", tensorrt_version="10.4.0.26", gpu_name="Tesla T4",
                                compute_capability="7.5", models={}, profiles_sha256="")
    base.update(kw)
    return EngineManifest(**base)


def test_matching_machine_is_accepted():
    check_manifest(_manifest(), "10.4.0", "Tesla T4", "sm_75")
    check_manifest(_manifest().__dict__ | {"models": {}}, "10.4.0.26-1+cuda12.6", "Tesla T4", (7, 5))


def test_other_tensorrt_and_gpu_are_refused_with_a_rebuild_hint():
    with pytest.raises(EngineMismatchError) as err:
        check_manifest(_manifest(), "10.7.0", "NVIDIA H100 80GB HBM3", "9.0")
    msg = str(err.value)
    assert "engine built for TensorRT 10.4.0 on sm_75 (Tesla T4), running TensorRT 10.7.0 on sm_90" in msg
    assert "rebuild with scripts/build_engines.sh --model-set v4" in msg


@pytest.mark.parametrize("trt, name, cc", [("10.5.0", "Tesla T4", "7.5"), ("10.4.0", "Tesla T4", "8.6"),
                                           ("10.4.0", "NVIDIA GeForce RTX 2080", "7.5")])
def test_any_single_mismatch_is_refused(trt, name, cc):
    with pytest.raises(EngineMismatchError):
        check_manifest(_manifest(), trt, name, cc)


def test_other_board_same_architecture_can_be_allowed():
    check_manifest(_manifest(), "10.4.0", "NVIDIA GeForce RTX 2080", "7.5", allow_other_gpu_model=True)


def test_normalizers():
    assert normalize_trt_version("10.4.0.26") == "10.4.0"
    assert normalize_trt_version("10.4") == "10.4.0"
    assert normalize_compute_capability("sm_75") == "7.5"
    assert normalize_compute_capability("86") == "8.6"
    assert normalize_compute_capability("12.0") == "12.0"
    with pytest.raises(ValueError):
        normalize_trt_version("none")


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


@pytest.fixture()
def engine_set(tmp_path):
    """A complete fake engine set + models dir; returns (engines root, models root, profiles)."""
    profiles = load_profiles()
    engines, models = tmp_path / "engines", tmp_path / "models"
    entries = {}
    for model, role in RUNTIME_MODELS.items():
        plan = engines / "v4" / model / "model.plan"
        plan.parent.mkdir(parents=True)
        plan.write_bytes(f"plan-{model}".encode())
        onnx = models / "v4" / f"{role}.onnx"
        onnx.parent.mkdir(parents=True, exist_ok=True)
        onnx.write_bytes(f"onnx-{role}".encode())
        entries[model] = ModelEntry(onnx=str(onnx), onnx_sha256=_sha(onnx.read_bytes()), plan=f"{model}/model.plan",
                                    plan_sha256=_sha(plan.read_bytes()), plan_bytes=plan.stat().st_size)
    _manifest(models=entries, profiles_sha256=profiles.sha256).write(engines / "v4")
    return engines, models, profiles


def _check(engine_set, **kw):
    engines, models, profiles = engine_set
    args = dict(trt_version="10.4.0", gpu_name="Tesla T4", compute_capability="7.5", profiles=profiles,
                models_dir=models)
    args.update(kw)
    return check_engines(engines, "v4", **args)


def test_complete_set_passes(engine_set):
    assert set(_check(engine_set).models) == set(RUNTIME_MODELS)
    engines = engine_set[0]
    check_engines(engines / "v4", "v4", "10.4.0", "Tesla T4", "7.5")  # set directory works too


def test_missing_manifest(tmp_path):
    with pytest.raises(EngineMismatchError, match="build the engines first with scripts/build_engines.sh"):
        check_engines(tmp_path, "v5", "10.4.0", "Tesla T4", "7.5")


def test_corrupt_plan_is_refused(engine_set):
    (engine_set[0] / "v4" / "rec_model" / "model.plan").write_bytes(b"truncated")
    with pytest.raises(EngineMismatchError, match="does not match its manifest"):
        _check(engine_set)


def test_changed_onnx_is_refused(engine_set):
    (engine_set[1] / "v4" / "det.onnx").write_bytes(b"new weights")
    with pytest.raises(EngineMismatchError, match="changed since det_model was built"):
        _check(engine_set)


def test_changed_profiles_are_refused(engine_set, tmp_path):
    src = (ROOT / "model_repository" / "gpu" / "profiles.json").read_text()
    other = tmp_path / "profiles.json"
    other.write_text(src + "\n")  # same limits, different bytes: another profiles.json
    with pytest.raises(EngineMismatchError, match="changed since the engines were built"):
        _check(engine_set, profiles=load_profiles(other))


def test_wrong_model_set_is_refused(engine_set):
    engines = engine_set[0]
    (engines / "v5").symlink_to(engines / "v4")
    with pytest.raises(EngineMismatchError, match="model set v4, not v5"):
        check_engines(engines, "v5", "10.4.0", "Tesla T4", "7.5")


def test_cli_check_refuses_mismatch(engine_set, capsys):
    engines, models, _ = engine_set
    rc = main(["check", "--model-set", "v4", "--engines", str(engines), "--models-dir", str(models),
               "--trt-version", "10.9.0",
               "--gpu-name", "NVIDIA A10G", "--compute-capability", "8.6"])
    assert rc == 1
    assert "running TensorRT 10.9.0 on sm_86" in capsys.readouterr().err
    rc = main(["check", "--model-set", "v4", "--engines", str(engines), "--models-dir", str(models),
               "--trt-version", "10.4.0.26",
               "--gpu-name", "Tesla T4", "--compute-capability", "7.5"])
    assert rc == 0
    assert "OK" in capsys.readouterr().out


def test_manifest_round_trip(tmp_path):
    m = _manifest(models={"det_model": ModelEntry(onnx="a", onnx_sha256="b", plan="det_model/model.plan",
                                                   fp32_layers=["x"], gate={"worst_mask_iou": 0.99})})
    m.write(tmp_path)
    back = EngineManifest.load(tmp_path)
    assert back == m
    with pytest.raises(EngineMismatchError, match="malformed"):
        EngineManifest.from_dict({"model_set": "v4"})
