"""Per-request parameters: defaults, ranges, types, JSON transport between the ensemble steps."""
from __future__ import annotations

import json
import math
from dataclasses import asdict, fields
from typing import Any

import pytest
from served import served_defaults

from ppocr_steps.errors import InvalidInputError
from ppocr_steps.params import PARAM_RANGES, OcrParams, params_from_json, params_to_json, parse_params

DEFAULTS = served_defaults()

# name -> (allowed-range text in the error message, values accepted at the edges, values refused just outside)
RANGES: dict[str, tuple[str, list[Any], list[Any]]] = {
    "limit_side_len": ("[32, 4096]", [32, 4096], [31, 4097, 0, -32]),
    "thresh": ("(0.0, 1.0)", [math.nextafter(0.0, 1.0), 1e-6, 0.5, 1.0 - 1e-9], [0.0, 1.0, -1e-9, 1.0 + 1e-9]),
    "box_thresh": ("[0.0, 1.0]", [0.0, 1.0, 0.5], [-1e-9, 1.0 + 1e-9, -1.0, 2.0]),
    "unclip_ratio": ("(0.0, 10.0]", [1e-9, 10.0, 1.5], [0.0, -1e-9, 10.0 + 1e-9, 11.0]),
    "text_rec_score_thresh": ("[0.0, 1.0]", [0.0, 1.0], [-1e-9, 1.0 + 1e-9]),
}


def _refused(raw: dict, *needles: str) -> InvalidInputError:
    with pytest.raises(InvalidInputError) as info:
        parse_params(raw, DEFAULTS)
    msg = str(info.value)
    for needle in needles:
        assert needle in msg, f"{needle!r} missing from error message {msg!r}"
    assert info.value.reason == "bad_parameter"
    return info.value


def test_defaults_are_paddlex_values() -> None:
    assert asdict(DEFAULTS) == {
        "limit_side_len": 736,
        "limit_type": "min",
        "thresh": 0.3,
        "box_thresh": 0.5,
        "unclip_ratio": 1.6,
        "use_textline_orientation": True,
        "text_rec_score_thresh": 0.5,
        "use_doc_orientation_classify": True,
        "use_doc_unwarping": False,
    }


def test_empty_request_keeps_defaults() -> None:
    assert parse_params({}, DEFAULTS) == DEFAULTS


def test_none_means_not_sent() -> None:
    assert parse_params({name: None for name in asdict(DEFAULTS)}, DEFAULTS) == DEFAULTS


def test_server_defaults_are_the_base() -> None:
    server = served_defaults(limit_side_len=960, limit_type="max", thresh=0.2)
    out = parse_params({"box_thresh": 0.7}, server)
    assert (out.limit_side_len, out.limit_type, out.thresh, out.box_thresh) == (960, "max", 0.2, 0.7)


def test_every_numeric_parameter_has_a_tested_range() -> None:
    numeric = {name for name, spec in PARAM_RANGES.items() if len(spec) == 4}
    assert numeric == set(RANGES)


@pytest.mark.parametrize("name", sorted(RANGES))
def test_range_edges_accepted(name: str) -> None:
    for value in RANGES[name][1]:
        out = parse_params({name: value}, DEFAULTS)
        assert getattr(out, name) == value
        # only the named parameter changes
        assert asdict(out) == {**asdict(DEFAULTS), name: value}


@pytest.mark.parametrize("name", sorted(RANGES))
def test_just_outside_range_refused_with_name_and_range(name: str) -> None:
    allowed = RANGES[name][0]
    for value in RANGES[name][2]:
        _refused({name: value}, f"'{name}'", allowed, "out of range")


@pytest.mark.parametrize("name", sorted(RANGES))
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_refused(name: str, value: float) -> None:
    _refused({name: value}, f"'{name}'", RANGES[name][0])


def test_huge_int_refused_not_overflow() -> None:
    _refused({"limit_side_len": 10**400}, "'limit_side_len'", "[32, 4096]")
    _refused({"thresh": 10**400}, "'thresh'", "(0.0, 1.0)")


def test_limit_side_len_type_is_int() -> None:
    out = parse_params({"limit_side_len": 960}, DEFAULTS)
    assert out.limit_side_len == 960 and type(out.limit_side_len) is int
    # an integral float is an integer value (e.g. from a JSON client); kept as int
    out = parse_params({"limit_side_len": 700.0}, DEFAULTS)
    assert out.limit_side_len == 700 and type(out.limit_side_len) is int
    _refused({"limit_side_len": 700.5}, "'limit_side_len'", "integer", "700.5")


