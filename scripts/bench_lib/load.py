"""Closed-loop load at one concurrency level: C workers pull image indices from one queue until it is
empty, each timing its own calls. Wall time runs from the moment all workers are ready (clients
connected, engines built and warmed) to the last answer; images/s = answered images / wall time."""
from __future__ import annotations

import multiprocessing
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LevelRun", "Record", "run_processes", "run_threads"]


@dataclass
class Record:
    index: int                 # task index (image index = index % number of images)
    latency_s: float
    lines: list[dict[str, Any]] | None
    error: str | None = None


@dataclass
class LevelRun:
    records: list[Record] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def latencies(self) -> list[float]:
        return [r.latency_s for r in self.records if r.error is None]

    @property
    def errors(self) -> list[Record]:
        return [r for r in self.records if r.error is not None]


def run_threads(workers: Sequence[Callable[[int], list[dict[str, Any]]]], n_tasks: int) -> LevelRun:
    """Run tasks ``0..n_tasks-1`` on one thread per worker callable (``worker(index) -> lines``)."""
    tasks: queue.SimpleQueue[int] = queue.SimpleQueue()
    for i in range(n_tasks):
        tasks.put(i)
    out: list[Record] = []
    lock = threading.Lock()
    start = threading.Barrier(len(workers) + 1)
    end_times: list[float] = []

    def loop(fn: Callable[[int], list[dict[str, Any]]]) -> None:
        start.wait()
        mine: list[Record] = []
        while True:
            try:
                i = tasks.get_nowait()
            except queue.Empty:
                break
            t0 = time.perf_counter()
            try:
                lines = fn(i)
                mine.append(Record(i, time.perf_counter() - t0, lines))
            except Exception as exc:  # noqa: BLE001 - counted as an error of this request
                mine.append(Record(i, time.perf_counter() - t0, None, f"{type(exc).__name__}: {exc}"))
        with lock:
            out.extend(mine)
            end_times.append(time.perf_counter())

    threads = [threading.Thread(target=loop, args=(fn,), daemon=True) for fn in workers]
    for t in threads:
        t.start()
    start.wait()
    t_start = time.perf_counter()
    for t in threads:
        t.join()
    wall = (max(end_times) if end_times else time.perf_counter()) - t_start
    return LevelRun(sorted(out, key=lambda r: r.index), wall)


def run_processes(target: Callable[..., None], args: tuple[Any, ...], concurrency: int, n_tasks: int,
                  ready_timeout: float = 600.0) -> LevelRun:
    """Run tasks on ``concurrency`` spawned processes executing ``target(*args, tasks, results)``
    (see :func:`bench_lib.peer.process_worker` for the protocol)."""
    ctx = multiprocessing.get_context("spawn")  # no fork: the parent holds gRPC channels and threads
    tasks = ctx.Queue()
    results = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, tasks, results), daemon=True) for _ in range(concurrency)]
    for p in procs:
        p.start()
    try:
        deadline = time.monotonic() + ready_timeout
        ready = 0
        while ready < concurrency:
            try:
                kind, info = results.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"peer workers not ready after {ready_timeout:.0f} s") from None
            if kind == "failed":
                raise RuntimeError(f"a peer worker failed to start: {info}")
            ready += 1
        t_start = time.perf_counter()
        for i in range(n_tasks):
            tasks.put(i)
        for _ in procs:
            tasks.put(None)
        out: list[Record] = []
        while len(out) < n_tasks:
            try:
                index, latency, lines, error = results.get(timeout=10)
            except queue.Empty:
                if not any(p.is_alive() for p in procs):
                    raise RuntimeError(f"peer workers exited with {len(out)}/{n_tasks} answers") from None
                continue
            out.append(Record(index, latency, lines, error))
        wall = time.perf_counter() - t_start
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.terminate()
                p.join()
    return LevelRun(sorted(out, key=lambda r: r.index), wall)
