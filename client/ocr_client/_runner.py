"""Run OCR over many files with N worker threads, each with its own client (CLI helper)."""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ._client import OcrClient
from ._errors import OcrError, OcrUnavailableError
from ._images import load_image_bytes
from ._params import OcrParams
from ._results import OcrResult

__all__ = ["Job", "Outcome", "Reorder", "run_jobs"]

log = logging.getLogger("ocr_client")


@dataclass(frozen=True)
class Job:
    index: int
    path: str
    vis_path: str | None = None


@dataclass(frozen=True)
class Outcome:
    index: int
    path: str
    results: list[OcrResult] | None = None  # one per image, or per page of a PDF
    error: OcrError | None = None
    seconds: float = 0.0
    vis_error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def result(self) -> OcrResult | None:
        """The first (for an image: the only) result."""
        return self.results[0] if self.results else None


def process(client: OcrClient, job: Job, params: OcrParams) -> Outcome:
    """OCR one file, an image or a PDF (and draw an image when ``job.vis_path`` is set)."""
    start = time.perf_counter()
    try:
        data = load_image_bytes(job.path)
        results = client.ocr_batch([data], params)
    except OcrError as err:
        return Outcome(job.index, job.path, error=err, seconds=time.perf_counter() - start)
    vis_error = None
    if job.vis_path is not None:
        try:
            if results and results[0].page is not None:
                raise ValueError("pictures of PDF pages are not drawn by ocr-client (the gateway draws them)")
            from ._vis import write_visualisation

            write_visualisation(data, results[0], job.vis_path)
        except (OSError, ValueError, ImportError) as exc:
            vis_error = str(exc)
    return Outcome(job.index, job.path, results=results, seconds=time.perf_counter() - start,
                   vis_error=vis_error)


_DONE = object()


def _worker(jobs: queue.Queue[Job | None], results: queue.Queue[Any],
            make_client: Callable[[], OcrClient], params: OcrParams,
            stop: threading.Event, abort_on_unavailable: bool) -> None:
    client = None
    try:
        client = make_client()
        while not stop.is_set():
            job = jobs.get()
            if job is None:
                break
            try:
                outcome = process(client, job, params)
            except Exception as exc:  # a bug: report it against the file, keep going
                log.debug("unexpected error on %s", job.path, exc_info=True)
                err = OcrError(f"unexpected {type(exc).__name__}: {exc}")
                outcome = Outcome(job.index, job.path, error=err)
            if abort_on_unavailable and isinstance(outcome.error, OcrUnavailableError):
                stop.set()
            results.put(outcome)
    finally:
        if client is not None:
            client.close()
        results.put(_DONE)


def run_jobs(jobs: Sequence[Job], make_client: Callable[[], OcrClient],
             params: OcrParams, concurrency: int = 1,
             abort_on_unavailable: bool = True) -> Iterator[Outcome]:
    """Yield an :class:`Outcome` per job as they complete (completion order).

    Each of the ``concurrency`` threads builds its own client with ``make_client``
    (clients are not thread-safe) and closes it in that same thread. With
    ``abort_on_unavailable`` an :class:`OcrUnavailableError` (retries exhausted)
    stops the remaining jobs. Closing the generator early stops the workers.
    """
    n = max(1, min(concurrency, len(jobs)))
    job_q: queue.Queue[Job | None] = queue.Queue()
    for job in jobs:
        job_q.put(job)
    for _ in range(n):
        job_q.put(None)
    results: queue.Queue[Any] = queue.Queue()
    stop = threading.Event()
    args = (job_q, results, make_client, params, stop, abort_on_unavailable)
    threads = [threading.Thread(target=_worker, args=args, name=f"ocr-worker-{i}", daemon=True)
               for i in range(n)]
    for t in threads:
        t.start()
    running = n
    try:
        while running:
            try:
                item = results.get(timeout=0.2)
            except queue.Empty:
                continue
            if item is _DONE:
                running -= 1
                continue
            yield item
    finally:
        stop.set()


class Reorder:
    """Buffer outcomes that complete out of order; release them in job order."""

    def __init__(self) -> None:
        self._next = 0
        self._pending: dict[int, Outcome] = {}

    def push(self, outcome: Outcome) -> list[Outcome]:
        self._pending[outcome.index] = outcome
        ready = []
        while self._next in self._pending:
            ready.append(self._pending.pop(self._next))
            self._next += 1
        return ready

    def drain(self) -> list[Outcome]:
        """What is still buffered (after an abort), in job order."""
        ready = [self._pending[i] for i in sorted(self._pending)]
        self._pending.clear()
        return ready

