#!/usr/bin/env python3
"""Benchmark the OCR server against its peers on the same machine in one run.

    .venv/bin/python scripts/bench.py                         # starts its own server on free ports
    .venv/bin/python scripts/bench.py --max-images 6 --concurrency 1,2
    .venv/bin/python scripts/bench.py --param rec_pipeline.rec_batch_size=8 --json build/bench/rb8.json
    .venv/bin/python scripts/bench.py --url 127.0.0.1:8001    # a server that is already running

For each concurrency level, ours (the `ocr` ensemble through OcrClient over gRPC, one client per worker
thread) runs first, then the peer (one RapidOCR engine per worker, onnxruntime intra-op threads = the
core count, on the same ONNX files); the two never run at the same time. Per side and level: images/s
(images / wall time) and latency p50/p90/p99, with ours/peer for each figure. Accuracy comes from
../shared/tools/ocr_eval.py on the predictions of the lowest level. The per-stage breakdown comes from
Triton's statistics API (deltas around each of our levels); the network compute of the CPU runtime
models comes from their ocr_network_compute_seconds_total counter on the metrics endpoint (time inside
onnxruntime; Triton's compute_infer of those Python stubs also holds the stub round trip). Then the
peers of the fair comparison (bench_lib/peers.py: other PP-OCR libraries with their own wheels' models,
each in its own venv) are swept over layouts of processes x threads while our server idles, and ours is
compared with the same family's peers at their best (--peers, --peer-layouts). This machine's speed
drifts between runs minutes apart, so ours and the fastest peer then run again in alternating rounds
(--rounds), and the targets use the median of the rounds' ratios. Last, the same pipeline code runs in
this process without the server (bench_lib/inprocess.py), which splits the non-model time into the
pipeline's own work and what serving adds. Output:
tables on stdout, all numbers in a JSON file, and optionally a PNG of throughput and latency vs
concurrency. See docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import datetime as dt
import importlib
import importlib.metadata
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

from bench_lib import data, inprocess, load, metrics, peer, peers, report, tritonstats  # noqa: E402  # noqa: E402
from ocr_server.manifest import model_set_names  # noqa: E402

SHARED = Path(os.environ.get("OCR_SHARED_DIR", ROOT.parent / "shared"))
ENSEMBLE = "ocr"
RUNTIME_MODELS = ("det_model", "cls_model", "rec_model")
VERSIONED = ("nvidia-pytriton", "tritonclient", "onnxruntime", "numpy", "opencv-python-headless", "grpcio",
             "rapidocr-onnxruntime", "ocr-client", "ppocr-steps")


# the models of the `ocr` pipeline (used when the repository index is restricted)
PIPELINE_MODELS = ("ocr", "det_preprocess", "det_model", "det_postprocess", "rec_pipeline", "cls_model", "rec_model")


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------- arguments
def model_sets() -> list[str]:
    return model_set_names()


def parse_concurrency(text: str) -> list[int]:
    try:
        levels = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of integers, got {text!r}") from None
    if not levels or levels[0] < 1:
        raise argparse.ArgumentTypeError(f"concurrency levels must be >= 1, got {text!r}")
    return levels


def parse_instances(text: str) -> dict[str, int]:
    """'det_model=2,rec_model=2' -> {'det_model': 2, 'rec_model': 2}."""
    counts: dict[str, int] = {}
    for item in (x.strip() for x in text.split(",") if x.strip()):
        model, sep, count = item.partition("=")
        if not model or not sep or not count.isdigit() or int(count) < 1:
            raise argparse.ArgumentTypeError(f"expected MODEL=N[,MODEL=N...] with N >= 1, got {item!r}")
        counts[model] = int(count)
    return counts


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", metavar="HOST:PORT",
                    help="gRPC address of a running server (default: start one on free ports)")
    ap.add_argument("--metrics-url", metavar="URL",
                    help="Prometheus endpoint of that server, for the network-compute counter (default: "
                         "http://HOST:8002/metrics with --url, the started server's otherwise)")
    ap.add_argument("--model-set", default="v4", choices=model_sets(),
                    help="model set of the started server and of the peer's ONNX files (default v4)")
    ap.add_argument("--param", action="append", default=[], metavar="MODEL.KEY=VALUE",
                    help="config parameter override for the started server (repeatable; as serve.sh --param)")
    ap.add_argument("--instances", type=parse_instances, default={}, metavar="MODEL=N,...",
                    help="Triton instance counts of the started server's models (e.g. det_model=2,rec_model=2)")
    ap.add_argument("--images", type=Path, default=SHARED / "evaldata",
                    help="image folder (recursive, sorted) or file (default ../shared/evaldata)")
    ap.add_argument("--max-images", type=int, metavar="N",
                    help="use N images spread evenly over the sorted list (default: all)")
    ap.add_argument("--concurrency", type=parse_concurrency, default=[1, 2, 4, 8], metavar="1,2,4,8",
                    help="concurrency levels (default 1,2,4,8)")
    ap.add_argument("--repeat", type=int, default=1, help="passes over the images per level (default 1)")
    ap.add_argument("--warmup", type=int, default=2,
                    help="images run before measuring: once on the server, once per peer engine (default 2)")
    ap.add_argument("--peer", action=argparse.BooleanOptionalAction, default=True,
                    help="also run the peer, RapidOCR 1.4.4 (default on)")
    ap.add_argument("--peer-threads", type=int, default=os.cpu_count() or 1,
                    help="onnxruntime intra-op threads per peer engine (default: os.cpu_count())")
    ap.add_argument("--peer-mode", choices=["thread", "process"], default="thread",
                    help="peer workers: threads in this process, one engine each (default), or processes")
    ap.add_argument("--peers", default="family", metavar="NAMES",
                    help="peers of the fair comparison, each in its own venv and best layout: 'family' (those "
                         "of the served set's family, the default), 'all', 'none', or a comma list of "
                         + ", ".join(peers.PEERS))
    ap.add_argument("--peer-layouts", type=peers.parse_layouts, default=peers.parse_layouts("1x1,1x2,2x1"),
                    metavar="PxT,...", help="layouts the peers are swept over: P processes x T threads each "
                                            "(default 1x1,1x2,2x1)")
    ap.add_argument("--rounds", type=int, default=2,
                    help="after the peer sweep, run ours (concurrency 1 and its best levels) and the fastest peer "
                         "of the family (its best layouts) again, alternately, this many rounds; the targets use "
                         "the median of the rounds' ratios, which the machine's drift between two sequential "
                         "runs does not skew (default 2; 0: the sweep's ratios)")
    ap.add_argument("--round-images", type=int, default=0, metavar="K",
                    help="each round runs K of the images, the next K in the next round (wrapping), so that "
                         "more, shorter rounds fit in the same time and each round's two sides run seconds "
                         "apart (default 0: every image in every round)")
    ap.add_argument("--round-contenders", type=float, default=0.8, metavar="SHARE",
                    help="each round runs every level of ours and every layout of the peer that reached at "
                         "least SHARE of that side's best images/s in the sweep, and takes each side's best "
                         "of them, so that a noisy sweep does not pick the layout the rounds compare "
                         "(default 0.8; 1: only the sweep's best)")
    ap.add_argument("--inprocess", action=argparse.BooleanOptionalAction, default=True,
                    help="also run the server's pipeline code in this process, no server, at concurrency 1, "
                         "to split the non-model time into the pipeline's own work and what serving adds "
                         "(default on; needs the server bench.py starts, so not with --url)")
    ap.add_argument("--timeout", type=float, default=600.0, help="per-request timeout of our client, s")
    ap.add_argument("--scorer", type=Path, default=SHARED / "tools" / "ocr_eval.py",
                    help="the accuracy scorer (default ../shared/tools/ocr_eval.py)")
    ap.add_argument("--json", type=Path, default=ROOT / "build" / "bench" / "bench.json",
                    help="result file (default build/bench/bench.json); predictions etc. are written beside it")
    ap.add_argument("--plot", type=Path, metavar="PNG",
                    help="also plot throughput and p50 latency vs concurrency (needs matplotlib)")
    args = ap.parse_args(argv)
    if args.url and args.instances:
        ap.error("--instances applies to the server bench.py starts; it cannot be used with --url")
    if args.url and args.param:
        ap.error("--param applies to the server bench.py starts; it cannot change a server given by --url")
    if args.repeat < 1 or args.warmup < 0 or args.peer_threads < 1 or args.rounds < 0 or args.round_images < 0:
        ap.error("--repeat and --peer-threads must be >= 1, --warmup, --rounds and --round-images >= 0")
    if not 0 < args.round_contenders <= 1:
        ap.error("--round-contenders must be in (0, 1]")
    if args.max_images is not None and args.max_images < 1:
        ap.error("--max-images must be >= 1")
    try:
        args.peer_names = select_peers(args.peers, args.model_set)
    except ValueError as exc:
        ap.error(str(exc))
    return args


def family_of(model_set: str) -> str:
    """The peer family of a model set: v6-tiny is compared with the v6 peers."""
    return model_set.split("-", 1)[0]


def select_peers(text: str, model_set: str) -> list[str]:
    if text == "none":
        return []
    if text == "family":
        return peers.peers_for_family(family_of(model_set))
    if text == "all":
        return list(peers.PEERS)
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in peers.PEERS]
    if unknown:
        raise ValueError(f"--peers: unknown {', '.join(unknown)}; known: {', '.join(peers.PEERS)}")
    return names


# ----------------------------------------------------------------------------------------- environment
def machine_info() -> dict[str, Any]:
    cpu_model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {"nproc": os.cpu_count(), "cpus_usable": affinity, "cpu_model": cpu_model,
            "mem_total_gib": round(mem_kib / 2**20, 1) if mem_kib else None,
            "platform": platform.platform(), "hostname": platform.node()}


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_info() -> dict[str, Any]:
    def git(*a: str) -> str | None:
        try:
            p = subprocess.run(["git", "-C", str(ROOT), *a], capture_output=True, text=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return p.stdout.strip() if p.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(status) if status is not None else None}


def ensure_peer() -> None:
    """Import rapidocr_onnxruntime, installing it the way the test set-up does when it is missing."""
    try:
        importlib.import_module("rapidocr_onnxruntime")
        return
    except ImportError:
        pass
    if sys.prefix == sys.base_prefix:
        raise SystemExit("bench: the peer needs rapidocr-onnxruntime==1.4.4; run bench.py with the project venv "
                         "(.venv/bin/python, which it then installs into) or use --no-peer")
    log("rapidocr-onnxruntime (the peer) is not installed: running scripts/setup_env.sh test (pinned 1.4.4)")
    env = dict(os.environ, VENV=sys.prefix)
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "setup_env.sh"), "test"], env=env, check=False)
    importlib.invalidate_caches()
    if proc.returncode != 0:
        raise SystemExit("bench: installing the peer failed; install rapidocr-onnxruntime==1.4.4 or use --no-peer")
    importlib.import_module("rapidocr_onnxruntime")


# ----------------------------------------------------------------------------------------- server side
class Target:
    """The server under test: gRPC address, statistics and configuration queries."""

    def __init__(self, url: str, metrics_url: str | None = None) -> None:
        import tritonclient.grpc as grpcclient

        self.url = url
        self.metrics_url = metrics_url
        self.client = grpcclient.InferenceServerClient(url)

    def network_ns(self) -> dict[str, int] | None:
        """The runtime models' network-compute counter ({model: ns}); None when the endpoint cannot be read."""
        if not self.metrics_url:
            return None
        try:
            with urllib.request.urlopen(self.metrics_url, timeout=30) as r:
                return tritonstats.network_compute_ns(r.read().decode("utf-8", "replace"))
        except OSError as exc:
            log(f"cannot read {self.metrics_url} ({exc}): network compute falls back to compute_infer")
            self.metrics_url = None
            return None

    def settled_network_ns(self, timeout: float = 5.0) -> dict[str, int] | None:
        """The counter once it has stopped moving: the stubs apply metric updates late
        (ppocr_steps.triton_adapter.METRICS_DELAY_S)."""
        deadline = time.monotonic() + timeout
        last = self.network_ns()
        while last is not None and time.monotonic() < deadline:
            time.sleep(0.25)
            now = self.network_ns()
            if now == last:
                break
            last = now
        return last

    def stats(self) -> dict[str, dict[str, int]]:
        return tritonstats.normalize_statistics(self.client.get_inference_statistics(as_json=True, client_timeout=60))

    @staticmethod
    def finished(stats: dict[str, dict[str, int]]) -> int:
        s = stats.get(ENSEMBLE) or {}
        return int(s.get("success_count", 0)) + int(s.get("fail_count", 0))

    def settled_stats(self, expected: int, timeout: float = 15.0) -> dict[str, dict[str, int]]:
        """Statistics once the ensemble has accounted for ``expected`` finished requests: Triton records
        a request's ensemble statistics when it releases the request, a moment after the client has the
        response, so a snapshot taken at once can miss the last requests."""
        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats()
            if self.finished(stats) >= expected or time.monotonic() > deadline:
                if self.finished(stats) < expected:
                    log(f"statistics show {self.finished(stats)} finished requests after {timeout:.0f} s, "
                        f"expected {expected}; using them as they are")
                return stats
            time.sleep(0.05)

    def describe(self) -> dict[str, Any]:
        meta = self.client.get_server_metadata(as_json=True, client_timeout=30)
        try:
            index = self.client.get_model_repository_index(as_json=True, client_timeout=30)
            names = [m["name"] for m in index.get("models", []) if m.get("state") == "READY"]
        except Exception:  # noqa: BLE001 - restricted under the watchdog (admin key): use the known models
            names = list(PIPELINE_MODELS)
        configs: dict[str, Any] = {}
        for name in names:
            cfg = self.client.get_model_config(name, as_json=True, client_timeout=30).get("config", {})
            configs[name] = {
                "backend": cfg.get("backend") or cfg.get("platform"),
                "max_batch_size": cfg.get("max_batch_size", 0),
                "instance_group": [{"kind": g.get("kind"), "count": g.get("count")}
                                   for g in cfg.get("instance_group", [])],
                "dynamic_batching": cfg.get("dynamic_batching"),
                "parameters": {k: v.get("string_value") for k, v in (cfg.get("parameters") or {}).items()},
                "steps": [s["model_name"] for s in (cfg.get("ensemble_scheduling") or {}).get("step", [])],
            }
        return {"server": {"name": meta.get("name"), "version": meta.get("version")}, "models": configs}

    def close(self) -> None:
        self.client.close()


