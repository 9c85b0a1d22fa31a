"""Pages turned by 90/180/270 degrees are read as well as upright ones with page orientation on.

Real dev images (receipts and forms) are turned with OpenCV, their ground-truth polygons with them, and
each angle is scored with the project's scorer (shared/tools/ocr_eval.py): E2E H-mean within 0.03 of
the upright pages'.
"""
from __future__ import annotations

import importlib.util
import sys

import cv2
import numpy as np
import pytest
from helpers import SHARED

from ppocr_steps.orientation import upright_to_sent

TURN = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}
PER_SUBSET = 3


@pytest.fixture(scope="module")
def scorer():
    path = SHARED / "tools" / "ocr_eval.py"
    if not path.exists():
        pytest.skip(f"{path} not present")
    spec = importlib.util.spec_from_file_location("ocr_eval", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["ocr_eval"] = mod  # its dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def test_turned_pages_read_as_well_as_upright(client, evaldata, scorer) -> None:
    import json

    items = []
    for subset in ("sroie_receipts_en", "funsd_forms_en"):
        lines = (evaldata / subset / "labels.jsonl").read_text(encoding="utf-8").splitlines()[:PER_SUBSET]
        items += [(evaldata / subset, json.loads(line)) for line in lines]
    counts = {angle: scorer.Counts() for angle in (0, *TURN)}
    angles_seen: dict[int, list[int]] = {angle: [] for angle in counts}
    for folder, rec in items:
        img = cv2.imread(str(folder / rec["image"]), cv2.IMREAD_COLOR)
        for angle in counts:
            sent = img if angle == 0 else cv2.rotate(img, TURN[angle])
            result = client.ocr(cv2.imencode(".png", sent)[1].tobytes(), use_doc_orientation_classify=True)
            angles_seen[angle].append(result.angle)
            gt = []
            for ln in rec["lines"]:
                pts = upright_to_sent(np.asarray(ln["poly"], np.float32), angle, rec["width"], rec["height"])
                poly = scorer.make_polygon(pts.tolist())
                ignore = bool(ln.get("ignore")) or poly is None
                gt.append(scorer.Line(poly, "" if ignore else ln["text"], ignore))
            dets = [scorer.Line(scorer.make_polygon([list(p) for p in ln.poly]), ln.text) for ln in result.lines]
            c, _ = scorer.score_image(gt, dets, 0.5, 0.5)
            counts[angle].add(c)
    hmean = {angle: c.metrics()["e2e_hmean"] for angle, c in counts.items()}
    assert hmean[0] > 0.5, hmean
    for angle in TURN:
        assert angles_seen[angle].count(angle) >= len(items) - 1, angles_seen
        assert hmean[angle] >= hmean[0] - 0.03, hmean
