"""Calibration inputs for the FP16 gate: detector pages and cls/rec crop batches.

From the evaluation images (labels.jsonl polygons give the crops) when present, synthetic rendered
text otherwise. Pre-processing is the pipeline's own (`ppocr_steps`) when importable, so the gate
sees the value ranges the server sends; a minimal equivalent is used otherwise.
"""
from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ocr_server.engines.profiles import Profiles

__all__ = ["CalibrationSet", "load_calibration", "synthetic_calibration"]

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


@dataclass
class CalibrationSet:
    """What the pipeline sends the engines, all uint8 BGR NHWC (the graphs normalise): det pages
    [1,H,W,3] (resized), cls batches [n,48,192,3] and rec batches [n,48,W,3] (grey-padded crops),
    ori batches [4,224,224,3] (each page turned by 0/90/180/270, as the orientation classifier sees it)."""

    det: list[Any] = field(default_factory=list)
    cls: list[Any] = field(default_factory=list)
    rec: list[Any] = field(default_factory=list)
    ori: list[Any] = field(default_factory=list)
    source: str = ""

    def describe(self) -> str:
        crops = sum(b.shape[0] for b in self.rec)
        return f"{len(self.det)} pages, {crops} crops ({self.source})"


def _steps() -> Any | None:
    try:
        from ppocr_steps import crops, det_preprocess, recognize, settings  # noqa: PLC0415
    except ImportError:
        return None
    from ocr_server.engines.stats import step_parameters  # noqa: PLC0415

    params = step_parameters()
    return {"crops": crops, "det": det_preprocess, "rec": recognize,
            "settings": settings.pipeline_settings_from_parameters(params),
            "defaults": settings.defaults_from_parameters(params)}


def _ori_batch(img: Any) -> Any | None:
    """The orientation classifier's inputs for `img` turned by 0, 90, 180 and 270 degrees (None without
    ppocr_steps)."""
    try:
        from ppocr_steps.orientation import ori_input  # noqa: PLC0415
    except ImportError:
        return None
    import cv2  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415
    turns = [img, cv2.rotate(img, cv2.ROTATE_90_CLOCKWISE), cv2.rotate(img, cv2.ROTATE_180),
             cv2.rotate(img, cv2.ROTATE_90_COUNTERCLOCKWISE)]
    return np.stack([ori_input(t) for t in turns])


def _det_input(img: Any, steps: Any, limit: int = 736, limit_type: str = "min", max_side: int = 4000) -> Any:
    """The detector input the pipeline sends for `img` with the served defaults: the resized image, uint8
    [1,H,W,3]. `limit`/`limit_type`/`max_side` only approximate them where ppocr_steps is not installed."""
    import cv2  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415
    if steps is not None:
        d = steps["defaults"]
        src, info = steps["det"].prepare_source(img, steps["settings"])
        batch, _ = steps["det"].build_det_batch([src], [info], d.limit_side_len, d.limit_type, steps["settings"])
        return batch
    h, w = img.shape[:2]
    r = limit / min(h, w) if min(h, w) < limit else 1.0
    r = min(r, max_side / max(h * r, w * r))
    nh, nw = max(32, int(round(h * r / 32)) * 32), max(32, int(round(w * r / 32)) * 32)
    return np.ascontiguousarray(cv2.resize(img, (nw, nh))[None])


def _crop(img: Any, quad: Any, steps: Any) -> Any:
    import cv2  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415
    if steps is not None:
        return steps["crops"].crop_quad(img, quad)
    pts = quad.astype(np.float32)
    w = max(int(max(np.linalg.norm(pts[0] - pts[1]), np.linalg.norm(pts[2] - pts[3]))), 1)
    h = max(int(max(np.linalg.norm(pts[0] - pts[3]), np.linalg.norm(pts[1] - pts[2]))), 1)
    m = cv2.getPerspectiveTransform(pts, np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float32))
    crop = cv2.warpPerspective(img, m, (w, h), borderMode=cv2.BORDER_REPLICATE, flags=cv2.INTER_CUBIC)
    return np.ascontiguousarray(np.rot90(crop)) if h / w >= 1.5 else crop


def _crop_batch(crops: list[Any], height: int, width: int, steps: Any) -> Any:
    """cls/rec input uint8 [n,height,width,3]: crops resized keeping their ratio, padded with grey 128
    (the graphs normalise, x / 127.5 - 1)."""
    import cv2  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415
    if steps is not None:
        return steps["rec"].crop_batch(crops, height, width)
    out = np.full((len(crops), height, width, 3), 128, np.uint8)
    for j, img in enumerate(crops):
        h, w = img.shape[:2]
        rw = max(1, min(width, int(math.ceil(height * w / float(h)))))
        out[j, :, :rw] = cv2.resize(img, (rw, height))
    return out


def _batches(crops: list[Any], profiles: Profiles, steps: Any, chunk: int) -> tuple[list[Any], list[Any]]:
    """cls batches and width-bucketed rec batches (sorted by aspect ratio, widest crop sets the width)."""
    cls_p, rec_p = profiles["cls_model"], profiles["rec_model"]
    ch, cw = cls_p.dim(cls_p.max, "H"), cls_p.dim(cls_p.max, "W")
    rh, min_w, max_w = rec_p.dim(rec_p.max, "H"), max(rec_p.dim(rec_p.min, "W"), 320), rec_p.dim(rec_p.max, "W")
    cls_step, rec_step = min(chunk, cls_p.max_batch), min(chunk, rec_p.max_batch)
    cls_b = [_crop_batch(crops[i:i + cls_step], ch, cw, steps) for i in range(0, len(crops), cls_step)]
    order = sorted(range(len(crops)), key=lambda i: crops[i].shape[1] / crops[i].shape[0])
    rec_b = []
    for s in range(0, len(order), rec_step):
        idx = order[s:s + rec_step]
        ratio = max(min_w / rh, max(crops[i].shape[1] / crops[i].shape[0] for i in idx))
        width = min(max_w, int(math.ceil(rh * ratio / 8)) * 8)
        rec_b.append(_crop_batch([crops[i] for i in idx], rh, width, steps))
    return cls_b, rec_b


