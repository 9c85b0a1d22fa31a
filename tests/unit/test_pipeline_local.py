"""The three Python steps chained locally with the real ONNX models (onnxruntime), no Triton.

Mirrors the ensemble: det_preprocess -> det_model -> det_postprocess -> rec_pipeline (cls + rec),
with the per-request parameters travelling as JSON between the steps as they do in the ensemble.
Skipped when build/models/v4 has not been fetched (server/ocr_server/fetch_models.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import cv2
import numpy as np
import pytest
from served import served_defaults, served_settings

from ppocr_steps.errors import InvalidInputError
from ppocr_steps.params import params_from_json, params_to_json
from ppocr_steps.pipeline import OcrLines, postprocess_detection, preprocess, recognize
from ppocr_steps.recognize import RecInfer, load_dictionary
from ppocr_steps.settings import PipelineSettings

pytest.importorskip("onnxruntime")
from ppocr_steps.onnx_runtime import OrtModel  # noqa: E402

LINES = ["Hello World 2024", "The quick brown fox", "Invoice total 42.50"]
H, W = 760, 1000          # min side >= 736: the default limit_type=min does not upscale
ORIGIN, SPACING = (40, 150), 200


class Counted:
    """Wraps a model call and records the batch shapes it was given."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.shapes: list[tuple[int, ...]] = []

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.shapes.append(batch.shape)
        return self.model(batch)


@dataclass
class Models:
    det: Any
    cls: Any
    rec: Any
    labels: list[str]


@dataclass
class Run:
    lines: OcrLines
    boxes: np.ndarray
    det: Counted
    cls: Counted
    rec: Counted
    image_info: np.ndarray
    extra: dict = field(default_factory=dict)


def load_models(directory: Path) -> Models:
    needed = [directory / f for f in ("det.onnx", "cls.onnx", "rec.onnx", "dict.txt")]
    if not all(p.exists() for p in needed):
        pytest.skip(f"{directory} not fetched (ocr-fetch-models)")
    return Models(OrtModel(str(directory / "det.onnx"), 2), OrtModel(str(directory / "cls.onnx"), 2),
                  OrtModel(str(directory / "rec.onnx"), 2), load_dictionary(str(directory / "dict.txt")))


@pytest.fixture(scope="module")
def v4(models_dir: Path) -> Models:
    return load_models(models_dir / "v4")


def run_ocr(models: Models, blobs: list[bytes], raw: dict | None = None,
            s: PipelineSettings | None = None) -> Run:
    s = s or served_settings()
    det, cls, rec = Counted(models.det), Counted(models.cls), Counted(models.rec)
    pre = preprocess(blobs, raw or {}, served_defaults(), s)
    wire = params_to_json(pre.params)  # ocr_params travels as a JSON string tensor
    prob_map = det(pre.det_input)
    assert prob_map.shape[0] == pre.det_input.shape[0] and prob_map.shape[2:] == pre.det_input.shape[1:3]
    boxes, scores, index = postprocess_detection(prob_map, pre.image_info, params_from_json(wire), s)
    assert len(boxes) == len(scores) == len(index)
    lines = recognize(pre.images, pre.image_info, boxes, index, params_from_json(wire), s, models.labels, cls,
                      cast(RecInfer, rec))
    return Run(lines, boxes, det, cls, rec, pre.image_info)


def png(img: np.ndarray) -> bytes:
    return cv2.imencode(".png", img)[1].tobytes()


def text_boxes(lines: list[str], origin=ORIGIN, spacing=SPACING, scale=1.2, thickness=2) -> list[tuple]:
    """Pixel bounds (x0, y0, x1, y1) of what cv2.putText draws for each line."""
    out = []
    for i, text in enumerate(lines):
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        x, y = origin[0], origin[1] + i * spacing
        out.append((x, y - th, x + tw, y + base))
    return out


def assert_poly_covers(poly: np.ndarray, bounds: tuple, tol: float = 12) -> None:
    x0, y0, x1, y1 = bounds
    assert poly[:, 0].min() <= x0 + tol and poly[:, 0].max() >= x1 - tol, (poly.tolist(), bounds)
    assert poly[:, 1].min() <= y0 + tol and poly[:, 1].max() >= y1 - tol, (poly.tolist(), bounds)
    assert poly[:, 0].min() >= x0 - 3 * tol and poly[:, 0].max() <= x1 + 3 * tol, (poly.tolist(), bounds)
    assert poly[:, 1].min() >= y0 - 3 * tol and poly[:, 1].max() <= y1 + 3 * tol, (poly.tolist(), bounds)


@pytest.fixture(scope="module")
def page(render_lines) -> np.ndarray:
    return render_lines(LINES, (H, W), ORIGIN, SPACING)