def pipeline_layout(models: dict[str, Any]) -> tuple[list[str], dict[str, list[str]]]:
    """(ensemble steps in order, {step: models it calls through BLS}) from the served configs; a step's
    ``*_model_name`` parameters name its BLS callees (rec_pipeline: cls_model_name, rec_model_name)."""
    steps = (models.get(ENSEMBLE) or {}).get("steps") or ["det_preprocess", "det_model", "det_postprocess",
                                                         "rec_pipeline"]
    children: dict[str, list[str]] = {}
    for step in steps:
        params = (models.get(step) or {}).get("parameters") or {}
        callees = [v for k, v in sorted(params.items()) if k.endswith("_model_name") and v]
        if callees:
            children[step] = callees
    return steps, children


# ----------------------------------------------------------------------------------------- one level
def run_ours(url: str, images: list[data.BenchImage], concurrency: int, n_tasks: int, timeout: float
             ) -> load.LevelRun:
    from ocr_client import OcrClient

    clients = [OcrClient(url, timeout=timeout, retries=0) for _ in range(concurrency)]
    try:
        for c in clients:  # connect before the clock starts
            c.wait_until_ready(timeout=60)

        def worker(client: OcrClient) -> Callable[[int], list[dict[str, Any]]]:
            return lambda i: client.ocr(images[i % len(images)].data).to_dict()["lines"]

        return load.run_threads([worker(c) for c in clients], n_tasks)
    finally:
        for c in clients:
            c.close()


