#!/usr/bin/env python3
"""Load test for a running OCR server (loopback only, bounded in requests and time).

    .venv/bin/python scripts/load_test.py --url 127.0.0.1:8001 --requests 10000 --concurrency 32

Sends `--requests` OCR requests at `--concurrency` through the client library (gRPC by default,
no retries: every failure counts) with a round-robin mix of real images from `--images` (default
../shared/evaldata), optionally shrunk to `--max-side` px so a small CPU machine finishes in time.
After `--warmup` requests it records the resident memory of tritonserver and of every
triton_python_backend_stub it started (found through /proc), again at the end, and reports:
errors (by kind), latency p50/p90/p99/max, throughput, RSS before/after warm-up and at the end
(growth after warm-up per process and in total), and /dev/shm usage.

Exit status: 0 when there was no error (and, with --max-rss-growth, memory grew less than that
after warm-up), 1 otherwise, 2 for bad arguments.
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import os
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ocr_server.launcher import proc_stat, rss_bytes, stub_processes  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


# ---------------------------------------------------------------------------------------------- inputs
def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def load_images(folder: Path, max_side: int, limit: int, tile: int = 0, tiles_per_image: int = 4
                ) -> list[tuple[str, bytes]]:
    """(name, encoded bytes) of the images under `folder`.

    `max_side`: shrink each image to at most this many pixels (0: as it is). `tile`: instead of whole
    images, cut up to `tiles_per_image` tiles of tile x tile pixels at native resolution from each
    (the ones with the most ink): real text at real size in small requests.
    """
    import cv2
    import numpy as np

    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if limit:
        files = files[:limit]
    out = []
    for path in files:
        name = str(path.relative_to(folder))
        if not max_side and not tile:
            out.append((name, path.read_bytes()))
            continue
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            continue
        if max_side:
            scale = max_side / max(img.shape[:2])
            if scale < 1:
                img = cv2.resize(img, (max(8, round(img.shape[1] * scale)), max(8, round(img.shape[0] * scale))),
                                 interpolation=cv2.INTER_AREA)
        pieces = [(name, img)]
        if tile:
            gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
            edges = cv2.Canny(gray, 80, 160)
            cands = []
            for y in range(0, max(1, img.shape[0] - tile + 1), tile):
                for x in range(0, max(1, img.shape[1] - tile + 1), tile):
                    cands.append((float(np.mean(edges[y:y + tile, x:x + tile])), y, x))
            cands.sort(reverse=True)
            pieces = [(f"{name}@{x},{y}", img[y:y + tile, x:x + tile]) for _, y, x in cands[:tiles_per_image]]
        for piece_name, piece in pieces:
            ok, buf = cv2.imencode(".jpg", piece, [cv2.IMWRITE_JPEG_QUALITY, 90])
            out.append((piece_name, buf.tobytes()))
    return out


def synthetic_images(n: int) -> list[tuple[str, bytes]]:
    """Small generated receipts (for the test suite and machines without the evaluation data)."""
    import cv2
    import numpy as np

    words = ["TOTAL", "CASH", "CHANGE", "TAX", "ITEM", "QTY"]
    rng = np.random.default_rng(7)
    out = []
    for i in range(n):
        lines = 1 + i % 4
        img = np.full((40 + 34 * lines, 360, 3), 255, np.uint8)
        for j in range(lines):
            text = f"{words[rng.integers(len(words))]} {rng.integers(10, 999)}.{rng.integers(10, 99)}"
            cv2.putText(img, text, (16, 34 + 34 * j), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 0, 0), 2, cv2.LINE_AA)
        ok, buf = cv2.imencode(".png", img)
        out.append((f"synthetic_{i}.png", buf.tobytes()))
    return out


# ---------------------------------------------------------------------------------------------- processes
def pid_listening_on(port: int) -> int | None:
    """The pid of the process with a listening TCP socket on `port` (via /proc/net/tcp*)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) > 9 and parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(parts[9])
    if not inodes:
        return None
    wanted = {f"socket:[{i}]" for i in inodes}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            for fd in os.scandir(f"/proc/{entry.name}/fd"):
                try:
                    if os.readlink(fd.path) in wanted:
                        return int(entry.name)
                except OSError:
                    continue
        except OSError:
            continue
    return None