@pytest.fixture(scope="module")
def upright(v4: Models, page: np.ndarray) -> Run:
    return run_ocr(v4, [png(page)])


def test_three_lines_in_reading_order(upright: Run, ned) -> None:
    lines = upright.lines
    assert len(lines.texts) == 3, lines.texts
    for got, want in zip(lines.texts, LINES, strict=True):
        assert ned(got, want) <= 0.1, (got, want)
    assert lines.texts == LINES  # clean synthetic text: the v4 models read it exactly
    assert lines.scores.dtype == np.float32 and (lines.scores >= 0.5).all() and (lines.scores <= 1.0).all()
    assert lines.image_index.tolist() == [0, 0, 0] and lines.image_index.dtype == np.int32
    assert lines.flipped.tolist() == [False, False, False]


def test_polys_are_where_the_text_was_drawn(upright: Run) -> None:
    polys = upright.lines.polys
    assert polys.shape == (3, 4, 2) and polys.dtype == np.float32
    for poly, bounds in zip(polys, text_boxes(LINES), strict=True):
        assert_poly_covers(poly, bounds)
        # clockwise from top-left
        assert poly[0, 0] < poly[1, 0] and poly[1, 1] < poly[2, 1] and poly[3, 0] < poly[2, 0]


def test_default_classifier_and_recognizer_batching(upright: Run) -> None:
    s = served_settings()
    assert len(upright.det.shapes) == 1 and upright.det.shapes[0][::3] == (1, 3)  # [1,H,W,3]
    assert upright.det.shapes[0][1] % 32 == 0 and upright.det.shapes[0][2] % 32 == 0
    assert len(upright.cls.shapes) == 1 and upright.cls.shapes[0] == (3, 48, 192, 3)
    assert len(upright.rec.shapes) == math.ceil(3 / s.rec_batch_size)
    assert all(shape[0] <= s.rec_batch_size and shape[1] == 48 for shape in upright.rec.shapes)


def test_upside_down_page_is_flipped_back(v4: Models, page: np.ndarray, ned) -> None:
    run = run_ocr(v4, [png(cv2.rotate(page, cv2.ROTATE_180))], {"use_textline_orientation": True})
    lines = run.lines
    # the last line is now at the top of the page
    assert len(lines.texts) == 3, lines.texts
    for got, want in zip(lines.texts, LINES[::-1], strict=True):
        assert ned(got, want) <= 0.1, (got, want)
    assert lines.flipped.tolist() == [True, True, True]
    for poly, (x0, y0, x1, y1) in zip(lines.polys, text_boxes(LINES)[::-1], strict=True):
        assert_poly_covers(poly, (W - x1, H - y1, W - x0, H - y0))


def test_upside_down_without_orientation_is_not_read(v4: Models, page: np.ndarray) -> None:
    """Control for the test above: without the classifier the same crops are not read correctly."""
    run = run_ocr(v4, [png(cv2.rotate(page, cv2.ROTATE_180))], {"use_textline_orientation": False})
    assert run.cls.shapes == []
    assert not run.lines.flipped.any()
    assert not set(run.lines.texts) & set(LINES)


def test_blank_page_has_no_lines_and_no_rec_calls(v4: Models) -> None:
    run = run_ocr(v4, [png(np.full((500, 700, 3), 255, np.uint8))])
    assert run.boxes.shape == (0, 4, 2)
    assert run.lines.texts == [] and run.lines.polys.shape == (0, 4, 2)
    assert run.lines.scores.shape == (0,) and run.lines.image_index.shape == (0,)
    assert len(run.det.shapes) == 1
    assert run.cls.shapes == [] and run.rec.shapes == []


