"""Detection pre-processing: resize rule, source-image preparation, coordinate mapping, batching."""
from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest
from served import served_settings

from ppocr_steps.det_preprocess import (
    IMAGE_INFO_COLUMNS,
    ImageInfo,
    build_det_batch,
    det_resize_shape,
    prepare_source,
)
from ppocr_steps.settings import PipelineSettings


def paddle_rule(h: int, w: int, limit: int, limit_type: str) -> tuple[int, int]:
    """PaddleOCR DetResizeForTest(limit_type=...) written out independently."""
    if limit_type == "max":
        ratio = float(limit) / max(h, w) if max(h, w) > limit else 1.0
    else:
        ratio = float(limit) / min(h, w) if min(h, w) < limit else 1.0
    rh, rw = int(h * ratio), int(w * ratio)
    return max(int(round(rh / 32) * 32), 32), max(int(round(rw / 32) * 32), 32)


# ---------------------------------------------------------------- det_resize_shape

def test_resize_examples() -> None:
    assert det_resize_shape(720, 1280, 736, "min") == (736, 1312)
    assert det_resize_shape(720, 1280, 960, "max") == (544, 960)
    assert det_resize_shape(1080, 1920, 960, "max") == (544, 960)
    assert det_resize_shape(1000, 3000, 736, "min") == (992, 3008)  # min side already >= limit: no scaling
    assert det_resize_shape(500, 410, 960, "max") == (512, 416)     # max side below limit: no scaling
    assert det_resize_shape(500, 400, 960, "max") == (512, 384)     # 12.5 rounds half to even, as in PaddleOCR


@pytest.mark.parametrize("limit_type", ["min", "max"])
def test_resize_matches_rule_and_is_multiple_of_32(limit_type: str) -> None:
    rng = np.random.default_rng(7)
    for _ in range(300):
        h, w = (int(v) for v in rng.integers(1, 3000, 2))
        limit = int(rng.choice([32, 64, 640, 736, 960, 1216, 4096]))
        dh, dw = det_resize_shape(h, w, limit, limit_type)
        assert (dh, dw) == paddle_rule(h, w, limit, limit_type), (h, w, limit)
        assert dh % 32 == 0 and dw % 32 == 0 and dh >= 32 and dw >= 32


def test_resize_never_below_32() -> None:
    assert det_resize_shape(1, 1, 32, "max") == (32, 32)
    assert det_resize_shape(5, 3000, 960, "max") == (32, 960)


def test_resize_min_reaches_the_limit() -> None:
    dh, dw = det_resize_shape(100, 300, 736, "min")
    assert dh == 736 and dw == 2208


def test_resize_bad_limit_type() -> None:
    with pytest.raises(ValueError, match="limit_type"):
        det_resize_shape(100, 100, 736, "mean")


# ---------------------------------------------------------------- prepare_source

def test_normal_image_untouched(settings: PipelineSettings) -> None:
    img = np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8)
    src, info = prepare_source(img, settings)
    assert src is img
    assert info == ImageInfo(300, 400, 300, 400, 0, 0, 0, 1.0, 1.0)


def test_large_image_shrunk(settings: PipelineSettings) -> None:
    img = np.zeros((3000, 1500, 3), np.uint8)
    src, info = prepare_source(img, settings)
    assert max(src.shape[:2]) <= settings.max_side_limit
    assert src.shape[0] % 32 == 0 and src.shape[1] % 32 == 0
    assert src.shape[:2] == (1984, 992)
    assert (info.src_h, info.src_w, info.pad_top) == (1984, 992, 0)
    assert info.scale_y == pytest.approx(3000 / 1984) and info.scale_x == pytest.approx(1500 / 992)
    # the source's far corner maps back to the original's far corner
    far = info.to_original(np.array([[992.0, 1984.0]]))
    np.testing.assert_allclose(far, [[1500.0, 3000.0]], rtol=1e-6)


def test_large_image_content_maps_back(settings: PipelineSettings) -> None:
    img = np.full((2400, 3600, 3), 255, np.uint8)
    img[1000:1200, 2000:2600] = 0
    src, info = prepare_source(img, settings)
    ys, xs = np.nonzero(src[:, :, 0] < 128)
    corners = np.array([[xs.min(), ys.min()], [xs.max() + 1, ys.max() + 1]], dtype=np.float32)
    np.testing.assert_allclose(info.to_original(corners), [[2000, 1000], [2600, 1200]], atol=3)


def test_tiny_image_enlarged(settings: PipelineSettings) -> None:
    img = np.zeros((25, 25, 3), np.uint8)
    src, info = prepare_source(img, settings)
    assert min(src.shape[:2]) >= settings.min_side_len
    assert src.shape[:2] == (32, 32)
    assert info.scale_x == pytest.approx(25 / 32) and info.scale_y == pytest.approx(25 / 32)


