"""DB post-processing on synthetic probability maps."""
from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

from ppocr_steps.db_postprocess import (
    DBConfig,
    db_boxes,
    detect_boxes,
    filter_boxes,
    order_points_clockwise,
    sort_reading_order,
)

EXACT = DBConfig(thresh=0.3, box_thresh=0.6, unclip_ratio=1.5, use_dilation=False, score_mode="fast", min_size=3)


def expected_unclipped(x0: int, y0: int, x1: int, y1: int, ratio: float) -> np.ndarray:
    """Axis-aligned rect filled over [x0,x1) x [y0,y1): its contour spans x0..x1-1, y0..y1-1; the DB
    unclip offsets it by distance = area * ratio / perimeter on every side."""
    w, h = (x1 - 1) - x0, (y1 - 1) - y0
    d = w * h * ratio / (2 * (w + h))
    return np.array([[x0 - d, y0 - d], [x1 - 1 + d, y0 - d], [x1 - 1 + d, y1 - 1 + d], [x0 - d, y1 - 1 + d]])


def bounds(box: np.ndarray) -> tuple[float, float, float, float]:
    return box[:, 0].min(), box[:, 1].min(), box[:, 0].max(), box[:, 1].max()


def test_empty_map_gives_no_boxes() -> None:
    boxes, scores = db_boxes(np.zeros((64, 96), np.float32), 64, 96, EXACT)
    assert boxes.shape == (0, 4, 2) and scores.shape == (0,)
    boxes, scores = detect_boxes(np.zeros((64, 96), np.float32), 64, 96, EXACT)
    assert boxes.shape == (0, 4, 2) and scores.shape == (0,)


def test_one_rectangle_position_follows_unclip_rule(prob_map) -> None:
    m = prob_map(100, 200, rects=[(30, 20, 130, 40, 0.9)])
    boxes, scores = db_boxes(m, 100, 200, EXACT)
    assert boxes.shape == (1, 4, 2) and boxes.dtype == np.int32
    assert scores[0] == pytest.approx(0.9, abs=1e-6)
    exp = expected_unclipped(30, 20, 130, 40, 1.5)
    np.testing.assert_allclose(bounds(boxes[0]), bounds(exp), atol=1.0)
    # the box is bigger than the region: unclip enlarged it on every side by ~12 px
    assert boxes[0][:, 0].min() < 30 - 10 and boxes[0][:, 1].max() > 39 + 10


@pytest.mark.parametrize("ratio", [0.5, 1.5, 2.5])
def test_unclip_ratio_scales_the_offset(prob_map, ratio: float) -> None:
    m = prob_map(200, 300, rects=[(80, 80, 200, 110, 0.9)])
    boxes, _ = db_boxes(m, 200, 300, DBConfig(**{**EXACT.__dict__, "unclip_ratio": ratio}))
    np.testing.assert_allclose(bounds(boxes[0]), bounds(expected_unclipped(80, 80, 200, 110, ratio)), atol=1.0)


def test_several_rectangles_counted(prob_map) -> None:
    rects = [(10, 10, 90, 30, 0.9), (120, 10, 190, 30, 0.8), (10, 60, 190, 80, 0.95)]
    boxes, scores = db_boxes(prob_map(100, 200, rects=rects), 100, 200, EXACT)
    assert len(boxes) == 3
    centres = sorted((float(b[:, 0].mean()), float(b[:, 1].mean())) for b in boxes)
    expected = sorted(((x0 + x1 - 1) / 2, (y0 + y1 - 1) / 2) for x0, y0, x1, y1, _ in rects)
    np.testing.assert_allclose(centres, expected, atol=1.0)
    assert sorted(scores.tolist()) == pytest.approx([0.8, 0.9, 0.95], abs=1e-6)


def test_rotated_rectangle(prob_map) -> None:
    pts = cv2.boxPoints(((150.0, 100.0), (120.0, 24.0), 30.0))
    m = prob_map(200, 300, quads=[(pts, 0.9)])
    boxes, scores = detect_boxes(m, 200, 300, EXACT)
    assert len(boxes) == 1 and scores[0] > 0.8
    box = boxes[0]
    np.testing.assert_allclose(box.mean(axis=0), [150, 100], atol=2.0)
    w = np.linalg.norm(box[1] - box[0])
    h = np.linalg.norm(box[3] - box[0])
    d = 119 * 23 * 1.5 / (2 * (119 + 23))  # unclip distance of the ~119x23 contour
    assert w == pytest.approx(119 + 2 * d, abs=3) and h == pytest.approx(23 + 2 * d, abs=3)
    # the long side keeps the slope of the drawn rectangle (30 degrees, y grows downwards)
    angle = np.degrees(np.arctan2(box[1][1] - box[0][1], box[1][0] - box[0][0]))
    drawn = order_points_clockwise(pts)
    drawn_angle = np.degrees(np.arctan2(drawn[1][1] - drawn[0][1], drawn[1][0] - drawn[0][0]))
    assert abs(drawn_angle) == pytest.approx(30, abs=0.5)
    assert angle == pytest.approx(drawn_angle, abs=2)


