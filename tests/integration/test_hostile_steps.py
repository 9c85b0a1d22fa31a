"""Every model a client can reach is a front door: crafted tensors sent straight to the internal steps
(det_preprocess, det_postprocess, rec_pipeline) and the CPU runtime models (det_model, cls_model,
rec_model) get INVALID_ARGUMENT naming the input, never INTERNAL, each within seconds; afterwards no
stub died, a real image still reads, and the stubs' /dev/shm regions are private to their owner.
"""
from __future__ import annotations

import json
import os
import stat
import struct
import time
import zlib
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from bad_inputs import OK_PARAMS, RawTensor, text_image
from helpers import norm, png
from ocr_server import pbtxt
from ocr_server.launcher import stub_processes

from ppocr_steps.settings import defaults_from_parameters, limits_from_parameters
from ppocr_steps.validate import crop_sizes, source_side_bound

LIMITS = pbtxt.parameters(pbtxt.load(Path(__file__).resolve().parents[2] / "python_backend" / "models"
                                     / "det_preprocess" / "config.pbtxt"))
TOO_MANY = int(LIMITS["max_images_per_request"]) + 1  # images: one more than a request may hold
PARAMS = asdict(defaults_from_parameters(LIMITS))  # the served defaults: a valid ocr_params


def _json(value: object) -> RawTensor:
    data = value if isinstance(value, bytes) else json.dumps(value).encode()
    return RawTensor("ocr_params", "BYTES", np.array([data], dtype=np.object_))


def _params(**changes: object) -> RawTensor:
    return _json({**PARAMS, **changes})


def _u8(name: str, shape: tuple[int, ...], value: int = 0) -> RawTensor:
    return RawTensor(name, "UINT8", np.full(shape, value, np.uint8))


def _f32(name: str, data: object) -> RawTensor:
    return RawTensor(name, "FP32", np.asarray(data, np.float32))


def _i32(name: str, data: object) -> RawTensor:
    return RawTensor(name, "INT32", np.asarray(data, np.int32))


def _info(rows: int = 1, **changes: float) -> RawTensor:
    """image_info of a 64x256 image served as is: orig, src, pad, det region, scales."""
    row = {"orig_h": 64, "orig_w": 256, "src_h": 64, "src_w": 256, "pad_top": 0, "det_h": 64, "det_w": 256,
           "scale_x": 1, "scale_y": 1, "angle": 0, **changes}
    return _f32("image_info", [list(row.values())] * rows)


