"""Server settings parsed from config.pbtxt `parameters` (string values)."""
from __future__ import annotations

from dataclasses import asdict, fields

import pytest

from ppocr_steps.errors import InvalidInputError
from ppocr_steps.params import OcrParams
from ppocr_steps.settings import PipelineSettings, defaults_from_parameters, settings_from_parameters


def test_empty_parameters_give_defaults() -> None:
    assert settings_from_parameters({}) == PipelineSettings()


def test_paddleocr_defaults() -> None:
    s = PipelineSettings()
    assert (s.max_candidates, s.use_dilation, s.score_mode, s.min_box_size) == (1000, True, "fast", 3)
    assert (s.cls_thresh, s.rec_image_height, s.rec_min_width) == (0.9, 48, 320)


def test_types_are_coerced_from_strings() -> None:
    s = settings_from_parameters({
        "max_candidates": "250",
        "cls_thresh": "0.75",
        "letterbox_max_wh_ratio": "8",
        "use_dilation": "false",
        "score_mode": "slow",
        "rec_width_multiple": "8",
    })
    assert s.max_candidates == 250 and type(s.max_candidates) is int
    assert s.cls_thresh == 0.75 and type(s.cls_thresh) is float
    assert s.letterbox_max_wh_ratio == 8.0 and type(s.letterbox_max_wh_ratio) is float
    assert s.use_dilation is False
    assert s.score_mode == "slow"
    assert s.rec_width_multiple == 8
    # untouched fields keep their defaults
    assert s.max_side_limit == PipelineSettings().max_side_limit


@pytest.mark.parametrize("text,expected", [
    ("true", True), ("True", True), ("TRUE", True), ("1", True), ("yes", True), ("on", True),
    ("false", False), ("False", False), ("0", False), ("no", False), ("off", False),
])
def test_bool_strings(text: str, expected: bool) -> None:
    assert settings_from_parameters({"use_dilation": text}).use_dilation is expected


@pytest.mark.parametrize("text", ["maybe", "", "2", "t"])
def test_bad_bool_refused(text: str) -> None:
    with pytest.raises(ValueError, match="boolean"):
        settings_from_parameters({"use_dilation": text})


@pytest.mark.parametrize("key,text", [("max_candidates", "many"), ("max_candidates", "1.5"),
                                      ("cls_thresh", "half"), ("rec_batch_size", "")])
def test_bad_numbers_refused(key: str, text: str) -> None:
    with pytest.raises(ValueError):
        settings_from_parameters({key: text})


@pytest.mark.parametrize("key", ["max_candidate", "unknown", "default_foo", "limit_side_len", "dictionary"])
def test_unknown_keys_refused(key: str) -> None:
    with pytest.raises(ValueError, match=f"unknown config parameter '{key}'"):
        settings_from_parameters({key: "1"})


def test_unknown_key_error_lists_known_keys() -> None:
    with pytest.raises(ValueError) as info:
        settings_from_parameters({"bogus": "1"})
    for f in fields(PipelineSettings):
        assert f.name in str(info.value)


def test_default_keys_are_ignored_by_settings() -> None:
    params = {f"default_{f.name}": "not-validated-here" for f in fields(OcrParams)}
    assert settings_from_parameters(params) == PipelineSettings()


def test_ignore_set_allows_model_specific_keys() -> None:
    params = {"dictionary": "dict.txt", "cls_model_name": "cls_model", "rec_batch_size": "16"}
    s = settings_from_parameters(params, ignore={"dictionary", "cls_model_name"})
    assert s.rec_batch_size == 16
    with pytest.raises(ValueError, match="'cls_model_name'"):
        settings_from_parameters(params, ignore={"dictionary"})


@pytest.mark.parametrize("mode", ["FAST", "medium", "", "slow "])
def test_bad_score_mode_refused(mode: str) -> None:
    with pytest.raises(ValueError, match="score_mode"):
        settings_from_parameters({"score_mode": mode})


@pytest.mark.parametrize("mode", ["fast", "slow"])
def test_score_modes_accepted(mode: str) -> None:
    assert settings_from_parameters({"score_mode": mode}).score_mode == mode


@pytest.mark.parametrize("key", ["det_mean", "det_std"])
def test_detector_normalisation_is_not_a_step_parameter(key: str) -> None:
    """mean/std belong to the model set and live in the detector graph (server/ocr_server/models.json)."""
    with pytest.raises(ValueError, match=f"unknown config parameter '{key}'"):
        settings_from_parameters({key: "0.5"})


def test_every_field_round_trips_through_strings() -> None:
    s = PipelineSettings()
    as_strings = {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in asdict(s).items()}
    assert settings_from_parameters(as_strings) == s


# ---- defaults_from_parameters: per-request defaults from `default_*`, validated like a request ----

def test_defaults_without_keys_are_ocrparams_defaults() -> None:
    assert defaults_from_parameters({}) == OcrParams()
    assert defaults_from_parameters({"max_candidates": "5"}) == OcrParams()


def test_defaults_coerced() -> None:
    d = defaults_from_parameters({
        "default_limit_side_len": "960", "default_limit_type": "max", "default_thresh": "0.25",
        "default_box_thresh": "0.7", "default_unclip_ratio": "2", "default_use_textline_orientation": "false",
        "default_text_rec_score_thresh": "0",
    })
    assert d == OcrParams(limit_side_len=960, limit_type="max", thresh=0.25, box_thresh=0.7, unclip_ratio=2.0,
                          use_textline_orientation=False, text_rec_score_thresh=0.0)
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
        defaults_from_parameters({key: value})
    assert needle in str(info.value)


@pytest.mark.parametrize("key,value", [("default_limit_side_len", "736.5"), ("default_thresh", "low"),
                                       ("default_use_textline_orientation", "perhaps")])
def test_defaults_uncoercible_refused(key: str, value: str) -> None:
    with pytest.raises(ValueError):
        defaults_from_parameters({key: value})
