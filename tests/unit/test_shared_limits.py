"""The limits every step must enforce are set once (det_preprocess, det_postprocess, rec_pipeline) and
copied by the assembler into the configs of the later steps and CPU runtime models; the launcher hands
the pixel limit to OpenCV's decoder."""
from __future__ import annotations

from pathlib import Path

import pytest
from ocr_server import pbtxt
from ocr_server.assemble import SHARED_LIMITS, assemble, effective_configs
from ocr_server.launcher import decoder_pixel_limit

from ppocr_steps.onnx_runtime import ORT_PARAMETERS
from ppocr_steps.settings import INPUT_LIMIT_KEYS, STEP_SETTINGS, limits_from_parameters, settings_from_parameters

ROOT = Path(__file__).resolve().parents[2]
OWN_KEYS = {"dictionary", "cls_model_name", "rec_model_name", "ori_model_name", "ori_labels"}  # not settings
OVERRIDES = {"det_preprocess": {"max_images_per_request": "3", "max_image_pixels": "1234567"},
             "rec_pipeline": {"rec_max_width": "1600"}}


def test_every_input_limit_has_one_source() -> None:
    shared = [key for (_, keys), _ in SHARED_LIMITS.items() for key in keys]
    assert sorted(shared) == sorted(INPUT_LIMIT_KEYS)


@pytest.mark.parametrize("target", ["cpu", "gpu"])
def test_effective_configs_share_the_limits(target: str) -> None:
    if target == "gpu" and not (ROOT / "model_repository" / "gpu" / "det_model" / "config.pbtxt").exists():
        pytest.skip("no gpu configs")
    configs = effective_configs(target, "v4", OVERRIDES)
    params = {name: pbtxt.parameters(config) for name, config in configs.items()}
    for (source, keys), receivers in SHARED_LIMITS.items():
        for receiver in receivers:
            if receiver.endswith("_model") and target != "cpu":
                assert not set(keys) & set(params[receiver]), receiver  # TensorRT configs stay as they are
                continue
            assert {k: params[receiver][k] for k in keys} == {k: params[source][k] for k in keys}, receiver
    assert params["det_postprocess"]["max_images_per_request"] == "3"
    for step, cls in STEP_SETTINGS.items():  # every step still reads its settings and its limits
        settings_from_parameters(params[step], cls, ignore=set(INPUT_LIMIT_KEYS) | OWN_KEYS)
        if step != "det_preprocess":
            assert limits_from_parameters(params[step]).max_image_pixels == 1234567
    if target == "cpu":
        for model in ("det_model", "cls_model", "rec_model"):
            assert limits_from_parameters(params[model]).rec_max_width == 1600
            assert ORT_PARAMETERS | {"max_run_pixels"} <= set(params[model])


def test_launcher_gives_the_decoder_the_pixel_limit(tmp_path: Path) -> None:
    models = ROOT / "build" / "models"
    if not (models / "v4" / "det.onnx").exists():
        pytest.skip("models not fetched")
    repo = assemble("cpu", "v4", tmp_path / "r", OVERRIDES, models, ROOT / "build" / "engines")
    assert decoder_pixel_limit(repo) == "1234567"
    assert decoder_pixel_limit(tmp_path / "nowhere") is None
