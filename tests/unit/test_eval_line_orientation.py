"""scripts/eval_line_orientation.py: which ground-truth lines it cuts, how it counts a classifier's
outcome, and the PP-LCNet input it builds. No network is run."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import eval_line_orientation as elo  # noqa: E402


def test_outcome_turns_a_line_only_when_180_wins_above_the_threshold() -> None:
    upright = np.array([[0.95, 0.05], [0.05, 0.95], [0.4, 0.6], [0.1, 0.9]])
    turned = np.array([[0.05, 0.95], [0.95, 0.05], [0.4, 0.6], [0.1, 0.9]])
    kept, fixed = elo.outcome(upright, turned, 0.9)
    assert kept.tolist() == [True, False, True, True]  # 0.9 is not above 0.9
    assert fixed.tolist() == [True, False, False, False]
    kept, fixed = elo.outcome(upright, turned, 0.5)
    assert kept.tolist() == [True, False, False, False] and fixed.tolist() == [True, False, True, True]


def _write_set(root: Path) -> None:
    sub = root / "forms"
    sub.mkdir(parents=True)
    img = np.full((60, 120, 3), 255, np.uint8)
    img[10:30, 10:60] = 0  # the left half of the line is dark
    cv2.imwrite(str(sub / "a.png"), img)
    box = [[10, 10], [110, 10], [110, 30], [10, 30]]
    lines = [{"poly": box, "text": "TOTAL", "ignore": False},
             {"poly": box, "text": "", "ignore": True},
             {"poly": box, "text": "$", "ignore": False}]
    (sub / "labels.jsonl").write_text(json.dumps({"image": "a.png", "lines": lines}) + "\n")


def test_line_crops_keeps_scored_lines_of_two_characters_or_more(tmp_path: Path) -> None:
    _write_set(tmp_path)
    crops = elo.line_crops(tmp_path)
    assert [s for s, _ in crops] == ["forms"]
    assert crops[0][1].shape == (20, 100, 3)


def test_report_counts_a_classifier_that_reads_the_dark_side(tmp_path: Path) -> None:
    _write_set(tmp_path)
    crops = elo.line_crops(tmp_path)

    def classify(batch: list[np.ndarray]) -> np.ndarray:  # '180' when the dark half is on the right
        right = np.array([c[:, c.shape[1] // 2:].mean() < c[:, :c.shape[1] // 2].mean() for c in batch])
        return np.stack([~right, right], axis=1).astype(np.float32)

    (row,) = elo.report("fake", classify, crops, [0.9])
    assert row.startswith("| fake | 0.9 | 0 (0.0%) | 100.0% |")
    assert "forms 1.000/1.000" in row


class _Session:
    def __init__(self) -> None:
        self.fed: list[np.ndarray] = []

    def get_inputs(self) -> list:
        return [type("Input", (), {"name": "x"})()]

    def run(self, _outputs: None, feed: dict) -> list[np.ndarray]:
        self.fed.append(feed["x"])
        return [np.zeros((len(feed["x"]), 2), np.float32)]


@pytest.mark.parametrize("rgb", [False, True])
def test_lcnet_input_is_a_plain_resize_with_imagenet_normalisation(rgb: bool) -> None:
    sess = _Session()
    crop = np.zeros((30, 300, 3), np.uint8)
    crop[..., 0] = 255  # blue in BGR
    elo.lcnet_classifier(Path("unused"), lambda _p: sess, rgb=rgb)([crop, crop])
    (batch,) = sess.fed
    assert batch.shape == (2, 3, 80, 160) and batch.dtype == np.float32
    blue = 2 if rgb else 0
    expected = (1.0 - elo.IMAGENET_MEAN[blue]) / elo.IMAGENET_STD[blue]
    np.testing.assert_allclose(batch[:, blue], expected, rtol=1e-6)
    np.testing.assert_allclose(batch[:, 1], -elo.IMAGENET_MEAN[1] / elo.IMAGENET_STD[1], rtol=1e-6)
