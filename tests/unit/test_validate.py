"""Hostile-input checks of the internal steps and runtime models (ppocr_steps.validate,
ppocr_steps.runtime_inputs, params_from_json, the padded-batch limit of preprocess, log escaping)."""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from served import served_defaults, served_settings

from ppocr_steps.errors import InvalidInputError, one_line
from ppocr_steps.image_io import decode_image
from ppocr_steps.params import MAX_PARAMS_JSON_BYTES, params_from_json, params_to_json
from ppocr_steps.pipeline import check_padded_batches, postprocess_detection, recognize
from ppocr_steps.runtime_inputs import check_runtime_input, padding_extent, run_chunks, run_det_batch
from ppocr_steps.settings import limits_from_parameters
from ppocr_steps.validate import (
    check_boxes,
    check_image_info,
    check_images,
    check_prob_map,
    crop_sizes,
    det_side_bound,
    require_array,
    source_side_bound,
)

S = served_settings()
C = S.max_crop_pixels
N = S.max_images_per_request + 1  # one image too many
L = limits_from_parameters({k: str(v) for k, v in asdict(S).items()})
REPO = Path(__file__).resolve().parents[2]


def refused(match: str, fn, *args, reason: str | None = None, **kwargs) -> InvalidInputError:
    with pytest.raises(InvalidInputError, match=match) as err:
        fn(*args, **kwargs)
    if reason is not None:
        assert err.value.reason == reason
    return err.value


def info(rows: int = 1, **changes: float) -> np.ndarray:
    row = {"orig_h": 64, "orig_w": 256, "src_h": 64, "src_w": 256, "pad_top": 0, "det_h": 64, "det_w": 256,
           "scale_x": 1.0, "scale_y": 1.0, "angle": 0.0, **changes}
    return np.array([list(row.values())] * rows, np.float32)


