#!/usr/bin/env python3
"""Compare model sets, CPU runtimes and default parameters on a labelled image set, in one process.

    .venv/bin/python scripts/eval_models.py --variant v4=v4 --variant v6=v6 \
        --variant v6-bf16=v6,*.inference_precision=bf16
    .venv/bin/python scripts/eval_models.py --variant ort=v6,*.runtime=onnxruntime --variant ov=v6 --max-images 30

A variant is NAME=SET[,MODEL.KEY=VALUE...]: a CPU repository assembled for SET with those config
parameter overrides (`*.KEY` sets KEY of det_model, cls_model and rec_model), or NAME=@DIR: a CPU
repository assembled beforehand (`ocr-assemble --target cpu --out DIR`), e.g. to compare model files.
Every image runs through every variant in turn (interleaved, so that other load on the machine touches
all variants alike; the order rotates from image to image, because OpenVINO compiles the kernels for a
new layer shape once per process, so the variant that meets a shape first pays for the others), with
the server's own pipeline code (scripts/bench_lib/inprocess.py: the same ppocr_steps functions,
networks and settings as the served models, without Triton). Per variant: accuracy from
../shared/tools/ocr_eval.py (det H-mean, E2E H-mean, 1-NED), the median and mean wall time per image
and the median of per-image time ratios to the first variant, the same for the process's CPU time
(what bounds throughput on a saturated machine, and much less moved by other load); also the first
call of each new input shape of each network (`--first-calls`), the latency a user sees when a shape
is new to the runtime.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

from bench_lib import data  # noqa: E402
from bench_lib.inprocess import RUNTIME, Pipeline  # noqa: E402
from ocr_server import pbtxt  # noqa: E402
from ocr_server.assemble import assemble  # noqa: E402

SHARED = Path(os.environ.get("OCR_SHARED_DIR", ROOT.parent / "shared"))


class _ShapeTimed:
    """A runtime model that records the time of the first call of each input shape and of the next one."""

    def __init__(self, model: Any) -> None:
        self.model, self.seconds = model, 0.0
        self.first: dict[tuple[int, ...], list[float]] = {}

    def __call__(self, batch: Any) -> Any:
        t0 = time.perf_counter()
        out = self.model(batch)
        dt = time.perf_counter() - t0
        self.seconds += dt
        seen = self.first.setdefault(tuple(batch.shape), [])
        if len(seen) < 2:
            seen.append(dt)
        return out


class Variant:
    def __init__(self, name: str, model_set: str, overrides: dict[str, dict[str, str]], out: Path) -> None:
        if model_set.startswith("@"):  # a repository assembled beforehand, e.g. with other model files
            repo = Path(model_set[1:])
        else:
            repo = assemble("cpu", model_set, out / "repos" / name, overrides, ROOT / "build" / "models",
                            ROOT / "build" / "engines")
        configs = {m: {"parameters": pbtxt.parameters(c)} for m, c in pbtxt.load_repository(repo).items()}
        if not configs:
            raise SystemExit(f"variant {name}: no config.pbtxt in {repo} (assemble one with ocr-assemble --target cpu)")
        self.name, self.model_set = name, model_set
        self.pipeline = Pipeline(repo, configs, _ShapeTimed)
        self.nets = self.pipeline.nets
        self.times: list[float] = []
        self.cpu_times: list[float] = []  # CPU seconds of this process (all threads): contention hardly moves it
        self.predictions: dict[str, list[dict[str, Any]]] = {}

    def run(self, key: str, blob: bytes) -> None:
        t0, c0 = time.perf_counter(), time.process_time()
        lines = self.pipeline.run(blob)
        self.times.append(time.perf_counter() - t0)
        self.cpu_times.append(time.process_time() - c0)
        self.predictions[key] = [{"poly": p.tolist(), "text": t, "score": float(s)}
                                 for t, s, p in zip(lines.texts, lines.scores, lines.polys, strict=True)]


def parse_variant(text: str) -> tuple[str, str, dict[str, dict[str, str]]]:
    name, _, spec = text.partition("=")
    model_set, *items = spec.split(",")
    if model_set.startswith("@") and items:
        raise SystemExit(f"variant {name}: an assembled repository (@DIR) takes no overrides; assemble them in")
    overrides: dict[str, dict[str, str]] = {}
    for item in items:
        dotted, _, value = item.partition("=")
        model, _, key = dotted.partition(".")
        for m in (RUNTIME.values() if model == "*" else [model]):
            overrides.setdefault(m, {})[key] = value
    return name, model_set, overrides


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", action="append", required=True, metavar="NAME=SET[,MODEL.KEY=VALUE...] | NAME=@DIR")
    ap.add_argument("--images", type=Path, default=SHARED / "evaldata")
    ap.add_argument("--max-images", type=int)
    ap.add_argument("--shard", default="0/1", metavar="K/N",
                    help="run only images K, K+N, K+2N, ... (several processes; concatenate their JSONL to score all)")
    ap.add_argument("--warmup", type=int, default=2, help="images run untimed first (also not scored)")
    ap.add_argument("--first-calls", action="store_true", help="report first-call latency per input shape")
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "eval")
    args = ap.parse_args(argv)
    k, n = (int(x) for x in args.shard.split("/"))
    images = data.load_images(args.images, args.max_images)[k::n]
    variants = [Variant(*parse_variant(v), args.out) for v in args.variant]
    for im in images[:args.warmup]:
        for v in variants:
            v.run(im.key, im.data)
    for v in variants:
        v.times.clear()
        v.cpu_times.clear()
    for i, im in enumerate(images):
        turn = i % len(variants)  # each variant goes first equally often (see the docstring)
        for v in variants[turn:] + variants[:turn]:
            v.run(im.key, im.data)
        print(f"[eval] {i + 1}/{len(images)}", file=sys.stderr, end="\r", flush=True)
    gt = data.write_ground_truth(images, args.out / "gt")
    scorer = SHARED / "tools" / "ocr_eval.py"
    base = variants[0]
    rows = []
    for v in variants:
        pred = args.out / f"{v.name}.jsonl"
        data.write_predictions(pred, [im.key for im in images], v.predictions)
        overall = data.run_scorer(scorer, gt, pred)["overall"] if gt is not None else {}
        ratios = [a / b for a, b in zip(v.times, base.times, strict=True)]
        row = {"variant": v.name, "set": v.model_set, "det_hmean": overall.get("det_hmean"),
               "e2e_hmean": overall.get("e2e_hmean"), "one_minus_ned": overall.get("one_minus_ned"),
               "median_ms": statistics.median(v.times) * 1e3, "mean_ms": statistics.fmean(v.times) * 1e3,
               "median_time_ratio": statistics.median(ratios),
               "median_cpu_ms": statistics.median(v.cpu_times) * 1e3,
               "median_cpu_ratio": statistics.median(a / b for a, b in zip(v.cpu_times, base.cpu_times, strict=True))}
        if args.first_calls:
            row["first_calls_ms"] = {k: {"x".join(map(str, s)): [round(t * 1e3, 1) for t in ts]
                                         for s, ts in list(n.first.items())[:6]} for k, n in v.nets.items()}
        rows.append(row)
    (args.out / "results.json").write_text(json.dumps(rows, indent=1))
    print(f"\n{len(images)} images, {args.images}; times: in-process pipeline, one image at a time, "
          "variants interleaved per image")
    print("| variant | set | det H | E2E H | 1-NED | median ms/img | mean ms/img | median ratio to first "
          "| median CPU ms/img | median CPU ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        f = [r[k] for k in ("det_hmean", "e2e_hmean", "one_minus_ned")]
        print(f"| {r['variant']} | {r['set']} | " + " | ".join("-" if x is None else f"{x:.3f}" for x in f)
              + f" | {r['median_ms']:.0f} | {r['mean_ms']:.0f} | {r['median_time_ratio']:.2f} "
              f"| {r['median_cpu_ms']:.0f} | {r['median_cpu_ratio']:.2f} |")
    if args.first_calls:
        print(json.dumps({r["variant"]: r["first_calls_ms"] for r in rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