class PeerPool:
    """Peer engines kept across levels (thread mode) or worker processes started per level."""

    def __init__(self, images: list[data.BenchImage], threads: int, model_dir: Path | None, warmup: int,
                 mode: str) -> None:
        self.images, self.threads, self.model_dir, self.warmup, self.mode = images, threads, model_dir, warmup, mode
        self.engines: list[Any] = []

    def _engine(self, k: int) -> Any:
        while len(self.engines) <= k:
            engine = peer.make_engine(self.threads, self.model_dir)
            for i in range(min(self.warmup, len(self.images))):
                engine(self.images[i].data)
            self.engines.append(engine)
        return self.engines[k]

    def run(self, concurrency: int, n_tasks: int) -> load.LevelRun:
        if self.mode == "process":
            args = (self.threads, str(self.model_dir) if self.model_dir else None,
                    [str(im.path) for im in self.images], self.warmup)
            return load.run_processes(peer.process_worker, args, concurrency, n_tasks)
        engines = [self._engine(k) for k in range(concurrency)]

        def worker(engine: Any) -> Callable[[int], list[dict[str, Any]]]:
            return lambda i: peer.peer_lines(engine(self.images[i % len(self.images)].data)[0])

        return load.run_threads([worker(e) for e in engines], n_tasks)

    def close(self) -> None:
        """Drop the engines (their onnxruntime sessions and thread pools) once the levels are done."""
        self.engines.clear()