def test_box_thresh_filters_weak_regions(prob_map) -> None:
    m = prob_map(100, 200, rects=[(20, 20, 100, 40, 0.4), (20, 60, 100, 80, 0.9)])
    cfg = DBConfig(**{**EXACT.__dict__, "box_thresh": 0.5})
    boxes, scores = db_boxes(m, 100, 200, cfg)
    assert len(boxes) == 1 and scores[0] == pytest.approx(0.9)
    assert boxes[0][:, 1].min() > 40  # the surviving box is the 0.9 one
    boxes, scores = db_boxes(m, 100, 200, DBConfig(**{**EXACT.__dict__, "box_thresh": 0.35}))
    assert len(boxes) == 2


def test_thresh_binarises(prob_map) -> None:
    # two strong regions joined by a 0.35 bridge: thresh 0.3 merges them, 0.4 splits them
    m = prob_map(100, 200, rects=[(20, 30, 80, 50, 0.9), (80, 30, 90, 50, 0.35), (90, 30, 150, 50, 0.9)])
    low = DBConfig(**{**EXACT.__dict__, "thresh": 0.3, "box_thresh": 0.3})
    high = DBConfig(**{**EXACT.__dict__, "thresh": 0.4, "box_thresh": 0.3})
    assert len(db_boxes(m, 100, 200, low)[0]) == 1
    assert len(db_boxes(m, 100, 200, high)[0]) == 2
    # a region below thresh is not text at all
    weak = prob_map(100, 200, rects=[(20, 30, 150, 50, 0.25)])
    assert len(db_boxes(weak, 100, 200, DBConfig(**{**EXACT.__dict__, "box_thresh": 0.0}))[0]) == 0


def test_max_candidates_caps_contours(prob_map) -> None:
    rects = [(10 + 40 * i, 10, 40 + 40 * i, 30, 0.9) for i in range(10)]
    m = prob_map(60, 420, rects=rects)
    assert len(db_boxes(m, 60, 420, EXACT)[0]) == 10
    assert len(db_boxes(m, 60, 420, DBConfig(**{**EXACT.__dict__, "max_candidates": 4}))[0]) == 4
    assert len(db_boxes(m, 60, 420, DBConfig(**{**EXACT.__dict__, "max_candidates": 0}))[0]) == 0


def test_small_blobs_dropped(prob_map) -> None:
    m = prob_map(100, 200, rects=[(50, 50, 52, 52, 0.9),      # 2x2 px blob
                                   (100, 50, 160, 53, 0.9),    # 3 px tall line: min side 2 < 3
                                   (20, 10, 80, 30, 0.9)])     # a real region
    boxes, _ = db_boxes(m, 100, 200, EXACT)
    assert len(boxes) == 1
    assert boxes[0][:, 1].max() < 45


def test_min_size_is_configurable(prob_map) -> None:
    m = prob_map(100, 200, rects=[(20, 40, 120, 48, 0.9)])  # contour min side 7
    assert len(db_boxes(m, 100, 200, EXACT)[0]) == 1
    assert len(db_boxes(m, 100, 200, DBConfig(**{**EXACT.__dict__, "min_size": 8}))[0]) == 0


def test_use_dilation_closes_one_pixel_gaps(prob_map) -> None:
    m = prob_map(100, 200, rects=[(30, 20, 80, 40, 0.9), (81, 20, 130, 40, 0.9)])  # column 80 is a gap
    assert len(db_boxes(m, 100, 200, EXACT)[0]) == 2
    dilated, scores = db_boxes(m, 100, 200, DBConfig(**{**EXACT.__dict__, "use_dilation": True}))
    assert len(dilated) == 1
    assert bounds(dilated[0])[0] < 30 and bounds(dilated[0])[2] > 130


def test_score_mode_slow_follows_the_contour(prob_map) -> None:
    tri = np.array([[20, 20], [180, 20], [20, 180]])
    m = prob_map(200, 200, quads=[(tri, 0.9)])
    loose = {**EXACT.__dict__, "box_thresh": 0.0}
    fast = db_boxes(m, 200, 200, DBConfig(**{**loose, "score_mode": "fast"}))[1]
    slow = db_boxes(m, 200, 200, DBConfig(**{**loose, "score_mode": "slow"}))[1]
    assert slow[0] == pytest.approx(0.9, abs=0.01)      # mean over the triangle itself
    assert 0.35 < fast[0] < 0.6                           # mean over its bounding rectangle
    gated = {**EXACT.__dict__, "box_thresh": 0.6}
    assert len(db_boxes(m, 200, 200, DBConfig(**{**gated, "score_mode": "fast"}))[0]) == 0
    assert len(db_boxes(m, 200, 200, DBConfig(**{**gated, "score_mode": "slow"}))[0]) == 1


