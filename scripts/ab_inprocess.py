#!/usr/bin/env python3
"""Two assembled CPU repositories in one process, the same images alternating between them.

    .venv/bin/ocr-assemble --target cpu --model-set v6 --out build/ab/a
    .venv/bin/ocr-assemble --target cpu --model-set v6 --out build/ab/b --param rec_pipeline.rec_width_multiple=32
    .venv/bin/python scripts/ab_inprocess.py build/ab/a build/ab/b --passes 2

Each image runs through A and through B back to back, the side that goes first alternating, with the
server's own pipeline code and the repositories' files and settings (bench_lib/inprocess.py). This
machine's speed drifts between runs minutes apart; side by side, the drift hits both alike, so small
differences (a graph edit, a setting) show that two server runs one after the other would hide.
Reports B/A of the wall time per pass and overall, each network's time per image, how many images read
the same texts, and, where the images have labels, each side's accuracy from ocr_eval.py on the first
pass. Predictions and figures go to --out.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "scripts"), str(ROOT / "server"), str(ROOT / "python_backend")]
from bench_lib import data, inprocess, report  # noqa: E402
from ocr_server import pbtxt  # noqa: E402

SHARED_DIR = Path(os.environ.get("OCR_SHARED_DIR", ROOT.parent / "shared"))


def load(repository: Path) -> inprocess.Pipeline:
    configs = {name: {"parameters": pbtxt.parameters(c)} for name, c in pbtxt.load_repository(repository).items()}
    if not configs:
        raise SystemExit(f"{repository}: no config.pbtxt found (assemble one with ocr-assemble --target cpu)")
    return inprocess.Pipeline(repository, configs)


def lines_of(result: Any) -> list[dict[str, Any]]:
    return [{"poly": np.asarray(p).tolist(), "text": t, "score": float(s)}
            for p, t, s in zip(result.polys, result.texts, result.scores, strict=True)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a", type=Path, help="assembled CPU repository A (the reference)")
    ap.add_argument("b", type=Path, help="assembled CPU repository B")
    ap.add_argument("--images", type=Path, default=SHARED_DIR / "evaldata",
                    help="image folder (recursive, sorted) or file (default ../shared/evaldata)")
    ap.add_argument("--max-images", type=int, metavar="N", help="N images spread evenly (default: all)")
    ap.add_argument("--passes", type=int, default=1, help="passes over the images (default 1)")
    ap.add_argument("--scorer", type=Path, default=SHARED_DIR / "tools" / "ocr_eval.py")
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "ab", help="output folder (default build/ab)")
    args = ap.parse_args(argv)
    if args.passes < 1:
        ap.error("--passes must be >= 1")

    images = data.load_images(args.images.resolve(), args.max_images)
    sides = {"A": load(args.a), "B": load(args.b)}
    for pipeline in sides.values():  # the first call of a runtime pays its set-up
        pipeline.run(images[0].data)
        pipeline.reset_timers()
    wall: dict[str, list[list[float]]] = {k: [[] for _ in range(args.passes)] for k in sides}
    first: dict[str, dict[str, list[dict[str, Any]]]] = {k: {} for k in sides}
    same = 0
    for p in range(args.passes):
        for i, image in enumerate(images):
            results = {}
            for k in (("A", "B") if (p * len(images) + i) % 2 == 0 else ("B", "A")):
                t0 = time.perf_counter()
                results[k] = sides[k].run(image.data)
                wall[k][p].append(time.perf_counter() - t0)
            same += results["A"].texts == results["B"].texts
            if p == 0:
                for k, r in results.items():
                    first[k][image.key] = lines_of(r)

    n = len(images) * args.passes
    out: dict[str, Any] = {"a": str(args.a), "b": str(args.b), "images": len(images), "passes": args.passes,
                           "same_texts": same, "calls": n}
    out["b_over_a_per_pass"] = [sum(wall["B"][p]) / sum(wall["A"][p]) for p in range(args.passes)]
    out["b_over_a"] = sum(map(sum, wall["B"])) / sum(map(sum, wall["A"]))
    out["ms_per_image"] = {k: sum(map(sum, w)) / n * 1e3 for k, w in wall.items()}
    out["network_ms_per_image"] = {k: {name: net.seconds / n * 1e3 for name, net in sides[k].nets.items()}
                                   for k in sides}
    args.out.mkdir(parents=True, exist_ok=True)
    gt = data.write_ground_truth(images, args.out / "gt") if args.scorer.is_file() else None
    if gt is not None:
        keys = [im.key for im in images if im.labels is not None]
        out["accuracy"] = {}
        for k in sides:
            path = args.out / f"{k.lower()}.jsonl"
            data.write_predictions(path, keys, first[k])
            out["accuracy"][k] = {m: data.run_scorer(args.scorer, gt, path)["overall"][m]
                                  for m in report.ACCURACY_KEYS}
    (args.out / "ab.json").write_text(json.dumps(out, indent=1) + "\n")

    print(f"{len(images)} images x {args.passes} pass(es); A = {args.a}, B = {args.b}")
    print("B/A wall time: " + ", ".join(f"pass {p + 1} {r:.3f}" for p, r in enumerate(out["b_over_a_per_pass"]))
          + f"; overall {out['b_over_a']:.3f}")
    for k in sides:
        nets = ", ".join(f"{name} {ms:.1f}" for name, ms in out["network_ms_per_image"][k].items())
        print(f"{k}: {out['ms_per_image'][k]:.1f} ms/image; networks {nets}")
        if "accuracy" in out:
            acc = out["accuracy"][k]
            print(f"   det H {acc['det_hmean']:.4f}  E2E H {acc['e2e_hmean']:.4f}  1-NED {acc['one_minus_ned']:.4f}")
    print(f"same texts: {same} of {n} calls; JSON: {args.out / 'ab.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