def test_float_parameters_accept_ints() -> None:
    out = parse_params({"box_thresh": 1, "unclip_ratio": 2}, DEFAULTS)
    assert out.box_thresh == 1.0 and type(out.box_thresh) is float
    assert out.unclip_ratio == 2.0 and type(out.unclip_ratio) is float


@pytest.mark.parametrize("name", sorted(RANGES))
@pytest.mark.parametrize("value", ["0.5", b"1", [0.5], {"v": 0.5}])
def test_wrong_type_refused(name: str, value: object) -> None:
    _refused({name: value}, f"'{name}'", "must be a number")


@pytest.mark.parametrize("name", sorted(RANGES))
@pytest.mark.parametrize("value", [True, False])
def test_bool_is_not_a_number(name: str, value: bool) -> None:
    _refused({name: value}, f"'{name}'", "must be a number")


@pytest.mark.parametrize("value", [True, False, 1, 0])
def test_use_textline_orientation_accepts_bool_and_0_1(value: object) -> None:
    out = parse_params({"use_textline_orientation": value}, served_defaults(use_textline_orientation=not bool(value)))
    assert out.use_textline_orientation is bool(value)


@pytest.mark.parametrize("value", [2, -1, 0.5, 1.0, "true", b"\x01", "yes"])
def test_use_textline_orientation_refuses_non_bool(value: object) -> None:
    _refused({"use_textline_orientation": value}, "'use_textline_orientation'", "boolean")


@pytest.mark.parametrize("value,expected", [("min", "min"), ("max", "max"), (b"max", "max"), (b"min", "min")])
def test_limit_type_allowed(value: object, expected: str) -> None:
    start = served_defaults(limit_type="max" if expected == "min" else "min")
    out = parse_params({"limit_type": value}, start)
    assert out.limit_type == expected and type(out.limit_type) is str


@pytest.mark.parametrize("value", ["MIN", "Max", "", "mean", "min ", b"\xff\xfe", b"other", 1, {"v": "min"}])
def test_limit_type_other_refused(value: object) -> None:
    _refused({"limit_type": value}, "'limit_type'", "'min'", "'max'")


@pytest.mark.parametrize("name", ["limit_sidelen", "det_limit_side_len", "Thresh", "max_candidates", "", "score"])
def test_unknown_parameter_refused_listing_known(name: str) -> None:
    err = _refused({name: 1}, f"unknown parameter '{name}'")
    for known in asdict(DEFAULTS):
        assert known in str(err)


def test_unknown_refused_even_alongside_valid_ones() -> None:
    _refused({"thresh": 0.4, "bogus": 1}, "'bogus'")


def test_first_error_names_the_bad_parameter_not_a_good_one() -> None:
    err = _refused({"thresh": 0.4, "box_thresh": 3.0}, "'box_thresh'")
    assert "'thresh'" not in str(err)


def test_parse_does_not_mutate_defaults() -> None:
    base = served_defaults()
    parse_params({"thresh": 0.1, "limit_type": "max"}, base)
    assert base == served_defaults()


def test_json_round_trip_defaults() -> None:
    data = params_to_json(DEFAULTS)
    assert isinstance(data, bytes)
    assert params_from_json(data) == DEFAULTS


def test_json_round_trip_every_field_changed() -> None:
    p = OcrParams(limit_side_len=1024, limit_type="max", thresh=0.123456789, box_thresh=0.0, unclip_ratio=10.0,
                  use_textline_orientation=False, text_rec_score_thresh=1.0, use_doc_orientation_classify=False,
                  use_doc_unwarping=False)
    back = params_from_json(params_to_json(p))
    assert back == p
    for f in fields(OcrParams):
        assert type(getattr(back, f.name)) is type(getattr(p, f.name)), f.name


def test_json_is_plain_object_with_all_fields() -> None:
    obj = json.loads(params_to_json(DEFAULTS))
    assert set(obj) == {f.name for f in fields(OcrParams)}
    assert obj["limit_type"] == "min" and obj["use_textline_orientation"] is True


def test_unwarping_is_refused_with_the_reason() -> None:
    err = _refused({"use_doc_unwarping": True}, "use_doc_unwarping", "licence")
    assert "use_doc_unwarping=false" in str(err)
    assert parse_params({"use_doc_unwarping": False, "use_doc_orientation_classify": False}, DEFAULTS) \
        .use_doc_orientation_classify is False