def sweep_peers(args: argparse.Namespace, images: list[data.BenchImage], out_base: Path,
                n_tasks: int) -> dict[str, Any]:
    """Every selected peer over every layout, then its accuracy on its best layout's predictions."""
    out: dict[str, Any] = {}
    paths = [im.path for im in images]
    for name in args.peer_names:
        spec = peers.PEERS[name]
        python = peers.ensure_venv(spec, ROOT / "build" / "peers", log)
        runs = []
        for layout in args.peer_layouts:
            log(f"peer {name} layout {layout} ...")
            run = peers.run_layout(python, name, layout, paths, n_tasks, args.warmup,
                                   out_base.with_name(f"{out_base.name}.{name}.log"))
            summary = metrics.level_summary(run.latencies, run.wall_s, len(run.errors))
            runs.append({"layout": str(layout), "processes": layout.processes, "threads": layout.threads,
                         **summary, "info": run.info, "errors_sample": run.errors[:3], "_lines": run.lines})
            log(f"peer {name} {layout}: {summary['images_per_s']:.3f} img/s, p50 {summary['p50_ms']:.0f} ms, "
                f"{len(run.errors)} error(s)")
        best = max(runs, key=lambda r: r["images_per_s"])
        preds = {name: {images[i].key: lines for i, lines in best["_lines"].items()}}
        for r in runs:
            r.pop("_lines")
        acc = accuracy(args, images, out_base, preds)
        out[name] = {"description": spec.description, "family": spec.family,
                     "requirements": list(spec.requirements), "sweep": runs, "best_layout": best["layout"],
                     "accuracy": acc.get(name), "accuracy_note": acc.get("skipped")}
    return out