def tritonserver_behind(pid: int | None) -> int | None:
    """`pid` if it is tritonserver, else its tritonserver sibling: the front listens on the public port,
    and the launcher runs the front and tritonserver (on Unix sockets by default) side by side."""
    if pid is None or comm(pid) == "tritonserver":
        return pid
    stat = proc_stat(pid)
    if stat is None:
        return None
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and comm(int(entry.name)) == "tritonserver":
            sibling = proc_stat(int(entry.name))
            if sibling is not None and sibling[1] == stat[1]:
                return int(entry.name)
    return None


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


@dataclass
class MemorySnapshot:
    label: str
    rss: dict[str, int]          # process label -> bytes
    shm_used: int                # /dev/shm bytes in use (whole machine)
    shm_server: int              # bytes of this server's stub regions
    disk_writes: int = 0         # bytes written to storage by the server and its stubs so far

    @property
    def total(self) -> int:
        return sum(self.rss.values())


def write_bytes(pid: int) -> int:
    """Bytes a process caused to be written to the storage layer (/proc/<pid>/io; 0 if unknown)."""
    try:
        for line in Path(f"/proc/{pid}/io").read_text().splitlines():
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def memory_snapshot(label: str, server_pid: int | None) -> MemorySnapshot:
    rss: dict[str, int] = {}
    shm_server = 0
    disk = 0
    if server_pid:
        rss["tritonserver"] = rss_bytes(server_pid)
        disk += write_bytes(server_pid)
        for stub in stub_processes(server_pid):
            if stub.alive:
                rss[f"stub:{stub.instance}"] = rss_bytes(stub.pid)
                disk += write_bytes(stub.pid)
                try:
                    shm_server += os.stat(f"/dev/shm/{stub.shm_region}").st_blocks * 512
                except OSError:
                    pass
    try:
        shm_used = shutil.disk_usage("/dev/shm").used
    except OSError:
        shm_used = 0
    return MemorySnapshot(label, rss, shm_used, shm_server, disk)


# ---------------------------------------------------------------------------------------------- load
@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    examples: dict[str, str] = field(default_factory=dict)
    lines: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ok(self, seconds: float, lines: int) -> None:
        with self.lock:
            self.latencies.append(seconds)
            self.lines += lines

    def error(self, kind: str, message: str) -> None:
        with self.lock:
            self.errors[kind] = self.errors.get(kind, 0) + 1
            self.examples.setdefault(kind, message[:300])

    @property
    def done(self) -> int:
        return len(self.latencies) + sum(self.errors.values())