def test_boxes_scaled_to_dest_size(prob_map) -> None:
    m = prob_map(100, 200, rects=[(30, 20, 130, 40, 0.9)])
    same, _ = db_boxes(m, 100, 200, EXACT)
    double, _ = db_boxes(m, 200, 400, EXACT)
    np.testing.assert_allclose(double, same * 2, atol=2)
    aniso, _ = db_boxes(m, 50, 600, EXACT)  # y halved, x tripled
    np.testing.assert_allclose(aniso[0][:, 0], same[0][:, 0] * 3, atol=2)
    np.testing.assert_allclose(aniso[0][:, 1], same[0][:, 1] / 2, atol=1)


def test_boxes_clipped_to_the_image(prob_map) -> None:
    m = prob_map(100, 200, rects=[(0, 0, 60, 20, 0.9), (150, 80, 200, 100, 0.9)])  # touch the corners
    raw, _ = db_boxes(m, 100, 200, EXACT)
    assert raw[:, :, 0].min() >= 0 and raw[:, :, 0].max() <= 200
    assert raw[:, :, 1].min() >= 0 and raw[:, :, 1].max() <= 100
    boxes, _ = detect_boxes(m, 100, 200, EXACT)
    assert len(boxes) == 2
    assert boxes[:, :, 0].min() == 0 and boxes[:, :, 0].max() == 199
    assert boxes[:, :, 1].min() == 0 and boxes[:, :, 1].max() == 99


def test_order_points_clockwise_on_every_permutation() -> None:
    tl, tr, br, bl = [10, 20], [110, 25], [108, 60], [8, 55]
    expected = np.array([tl, tr, br, bl], dtype=np.float32)
    for perm in itertools.permutations([tl, tr, br, bl]):
        out = order_points_clockwise(np.array(perm, dtype=np.float32))
        np.testing.assert_array_equal(out, expected)
        assert out.dtype == np.float32


def test_order_points_clockwise_axis_aligned() -> None:
    pts = np.array([[50, 50], [0, 0], [50, 0], [0, 50]], dtype=np.float32)
    np.testing.assert_array_equal(order_points_clockwise(pts), [[0, 0], [50, 0], [50, 50], [0, 50]])


def test_filter_boxes_orders_clips_and_drops_thin() -> None:
    boxes = np.array([
        [[105, 60], [-5, 10], [105, 10], [-5, 60]],   # unordered, sticks out left: clipped to x=0
        [[10, 70], [50, 70], [50, 73], [10, 73]],     # 3 px tall: dropped
        [[10, 80], [13, 80], [13, 95], [10, 95]],     # 3 px wide: dropped
        [[60, 80], [120, 80], [120, 99], [60, 99]],   # bottom beyond the image (h=90): clipped to 89
    ], dtype=np.float32)
    out, scores = filter_boxes(boxes, np.array([0.9, 0.8, 0.7, 0.6], np.float32), 90, 100)
    assert len(out) == 2
    np.testing.assert_array_equal(out[0], [[0, 10], [99, 10], [99, 60], [0, 60]])
    np.testing.assert_array_equal(out[1], [[60, 80], [99, 80], [99, 89], [60, 89]])
    np.testing.assert_allclose(scores, [0.9, 0.6])


def test_filter_boxes_all_dropped() -> None:
    out, scores = filter_boxes(np.array([[[0, 0], [2, 0], [2, 2], [0, 2]]], np.float32), np.ones(1), 50, 50)
    assert out.shape == (0, 4, 2) and scores.shape == (0,)


def _box(x: float, y: float, w: float = 40, h: float = 15) -> np.ndarray:
    return np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], dtype=np.float32)


def test_sort_reading_order_two_lines() -> None:
    # line 1 at y~10 (words with small y jitter inside the 10 px band), line 2 at y~50
    boxes = np.stack([_box(200, 52), _box(120, 14), _box(10, 50), _box(10, 18), _box(230, 10), _box(110, 55)])
    order = sort_reading_order(boxes)
    assert order.tolist() == [3, 1, 4, 2, 5, 0]


def test_sort_reading_order_band_is_10_px() -> None:
    # 12 px apart: different lines even though the lower one is further left
    boxes = np.stack([_box(100, 10), _box(10, 22)])
    assert sort_reading_order(boxes).tolist() == [0, 1]
    # 9 px apart: same line, so left to right
    boxes = np.stack([_box(100, 10), _box(10, 19)])
    assert sort_reading_order(boxes).tolist() == [1, 0]