def interleaved_rounds(args: argparse.Namespace, url: str, images: list[data.BenchImage], n_tasks: int,
                       levels: list[dict[str, Any]], family: dict[str, Any], out_base: Path) -> dict[str, Any]:
    """Ours and the family's fastest peer again, `args.rounds` times, alternating which goes first.

    Each round runs ours at concurrency 1 and at every level that reached `args.round_contenders` of its
    best images/s in the levels, and the peer in every layout that did so in its sweep and in its fastest
    one-process layout; each side's throughput in the round is the best of its runs there. Each round
    so gives a throughput ratio and a p50 ratio measured minutes apart, not a sweep apart, and a layout
    the sweep under-rated in a slow moment still competes. Both sides run warm: our server has served
    every image in the levels before, and each peer worker serves every image once before its clock
    starts (OpenVINO and onnxruntime are slower on an input shape they have not seen)."""
    share = args.round_contenders
    ours_levels = [lvl["concurrency"] for lvl in metrics.contenders(levels, lambda r: r["ours"]["images_per_s"], share)]
    fastest = {k: metrics.best_layouts(v["sweep"]) for k, v in family.items()}
    name = max(fastest, key=lambda k: (fastest[k][0] or {}).get("images_per_s") or 0.0)
    best_row, single = fastest[name]
    if best_row is None:
        raise ValueError(f"peer {name}: no layout was measured")
    peer_layouts = [r["layout"] for r in metrics.contenders(family[name]["sweep"],
                                                            lambda r: r.get("images_per_s") or 0.0, share)]
    single_layout = single["layout"] if single else best_row["layout"]
    python = peers.ensure_venv(peers.PEERS[name], ROOT / "build" / "peers", log)
    layouts = {str(lay): lay for lay in args.peer_layouts}

    def ours(c: int, part: list[data.BenchImage]) -> dict[str, Any]:
        run = run_ours(url, part, c, n_tasks, args.timeout)
        return metrics.level_summary(run.latencies, run.wall_s, len(run.errors))

    def peer(layout: str, part: list[data.BenchImage]) -> dict[str, Any]:
        run = peers.run_layout(python, name, layouts[layout], [im.path for im in part], n_tasks, len(part),
                               out_base.with_name(f"{out_base.name}.{name}.log"))
        return metrics.level_summary(run.latencies, run.wall_s, len(run.errors))

    def best_of(runs: dict[Any, dict[str, Any]], among: list[Any], key: str) -> dict[str, Any]:
        which = max(among, key=lambda k: runs[k]["images_per_s"] or 0.0)
        return {**runs[which], key: which}

    rounds = []
    for k in range(args.rounds):
        part = metrics.round_slice(images, k, args.round_images)
        row: dict[str, Any] = {"images": len(part)}
        for side in (("ours", "peer") if k % 2 == 0 else ("peer", "ours")):
            if side == "ours":
                runs = {c: ours(c, part) for c in dict.fromkeys([1, *ours_levels])}
                row["ours_c1"] = runs[1]
                row["ours_runs"] = runs
                row["ours_best"] = best_of(runs, ours_levels, "concurrency")
            else:
                runs = {lay: peer(lay, part) for lay in dict.fromkeys([*peer_layouts, single_layout])}
                row["peer_single"] = runs[single_layout]
                row["peer_runs"] = runs
                row["peer_best"] = best_of(runs, peer_layouts, "layout")
        row["throughput_ratio"] = metrics.ratio(row["ours_best"]["images_per_s"], row["peer_best"]["images_per_s"])
        row["latency_c1_ratio"] = metrics.ratio(row["ours_c1"]["p50_ms"], row["peer_single"]["p50_ms"])
        log(f"round {k + 1}: ours c={row['ours_best']['concurrency']} {row['ours_best']['images_per_s']:.3f} img/s, "
            f"{name} {row['peer_best']['layout']} {row['peer_best']['images_per_s']:.3f} img/s "
            f"(ratio {report.fmt(row['throughput_ratio'], '.2f')}); "
            f"p50 ours c=1 {row['ours_c1']['p50_ms']:.0f} ms, peer {row['peer_single']['p50_ms']:.0f} ms "
            f"(ratio {report.fmt(row['latency_c1_ratio'], '.2f')})")
        rounds.append(row)
    return {"peer": name, "ours_levels": ours_levels, "peer_layouts": peer_layouts,
            "peer_single_layout": single_layout, "contender_share": share, "rounds": rounds,
            **metrics.rounds_medians(rounds)}


