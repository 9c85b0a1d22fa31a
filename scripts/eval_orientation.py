#!/usr/bin/env python3
"""E2E H-mean of the dev split turned by 0/90/180/270 degrees, page orientation off and on.

Each dev image is sent as it is and turned (OpenCV rotations, lossless PNG); the ground-truth polygons
are turned with it, and each (angle, setting) is scored with shared/tools/ocr_eval.py's matching.

    python scripts/eval_orientation.py                       # starts a server on free ports
    python scripts/eval_orientation.py --url localhost:8001  # or uses a running one
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
from bench_lib.data import labelled_records

from ocr_client import OcrClient
from ppocr_steps.orientation import upright_to_sent

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("OCR_SHARED_DIR", ROOT.parent / "shared"))
TURN = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}


def load_scorer(shared: Path):
    spec = importlib.util.spec_from_file_location("ocr_eval", shared / "tools" / "ocr_eval.py")
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {shared / 'tools' / 'ocr_eval.py'}")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["ocr_eval"] = mod  # its dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def turned_gt(scorer, rec: dict, angle: int) -> list:
    """The record's GT lines with polygons turned like the image."""
    w, h = rec["width"], rec["height"]
    lines = []
    for ln in rec["lines"]:
        pts = upright_to_sent(np.asarray(ln["poly"], np.float32), angle, w, h)
        poly = scorer.make_polygon(pts.tolist())
        ignore = bool(ln.get("ignore")) or poly is None
        lines.append(scorer.Line(poly, "" if ignore else ln["text"], ignore))
    return lines


def evaluate(client: OcrClient, scorer, items: list, angles: list[int], settings: list[bool]) -> dict:
    """{(subset, angle, setting): Counts} plus ("all", angle, setting) totals."""
    counts: dict = {}
    for subset, path, rec in items:
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        for angle in angles:
            sent = img if angle == 0 else cv2.rotate(img, TURN[angle])
            data = cv2.imencode(".png", sent)[1].tobytes()
            gt = turned_gt(scorer, rec, angle)
            for on in settings:
                result = client.ocr(data, use_doc_orientation_classify=on)
                dets = [scorer.Line(scorer.make_polygon([list(p) for p in ln.poly]), ln.text) for ln in result.lines]
                c, _ = scorer.score_image(gt, dets, 0.5, 0.5)
                for key in ((subset, angle, on), ("all", angle, on)):
                    counts.setdefault(key, scorer.Counts()).add(c)
    return counts


def table(counts: dict, angles: list[int], settings: list[bool]) -> str:
    subsets = sorted({k[0] for k in counts} - {"all"}) + ["all"]
    head = "| subset | orientation | " + " | ".join(f"{a}°" for a in angles) + " | mean |"
    rows = [head, "|" + "---|" * (len(angles) + 3)]
    for subset in subsets:
        for on in settings:
            vals = [counts[(subset, a, on)].metrics()["e2e_hmean"] for a in angles]
            rows.append(f"| {subset} | {'on' if on else 'off'} | " + " | ".join(f"{v:.3f}" for v in vals)
                        + f" | {sum(vals) / len(vals):.3f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="gRPC HOST:PORT of a running server (default: start one)")
    ap.add_argument("--evaldata", type=Path, default=SHARED / "evaldata")
    ap.add_argument("--subset", action="append", help="subset(s) to use (default: all)")
    ap.add_argument("--per-subset", type=int, help="first N images of each subset")
    args = ap.parse_args(argv)
    scorer = load_scorer(args.evaldata.parent)
    items = labelled_records(args.evaldata, args.subset, args.per_subset)
    angles, settings = [0, 90, 180, 270], [False, True]
    server = None
    url = args.url
    if url is None:
        from ocr_server.local_server import start_server

        server = start_server(Path(tempfile.mkdtemp(prefix="eval_ori_")), timeout=300)
        url = server.grpc_url
    try:
        with OcrClient(url, timeout=300) as client:
            counts = evaluate(client, scorer, items, angles, settings)
    finally:
        if server is not None:
            from ocr_server.local_server import stop_server

            stop_server(server)
    print(f"E2E H-mean, {len(items)} dev images, each sent as is and turned clockwise by 90/180/270 degrees")
    print(table(counts, angles, settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