def test_sort_reading_order_empty_and_single() -> None:
    assert sort_reading_order(np.zeros((0, 4, 2), np.float32)).tolist() == []
    assert sort_reading_order(_box(1, 1)[None]).tolist() == [0]


def test_detect_boxes_returns_reading_order(prob_map) -> None:
    rects = [(120, 60, 190, 80, 0.9), (10, 10, 90, 30, 0.9), (10, 62, 100, 80, 0.9), (110, 12, 190, 30, 0.9)]
    boxes, scores = detect_boxes(prob_map(100, 200, rects=rects), 100, 200, EXACT)
    assert boxes.dtype == np.float32 and boxes.shape == (4, 4, 2)
    lefts_tops = [(int(b[0][0]), int(b[0][1])) for b in boxes]
    assert [lt[1] < 40 for lt in lefts_tops] == [True, True, False, False]
    assert lefts_tops[0][0] < lefts_tops[1][0] and lefts_tops[2][0] < lefts_tops[3][0]
    assert scores.shape == (4,)


def test_uint8_map_reads_as_the_float_map(prob_map) -> None:
    """The served detector writes round(255 p): same boxes, scores within half a step of 1/255."""
    rects = [(20, 30, 80, 50, 0.9), (100, 30, 180, 50, 0.61), (20, 60, 100, 80, 0.59), (20, 85, 150, 95, 0.31)]
    m = prob_map(100, 200, rects=rects)
    q = np.floor(m * 255 + 0.5).astype(np.uint8)
    padded = np.zeros((128, 224), np.uint8)  # the step passes a view of the valid region
    padded[:100, :200] = q
    # EXACT: 2 boxes (0.59 and 0.31 are text pixels, > thresh, in boxes under box_thresh)
    for cfg, n in ((EXACT, 2), (DBConfig(score_mode="slow", use_dilation=True), 1)):
        fb, fs = db_boxes(m, 100, 200, cfg)
        qb, qs = db_boxes(padded[:100, :200], 100, 200, cfg)
        np.testing.assert_array_equal(qb, fb)
        np.testing.assert_allclose(qs, fs, atol=0.5 / 255 + 1e-6)
        assert len(fb) == n
    # thresh: a pixel is text when p > thresh, read from q as q > floor(255 thresh)
    edge = np.full((40, 60), 77, np.uint8)  # 77 / 255 = 0.302
    assert len(db_boxes(edge, 40, 60, DBConfig(thresh=0.3, box_thresh=0.0))[0]) == 1
    assert len(db_boxes(edge, 40, 60, DBConfig(thresh=0.302, box_thresh=0.0))[0]) == 0


def _imutils_order(pts: np.ndarray) -> np.ndarray:
    """The reference rule as PaddleOCR writes it (numpy stable sorts)."""
    x_sorted = pts[np.argsort(pts[:, 0], kind="stable"), :]
    left, right = x_sorted[:2, :], x_sorted[2:, :]
    tl, bl = left[np.argsort(left[:, 1], kind="stable"), :]
    tr, br = right[np.argsort(right[:, 1], kind="stable"), :]
    return np.array([tl, tr, br, bl], dtype=np.float32)


def test_order_points_clockwise_matches_the_reference_rule_with_ties(rng) -> None:
    for _ in range(2000):
        pts = rng.integers(0, 6, (4, 2)).astype(np.float32)  # small range: many equal x and y
        np.testing.assert_array_equal(order_points_clockwise(pts), _imutils_order(pts))


def test_unclip_offsets_by_shapelys_area_over_perimeter(rng) -> None:
    """The quad's area and perimeter are computed in plain floats; the offset equals the one that
    shapely's Polygon area/length give (PaddleOCR's formula), for rotated boxes as DB makes them."""
    pyclipper = pytest.importorskip("pyclipper")
    from shapely.geometry import Polygon

    from ppocr_steps.db_postprocess import _unclip

    for _ in range(500):
        rect = ((float(rng.uniform(20, 500)), float(rng.uniform(20, 500))),
                (float(rng.uniform(2, 300)), float(rng.uniform(2, 60))), float(rng.uniform(-90, 90)))
        box = cv2.boxPoints(rect)
        ratio = float(rng.choice([1.5, 2.0, 1.6]))
        poly = Polygon(box)
        offset = pyclipper.PyclipperOffset()
        offset.AddPath(box.tolist(), pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
        want = np.concatenate([np.asarray(p, np.float32) for p in offset.Execute(poly.area * ratio / poly.length)])
        got = _unclip(box, ratio)
        assert got is not None
        np.testing.assert_array_equal(got.reshape(-1, 2), want)
