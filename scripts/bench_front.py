#!/usr/bin/env python3
"""The public front's cost per request: the same requests with and without the front, interleaved.

Starts a supervised server behind the front (ocr_server.local_server.start_fronted), then, at
concurrency 1, sends each dev image through the front and straight to Triton's loopback port, in
alternating order (front first on even rounds), over gRPC and HTTP with the client library, and
reports the medians and the median of the per-image differences. A second series does the same with a
tiny one-line image (--tiny-rounds requests), whose short service time resolves the hop's own cost.
Last, the CPU time the front process spends per dev-image request (from /proc, so CPU contention from
other processes does not inflate it). Results go to stdout as JSON.

    .venv/bin/python scripts/bench_front.py [--images DIR] [--max-images N] [--rounds R]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ocr_server.local_server import start_fronted, stop_fronted
from ocr_server.paths import REPO_ROOT

from ocr_client import OcrClient, OcrError

SHARED = REPO_ROOT.parent / "shared"


TINY_PARAMS: dict[str, Any] = {"limit_type": "max", "limit_side_len": 256}  # as the watchdog's probe: no upscaling


def tiny_image() -> bytes:
    """One printed line on 64x256 px: a full pipeline run (det, cls, rec) in a few ms of service time."""
    import cv2
    import numpy as np

    img = np.full((64, 256, 3), 255, np.uint8)
    cv2.putText(img, "OK 42", (20, 45), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (0, 0, 0), 2, cv2.LINE_AA)
    return bytes(cv2.imencode(".png", img)[1])


def front_pid(launcher: int) -> int:
    """The front process the launcher started."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                args = (entry / "cmdline").read_bytes().split(b"\0")
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if b"ocr_server.front" in args and int(stat[stat.rindex(")") + 2:].split()[1]) == launcher:
                return int(entry.name)
    raise RuntimeError("no front process under the launcher")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=Path, default=SHARED / "evaldata" / "sroie_receipts_en")
    ap.add_argument("--max-images", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3, help="passes over the images")
    ap.add_argument("--tiny-rounds", type=int, default=100, help="requests of the tiny image per path")
    ap.add_argument("--cpu-requests", type=int, default=30, help="dev-image requests per protocol for the CPU time")
    args = ap.parse_args(argv)
    blobs = [p.read_bytes() for p in sorted(args.images.glob("*.jpg"))[:args.max_images]]
    if not blobs:
        print(f"no images in {args.images}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        # Triton on loopback ports: the HTTP client library has no Unix-socket transport for the direct path
        server = start_fronted(Path(tmp), ["--no-request-log"], internal_tcp=True)
        try:
            urls = {("front", "grpc"): server.grpc_url, ("front", "http"): server.http_url,
                    ("direct", "grpc"): server.internal_grpc_url, ("direct", "http"): server.internal_http_url}
            clients = {key: OcrClient(url, protocol=key[1], timeout=300, retries=0) for key, url in urls.items()}
            for client in clients.values():  # warm-up: connections, first-request allocations
                client.ocr(blobs[0])
            series = [("dev", blob, r) for r in range(args.rounds) for blob in blobs]
            series += [("tiny", tiny_image(), r) for r in range(args.tiny_rounds)]
            times: dict[tuple[str, str, str], list[float]] = {(n, *key): [] for n in ("dev", "tiny") for key in clients}
            failed = 0
            for name, blob, r in series:
                for protocol in ("grpc", "http"):
                    pair = {}
                    for path in ("front", "direct") if r % 2 == 0 else ("direct", "front"):
                        t0 = time.perf_counter()
                        try:
                            clients[(path, protocol)].ocr(blob, **TINY_PARAMS if name == "tiny" else {})
                        except OcrError as exc:  # a pair with a failure is left out, and counted
                            print(f"{name} {path} {protocol}: {exc}", file=sys.stderr)
                            break
                        pair[path] = (time.perf_counter() - t0) * 1000
                    else:
                        for path, ms in pair.items():
                            times[(name, path, protocol)].append(ms)
                        continue
                    failed += 1
            cpu_ms = {}
            front_process = front_pid(server.proc.pid)
            for protocol in ("grpc", "http"):
                before = cpu_seconds(front_process)
                for i in range(args.cpu_requests):
                    clients[("front", protocol)].ocr(blobs[i % len(blobs)])
                cpu_ms[protocol] = round((cpu_seconds(front_process) - before) * 1000 / args.cpu_requests, 2)
            for client in clients.values():
                client.close()
        finally:
            stop_fronted(server)
    report: dict[str, object] = {"images": len(blobs), "rounds": args.rounds, "concurrency": 1,
                                 "failed_pairs": failed, "front_cpu_ms_per_request": cpu_ms}
    for name, protocol in [(n, p) for n in ("dev", "tiny") for p in ("grpc", "http")]:
        front, direct = times[(name, "front", protocol)], times[(name, "direct", protocol)]
        report[f"{name}_{protocol}"] = {"median_front_ms": round(statistics.median(front), 2),
                            "median_direct_ms": round(statistics.median(direct), 2),
                            "median_paired_diff_ms": round(statistics.median(f - d for f, d in zip(front, direct,
                                                                                                   strict=True)), 2),
                            "requests_each": len(front)}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
