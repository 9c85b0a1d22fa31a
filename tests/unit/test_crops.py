"""Crop rectification: perspective warp of detected quads to upright crops."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from ppocr_steps.crops import VERTICAL_RATIO, crop_all, crop_quad


def quad(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float32)


@pytest.fixture
def pattern() -> np.ndarray:
    """A 60x200 text-like pattern: white with dark bars of different widths and a dark top-left square."""
    p = np.full((60, 200, 3), 255, np.uint8)
    for i, x in enumerate(range(30, 190, 20)):
        p[15:45, x:x + 4 + i] = 0
    p[:12, :12] = (0, 0, 200)
    return p


def test_axis_aligned_quad_is_exact_sub_image(rng) -> None:
    img = rng.integers(0, 255, (120, 200, 3), dtype=np.uint8)
    crop = crop_quad(img, quad(30, 20, 150, 60))
    assert crop.shape == (40, 120, 3)
    np.testing.assert_array_equal(crop, img[20:60, 30:150])


def test_quad_point_order_matters(rng) -> None:
    """tl,tr,br,bl: giving the quad mirrored (tr,tl,bl,br) mirrors the crop."""
    img = rng.integers(0, 255, (120, 200, 3), dtype=np.uint8)
    q = quad(30, 20, 150, 60)
    mirrored = crop_quad(img, q[[1, 0, 3, 2]])
    assert mirrored.shape == (40, 120, 3)
    # pixel j of the mirrored crop samples x = 150 - j (the right edge maps to column 0)
    np.testing.assert_array_equal(mirrored[:, 1:], img[20:60, 30:150][:, ::-1][:, :-1])


def test_rotated_quad_gives_upright_crop(pattern: np.ndarray) -> None:
    canvas = np.full((400, 400, 3), 255, np.uint8)
    canvas[170:230, 100:300] = pattern
    m = cv2.getRotationMatrix2D((200.0, 200.0), 30.0, 1.0)
    rotated = cv2.warpAffine(canvas, m, (400, 400), flags=cv2.INTER_CUBIC, borderValue=(255, 255, 255))
    corners = quad(100, 170, 300, 230)
    moved = (np.hstack([corners, np.ones((4, 1), np.float32)]) @ m.T).astype(np.float32)
    crop = crop_quad(rotated, moved)
    assert abs(crop.shape[0] - 60) <= 1 and abs(crop.shape[1] - 200) <= 1
    crop = cv2.resize(crop, (200, 60))
    diff = np.abs(crop.astype(int) - pattern.astype(int)).mean()
    assert diff < 20, diff
    # the marker stays at the top left: the crop is upright, not flipped
    assert crop[:10, :10, 2].mean() > 150 and crop[:10, :10, 0].mean() < 80
    # control: cutting the unrotated rectangle out of the rotated image does not match
    wrong = cv2.resize(crop_quad(rotated, corners), (200, 60))
    assert np.abs(wrong.astype(int) - pattern.astype(int)).mean() > 2 * diff


def test_tall_quad_is_turned_90_degrees(rng) -> None:
    img = rng.integers(0, 255, (300, 200, 3), dtype=np.uint8)
    crop = crop_quad(img, quad(50, 20, 80, 200))  # 30 wide, 180 tall: ratio 6
    assert crop.shape == (30, 180, 3)
    np.testing.assert_array_equal(crop, np.rot90(img[20:200, 50:80]))
    assert crop.flags["C_CONTIGUOUS"]


def test_vertical_ratio_threshold(rng) -> None:
    img = rng.integers(0, 255, (300, 300, 3), dtype=np.uint8)
    assert VERTICAL_RATIO == 1.5
    at = crop_quad(img, quad(0, 0, 100, 150))        # h/w = 1.5 exactly: turned
    below = crop_quad(img, quad(0, 0, 100, 149))     # h/w = 1.49: kept
    assert at.shape == (100, 150, 3)
    assert below.shape == (149, 100, 3)


def test_degenerate_quad_gives_at_least_one_pixel(rng) -> None:
    img = rng.integers(0, 255, (50, 50, 3), dtype=np.uint8)
    crop = crop_quad(img, np.array([[10, 10], [10.5, 10], [10.5, 10.5], [10, 10.5]], np.float32))
    assert crop.shape[0] >= 1 and crop.shape[1] >= 1


def test_crop_all_uses_image_index() -> None:
    red = np.zeros((100, 100, 3), np.uint8)
    red[:] = (0, 0, 255)
    green = np.zeros((100, 100, 3), np.uint8)
    green[:] = (0, 255, 0)
    boxes = np.stack([quad(0, 0, 40, 20), quad(10, 10, 70, 30), quad(5, 5, 25, 15)])
    crops = crop_all([red, green], boxes, np.array([1, 0, 1], np.int32))
    assert [c.shape for c in crops] == [(20, 40, 3), (20, 60, 3), (10, 20, 3)]
    assert [tuple(c[0, 0]) for c in crops] == [(0, 255, 0), (0, 0, 255), (0, 255, 0)]


def test_crop_all_empty() -> None:
    assert crop_all([np.zeros((10, 10, 3), np.uint8)], np.zeros((0, 4, 2), np.float32), np.zeros(0, np.int32)) == []


def _warped(img: np.ndarray, q: np.ndarray) -> np.ndarray:
    """The general path (perspective warp), as crop_quad does it for any quad."""
    pts = q.astype(np.float32)
    w = max(int(max(np.linalg.norm(pts[0] - pts[1]), np.linalg.norm(pts[2] - pts[3]))), 1)
    h = max(int(max(np.linalg.norm(pts[0] - pts[3]), np.linalg.norm(pts[1] - pts[2]))), 1)
    m = cv2.getPerspectiveTransform(pts, np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float32))
    crop = cv2.warpPerspective(img, m, (w, h), borderMode=cv2.BORDER_REPLICATE, flags=cv2.INTER_CUBIC)
    return np.ascontiguousarray(np.rot90(crop)) if crop.shape[0] / crop.shape[1] >= VERTICAL_RATIO else crop


def test_upright_integer_boxes_are_sliced_with_the_warps_result(rng) -> None:
    """The fast path (a copy of the slice) gives the warp's pixels bit for bit, edges and tall boxes too."""
    for _ in range(300):
        h, w = (int(v) for v in rng.integers(8, 400, 2))
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        x0, x1 = sorted(int(v) for v in rng.choice(w + 1, 2, replace=False))
        y0, y1 = sorted(int(v) for v in rng.choice(h + 1, 2, replace=False))
        q = quad(x0, y0, x1, y1)
        got = crop_quad(img, q)
        assert got.flags.c_contiguous and not np.shares_memory(got, img)
        np.testing.assert_array_equal(got, _warped(img, q))


@pytest.mark.parametrize("q", [quad(10.5, 20, 150, 60), quad(30, 20, 150, 60.25), quad(150, 20, 30, 60),
                               quad(-2, 20, 150, 60), quad(30, 20, 250, 60),
                               np.array([[30, 20], [150, 22], [150, 60], [30, 60]], np.float32)])
def test_other_quads_take_the_warp(rng, q) -> None:
    """Fractional, mirrored, out-of-image or not upright: the general warp (BORDER_REPLICATE outside)."""
    img = rng.integers(0, 255, (120, 200, 3), dtype=np.uint8)
    np.testing.assert_array_equal(crop_quad(img, q), _warped(img, q))