def test_two_images_in_one_request(v4: Models, page: np.ndarray, render_lines, ned) -> None:
    second_lines = ["Second image 77", "abc def"]
    second = render_lines(second_lines, (740, 600), (30, 200), 250)
    jpeg = cv2.imencode(".jpg", second, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    run = run_ocr(v4, [png(page), jpeg])
    lines = run.lines
    assert lines.image_index.tolist() == [0, 0, 0, 1, 1], lines.texts
    for got, want in zip(lines.texts, LINES + second_lines, strict=True):
        assert ned(got, want) <= 0.1, (got, want)
    assert run.det.shapes[0][0] == 2  # one detector call for both images
    sizes = {0: (H, W), 1: (740, 600)}
    for poly, k in zip(lines.polys, lines.image_index, strict=True):
        h, w = sizes[int(k)]
        assert poly[:, 0].min() >= 0 and poly[:, 0].max() <= w
        assert poly[:, 1].min() >= 0 and poly[:, 1].max() <= h
    for poly, bounds in zip(lines.polys[3:], text_boxes(second_lines, (30, 200), 250), strict=True):
        assert_poly_covers(poly, bounds)
    # image_info rows describe each original image
    assert run.image_info[:, :2].tolist() == [[H, W], [740, 600]]


def test_receipt_with_150_lines(v4: Models) -> None:
    """More boxes than one rec/cls batch (and than 128): all found, read, and in reading order."""
    cols, rows, lh, cw = 6, 25, 30, 130
    tokens = [f"{i * 7 % 1000:03d}.{i % 100:02d}" for i in range(cols * rows)]
    img = np.full((rows * lh + 20, cols * cw, 3), 255, np.uint8)
    for i, tok in enumerate(tokens):
        c, r = divmod(i, rows)
        cv2.putText(img, tok, (15 + c * cw, lh * (r + 1)), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 0), 2, cv2.LINE_AA)
    s = served_settings(rec_batch_total_width=0)  # chunks bounded by rec_batch_size alone
    run = run_ocr(v4, [png(img)], s=s)
    assert len(run.boxes) == 150 > 128
    assert len(run.lines.texts) == 150
    reading = [tokens[c * rows + r] for r in range(rows) for c in range(cols)]  # row by row, left to right
    exact = sum(a == b for a, b in zip(run.lines.texts, reading, strict=True))
    assert exact >= 0.95 * 150, [(a, b) for a, b in zip(run.lines.texts, reading, strict=True) if a != b]
    assert len(run.rec.shapes) == math.ceil(150 / s.rec_batch_size)
    assert all(shape[0] <= s.rec_batch_size for shape in run.rec.shapes)
    assert len(run.cls.shapes) == math.ceil(150 / s.cls_batch_size)


def test_bad_image_in_request_is_invalid_input(v4: Models, page: np.ndarray) -> None:
    with pytest.raises(InvalidInputError) as info:
        run_ocr(v4, [png(page), b"not an image"])
    assert "image_bytes[1]" in str(info.value)


def test_v5_models_read_the_same_page(models_dir: Path, page: np.ndarray, ned) -> None:
    models = load_models(models_dir / "v5")
    lines = run_ocr(models, [png(page)]).lines
    assert len(lines.texts) == 3, lines.texts
    for got, want in zip(lines.texts, LINES, strict=True):
        assert ned(got, want) <= 0.1, (got, want)