def _eval_items(evaldata: Path) -> Iterator[tuple[Path, list[Any]]]:
    """(image path, text polygons) round-robin over the subsets, so a small cap still mixes them."""
    subsets = []
    for labels in sorted(Path(evaldata).glob("*/labels.jsonl")):
        rows = [json.loads(x) for x in labels.read_text().splitlines() if x.strip()]
        subsets.append([(labels.parent / r["image"], [ln["poly"] for ln in r["lines"] if not ln.get("ignore")])
                        for r in rows])
    for i in range(max((len(s) for s in subsets), default=0)):
        for s in subsets:
            if i < len(s):
                yield s[i]


def load_calibration(profiles: Profiles, evaldata: Path | None, max_pages: int = 16, max_crops: int = 384,
                     chunk: int = 32) -> CalibrationSet:
    """Calibration data from `evaldata` (labels.jsonl per subset) or synthetic when it is None/empty."""
    if evaldata is None or not any(Path(evaldata).glob("*/labels.jsonl")):
        return synthetic_calibration(profiles, max_pages=min(max_pages, 8), chunk=chunk)
    import cv2  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415
    steps = _steps()
    det: list[Any] = []
    ori: list[Any] = []
    crops: list[Any] = []
    for path, polys in _eval_items(Path(evaldata)):
        if len(det) >= max_pages:
            break
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            continue
        det.append(_det_input(img, steps))
        batch = _ori_batch(img)
        if batch is not None:
            ori.append(batch)
        for poly in polys:
            if len(crops) < max_crops and len(poly) == 4:
                crops.append(_crop(img, np.asarray(poly, np.float32), steps))
    crops.append(_long_line())  # one very long line: exercises wide rec shapes
    cls_b, rec_b = _batches(crops, profiles, steps, chunk)
    return CalibrationSet(det, cls_b, rec_b, ori, f"evaluation images from {evaldata}")


def _long_line(chars: int = 90) -> Any:
    import cv2  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415
    rnd = random.Random(7)
    text = " ".join("".join(rnd.choice("ABCDEFGHKLMNPRSTUVWXYZ0123456789") for _ in range(rnd.randint(2, 8)))
                    for _ in range(chars // 5))[:chars]
    img = np.full((40, 20 * len(text) + 20, 3), 255, np.uint8)
    cv2.putText(img, text, (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (0, 0, 0), 2, cv2.LINE_AA)
    return img


def synthetic_calibration(profiles: Profiles, max_pages: int = 8, chunk: int = 32, seed: int = 0) -> CalibrationSet:
    """Rendered pages of random words (OpenCV Hershey fonts) and their line crops."""
    import cv2  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415
    rnd = random.Random(seed)
    steps = _steps()
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.,:-/"
    fonts = [cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX, cv2.FONT_HERSHEY_TRIPLEX]
    det: list[Any] = []
    ori: list[Any] = []
    crops: list[Any] = []
    sizes = [(720, 1280), (1000, 760), (1600, 900), (480, 640), (900, 1600), (1200, 1200), (360, 1400), (2000, 1000)]
    for p in range(max_pages):
        h, w = sizes[p % len(sizes)]
        bg = rnd.randint(200, 255)
        img: np.ndarray = np.full((h, w, 3), bg, np.uint8)
        y = 40
        while y < h - 20:
            scale = rnd.uniform(0.6, 1.6)
            words = " ".join("".join(rnd.choice(alphabet) for _ in range(rnd.randint(1, 9)))
                             for _ in range(rnd.randint(1, 8)))
            font = rnd.choice(fonts)
            (tw, th), base = cv2.getTextSize(words, font, scale, 2)
            x = rnd.randint(5, max(6, w - tw - 5))
            color = tuple(int(c) for c in np.random.default_rng(p * 1000 + y).integers(0, 90, 3))
            cv2.putText(img, words, (x, y), font, scale, color, 2, cv2.LINE_AA)
            x0, y0, x1, y1 = max(0, x - 4), max(0, y - th - 4), min(w, x + tw + 4), min(h, y + base + 4)
            if x1 - x0 > 4 and y1 - y0 > 4:
                crops.append(img[y0:y1, x0:x1].copy())
            y += th + base + rnd.randint(12, 40)
        if p % 3 == 2:  # upside-down page: exercises the 0/180 classifier
            img = cv2.rotate(img, cv2.ROTATE_180)
            crops[-3:] = [cv2.rotate(c, cv2.ROTATE_180) for c in crops[-3:]]
        det.append(_det_input(img, steps))
        batch = _ori_batch(img)
        if batch is not None:
            ori.append(batch)
    crops.append(_long_line())
    cls_b, rec_b = _batches(crops, profiles, steps, chunk)
    return CalibrationSet(det, cls_b, rec_b, ori, "synthetic rendered text (no evaluation images found)")
