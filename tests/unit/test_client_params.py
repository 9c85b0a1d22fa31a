"""Parameters -> input tensors (names, dtypes, shapes), no server."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from ocr_client import OcrInvalidInputError, OcrParams
from ocr_client._params import build_tensors, param_specs
from ocr_client._triton import grpc_channel_args, make_inputs, make_outputs, resolve_url

ALL: dict[str, Any] = dict(limit_side_len=960, limit_type="max", thresh=0.3, box_thresh=0.6, unclip_ratio=1.5,
           use_textline_orientation=True, text_rec_score_thresh=0.5, use_doc_orientation_classify=True,
           use_doc_unwarping=False)
EXPECTED = {  # name: (triton dtype, numpy dtype)
    "limit_side_len": ("INT32", np.int32),
    "limit_type": ("BYTES", np.object_),
    "thresh": ("FP32", np.float32),
    "box_thresh": ("FP32", np.float32),
    "unclip_ratio": ("FP32", np.float32),
    "use_textline_orientation": ("BOOL", np.bool_),
    "text_rec_score_thresh": ("FP32", np.float32),
    "use_doc_orientation_classify": ("BOOL", np.bool_),
    "use_doc_unwarping": ("BOOL", np.bool_),
}


def test_no_params_sends_only_images() -> None:
    tensors = build_tensors([b"img1", b"img2"], OcrParams())
    assert [t.name for t in tensors] == ["image_bytes"]
    img = tensors[0]
    assert img.datatype == "BYTES" and img.data.shape == (2,) and img.data.dtype == np.object_
    assert list(img.data) == [b"img1", b"img2"]


def test_all_params_names_dtypes_shapes_values() -> None:
    tensors = {t.name: t for t in build_tensors([b"x"], OcrParams(**ALL))}
    assert set(tensors) == {"image_bytes", *EXPECTED}
    for name, (dtype, np_dtype) in EXPECTED.items():
        t = tensors[name]
        assert t.datatype == dtype, name
        assert t.data.dtype == np_dtype, name
        assert t.data.shape == (1,), name
    assert tensors["limit_side_len"].data[0] == 960
    assert tensors["limit_type"].data[0] == b"max"
    assert tensors["thresh"].data[0] == np.float32(0.3)
    assert bool(tensors["use_textline_orientation"].data[0]) is True


@pytest.mark.parametrize("name", list(EXPECTED))
def test_none_params_are_omitted(name: str) -> None:
    tensors = build_tensors([b"x"], OcrParams(**{name: ALL[name]}))
    assert [t.name for t in tensors] == ["image_bytes", name]


def test_false_bool_is_sent() -> None:
    tensors = build_tensors([b"x"], OcrParams(use_textline_orientation=False))
    assert bool(tensors[1].data[0]) is False


@pytest.mark.parametrize("kwargs", [
    {"limit_type": "avg"}, {"limit_side_len": 0}, {"limit_side_len": True}, {"limit_side_len": 9.5},
    {"thresh": float("nan")}, {"box_thresh": "0.5"}, {"unclip_ratio": 0.0},
    {"use_textline_orientation": "yes"}, {"text_rec_score_thresh": float("inf")},
])
def test_light_validation(kwargs: dict[str, Any]) -> None:
    with pytest.raises(OcrInvalidInputError, match=next(iter(kwargs))):
        OcrParams(**kwargs)


def test_as_kwargs_roundtrip() -> None:
    assert OcrParams().as_kwargs() == {}
    assert OcrParams(**ALL).as_kwargs() == ALL


def test_no_images_is_an_input_error() -> None:
    with pytest.raises(OcrInvalidInputError):
        build_tensors([], OcrParams())


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_make_inputs_and_outputs(protocol: str) -> None:
    inputs = make_inputs(build_tensors([b"a", b"bb"], OcrParams(**ALL)), protocol)
    got = {i.name(): (i.datatype(), list(i.shape())) for i in inputs}
    assert got["image_bytes"] == ("BYTES", [2])
    for name, (dtype, _) in EXPECTED.items():
        assert got[name] == (dtype, [1])
    outputs = make_outputs(protocol)
    assert [o.name() for o in outputs] == ["texts", "scores", "polys", "image_index", "flipped", "source_index",
                                           "page_index", "angle"]


def test_grpc_channel_args_raise_message_limits() -> None:
    args = dict(grpc_channel_args(256 * 1024 * 1024))
    assert args["grpc.max_send_message_length"] == 256 * 1024 * 1024
    assert args["grpc.max_receive_message_length"] == 256 * 1024 * 1024
    assert dict(grpc_channel_args(2**40))["grpc.max_send_message_length"] == 2**31 - 1


def test_resolve_url() -> None:
    assert resolve_url(None, "grpc") == "localhost:8001"
    assert resolve_url(None, "http") == "localhost:8000"
    assert resolve_url("host:9", "http") == "host:9"
    with pytest.raises(ValueError, match="scheme"):
        resolve_url("http://host:8000", "http")
    with pytest.raises(ValueError, match="protocol"):
        resolve_url(None, "ftp")


def test_keyword_overrides_merge_onto_params() -> None:
    base = OcrParams(limit_side_len=960, thresh=0.3)
    merged = OcrParams.merged(base, {"thresh": 0.2, "limit_type": "min"})
    assert merged.as_kwargs() == {"limit_side_len": 960, "thresh": 0.2, "limit_type": "min"}
    assert OcrParams.merged(None, {}) == OcrParams()
    assert OcrParams.merged(base, {}) is base
    with pytest.raises(TypeError, match="limit_sid_len"):
        OcrParams.merged(None, {"limit_sid_len": 3})
    with pytest.raises(OcrInvalidInputError, match="thresh"):
        OcrParams.merged(base, {"thresh": float("nan")})


def test_client_methods_take_params_object_or_keywords() -> None:
    """The per-request knobs are not spelled out in the method signatures: one definition, two spellings."""
    import inspect

    from ocr_client import AsyncOcrClient, OcrClient

    for method in (OcrClient.ocr, OcrClient.ocr_batch, AsyncOcrClient.ocr, AsyncOcrClient.ocr_batch):
        names = set(inspect.signature(method).parameters)
        assert "params" in names and not names & {s.name for s in param_specs()}, method
    client = OcrClient("127.0.0.1:1", timeout=1)
    with pytest.raises(TypeError, match="bogus"):
        client.ocr(b"x", bogus=1)
    with pytest.raises(OcrInvalidInputError, match="limit_type"):
        client.ocr(b"x", OcrParams(limit_side_len=960), limit_type="avg")
    client.close()