def test_flat_strip_is_letterboxed_and_mapped_back(v4: Models) -> None:
    img = np.full((40, 600, 3), 255, np.uint8)
    cv2.putText(img, "Flat line 123", (20, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (0, 0, 0), 2, cv2.LINE_AA)
    run = run_ocr(v4, [png(img)], {"limit_type": "max", "limit_side_len": 960})
    assert run.image_info[0, 4] > 0  # pad_top: the strip was letterboxed
    assert run.lines.texts == ["Flat line 123"]
    assert_poly_covers(run.lines.polys[0], text_boxes(["Flat line 123"], (20, 30), 0, 0.9, 2)[0], tol=6)
    assert run.lines.polys[0][:, 1].max() <= 40


def test_large_page_is_shrunk_and_mapped_back(v4: Models) -> None:
    page = np.full((2600, 1800, 3), 255, np.uint8)
    cv2.putText(page, "Large page text", (200, 1300), cv2.FONT_HERSHEY_SIMPLEX, 3, (0, 0, 0), 6, cv2.LINE_AA)
    run = run_ocr(v4, [png(page)])
    assert max(run.det.shapes[0][2:]) <= 2 * served_settings().max_side_limit
    assert run.lines.texts == ["Large page text"]
    assert_poly_covers(run.lines.polys[0], text_boxes(["Large page text"], (200, 1300), 0, 3, 6)[0], tol=20)


# ---------------------------------------------------------------- the step functions without models

def test_preprocess_refuses_no_images_and_too_many() -> None:
    s = served_settings(max_images_per_request=2)
    with pytest.raises(InvalidInputError) as info:
        preprocess([], {}, served_defaults(), s)
    assert info.value.reason == "empty"
    blob = png(np.full((40, 40, 3), 255, np.uint8))
    with pytest.raises(InvalidInputError) as info:
        preprocess([blob] * 3, {}, served_defaults(), s)
    assert info.value.reason == "too_many_images" and "at most 2" in str(info.value)
    assert preprocess([blob] * 2, {}, served_defaults(), s).det_input.shape[0] == 2


def test_preprocess_refuses_bad_parameters_before_decoding() -> None:
    with pytest.raises(InvalidInputError, match="'box_thresh'"):
        preprocess([b"garbage"], {"box_thresh": 2.0}, served_defaults(), served_settings())


def test_preprocess_outputs_match_the_config_contract() -> None:
    blobs = [png(np.full((100, 300, 3), 255, np.uint8)), png(np.full((200, 120, 3), 0, np.uint8))]
    out = preprocess(blobs, {"limit_type": "max", "limit_side_len": 320}, served_defaults(), served_settings())
    assert out.det_input.dtype == np.uint8 and out.det_input.ndim == 4 and out.det_input.shape[3] == 3
    assert out.images.dtype == np.uint8 and out.images.shape == (2, 200, 300, 3)
    assert out.image_info.dtype == np.float32 and out.image_info.shape == (2, 10)
    assert out.params.limit_type == "max" and out.params.limit_side_len == 320
    assert (out.images[1, :, 120:] == 0).all() and (out.images[0, 100:] == 0).all()  # zero padding


def test_postprocess_refuses_too_many_boxes(prob_map) -> None:
    rects = [(10 + 40 * i, 10, 40 + 40 * i, 30, 0.9) for i in range(10)]
    pm = np.stack([prob_map(64, 416, rects=rects)])[:, None]
    info = np.array([[64, 416, 64, 416, 0, 64, 416, 1, 1]], np.float32)
    boxes, scores, index = postprocess_detection(pm, info, served_defaults(), served_settings())
    assert boxes.shape == (10, 4, 2) and boxes.dtype == np.float32 and index.dtype == np.int32
    with pytest.raises(InvalidInputError) as err:
        postprocess_detection(pm, info, served_defaults(), served_settings(max_boxes_per_request=9))
    assert err.value.reason == "too_many_boxes"


def test_postprocess_reads_only_each_images_valid_region(prob_map) -> None:
    """Image 0 is 64x128 inside a 64x256 batch; text in its padding must not produce boxes."""
    pm = np.zeros((2, 1, 64, 256), np.float32)
    pm[0, 0] = prob_map(64, 256, rects=[(10, 10, 100, 30, 0.9), (150, 10, 240, 30, 0.9)])
    pm[1, 0] = prob_map(64, 256, rects=[(150, 10, 240, 30, 0.9)])
    info = np.array([[32, 64, 64, 128, 0, 64, 128, 0.5, 0.5],
                     [64, 256, 64, 256, 0, 64, 256, 1, 1]], np.float32)
    boxes, _, index = postprocess_detection(pm, info, served_defaults(), served_settings())
    assert index.tolist() == [0, 1]
    assert boxes[0][:, 0].max() <= 127 and boxes[1][:, 0].min() > 130


def test_recognize_filters_by_score_and_maps_to_original() -> None:
    labels = ["blank", "a", "b", " "]

    def rec(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # both crops go in one batch, sorted by w/h: box 0 (80x30) before box 1 (90x30)
        assert len(batch) == 2
        out = np.zeros((2, 4, 4), np.float32)
        out[:, :, 0] = 1.0
        out[0, 0] = [0.0, 0.95, 0.05, 0.0]  # box 0: "a" with 0.95
        out[1, 0] = [0.0, 0.0, 0.6, 0.4]    # box 1: "b" with 0.6, below text_rec_score_thresh
        return out.argmax(axis=2).astype(np.int32), out.max(axis=2)  # what the recogniser graph outputs

    images = np.full((1, 100, 200, 3), 255, np.uint8)
    info = np.array([[50, 100, 100, 200, 0, 0, 0, 0.5, 0.5]], np.float32)
    boxes = np.array([[[10, 10], [90, 10], [90, 40], [10, 40]],
                      [[100, 50], [190, 50], [190, 80], [100, 80]]], np.float32)
    params = served_defaults(use_textline_orientation=False, text_rec_score_thresh=0.9)
    lines = recognize(images, info, boxes, np.array([0, 0], np.int32), params, served_settings(), labels, None, rec)
    assert lines.texts == ["a"]
    np.testing.assert_allclose(lines.polys[0], boxes[0] * 0.5)
    assert lines.scores.tolist() == pytest.approx([0.95])
    # a threshold nobody reaches leaves well-typed empty outputs
    none = recognize(images, info, boxes, np.array([0, 0], np.int32),
                     replace(params, text_rec_score_thresh=1.0), served_settings(), labels, None, rec)
    assert none.texts == [] and none.polys.shape == (0, 4, 2) and none.image_index.dtype == np.int32
    # a pipelined recogniser (submit/wait) gives the same lines; timing counts the time blocked in it

    class Submitting:
        def __call__(self, batch):
            raise AssertionError("called through submit only")

        def submit(self, batch):
            result = rec(batch)
            return lambda: result

    timings: dict[str, float] = {}
    piped = recognize(images, info, boxes, np.array([0, 0], np.int32), params, served_settings(), labels, None,
                      Submitting(), timings)
    assert piped.texts == lines.texts and piped.scores.tolist() == lines.scores.tolist()
    assert set(timings) == {"crop", "rec", "ctc"} and min(timings.values()) >= 0
    assert none.flipped.shape == (0,) and none.scores.dtype == np.float32