def first_pass_lines(run: load.LevelRun, images: list[data.BenchImage]) -> dict[str, list[dict[str, Any]]]:
    return {images[r.index].key: r.lines for r in run.records if r.index < len(images) and r.lines is not None}


# ----------------------------------------------------------------------------------------- accuracy
def accuracy(args: argparse.Namespace, images: list[data.BenchImage], out_base: Path,
             preds: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    if not args.scorer.is_file():
        return {"skipped": f"scorer {args.scorer} not found"}
    gt = data.write_ground_truth(images, out_base.with_name(out_base.name + ".gt"))
    if gt is None:
        return {"skipped": f"no labels.jsonl found for the images under {args.images}"}
    keys = [im.key for im in images if im.labels is not None]
    result: dict[str, Any] = {"gt": str(gt), "scorer": str(args.scorer), "images_scored": len(keys)}
    for side, lines in preds.items():
        path = out_base.with_name(f"{out_base.name}.{side}.jsonl")
        data.write_predictions(path, keys, lines)
        scored = data.run_scorer(args.scorer, gt, path)
        result[side] = scored["overall"]
        result[f"{side}_subsets"] = {k: {m: v[m] for m in report.ACCURACY_KEYS} for k, v in scored["subsets"].items()}
        result[f"{side}_predictions"] = str(path)
    if "ours" in result and "peer" in result:
        result["ratio"] = metrics.ratio_dict(result["ours"], result["peer"], report.ACCURACY_KEYS)
    return result


# ----------------------------------------------------------------------------------------- plot
def plot(path: Path, levels: list[dict[str, Any]]) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed in this venv: plot skipped (pip install matplotlib to get it)"
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for side, style in (("ours", "o-"), ("peer", "s--")):
        pts = [(lvl["concurrency"], lvl[side]) for lvl in levels if lvl.get(side)]
        if pts:
            ax1.plot([c for c, _ in pts], [s["images_per_s"] for _, s in pts], style, label=side)
            ax2.plot([c for c, _ in pts], [s["p50_ms"] for _, s in pts], style, label=f"{side} p50")
    ax1.set(xlabel="concurrency", ylabel="images/s", title="throughput")
    ax2.set(xlabel="concurrency", ylabel="ms", title="median latency")
    concs = [lvl["concurrency"] for lvl in levels]
    for ax in (ax1, ax2):
        ax.set_xscale("log", base=2)
        ax.set_xticks(concs, [str(c) for c in concs])
        ax.minorticks_off()
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return None


# ----------------------------------------------------------------------------------------- main
def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through `finally`, which stops the server we started


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    started = dt.datetime.now(dt.timezone.utc)
    out_json: Path = args.json.resolve()
    out_base = out_json.with_suffix("")
    out_json.parent.mkdir(parents=True, exist_ok=True)

    images = data.load_images(args.images.resolve(), args.max_images)
    n = len(images)
    n_tasks = n * args.repeat
    log(f"{n} images ({sum(len(im.data) for im in images) / 2**20:.1f} MiB) from {args.images}, "
        f"concurrency {args.concurrency}, repeat {args.repeat}")
    if args.peer:
        ensure_peer()

    server = None
    result: dict[str, Any] = {
        "command": shlex.join([sys.executable, *sys.argv]) if argv is None else shlex.join(["bench.py", *argv]),
        "started_at": started.isoformat(timespec="seconds"),
        "machine": {**machine_info(), "loadavg_start": list(os.getloadavg())},
        "versions": versions(), "git": git_info(),
        "settings": {"concurrency": args.concurrency, "repeat": args.repeat, "warmup": args.warmup,
                     "max_images": args.max_images, "peer": args.peer, "peer_threads": args.peer_threads,
                     "peer_mode": args.peer_mode, "inprocess": args.inprocess and not args.url,
                     "timeout_s": args.timeout,
                     "order": "per level: ours, then the peer (never at the same time)"},
        "images": {"root": str(args.images), "count": n, "bytes": sum(len(im.data) for im in images),
                   "keys": [im.key for im in images]},
    }
    target = None
    try:
        if args.url:
            url = args.url
            result["server_mode"] = {"mode": "url", "url": url}
        else:
            from bench_lib.server import start_server
            from ocr_server.assemble import parse_overrides

            overrides = parse_overrides(args.param)
            log(f"starting tritonserver (model set {args.model_set}, overrides {args.param or 'none'}, "
                f"instances {args.instances or 'as configured'}) ...")
            server = start_server(out_base.with_name(out_base.name + ".server"), args.model_set, overrides,
                                  instances=args.instances)
            url = server.grpc_url
            result["server_mode"] = {"mode": "started", "url": url, "model_set": args.model_set,
                                     "params": args.param, "instances": args.instances,
                                     "log": str(server.log_path),
                                     "repository": str(server.repository)}
            log(f"server ready on {url} (log {server.log_path})")
        if args.metrics_url:
            metrics_url = args.metrics_url
        elif server is not None:
            metrics_url = f"http://127.0.0.1:{server.metrics_port}/metrics"
        else:
            metrics_url = f"http://{url.rsplit(':', 1)[0]}:8002/metrics"
        target = Target(url, metrics_url)
        desc = target.describe()
        result["server"] = desc["server"]
        result["model_configs"] = desc["models"]
        steps, children = pipeline_layout(desc["models"])
        result["pipeline"] = {"ensemble": ENSEMBLE, "steps": steps, "bls_children": children,
                              "runtime_models": list(RUNTIME_MODELS)}

        expected = target.finished(target.stats())  # ensemble requests finished so far
        if args.warmup:
            log(f"warming the server up with {min(args.warmup, n)} image(s)")
            warm = run_ours(url, images[:min(args.warmup, n)], 1, min(args.warmup, n), args.timeout)
            expected += len(warm.records)
            if warm.errors:
                raise RuntimeError(f"warm-up request failed: {warm.errors[0].error}")

        peer_model_dir = ROOT / "build" / "models" / args.model_set
        pool = PeerPool(images, args.peer_threads, peer_model_dir if peer_model_dir.is_dir() else None,
                        args.warmup, args.peer_mode) if args.peer else None
        result["peer"] = {"name": "rapidocr-onnxruntime", "version": result["versions"].get("rapidocr-onnxruntime"),
                          "models": str(peer_model_dir) if pool and pool.model_dir else "the wheel's own",
                          "intra_op_num_threads": args.peer_threads, "mode": args.peer_mode} if args.peer else None

        levels: list[dict[str, Any]] = []
        preds: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for c in args.concurrency:
            before = target.settled_stats(expected)
            net_before = target.settled_network_ns()
            ours_run = run_ours(url, images, c, n_tasks, args.timeout)
            expected = target.finished(before) + len(ours_run.records)
            delta = tritonstats.stats_delta(before, target.settled_stats(expected))
            net_after = target.settled_network_ns()
            network = ({k: v - (net_before or {}).get(k, 0) for k, v in net_after.items()}
                       if net_after is not None else None)
            ours = metrics.level_summary(ours_run.latencies, ours_run.wall_s, len(ours_run.errors))
            bd = tritonstats.breakdown(delta, images=len(ours_run.latencies),
                                       client_request_ns=int(sum(ours_run.latencies) * 1e9), ensemble=ENSEMBLE,
                                       steps=steps, runtime_models=RUNTIME_MODELS, bls_children=children,
                                       network_ns=network)
            foreign = (bd["ensemble_requests"] or 0) - len(ours_run.records)
            if foreign:
                bd["warning"] = (f"the statistics window holds {foreign:+d} ensemble requests besides ours: "
                                 "another client used the server, so the breakdown is not ours alone")
                log(bd["warning"])
            lvl: dict[str, Any] = {"concurrency": c, "ours": ours, "breakdown": bd,
                                   "ours_errors": [r.error for r in ours_run.errors][:5]}
            log(f"c={c} ours: {ours['images_per_s']:.3f} img/s, p50 {ours['p50_ms']:.0f} ms, "
                f"{len(ours_run.errors)} error(s)")
            if "ours" not in preds:
                preds["ours"] = first_pass_lines(ours_run, images)
            if pool is not None:
                peer_run = pool.run(c, n_tasks)
                lvl["peer"] = metrics.level_summary(peer_run.latencies, peer_run.wall_s, len(peer_run.errors))
                lvl["peer_errors"] = [r.error for r in peer_run.errors][:5]
                lvl["ratio"] = metrics.ratio_dict(lvl["ours"], lvl["peer"], report.LEVEL_KEYS)
                log(f"c={c} peer: {lvl['peer']['images_per_s']:.3f} img/s, p50 {lvl['peer']['p50_ms']:.0f} ms, "
                    f"{len(peer_run.errors)} error(s)")
                if "peer" not in preds:
                    preds["peer"] = first_pass_lines(peer_run, images)
            levels.append(lvl)
        result["levels"] = levels
        if pool is not None:
            pool.close()
        try:
            result["accuracy"] = accuracy(args, images, out_base, preds)
        except Exception as exc:  # noqa: BLE001 - keep the timings even when scoring fails
            result["accuracy"] = {"skipped": f"scoring failed: {exc}"}
            log(result["accuracy"]["skipped"])
        if args.peer_names:  # the server stays up, idle, so that the rounds can run ours again
            result["peers"] = sweep_peers(args, images, out_base, n_tasks)
            same = {k: v for k, v in result["peers"].items() if v["family"] == family_of(args.model_set)}
            if args.rounds and same:
                result["rounds"] = interleaved_rounds(args, url, images, n_tasks, levels, same, out_base)
            result["family"] = metrics.family_summary(result["levels"], result.get("accuracy", {}), same,
                                                      result.get("rounds"))
    finally:
        if target is not None:
            target.close()
        if server is not None:
            from bench_lib.server import stop_server

            stop_server(server)

    if args.inprocess and server is not None and result.get("levels"):
        log("in-process reference: the same pipeline code and ONNX files in this process, no server, c=1 ...")
        ref = inprocess.run_inprocess(server.repository, result["model_configs"], [im.data for im in images],
                                      args.warmup)
        ref["parity"] = inprocess.parity(ref.pop("texts"), [im.key for im in images], preds.get("ours", {}))
        result["inprocess"] = ref
    c1 = next((lvl for lvl in result["levels"] if lvl["concurrency"] == 1), None)
    result["summary"] = metrics.summarize_targets(result["levels"],
                                                  c1["breakdown"]["non_model_share"] if c1 else None)
    result["machine"]["loadavg_end"] = list(os.getloadavg())
    result["finished_at"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    if args.plot:
        note = plot(args.plot, result["levels"])
        result["plot"] = note or str(args.plot)
        if note:
            log(note)
    out_json.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")

    m = result["machine"]
    srv = result.get("server") or {}
    workers = "threads" if args.peer_mode == "thread" else "processes"
    peer_desc = (f"RapidOCR {result['versions'].get('rapidocr-onnxruntime')} ({workers}, one engine per worker, "
                 f"{args.peer_threads} intra-op threads each)") if args.peer else "not run (--no-peer)"
    print(f"OCR benchmark: ours = Triton {srv.get('version')} `{ENSEMBLE}` at {result['server_mode']['url']} "
          f"({result['server_mode']['mode']}); peer = {peer_desc}")
    print(f"machine: {m['cpu_model']}, {m['nproc']} CPUs ({m['cpus_usable']} usable), load average "
          f"{m['loadavg_start'][0]:.2f} at start, {m['loadavg_end'][0]:.2f} at end")
    print(f"images: {n} from {args.images}, {args.repeat} pass(es) per level; warm-up {args.warmup}\n")
    print(report.level_table(result["levels"]))
    acc = result["accuracy"]
    print("\naccuracy (ocr_eval.py, overall, predictions of the lowest concurrency level):")
    print(report.accuracy_table(acc) if "skipped" not in acc else f"  skipped: {acc['skipped']}")
    first = result["levels"][0]
    print(f"\nwhere the time goes (ours, concurrency {first['concurrency']}, Triton statistics):")
    print(report.breakdown_table(first["breakdown"]))
    sources = first["breakdown"].get("model_compute_source") or {}
    print("\nnon-model time (request time minus the network compute of the runtime models; source: "
          + ", ".join(f"{m} {src}" for m, src in sources.items()) + "):")
    print("\n".join(report.non_model_lines(result["levels"])))
    if "inprocess" in result:
        print("\n".join(report.inprocess_lines(result["inprocess"], c1["breakdown"] if c1 else None)))
    print("\ntargets:")
    print("\n".join(report.summary_lines(result["summary"])))
    if "peers" in result:
        print(f"\npeers in their own venvs, swept over layouts (processes x threads), {n} images per layout:")
        print(report.sweep_table(result["peers"]))
        if "rounds" in result:
            r = result["rounds"]
            print(f"\ninterleaved rounds, ours against {r['peer']} (images/s, p50 ms; each round alternates "
                  "which side runs first):")
            print(report.rounds_table(r))
        print(f"\n{args.model_set} against the {family_of(args.model_set)} peers (each side at its best):")
        print(report.family_table(result["family"]))
    print(f"\nJSON: {out_json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