def run_load(url: str, protocol: str, images: list[tuple[str, bytes]], requests: int, concurrency: int,
             deadline: float, timeout: float, params: dict[str, Any], stats: Stats, progress: bool = False) -> bool:
    """Send `requests` requests with `concurrency` threads; False if stopped by the deadline."""
    from ocr_client import OcrClient, OcrError

    counter = iter(range(requests))
    step = max(1, requests // 10)
    t_start = time.monotonic()
    lock = threading.Lock()
    stopped = threading.Event()

    def worker() -> None:
        with OcrClient(url, protocol=protocol, timeout=timeout, retries=0) as client:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                if time.monotonic() > deadline:
                    stopped.set()
                    return
                _, data = images[i % len(images)]
                t0 = time.perf_counter()
                try:
                    result = client.ocr(data, **params)
                except OcrError as exc:
                    stats.error(type(exc).__name__, str(exc))
                except Exception as exc:  # noqa: BLE001 - a load test counts everything
                    stats.error(type(exc).__name__, repr(exc))
                else:
                    stats.ok(time.perf_counter() - t0, len(result.lines))
                done = stats.done
                if progress and done % step == 0:
                    elapsed = time.monotonic() - t_start
                    print(f"  {done}/{requests} requests, {sum(stats.errors.values())} errors, "
                          f"{done / elapsed:.2f} req/s", flush=True)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return not stopped.is_set()


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


def mib(n: int) -> str:
    return f"{n / 2 ** 20:.1f} MiB"


def growth(a: int, b: int) -> float:
    return (b - a) / a * 100 if a else 0.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="127.0.0.1:8001", help="HOST:PORT of the server (loopback only)")
    ap.add_argument("--protocol", choices=["grpc", "http"], default="grpc")
    ap.add_argument("--requests", type=int, default=10000, help="measured requests (after warm-up)")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--warmup", type=int, default=200, help="requests sent before the 'after warm-up' memory figure")
    ap.add_argument("--images", type=Path, default=ROOT.parent / "shared" / "evaldata",
                    help="folder of images (searched recursively)")
    ap.add_argument("--max-side", type=int, default=0, help="shrink images to at most this many pixels (0: as is)")
    ap.add_argument("--max-images", type=int, default=0, help="use at most this many images (0: all)")
    ap.add_argument("--tile", type=int, default=0,
                    help="send tiles of this many px cut from the images at native resolution (0: whole images)")
    ap.add_argument("--tiles-per-image", type=int, default=4, help="with --tile: tiles kept per image (most text)")
    ap.add_argument("--synthetic", type=int, default=0, help="use N generated images instead of --images")
    ap.add_argument("--limit-side-len", type=int, default=0,
                    help="send limit_type=max with this limit_side_len (0: the server defaults)")
    ap.add_argument("--duration-limit", type=float, default=1800.0, help="stop issuing requests after this many s")
    ap.add_argument("--timeout", type=float, default=120.0, help="per-request timeout in seconds")
    ap.add_argument("--server-pid", type=int, default=0,
                    help="tritonserver pid (default: the one on --url's port, or the one behind the front there)")
    ap.add_argument("--max-rss-growth", type=float, default=0.0,
                    help="fail when total RSS grows more than this many %% after warm-up (0: report only)")
    ap.add_argument("--json", type=Path, help="also write the report as JSON here")
    args = ap.parse_args(argv)

    host, _, port = args.url.rpartition(":")
    if not host or not port.isdigit():
        ap.error(f"--url must be HOST:PORT, got {args.url!r}")
    if not is_loopback(host):
        ap.error(f"--url must be a loopback address (127.0.0.1, ::1, localhost), got {host!r}")
    if args.requests < 1 or args.concurrency < 1 or args.warmup < 0:
        ap.error("--requests and --concurrency must be >= 1, --warmup >= 0")
    if args.synthetic:
        images = synthetic_images(args.synthetic)
        source = f"{len(images)} synthetic images"
    else:
        if not args.images.is_dir():
            ap.error(f"--images {args.images} is not a folder (or use --synthetic N)")
        images = load_images(args.images, args.max_side, args.max_images, args.tile, args.tiles_per_image)
        if not images:
            ap.error(f"no images under {args.images}")
        source = (f"{len(images)} {'tiles' if args.tile else 'images'} from {args.images}"
                  + (f", shrunk to <= {args.max_side} px" if args.max_side else "")
                  + (f", {args.tile}x{args.tile} tiles at native resolution" if args.tile else ""))
    params: dict[str, Any] = {}
    if args.limit_side_len:
        params = {"limit_type": "max", "limit_side_len": args.limit_side_len}
    server_pid = args.server_pid or tritonserver_behind(pid_listening_on(int(port)))
    avg_kib = sum(len(d) for _, d in images) / len(images) / 1024
    print(f"load test: {args.requests} requests (+{args.warmup} warm-up) at concurrency {args.concurrency}, "
          f"{args.protocol} {args.url}, {source} (mean {avg_kib:.0f} KiB), params {params or 'server defaults'}")
    print(f"server pid: {server_pid or 'not found (no memory figures)'}")

    from ocr_client import OcrClient

    with OcrClient(args.url, protocol=args.protocol, timeout=60) as c:
        c.wait_until_ready(60)
    t_start = time.monotonic()
    deadline = t_start + args.duration_limit
    snapshots = [memory_snapshot("start", server_pid)]
    warm = Stats()
    if args.warmup:
        run_load(args.url, args.protocol, images, args.warmup, args.concurrency, deadline, args.timeout, params, warm)
    snapshots.append(memory_snapshot("after warm-up", server_pid))
    stats = Stats()
    t0 = time.monotonic()
    finished = run_load(args.url, args.protocol, images, args.requests, args.concurrency, deadline, args.timeout,
                        params, stats, progress=True)
    wall = time.monotonic() - t0
    time.sleep(1.0)  # let the server release the last requests' memory
    snapshots.append(memory_snapshot("end", server_pid))

    lat = sorted(stats.latencies)
    errors = sum(stats.errors.values())
    report: dict[str, Any] = {
        "requests_sent": stats.done, "requests_wanted": args.requests, "completed_all": finished,
        "ok": len(lat), "errors": errors, "errors_by_kind": stats.errors, "error_examples": stats.examples,
        "warmup_errors": sum(warm.errors.values()), "concurrency": args.concurrency, "images": source,
        "wall_s": wall, "throughput_rps": stats.done / wall if wall else 0.0, "lines": stats.lines,
        "latency_s": {"p50": percentile(lat, 50), "p90": percentile(lat, 90), "p99": percentile(lat, 99),
                      "max": lat[-1] if lat else float("nan"), "mean": sum(lat) / len(lat) if lat else float("nan")},
        "memory": [{"label": s.label, "rss": s.rss, "total_rss": s.total, "dev_shm_used": s.shm_used,
                    "dev_shm_server": s.shm_server} for s in snapshots],
    }
    warm_snap, end_snap = snapshots[1], snapshots[2]
    report["rss_growth_after_warmup_pct"] = growth(warm_snap.total, end_snap.total)
    report["disk_write_bytes_during_run"] = end_snap.disk_writes - warm_snap.disk_writes

    print(f"\nrequests: {stats.done} in {wall:.1f} s = {report['throughput_rps']:.2f} req/s"
          f"{'' if finished else ' (STOPPED by --duration-limit)'}; lines recognised: {stats.lines}")
    warmup = report["warmup_errors"]
    print(f"errors: {errors}" + (f" {stats.errors}" if errors else "") + f" (warm-up errors: {warmup})")
    for kind, example in stats.examples.items():
        print(f"  {kind}: {example}")
    ls = report["latency_s"]
    print(f"latency: p50 {ls['p50'] * 1000:.0f} ms, p90 {ls['p90'] * 1000:.0f} ms, p99 {ls['p99'] * 1000:.0f} ms, "
          f"max {ls['max'] * 1000:.0f} ms, mean {ls['mean'] * 1000:.0f} ms")
    if server_pid:
        names = sorted(set().union(*(s.rss for s in snapshots)), key=lambda n: (n != "tritonserver", n))
        print(f"\n{'RSS':34s} {'start':>11s} {'after warm-up':>14s} {'end':>11s} {'growth':>8s}")
        for name in names:
            first, warmed, last = (s.rss.get(name, 0) for s in snapshots)
            print(f"{name:34s} {mib(first):>11s} {mib(warmed):>14s} {mib(last):>11s} {growth(warmed, last):>+7.1f}%")
        first, warmed, last = (s.total for s in snapshots)
        print(f"{'total':34s} {mib(first):>11s} {mib(warmed):>14s} {mib(last):>11s} {growth(warmed, last):>+7.1f}%")
        print(f"/dev/shm used (machine): {mib(snapshots[0].shm_used)} -> {mib(warm_snap.shm_used)} -> "
              f"{mib(end_snap.shm_used)}; this server's stub regions: {mib(snapshots[0].shm_server)} -> "
              f"{mib(warm_snap.shm_server)} -> {mib(end_snap.shm_server)}")
        print(f"disk writes by the server and its stubs during the run: {report['disk_write_bytes_during_run']} bytes")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    failed = errors > 0 or not finished
    if args.max_rss_growth and server_pid and report["rss_growth_after_warmup_pct"] > args.max_rss_growth:
        print(f"RSS grew {report['rss_growth_after_warmup_pct']:.1f}% after warm-up (> {args.max_rss_growth}%)")
        failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
