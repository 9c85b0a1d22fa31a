"""The limits every step must enforce are set once (det_preprocess, rec_pipeline) and copied by the
assembler into the configs of the later steps and CPU runtime models; the launcher hands the pixel
limit to OpenCV's decoder."""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
from google.protobuf import text_format  # noqa: E402
from ocr_server.assemble import SHARED_LIMITS, add_parameters, assemble, get_parameter  # noqa: E402
from ocr_server.launcher import decoder_pixel_limit  # noqa: E402

from ppocr_steps.onnx_runtime import ORT_PARAMETERS  # noqa: E402
from ppocr_steps.settings import settings_from_parameters  # noqa: E402


def params_of(path: Path) -> dict[str, str]:
    config = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
    return {k: v.string_value for k, v in config.parameters.items()}


def test_add_parameters_adds_and_replaces() -> None:
    text = 'name: "m"\nparameters [\n  { key: "a" value { string_value: "1" } }\n]\n'
    out = add_parameters(text, {"a": "2", "b": "3"}, "m")
    assert get_parameter(out, "a", "m") == "2" and get_parameter(out, "b", "m") == "3"
    text_format.Parse(out, model_config_pb2.ModelConfig())


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    models = ROOT / "build" / "models"
    if not (models / "v4" / "det.onnx").exists():
        pytest.skip("models not fetched (scripts/fetch_models.py)")
    overrides = {"det_preprocess": {"max_images_per_request": "3", "max_image_pixels": "1234567"},
                 "rec_pipeline": {"rec_max_width": "1600"}}
    return assemble("cpu", "v4", tmp_path_factory.mktemp("repo") / "r", overrides, models, ROOT / "build" / "engines")


def test_assembled_configs_share_the_limits(repo: Path) -> None:
    for (source, keys), receivers in SHARED_LIMITS.items():
        values = {k: params_of(repo / source / "config.pbtxt")[k] for k in keys}
        for receiver in receivers:
            params = params_of(repo / receiver / "config.pbtxt")
            assert {k: params[k] for k in keys} == values, receiver
    assert params_of(repo / "det_model" / "config.pbtxt")["max_images_per_request"] == "3"
    assert params_of(repo / "rec_model" / "config.pbtxt")["rec_max_width"] == "1600"
    # each receiver still parses its parameters (runtime models: ORT keys + max_run_pixels)
    for model in ("det_model", "cls_model", "rec_model"):
        settings_from_parameters(params_of(repo / model / "config.pbtxt"), ignore=ORT_PARAMETERS | {"max_run_pixels"})
    for step in ("det_postprocess", "rec_pipeline"):
        s = settings_from_parameters(params_of(repo / step / "config.pbtxt"),
                                     ignore={"dictionary", "cls_model_name", "rec_model_name"})
        assert s.max_images_per_request == 3


def test_launcher_gives_the_decoder_the_pixel_limit(repo: Path) -> None:
    assert decoder_pixel_limit(repo) == "1234567"
    assert decoder_pixel_limit(repo / "nowhere") is None