def box(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


# ------------------------------------------------------------------------------------------ bounds
def test_bounds_follow_the_settings() -> None:
    assert det_side_bound(L) == 2 * S.max_side_limit
    # an image max_side_limit long whose short side (min_image_side) is enlarged to min_side_len
    assert source_side_bound(L) >= S.max_side_limit * S.min_side_len / S.min_image_side
    assert source_side_bound(replace(L, min_side_len=8, min_image_side=8)) == 2016  # 2000 up to 32


def test_source_bound_covers_what_prepare_source_makes() -> None:
    from ppocr_steps.det_preprocess import prepare_source, source_size

    for shape in [(8, 2000), (2000, 8), (8, 1999), (30, 2000), (2000, 2000), (8, 8), (31, 250), (29, 240),
                  (3000, 17), (640, 480), (100, 801), (2001, 2001), (4000, 9), (12, 97)]:
        src, row = prepare_source(np.zeros((*shape, 3), np.uint8), S)
        assert source_size(*shape, S) == src.shape[:2], shape  # the size is known before the image is made
        assert max(src.shape[:2]) <= source_side_bound(L), shape
        check_image_info(np.array([row.to_row()], np.float32), 1, L)


# ------------------------------------------------------------------------------------------ arrays
def test_require_array() -> None:
    a = np.zeros((2, 1, 3), np.uint8)
    assert require_array("x", a, np.uint8, 3, {1: 1}) is a
    refused("input 'x' must be float32, got uint8", require_array, "x", a, np.float32, 3)
    refused("must have 2 dimensions", require_array, "x", a, np.uint8, 2)
    refused("size 2 in dimension 1", require_array, "x", a, np.uint8, 3, {1: 2})
    refused("uint8 or float32", require_array, "x", a.astype(np.int64), (np.uint8, np.float32), 3)


def test_prob_map_checks() -> None:
    check_prob_map(np.zeros((1, 1, 64, 256), np.uint8), L)
    check_prob_map(np.zeros((1, 1, 64, 256), np.float32), L)
    refused(f"holds {N} images; allowed 1 to {N - 1}", check_prob_map, np.zeros((N, 1, 32, 32), np.uint8), S)
    refused("holds 0 images", check_prob_map, np.zeros((0, 1, 32, 32), np.uint8), S)
    refused("each side must be 1 to 4000", check_prob_map, np.zeros((1, 1, 4001, 32), np.uint8), S)
    refused("outside \\[0, 1\\]", check_prob_map, np.full((1, 1, 8, 8), np.nan, np.float32), S)
    refused("outside \\[0, 1\\]", check_prob_map, np.full((1, 1, 8, 8), 2.0, np.float32), S)
    small = replace(S, max_batch_pixels=1000)
    refused("the limit is 1000", check_prob_map, np.zeros((2, 1, 32, 32), np.uint8), small)


@pytest.mark.parametrize("changes, match", [
    ({"scale_x": float("nan")}, "NaN or infinite"),
    ({"orig_h": float("inf")}, "NaN or infinite"),
    ({"orig_h": 0}, "original size"),
    ({"orig_h": 10_000, "orig_w": 10_000}, "original size"),
    ({"src_h": 20_000}, "source size"),
    ({"src_w": 0.5}, "source size"),
    ({"pad_top": -1}, "pad_top"),
    ({"pad_top": 64}, "pad_top"),
    ({"det_h": 65}, "detector region"),
    ({"det_w": 0}, "detector region"),
    ({"scale_y": 0}, "scales"),
    ({"scale_x": -2}, "scales"),
])
def test_image_info_checks(changes, match) -> None:
    check_image_info(info(), 1, L, det_hw=(64, 256))
    refused(f"image_info' row 0: {match}" if match != "NaN or infinite" else match,
            check_image_info, info(**changes), 1, S, det_hw=(64, 256))


def test_image_info_rows_and_source_area() -> None:
    refused("has 2 rows but there are 1 images", check_image_info, info(rows=2), 1, S)
    refused("must be 1..100 x 1..50", check_image_info, info(), 1, S, src_hw=(50, 100))
    refused("must be float32", check_image_info, info().astype(np.float64), 1, S)
    refused("size 10 in dimension 1", check_image_info, info()[:, :9], 1, S)
    refused("angle 45 must be 0, 90, 180 or 270", check_image_info, info(angle=45), 1, S)


def test_images_checks() -> None:
    check_images(np.zeros((1, 64, 256, 3), np.uint8), L)
    refused(f"holds {N} images", check_images, np.zeros((N, 8, 8, 3), np.uint8), S)
    refused("8x20000 \\(HxW\\) per image; each side must be 1 to", check_images,
            np.zeros((1, 8, 20_000, 3), np.uint8), S)
    refused("size 3 in dimension 3", check_images, np.zeros((1, 8, 8, 4), np.uint8), S)


def test_boxes_checks() -> None:
    good = np.array([box(10, 10, 100, 40)], np.float32)
    index = np.array([0], np.int32)
    check_boxes(good, index, info(), L, C)
    check_boxes(np.zeros((0, 4, 2), np.float32), np.zeros(0, np.int32), info(), L, C)
    refused("box 0 has corners outside", check_boxes, np.array([box(0, 0, 20_000, 20_000)], np.float32), index,
            info(), S, C)
    refused("outside", check_boxes, np.array([box(-1, 0, 10, 10)], np.float32), index, info(), S, C)
    refused("NaN or infinite", check_boxes, np.array([box(0, 0, np.nan, 10)], np.float32), index, info(), S, C)
    refused("image indices 0 to 0", check_boxes, good, np.array([1], np.int32), info(), S, C)
    refused("image indices 0 to 0", check_boxes, good, np.array([-1], np.int32), info(), S, C)
    refused("has 2 values but 'boxes' has 1", check_boxes, good, np.array([0, 0], np.int32), info(), S, C)
    refused("must be int32", check_boxes, good, index.astype(np.int64), info(), S, C)
    many = np.repeat(good, 3, axis=0)
    refused("holds 3 boxes; the limit is 2", check_boxes, many, np.zeros(3, np.int32), info(),
            replace(S, max_boxes_per_request=2), C, reason="too_many_boxes")
    # crops of 90x30 = 2700 px each
    refused("would hold 8100 pixels; the limit is 8000", check_boxes, many, np.zeros(3, np.int32), info(),
            S, 8000, reason="too_large")


def test_crop_sizes_match_crop_quad() -> None:
    from ppocr_steps.crops import crop_quad

    img = np.zeros((200, 300, 3), np.uint8)
    quads = np.array([box(10, 10, 100, 40), [[5, 5], [150, 30], [140, 90], [2, 60]]], np.float32)
    for quad, (w, h) in zip(quads, crop_sizes(quads), strict=False):
        crop = crop_quad(img, quad)
        assert sorted(crop.shape[:2]) == sorted((h, w))


def test_steps_validate_before_working() -> None:
    params = served_defaults()
    refused(f"holds {N} images", postprocess_detection, np.zeros((N, 1, 32, 32), np.uint8), info(rows=N), params, S,
            limits=L)
    refused("has 1 rows but there are 2", postprocess_detection, np.zeros((2, 1, 64, 256), np.uint8), info(),
            params, S, limits=L)

    def never(_batch):
        raise AssertionError("no model call for a refused request")

    images = np.zeros((1, 64, 256, 3), np.uint8)
    refused("outside", recognize, images, info(), np.array([box(0, 0, 20_000, 20_000)], np.float32),
            np.array([0], np.int32), params, S, ["blank", "a", " "], never, never, limits=L)


# ------------------------------------------------------------------------------------------ ocr_params
def test_params_json_round_trip() -> None:
    p = served_defaults(unclip_ratio=2.0, limit_type="max")
    assert params_from_json(params_to_json(p)) == p


@pytest.mark.parametrize("data, match", [
    (b"not json{", "not UTF-8 JSON"),
    (b"\xff\xfe{}", "not UTF-8 JSON"),
    (b"[" * 3000 + b"]" * 3000, f"at most {MAX_PARAMS_JSON_BYTES}"),
    (b"[" * 2000 + b"]" * 2000, "not UTF-8 JSON|JSON object"),
    (b"[1, 2]", "must be a JSON object, got list"),
    (b'"text"', "got str"),
    (b"null", "got NoneType"),
    (b'{"thresh": 0.3}', "lacks box_thresh"),
])
def test_params_json_refused(data, match) -> None:
    refused(match, params_from_json, data, reason="bad_parameter")


@pytest.mark.parametrize("changes, match", [
    ({"unclip_ratio": 1e11}, "unclip_ratio' = 1e\\+11 is out of range|unclip_ratio"),
    ({"thresh": "0.3"}, "must be a number"),
    ({"box_thresh": 1.5}, "box_thresh"),
    ({"limit_side_len": 100_000}, "limit_side_len"),
    ({"limit_side_len": 10 ** 400}, "limit_side_len"),
    ({"limit_type": ["min"]}, "limit_type"),
    ({"use_textline_orientation": "yes"}, "boolean"),
    ({"text_rec_score_thresh": None}, "null"),
    ({"x\nFORGED": 1}, "unknown parameter 'x\\\\nFORGED'"),
])
def test_params_json_values_refused(changes, match) -> None:
    data = json.dumps({**asdict(served_defaults()), **changes}).encode()
    refused(match, params_from_json, data, reason="bad_parameter")


def test_params_json_nan_refused() -> None:
    data = json.dumps({**asdict(served_defaults()), "thresh": float("nan")}).encode()  # json writes NaN
    refused("thresh", params_from_json, data)


# ------------------------------------------------------------------------------------------ padded batches
def test_padded_batches_limit() -> None:
    params = served_defaults()
    check_padded_batches([(1872, 7488)], params, S)                 # one image: never padded
    check_padded_batches([(2000, 2000)] * (N - 1), params, S)       # the most large pages of one shape
    check_padded_batches([(2000, 1000), (1000, 2000)], params, S)   # portrait + landscape
    err = refused("very different shapes.*source images would hold 112140288 pixels", check_padded_batches,
                  [(1872, 7488), (7488, 32)], params, S, reason="too_large")
    assert "separate requests" in str(err)
    refused("detector input would hold", check_padded_batches, [(64, 64), (64, 64)], params,
            replace(S, max_batch_pixels=64 * 64 * 2))


def test_preprocess_refuses_the_padding_bomb() -> None:
    from ppocr_steps.pipeline import preprocess

    blobs = [cv2.imencode(".png", np.full(shape, 255, np.uint8))[1].tobytes() for shape in
             [(8, 2000, 3), (2000, 8, 3)]]
    refused("very different shapes", preprocess, blobs, {}, served_defaults(), S, reason="too_large")
    out = preprocess(blobs[:1], {}, served_defaults(), S)  # each alone is fine
    assert out.images.shape[0] == 1


# ------------------------------------------------------------------------------------------ runtime models
def test_runtime_det_input_checks() -> None:
    check_runtime_input("det_input", np.zeros((2, 64, 96, 3), np.uint8), L)
    refused("multiple of 32", check_runtime_input, "det_input", np.zeros((1, 33, 64, 3), np.uint8), S)
    refused("multiple of 32 from 32 to 4000", check_runtime_input, "det_input", np.zeros((1, 32, 4032, 3), np.uint8),
            S)
    refused(f"holds {N} images", check_runtime_input, "det_input", np.zeros((N, 32, 32, 3), np.uint8), S)
    refused("holds no rows", check_runtime_input, "det_input", np.zeros((0, 32, 32, 3), np.uint8), S)
    refused("limit is 2047", check_runtime_input, "det_input", np.zeros((2, 32, 32, 3), np.uint8),
            replace(S, max_batch_pixels=2047))
    refused("must be uint8", check_runtime_input, "det_input", np.zeros((1, 32, 32, 3), np.float32), S)


def test_runtime_rec_input_checks() -> None:
    check_runtime_input("rec_input", np.zeros((2, 48, 320, 3), np.uint8), L)
    check_runtime_input("cls_input", np.zeros((2, 48, 192, 3), np.uint8), L)
    refused("width 8 to 3200", check_runtime_input, "rec_input", np.zeros((1, 48, 20_000, 3), np.uint8), S)
    refused("width 8 to 3200", check_runtime_input, "rec_input", np.zeros((1, 48, 4, 3), np.uint8), S)
    refused("height must be 48", check_runtime_input, "rec_input", np.zeros((1, 32, 320, 3), np.uint8), S)


def test_padding_extent() -> None:
    img = np.zeros((128, 256, 3), np.uint8)
    assert padding_extent(img, 32) == (32, 32)              # all padding: the smallest extent
    img[40, 70, 1] = 1
    assert padding_extent(img, 32) == (64, 96)
    img[127, 255, 0] = 1
    assert padding_extent(img, 32) == (128, 256)


def test_run_chunks_bounds_each_run() -> None:
    seen = []

    def run(batch):
        seen.append(batch.shape[0])
        return [batch[:, :1, :1, 0].astype(np.int32) + 1, batch.sum(axis=(1, 2, 3))]

    batch = np.ones((10, 4, 4, 3), np.uint8)
    ids, sums = run_chunks(run, batch, max_run_pixels=3 * 16)
    assert seen == [3, 3, 3, 1] and ids.shape == (10, 1, 1) and (sums == 48).all()
    seen.clear()
    run_chunks(run, batch, max_run_pixels=1)  # at least one row per run
    assert seen == [1] * 10


def test_run_det_batch_runs_each_image_at_its_extent() -> None:
    shapes = []

    def run(batch):
        shapes.append(batch.shape)
        return [np.full((batch.shape[0], 1, *batch.shape[1:3]), 7, np.uint8)]

    batch = np.zeros((3, 128, 4000, 3), np.uint8)
    batch[0, :128, :32] = 9      # a thin image
    batch[1, :32, :4000] = 9     # a flat one
    batch[2, :128, :32] = 9      # the same extent as the first: one run
    prob = run_det_batch(run, batch, max_run_pixels=1 << 22)
    assert sorted(shapes) == [(1, 32, 4000, 3), (2, 128, 32, 3)]
    assert prob.shape == (3, 1, 128, 4000)
    assert (prob[0, 0, :, :32] == 7).all() and not prob[0, 0, :, 32:].any()
    assert (prob[1, 0, :32] == 7).all() and not prob[1, 0, 32:].any()
    shapes.clear()
    full = np.ones((2, 64, 64, 3), np.uint8)  # no padding: one run of the batch as it is
    assert run_det_batch(run, full, 1 << 22).shape == (2, 1, 64, 64) and shapes == [(2, 64, 64, 3)]


# ------------------------------------------------------------------------------------------ decoding, logs
def _tiff_with_repeated_size(small: int, large: int) -> bytes:
    entries = [(256, 4, large), (257, 4, large), (256, 3, small), (257, 3, small), (258, 3, 8), (259, 3, 1),
               (262, 3, 1), (273, 4, 0), (277, 3, 1), (278, 4, large), (279, 4, large * large)]
    data_at = 8 + 2 + 12 * len(entries) + 4
    out = bytearray(b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", len(entries)))
    for tag, typ, value in entries:
        value = data_at if tag == 273 else value
        packed = struct.pack("<H", value) + b"\0\0" if typ == 3 else struct.pack("<I", value)
        out += struct.pack("<HHI", tag, typ, 1) + packed
    return bytes(out + b"\0\0\0\0" + b"\0" * 1024)


def test_tiff_repeated_size_tags_use_the_largest() -> None:
    """The large size first, the small one last (a last-wins reading saw 16x16)."""
    refused("declares 16384x16384", decode_image, _tiff_with_repeated_size(16, 16384), 50_000_000, 8, 1 << 25,
            reason="too_large")


def test_decoder_enforces_its_pixel_limit() -> None:
    """With OPENCV_IO_MAX_IMAGE_PIXELS set (as the launcher does) OpenCV itself refuses a larger image,
    whatever the header checks read; that refusal is INVALID_ARG too_large."""
    code = (
        "import cv2, numpy as np\n"
        "from ppocr_steps.image_io import decode_image\n"
        "from ppocr_steps.errors import InvalidInputError\n"
        "png = cv2.imencode('.png', np.zeros((100, 100, 3), np.uint8))[1].tobytes()\n"
        "try:\n"
        "    decode_image(png, 10**9, 8, 1 << 25)\n"
        "except InvalidInputError as e:\n"
        "    print(e.reason, e)\n")
    env = {**os.environ, "OPENCV_IO_MAX_IMAGE_PIXELS": "5000"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60,
                         cwd=REPO / "python_backend")
    assert out.stdout.startswith("too_large"), out.stdout + out.stderr
    assert "more pixels than the limit" in out.stdout


def test_decoder_limit_problem() -> None:
    from ppocr_steps.image_io import decoder_limit_problem

    assert decoder_limit_problem(50, {"OPENCV_IO_MAX_IMAGE_PIXELS": "50"}) is None
    assert decoder_limit_problem(50, {"OPENCV_IO_MAX_IMAGE_PIXELS": "40"}) is None
    assert "not at most max_image_pixels (50)" in str(decoder_limit_problem(50, {"OPENCV_IO_MAX_IMAGE_PIXELS": "51"}))
    assert decoder_limit_problem(50, {}) is not None
    assert decoder_limit_problem(50, {"OPENCV_IO_MAX_IMAGE_PIXELS": "lots"}) is not None


def test_one_line_escapes_control_characters() -> None:
    assert one_line("a\nFORGED\r\x1b[31m\\") == "a\\nFORGED\\r\\x1b[31m\\\\"
    assert "\n" not in one_line("key\u2028x\n") and one_line("plain text") == "plain text"
