"""Server settings parsed from config.pbtxt `parameters` (string values); every setting is required."""
from __future__ import annotations

from dataclasses import asdict, fields

import pytest
from served import served_defaults, served_settings, step_parameters

from ppocr_steps.errors import InvalidInputError
from ppocr_steps.params import OcrParams
from ppocr_steps.settings import (
    STEP_SETTINGS,
    PipelineSettings,
    PostprocessSettings,
    PreprocessSettings,
    RecognitionSettings,
    defaults_from_parameters,
    pipeline_settings_from_parameters,
    settings_from_parameters,
)


def as_string(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def as_strings(settings: object) -> dict[str, str]:
    return {k: as_string(v) for k, v in asdict(settings).items()}  # type: ignore[call-overload]


# det_postprocess's served parameters, the smallest complete set to vary in these tests
POST = {f.name: as_string(getattr(served_settings(), f.name)) for f in fields(PostprocessSettings)}


@pytest.mark.parametrize("cls", [PreprocessSettings, PostprocessSettings, RecognitionSettings, PipelineSettings])
def test_settings_have_no_defaults(cls: type) -> None:
    """config.pbtxt is the one source of every value: a dataclass default would be a second one."""
    with pytest.raises(TypeError):
        cls()


def test_ocrparams_have_no_defaults() -> None:
    with pytest.raises(TypeError):
        OcrParams()  # type: ignore[call-arg]


def test_each_step_config_holds_exactly_its_settings() -> None:
    ignore = {"dictionary", "cls_model_name", "rec_model_name", "ori_model_name", "ori_labels"}
    for step, cls in STEP_SETTINGS.items():
        params = step_parameters(step)
        keys = {k for k in params if not k.startswith("default_")} - ignore
        assert keys == {f.name for f in fields(cls)}, step
        settings_from_parameters(params, cls, ignore=ignore)
    assert {f.name for f in fields(PipelineSettings)} == {f.name for c in STEP_SETTINGS.values() for f in fields(c)}


def test_missing_key_is_an_error_naming_it() -> None:
    params = dict(POST)
    del params["min_box_size"]
    with pytest.raises(ValueError, match="min_box_size missing"):
        settings_from_parameters(params, PostprocessSettings)


def test_types_are_coerced_from_strings() -> None:
    s = settings_from_parameters({**POST, "max_candidates": "250", "use_dilation": "false", "score_mode": "slow"},
                                 PostprocessSettings)
    assert s.max_candidates == 250 and type(s.max_candidates) is int
    assert s.use_dilation is False
    assert s.score_mode == "slow"
    full = as_strings(served_settings())
    p = pipeline_settings_from_parameters({**full, "cls_thresh": "0.75", "letterbox_max_wh_ratio": "8"})
    assert p.cls_thresh == 0.75 and type(p.cls_thresh) is float
    assert p.letterbox_max_wh_ratio == 8.0 and type(p.letterbox_max_wh_ratio) is float


@pytest.mark.parametrize("text,expected", [
    ("true", True), ("True", True), ("TRUE", True), ("1", True), ("yes", True), ("on", True),
    ("false", False), ("False", False), ("0", False), ("no", False), ("off", False),
])
def test_bool_strings(text: str, expected: bool) -> None:
    assert settings_from_parameters({**POST, "use_dilation": text}, PostprocessSettings).use_dilation is expected


@pytest.mark.parametrize("text", ["maybe", "", "2", "t"])
def test_bad_bool_refused(text: str) -> None:
    with pytest.raises(ValueError, match="boolean"):
        settings_from_parameters({**POST, "use_dilation": text}, PostprocessSettings)


@pytest.mark.parametrize("key,text", [("max_candidates", "many"), ("max_candidates", "1.5"),
                                      ("cls_thresh", "half"), ("rec_batch_size", "")])
def test_bad_numbers_refused(key: str, text: str) -> None:
    with pytest.raises(ValueError, match=key):
        pipeline_settings_from_parameters({**as_strings(served_settings()), key: text})


@pytest.mark.parametrize("key", ["max_candidate", "unknown", "default_foo", "limit_side_len", "dictionary",
                                 "rec_batch_size"])
def test_unknown_keys_refused(key: str) -> None:
    with pytest.raises(ValueError, match=f"unknown config parameter\\(s\\) {key} "):
        settings_from_parameters({**POST, key: "1"}, PostprocessSettings)


def test_unknown_key_error_lists_known_keys() -> None:
    with pytest.raises(ValueError) as info:
        settings_from_parameters({**POST, "bogus": "1"}, PostprocessSettings)
    for f in fields(PostprocessSettings):
        assert f.name in str(info.value)


def test_default_keys_are_ignored_by_settings() -> None:
    params = {f"default_{f.name}": "not-validated-here" for f in fields(OcrParams)}
    expected = settings_from_parameters(POST, PostprocessSettings)
    assert settings_from_parameters({**POST, **params}, PostprocessSettings) == expected


def test_ignore_set_allows_model_specific_keys() -> None:
    rec = {k: v for k, v in step_parameters("rec_pipeline").items() if k != "rec_model_name"}
    s = settings_from_parameters({**rec, "rec_batch_size": "16"}, RecognitionSettings,
                                 ignore={"dictionary", "cls_model_name"})
    assert s.rec_batch_size == 16
    with pytest.raises(ValueError, match="cls_model_name"):
        settings_from_parameters(rec, RecognitionSettings, ignore={"dictionary"})


@pytest.mark.parametrize("mode", ["FAST", "medium", "", "slow "])
def test_bad_score_mode_refused(mode: str) -> None:
    with pytest.raises(ValueError, match="score_mode"):
        settings_from_parameters({**POST, "score_mode": mode}, PostprocessSettings)


@pytest.mark.parametrize("mode", ["fast", "slow"])
def test_score_modes_accepted(mode: str) -> None:
    assert settings_from_parameters({**POST, "score_mode": mode}, PostprocessSettings).score_mode == mode


@pytest.mark.parametrize("key", ["det_mean", "det_std"])
def test_detector_normalisation_is_not_a_step_parameter(key: str) -> None:
    """mean/std belong to the model set and live in the detector graph (server/ocr_server/models.json)."""
    with pytest.raises(ValueError, match=f"unknown config parameter\\(s\\) {key} "):
        settings_from_parameters({**POST, key: "0.5"}, PostprocessSettings)


def test_every_field_round_trips_through_strings() -> None:
    s = served_settings()
    assert pipeline_settings_from_parameters(as_strings(s)) == s


# ---- defaults_from_parameters: per-request defaults from `default_*`, validated like a request ----

DEFAULTS = {k: v for k, v in step_parameters("det_preprocess").items() if k.startswith("default_")}


def test_served_defaults_come_from_det_preprocess() -> None:
    assert defaults_from_parameters(step_parameters("det_preprocess")) == served_defaults()
    assert defaults_from_parameters({**DEFAULTS, "max_candidates": "5"}) == served_defaults()


def test_missing_default_is_an_error_naming_it() -> None:
    params = dict(DEFAULTS)
    del params["default_unclip_ratio"]
    with pytest.raises(ValueError, match="default_unclip_ratio missing"):
        defaults_from_parameters(params)


def test_defaults_coerced() -> None:
    d = defaults_from_parameters({
        "default_limit_side_len": "960", "default_limit_type": "max", "default_thresh": "0.25",
        "default_box_thresh": "0.7", "default_unclip_ratio": "2", "default_use_textline_orientation": "false",
        "default_text_rec_score_thresh": "0", "default_use_doc_orientation_classify": "false",
        "default_use_doc_unwarping": "false",
    })
    assert d == OcrParams(limit_side_len=960, limit_type="max", thresh=0.25, box_thresh=0.7, unclip_ratio=2.0,
                          use_textline_orientation=False, text_rec_score_thresh=0.0,
                          use_doc_orientation_classify=False, use_doc_unwarping=False)
    assert type(d.limit_side_len) is int and type(d.unclip_ratio) is float


@pytest.mark.parametrize("key,value,needle", [
    ("default_limit_side_len", "8192", "'limit_side_len'"),
    ("default_limit_side_len", "16", "[32, 4096]"),
    ("default_limit_type", "middle", "'limit_type'"),
    ("default_thresh", "1.0", "'thresh'"),
    ("default_thresh", "nan", "'thresh'"),
    ("default_box_thresh", "1.5", "'box_thresh'"),
    ("default_unclip_ratio", "0", "'unclip_ratio'"),
    ("default_text_rec_score_thresh", "-0.1", "'text_rec_score_thresh'"),
])
def test_defaults_validated_like_a_request(key: str, value: str, needle: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        defaults_from_parameters({**DEFAULTS, key: value})
    assert needle in str(info.value)


@pytest.mark.parametrize("key,value", [("default_limit_side_len", "736.5"), ("default_thresh", "low"),
                                       ("default_use_textline_orientation", "perhaps")])
def test_defaults_uncoercible_refused(key: str, value: str) -> None:
    with pytest.raises(ValueError, match=key):
        defaults_from_parameters({**DEFAULTS, key: value})


def test_runtime_model_parameters_are_required() -> None:
    from ppocr_steps.onnx_runtime import OrtModel

    with pytest.raises(ValueError, match="allow_spinning, cpu_mem_arena, intra_op_threads missing"):
        OrtModel.from_parameters("/nonexistent", {"onnx_file": "model.onnx"})
