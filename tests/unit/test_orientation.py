"""Page orientation: classifier input, turning pages upright and mapping points back (ppocr_steps.orientation)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from ppocr_steps.det_preprocess import ImageInfo
from ppocr_steps.orientation import ORI_SIZE, classify_angles, ori_input, to_upright, upright_to_sent

TURN = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}


def test_ori_input_is_a_centre_crop_of_the_short_side_resized_to_256() -> None:
    img = np.zeros((100, 400, 3), np.uint8)
    img[:, 190:210] = 255  # a bright bar in the middle
    x = ori_input(img)
    assert x.shape == (ORI_SIZE, ORI_SIZE, 3) and x.dtype == np.uint8
    assert x[:, ORI_SIZE // 2].min() > 200 and x[:, 0].max() < 30
    assert ori_input(np.zeros((10, 12, 3), np.uint8)).shape == (ORI_SIZE, ORI_SIZE, 3)  # tiny pages too


@pytest.mark.parametrize("angle", [0, 90, 180, 270])
def test_points_of_the_upright_page_map_to_the_page_as_sent(angle: int) -> None:
    upright = np.zeros((60, 100, 3), np.uint8)
    upright[10, 70] = 255  # pixel (x=70, y=10)
    sent = upright if angle == 0 else cv2.rotate(upright, TURN[angle])
    assert np.array_equal(to_upright(sent, angle), upright)
    centre = np.array([[70.5, 10.5]], np.float32)
    x, y = upright_to_sent(centre, angle, 100, 60)[0]
    ys, xs = np.nonzero(sent[:, :, 0])
    assert (int(x), int(y)) == (int(xs[0]), int(ys[0]))


def test_image_info_maps_to_the_sent_image_after_scaling() -> None:
    # upright page 200 x 100 (w x h), source scaled by 2 (orig = source * 2), sent turned by 90 (100 x 200)
    info = ImageInfo(100, 200, 50, 100, 0, 64, 128, 2.0, 2.0, angle=90)
    pts = np.array([[[10, 5], [20, 5], [20, 10], [10, 10]]], np.float32)
    out = info.to_original(pts)
    # upright (20, 10) -> sent (H - y, x) = (100 - 10, 20)
    assert out[0, 0].tolist() == [90.0, 20.0]
    assert out[0, 2].tolist() == [80.0, 40.0]


def test_classify_angles_batches_once_and_reads_the_labels() -> None:
    calls = []

    def infer(batch: np.ndarray) -> np.ndarray:
        calls.append(batch.shape)
        probs = np.zeros((len(batch), 4), np.float32)
        probs[np.arange(len(batch)), [1, 3, 0][:len(batch)]] = 1.0
        return probs

    pages = [np.zeros((50, 80, 3), np.uint8)] * 3
    assert classify_angles(pages, infer, ["0", "90", "180", "270"]) == [90, 270, 0]
    assert calls == [(3, ORI_SIZE, ORI_SIZE, 3)]
    assert classify_angles([], infer, ["0"]) == []
    with pytest.raises(ValueError, match="orientation label 45"):
        classify_angles(pages[:1], infer, ["0", "45", "180", "270"])