def test_flat_image_letterboxed_and_mapped_back(settings: PipelineSettings) -> None:
    img = np.full((20, 400, 3), 255, np.uint8)
    img[5:15, 100:120] = 0  # a black block in the original
    src, info = prepare_source(img, settings)
    # enlarged to min_side_len (20 -> 32 rows, 400 -> 608 cols), then letterboxed: 152 rows, 60 on top
    assert (info.orig_h, info.orig_w) == (20, 400)
    assert src.shape[:2] == (152, 608) and (info.src_h, info.src_w) == (152, 608)
    assert info.pad_top == 60
    assert (src[:60] == 0).all() and (src[92:] == 0).all()        # black padding bars
    assert src[60:92].mean() > 200                                  # content is the white image
    # find the block in the source and map its bounds back to the original
    content = src[60:92]
    ys, xs = np.nonzero(content[:, :, 0] < 128)
    box_src = np.array([[xs.min(), ys.min() + 60], [xs.max() + 1, ys.max() + 1 + 60]], dtype=np.float32)
    np.testing.assert_allclose(info.to_original(box_src), [[100, 5], [120, 15]], atol=1.0)


def test_to_original_exact_mapping_and_clipping() -> None:
    info = ImageInfo(orig_h=20, orig_w=400, src_h=152, src_w=608, pad_top=60, det_h=0, det_w=0,
                     scale_x=400 / 608, scale_y=20 / 32)
    pts = np.array([[304.0, 76.0], [0.0, 60.0], [608.0, 92.0]], dtype=np.float32)
    np.testing.assert_allclose(info.to_original(pts), [[200.0, 10.0], [0.0, 0.0], [400.0, 20.0]], atol=1e-4)
    # points in the padding / beyond the image are clipped to the original image
    outside = np.array([[-10.0, 0.0], [700.0, 151.0]], dtype=np.float32)
    np.testing.assert_allclose(info.to_original(outside), [[0.0, 0.0], [400.0, 20.0]])
    # works on [K,4,2] and does not modify the input
    quads = np.tile(pts[:1], (2, 4, 1))
    before = quads.copy()
    out = info.to_original(quads)
    assert out.shape == (2, 4, 2) and out.dtype == np.float32
    np.testing.assert_array_equal(quads, before)


def test_very_wide_image_letterboxed_by_ratio(settings: PipelineSettings) -> None:
    img = np.full((40, 1000, 3), 255, np.uint8)  # h > min height but w/h = 25 > 8
    src, info = prepare_source(img, settings)
    assert info.pad_top > 0
    assert src.shape[1] / src.shape[0] <= settings.letterbox_max_wh_ratio + 0.1
    assert src.shape[0] == 40 + 2 * info.pad_top
    np.testing.assert_array_equal(src[int(info.pad_top):int(info.pad_top) + 40], img)


def test_image_info_row_round_trip() -> None:
    info = ImageInfo(1, 2, 3, 4, 5, 6, 7, 8.5, 9.25)
    row = np.asarray(info.to_row(), dtype=np.float32)
    assert row.shape == (IMAGE_INFO_COLUMNS,)
    assert ImageInfo.from_row(row) == info


# ---------------------------------------------------------------- build_det_batch
# (normalisation is part of the detector graph: tests/unit/test_onnx_edits.py)

def _prepared(shapes, s):
    srcs, infos = [], []
    rng = np.random.default_rng(3)
    for h, w in shapes:
        src, info = prepare_source(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), s)
        srcs.append(src)
        infos.append(info)
    return srcs, infos


def test_build_det_batch_single(settings: PipelineSettings) -> None:
    srcs, infos = _prepared([(720, 1280)], settings)
    batch, out = build_det_batch(srcs, infos, 736, "min", settings)
    assert batch.shape == (1, 736, 1312, 3) and batch.dtype == np.uint8
    assert batch.flags["C_CONTIGUOUS"]
    assert (out[0].det_h, out[0].det_w) == (736, 1312)
    np.testing.assert_array_equal(batch[0], cv2.resize(srcs[0], (1312, 736)))


def test_build_det_batch_pads_to_largest(settings: PipelineSettings) -> None:
    srcs, infos = _prepared([(300, 400), (500, 200), (100, 900)], settings)
    batch, out = build_det_batch(srcs, infos, 960, "max", settings)
    sizes = [det_resize_shape(s.shape[0], s.shape[1], 960, "max") for s in srcs]
    assert [(o.det_h, o.det_w) for o in out] == [tuple(map(float, sz)) for sz in sizes]
    H, W = max(h for h, _ in sizes), max(w for _, w in sizes)
    assert batch.shape == (3, H, W, 3) and batch.dtype == np.uint8
    for i, (h, w) in enumerate(sizes):
        np.testing.assert_array_equal(batch[i, :h, :w], cv2.resize(srcs[i], (w, h)))
        assert not batch[i, h:, :].any() and not batch[i, :, w:].any()
        # everything but det_h/det_w is carried over from prepare_source
        assert replace(out[i], det_h=0, det_w=0) == infos[i]


def test_build_det_batch_caps_the_detector_input() -> None:
    s = served_settings(max_side_limit=200, min_side_len=30)
    srcs, infos = _prepared([(150, 60)], s)  # limit_type min 4096 would ask for 10240x4096
    batch, out = build_det_batch(srcs, infos, 4096, "min", s)
    assert max(batch.shape[1:3]) <= 2 * s.max_side_limit
    assert batch.shape[1] % 32 == 0 and batch.shape[2] % 32 == 0
    assert (out[0].det_h, out[0].det_w) == batch.shape[1:3]