def _box(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


@lru_cache(maxsize=1)
def _tiff_duplicate_size_tags() -> bytes:
    """A classic TIFF whose first IFD says 16384x16384 and then 16x16 in repeated size tags, out of
    order (a header check and the decoder may read different ones), with one deflate strip of 256 M
    zero pixels (about 260 KB): a decoder that reads the large size decodes 256 M pixels."""
    e = "<"
    width, height = 16384, 16384
    # one block of 1024 zero rows, compressed once: after a full flush each block compresses alike
    raw = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = raw.compress(bytes(width * 1024)) + raw.flush(zlib.Z_FULL_FLUSH)
    adler = ((width * height) % 65521) << 16 | 1  # adler32 of zeros
    strip = b"\x78\x01" + block * (height // 1024) + raw.flush(zlib.Z_FINISH) + struct.pack(">I", adler)
    entries = [(256, 4, width), (257, 4, height), (256, 3, 16), (257, 3, 16), (258, 3, 8), (259, 3, 8),
               (262, 3, 1), (273, 4, 0), (277, 3, 1), (278, 4, height), (279, 4, len(strip))]
    ifd = 8
    data_at = ifd + 2 + 12 * len(entries) + 4
    out = bytearray(b"II*\x00" + struct.pack(e + "I", ifd) + struct.pack(e + "H", len(entries)))
    for tag, typ, value in entries:
        if tag == 273:
            value = data_at
        packed = struct.pack(e + "H", value) + b"\0\0" if typ == 3 else struct.pack(e + "I", value)
        out += struct.pack(e + "HHI", tag, typ, 1) + packed
    out += b"\0\0\0\0" + strip
    return bytes(out)


@dataclass
class Hostile:
    name: str
    model: str
    tensors: list[RawTensor]
    needle: str        # a part of the message (what is wrong / allowed)


def _ok_rec_inputs(**replace: RawTensor) -> list[RawTensor]:
    base = {"images": _u8("images", (1, 64, 256, 3), 255), "image_info": _info(),
            "boxes": _f32("boxes", [_box(10, 10, 100, 40)]), "box_image_index": _i32("box_image_index", [0]),
            "ocr_params": _params()}
    base.update(replace)
    return list(base.values())


def _ok_post_inputs(**replace: RawTensor) -> list[RawTensor]:
    base = {"prob_map": _u8("prob_map", (1, 1, 64, 256)), "image_info": _info(), "ocr_params": _params()}
    base.update(replace)
    return list(base.values())


def _blobs(blobs: list[bytes]) -> RawTensor:
    return RawTensor("image_bytes", "BYTES", np.array(blobs, dtype=np.object_))


def _scalar(name: str, datatype: str, value: object) -> RawTensor:
    np_type = {"FP32": np.float32, "INT32": np.int32, "BYTES": np.object_}[datatype]
    return RawTensor(name, datatype, np.array([value], dtype=np_type))


def cases() -> list[Hostile]:
    page = png(text_image())
    deep = b"[" * 3000 + b"]" * 3000
    return [
        # det_preprocess: the public path's own checks, reached directly
        Hostile("pre_too_many_images", "det_preprocess", [_blobs([page] * TOO_MANY)], f"at most {TOO_MANY - 1}"),
        Hostile("pre_no_image", "det_preprocess", [_blobs([])], "holds no image"),
        Hostile("pre_unclip_1e11", "det_preprocess", [_blobs([page]), _scalar("unclip_ratio", "FP32", 1e11)],
                "unclip_ratio"),
        Hostile("pre_thresh_nan", "det_preprocess", [_blobs([page]), _scalar("thresh", "FP32", float("nan"))],
                "thresh"),
        Hostile("pre_limit_side_huge", "det_preprocess",
                [_blobs([page]), _scalar("limit_side_len", "INT32", 100000)], "limit_side_len"),
        Hostile("pre_tiff_duplicate_size_tags", "det_preprocess", [_blobs([_tiff_duplicate_size_tags()])],
                "pixels"),
        # det_postprocess
        Hostile("post_params_not_json", "det_postprocess", _ok_post_inputs(ocr_params=_json(b"not json{")),
                "ocr_params"),
        Hostile("post_params_list", "det_postprocess", _ok_post_inputs(ocr_params=_json([1, 2])),
                "JSON object"),
        Hostile("post_params_deep", "det_postprocess", _ok_post_inputs(ocr_params=_json(deep)), "ocr_params"),
        Hostile("post_params_not_utf8", "det_postprocess", _ok_post_inputs(ocr_params=_json(b"\xff\xfe{")),
                "ocr_params"),
        Hostile("post_unclip_1e11", "det_postprocess", _ok_post_inputs(ocr_params=_params(unclip_ratio=1e11)),
                "unclip_ratio"),
        Hostile("post_thresh_string", "det_postprocess", _ok_post_inputs(ocr_params=_params(thresh="0.3")),
                "thresh"),
        Hostile("post_newline_key", "det_postprocess",
                _ok_post_inputs(ocr_params=_json({**PARAMS, "x\nFORGED LOG LINE": 1})), "unknown parameter"),
        Hostile("post_params_missing", "det_postprocess", _ok_post_inputs(ocr_params=_json({"thresh": 0.3})),
                "lacks"),
        Hostile("post_rows_mismatch", "det_postprocess", _ok_post_inputs(image_info=_info(rows=2)), "rows"),
        Hostile("post_info_nan", "det_postprocess", _ok_post_inputs(image_info=_info(scale_x=float("nan"))),
                "NaN"),
        Hostile("post_det_region_outside", "det_postprocess", _ok_post_inputs(image_info=_info(det_h=5000)),
                "detector region"),
        Hostile("post_source_huge", "det_postprocess",
                _ok_post_inputs(image_info=_info(src_h=20000, src_w=20000)), "source size"),
        Hostile("post_prob_map_too_tall", "det_postprocess",
                _ok_post_inputs(prob_map=_u8("prob_map", (1, 1, 4032, 32))), "each side"),
        Hostile("post_too_many_images", "det_postprocess",
                _ok_post_inputs(prob_map=_u8("prob_map", (TOO_MANY, 1, 32, 32)), image_info=_info(rows=TOO_MANY)),
                f"1 to {TOO_MANY - 1}"),
        # rec_pipeline
        Hostile("rec_box_20000", "rec_pipeline", _ok_rec_inputs(boxes=_f32("boxes", [_box(0, 0, 20000, 20000)])),
                "outside"),
        Hostile("rec_box_nan", "rec_pipeline",
                _ok_rec_inputs(boxes=_f32("boxes", [_box(0, 0, float("nan"), 10)])), "NaN"),
        Hostile("rec_index_out_of_range", "rec_pipeline",
                _ok_rec_inputs(box_image_index=_i32("box_image_index", [5])), "image indices"),
        Hostile("rec_index_count_mismatch", "rec_pipeline",
                _ok_rec_inputs(box_image_index=_i32("box_image_index", [0, 0])), "one image index per box"),
        Hostile("rec_too_many_boxes", "rec_pipeline",
                _ok_rec_inputs(boxes=_f32("boxes", [_box(10, 10, 20, 20)] * 2001),
                               box_image_index=_i32("box_image_index", [0] * 2001)), "limit is 2000"),
        Hostile("rec_info_rows_mismatch", "rec_pipeline", _ok_rec_inputs(image_info=_info(rows=3)), "rows"),
        Hostile("rec_source_larger_than_images", "rec_pipeline",
                _ok_rec_inputs(image_info=_info(src_h=640, src_w=2560)), "source size"),
        Hostile("rec_params_not_object", "rec_pipeline", _ok_rec_inputs(ocr_params=_json("just a string")),
                "JSON object"),
        Hostile("rec_images_wide", "rec_pipeline",
                _ok_rec_inputs(images=_u8("images", (1, 8, 20000, 3))), "each side"),
        # runtime models
        Hostile("det_model_not_multiple_of_32", "det_model", [_u8("det_input", (1, 33, 64, 3))], "multiple of 32"),
        Hostile("det_model_too_large", "det_model", [_u8("det_input", (1, 32, 4032, 3))], "multiple of 32"),
        Hostile("det_model_too_many_images", "det_model", [_u8("det_input", (TOO_MANY, 32, 32, 3))],
                f"1 to {TOO_MANY - 1}"),
        Hostile("rec_model_20000_wide", "rec_model", [_u8("rec_input", (1, 48, 20000, 3))], "width"),
        Hostile("rec_model_too_narrow", "rec_model", [_u8("rec_input", (1, 48, 4, 3))], "width"),
        # refused by Triton core before any Python runs (config dims, max_batch_size): still a client error
        Hostile("cls_model_wrong_shape", "cls_model", [_u8("cls_input", (1, 48, 100, 3))], "cls_input"),
        Hostile("cls_model_batch_65", "cls_model", [_u8("cls_input", (65, 48, 192, 3))], "batch"),
        Hostile("post_prob_map_float", "det_postprocess",
                [_f32("prob_map", np.zeros((1, 1, 64, 256))), _info(), _params()], "prob_map"),
    ]


CASES = cases()


def infer(url: str, model: str, tensors: list[RawTensor]):
    import tritonclient.grpc as grpcclient

    inputs = []
    for t in tensors:
        x = grpcclient.InferInput(t.name, list(t.data.shape), t.datatype)
        x.set_data_from_numpy(t.data)
        inputs.append(x)
    with grpcclient.InferenceServerClient(url) as c:
        return c.infer(model, inputs, client_timeout=60)


@pytest.fixture(scope="module")
def stubs_before(server):
    return {(s.model, s.pid) for s in stub_processes(server.proc.pid) if s.alive}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_tensor_is_invalid_argument(server, stubs_before, case: Hostile):
    from tritonclient.utils import InferenceServerException

    t0 = time.monotonic()
    with pytest.raises(InferenceServerException) as err:
        infer(server.grpc_url, case.model, case.tensors)
    elapsed = time.monotonic() - t0
    assert err.value.status() == "StatusCode.INVALID_ARGUMENT", (err.value.status(), err.value.message())
    assert case.needle.lower() in err.value.message().lower(), err.value.message()
    assert elapsed < 10, f"{case.name} took {elapsed:.1f} s"


def test_valid_direct_calls_still_work(server):
    """The checks refuse only what the `ocr` path never sends: a well-formed direct call is served."""
    out = infer(server.grpc_url, "det_postprocess", _ok_post_inputs())
    assert out.as_numpy("boxes").shape[1:] == (4, 2)
    out = infer(server.grpc_url, "rec_model", [_u8("rec_input", (2, 48, 320, 3), 128)])
    assert out.as_numpy("rec_char_ids").shape[0] == 2
    # a padded batch of two differently shaped images: each runs at its own extent, padding reads 0
    batch = np.zeros((2, 64, 512, 3), np.uint8)
    batch[0, :64, :64] = 255
    batch[1] = 255
    prob = infer(server.grpc_url, "det_model", [RawTensor("det_input", "UINT8", batch)]).as_numpy("prob_map")
    assert prob.shape == (2, 1, 64, 512) and not prob[0, 0, :, 64:].any()


def test_server_still_reads_and_no_stub_died(server, stubs_before):
    from ocr_client import OcrClient

    with OcrClient(server.grpc_url, timeout=60) as client:
        texts = {norm(t) for t in client.ocr(text_image(), **OK_PARAMS).texts}
    assert {norm("TOTAL 1234.56"), norm("CASH 99.10")} <= texts
    alive = {(s.model, s.pid) for s in stub_processes(server.proc.pid) if s.alive}
    assert stubs_before <= alive, f"stubs died: {stubs_before - alive}"
    assert server.proc.poll() is None


def test_internal_errors_never_forge_log_lines(server):
    """A JSON key with a newline (sent above) never starts a line of its own in the server log."""
    assert not any(line.startswith("FORGED LOG LINE") for line in server.log().splitlines())


def test_shared_memory_is_private(server):
    """The stubs' /dev/shm regions hold request pixels: only their owner may read them."""
    regions = [s.shm_region for s in stub_processes(server.proc.pid) if s.alive and s.shm_region]
    assert regions
    for region in regions:
        mode = stat.S_IMODE(os.stat(Path("/dev/shm") / region).st_mode)
        assert mode & 0o077 == 0, f"{region}: mode {oct(mode)}"


def test_decoder_enforces_the_pixel_limit(server):
    """The launcher gave OpenCV det_preprocess's max_image_pixels (else det_preprocess warns at load)."""
    assert "OPENCV_IO_MAX_IMAGE_PIXELS" not in server.log()


# ---------------------------------------------------------------- time bound (max_request_seconds)

MODELS = Path(__file__).resolve().parents[2] / "python_backend" / "models"
BOUND_S = 1  # this module's own server: a small bound keeps the test short


@pytest.fixture(scope="module")
def bounded_server(tmp_path_factory: pytest.TempPathFactory):
    """A server whose rec_pipeline may hold one request for BOUND_S seconds (set through the assembler)."""
    from ocr_server.local_server import start_server, stop_server

    srv = start_server(tmp_path_factory.mktemp("bounded"), timeout=180,
                       overrides={"rec_pipeline": {"max_request_seconds": str(BOUND_S)}})
    yield srv
    stop_server(srv)


def _wide_boxes_request() -> list[RawTensor]:
    """As many boxes as max_crop_pixels allows, each as wide as a source image may be and 47 px high:
    inside every size limit, yet each is a recogniser call of rec_max_width columns of its own."""
    merged = {k: v for step in ("det_preprocess", "det_postprocess", "rec_pipeline")
              for k, v in pbtxt.parameters(pbtxt.load(MODELS / step / "config.pbtxt")).items()}
    width = min(7520, source_side_bound(limits_from_parameters(merged)))
    box = _box(0, 0, width - 1, 47)
    copies = int(merged["max_crop_pixels"]) // int(crop_sizes(np.array([box], np.float32)).prod())
    return _ok_rec_inputs(images=_u8("images", (1, 48, width, 3), 255),
                          image_info=_info(orig_h=48, orig_w=width, src_h=48, src_w=width, det_h=48, det_w=width),
                          boxes=_f32("boxes", [box] * copies),
                          box_image_index=_i32("box_image_index", [0] * copies))


def test_a_request_past_max_request_seconds_is_refused(bounded_server):
    """Full-width boxes sent straight to rec_pipeline, as many as max_crop_pixels allows, pass every size
    check but take seconds: the step refuses them once the bound has passed, naming the limit, and then
    still serves."""
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException) as err:
        infer(bounded_server.grpc_url, "rec_pipeline", _wide_boxes_request())
    assert err.value.status() == "StatusCode.INVALID_ARGUMENT", (err.value.status(), err.value.message())
    assert f"max_request_seconds = {BOUND_S} s" in err.value.message(), err.value.message()
    out = infer(bounded_server.grpc_url, "rec_pipeline", _ok_rec_inputs())
    assert out.as_numpy("texts").shape[0] <= 1
    assert bounded_server.proc.poll() is None
