"""Client-side balancing and failover over several real servers.

Three servers start on free ports. One client spreads a bounded load over several of them; one server
is killed with SIGKILL (its whole process group) mid-run. Every request must end with a result or an
error (none lost), the results must be right, and the per-server success counts (Triton's statistics)
must show that every server took load before the kill and that the survivors took all of it after.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers import norm, png, text_page
from ocr_server.local_server import RunningServer, free_port, start_server, stop_server

from ocr_client import AsyncOcrClient, OcrClient, OcrError, OcrParams

RETRY_MESSAGE = "server unavailable"  # what ocr_client._retry logs before each retry


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[RunningServer]]:
    """Three independent servers (v4 models), started in parallel."""
    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(start_server, tmp_path_factory.mktemp(f"replica{i}"), timeout=240) for i in range(3)]
        started = []
        errors = []
        for f in futures:
            try:
                started.append(f.result())
            except Exception as exc:  # noqa: BLE001 - stop the others, then fail
                errors.append(exc)
    try:
        if errors:
            raise errors[0]
        yield started
    finally:
        for srv in started:
            stop_server(srv)


def success_count(srv: RunningServer) -> int:
    """Requests the server's `ocr` ensemble completed successfully (Triton's statistics)."""
    import tritonclient.grpc as grpcclient

    with grpcclient.InferenceServerClient(srv.grpc_url) as c:
        stats = c.get_inference_statistics("ocr", client_timeout=10)
    return sum(int(m.inference_stats.success.count) for m in stats.model_stats)


def stub_regions(repository: Path) -> set[str]:
    """The /dev/shm regions of the Python-backend stubs serving models of ``repository``."""
    regions = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            argv = [a.decode(errors="replace") for a in Path(entry.path, "cmdline").read_bytes().split(b"\0") if a]
        except OSError:
            continue
        if len(argv) > 1 and argv[0].endswith("triton_python_backend_stub") and argv[1].startswith(str(repository)):
            regions |= {a for a in argv if a.startswith("triton_python_backend_shm_region")}
    return regions


def kill(srv: RunningServer) -> float:
    """SIGKILL the server's process group (tritonserver and its stubs); returns when it was sent."""
    regions = stub_regions(srv.repository)
    at = time.monotonic()
    os.killpg(srv.proc.pid, signal.SIGKILL)
    srv.proc.wait(timeout=30)
    for name in regions:  # nobody is left to unlink them
        Path("/dev/shm", name).unlink(missing_ok=True)
    return at


class RetryCounter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith(RETRY_MESSAGE):
            self.count += 1


@pytest.fixture
def retries() -> Iterator[RetryCounter]:
    logger = logging.getLogger("ocr_client")
    handler, level = RetryCounter(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


@dataclass
class Run:
    """Every request of a run: (start, end, outcome), outcome "ok" or the error."""

    expected: list[str]
    records: list[tuple[float, float, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, start: float, texts: list[str] | None, error: OcrError | None) -> None:
        if error is not None:
            outcome = f"{type(error).__name__}: {error.message}"
        else:
            outcome = "ok" if [norm(t) for t in texts or []] == self.expected else f"wrong: {texts}"
        with self.lock:
            self.records.append((start, time.monotonic(), outcome))

    def done(self) -> int:
        with self.lock:
            return len(self.records)

    def failures(self) -> list[str]:
        return [o for _, _, o in self.records if o != "ok"]

    def report(self, sent: int, killed_at: float, retried: int, protocol: str) -> float:
        """Print the failover note; returns the time to recover (s): until the last request that was
        in flight at the kill, and the first one sent after it, had their results."""
        hit = [end - killed_at for start, end, _ in self.records if start < killed_at < end]
        first_after = [end - killed_at for start, end, o in self.records if start >= killed_at and o == "ok"]
        recover = max([*hit, min(first_after, default=float("inf"))])
        latencies = sorted(end - start for start, end, _ in self.records)
        print(f"\nfailover ({protocol}): sent {sent}, answered {len(self.records)}, lost {sent - len(self.records)}, "
              f"errors {len(self.failures())}, retried {retried}, in flight at the kill {len(hit)}, "
              f"recovered {recover:.2f} s after the kill (median request {latencies[len(latencies) // 2]:.2f} s)")
        return recover


def page() -> tuple[bytes, list[str]]:
    img, texts = text_page(2, width=400, seed=7)
    return png(img), [norm(t) for t in texts]


SMALL = OcrParams(limit_type="max", limit_side_len=416)  # no upscaling: keeps each request cheap


def check_load_moved(before: dict[int, int], at_kill: dict[int, int], final: dict[int, int],
                     survivors: list[int], killed: int, run: Run, killed_at: float) -> None:
    """Every server took load before the kill; after it the survivors took every request.

    ``at_kill`` is read just before the kill, so the survivors' counts since then include every
    request sent after the kill.
    """
    assert before[killed] > 0, f"the killed server took no load before the kill: {before}"
    assert all(before[i] > 0 for i in survivors), f"a server took no load before the kill: {before}"
    after = {i: final[i] - at_kill[i] for i in survivors}
    sent_after = sum(1 for start, _, o in run.records if start >= killed_at and o == "ok")
    assert all(n > 0 for n in after.values()), f"a survivor took no load after the kill: {after}"
    assert sum(after.values()) >= sent_after, (after, sent_after)


def test_grpc_round_robin_survives_a_killed_server(servers: list[RunningServer], retries: RetryCounter) -> None:
    """AsyncOcrClient over three servers (gRPC round_robin), three requests in flight; server 0 dies."""
    blob, expected = page()
    total, kill_after, concurrency = 45, 15, 3
    run = Run(expected)
    victim, survivors = 0, [1, 2]
    counts_before = {i: success_count(servers[i]) for i in range(3)}
    marks: dict[str, dict[int, int] | float] = {}

    def kill_victim() -> None:
        counts = {i: success_count(servers[i]) for i in range(3)}  # just before the kill
        marks["before"] = {i: counts[i] - counts_before[i] for i in range(3)}
        marks["at_kill"] = {i: counts[i] for i in survivors}
        marks["killed_at"] = kill(servers[victim])

    async def main() -> None:
        sem = asyncio.Semaphore(concurrency)
        async with AsyncOcrClient([s.grpc_url for s in servers], timeout=60, retries=5) as client:
            async def one() -> None:
                async with sem:
                    start = time.monotonic()
                    try:
                        result = await client.ocr(blob, SMALL)
                        run.record(start, result.texts, None)
                    except OcrError as err:
                        run.record(start, None, err)
                if run.done() == kill_after:  # once: no await between the record and this check
                    await asyncio.to_thread(kill_victim)  # the other requests go on meanwhile

            await asyncio.wait_for(asyncio.gather(*(one() for _ in range(total))), 120)

    asyncio.run(main())
    killed_at = marks["killed_at"]
    assert isinstance(killed_at, float)
    recover = run.report(total, killed_at, retries.count, "grpc")
    assert len(run.records) == total  # none lost
    assert run.failures() == []
    assert recover < 30
    final = {i: success_count(servers[i]) for i in survivors}
    before, at_kill = marks["before"], marks["at_kill"]
    assert isinstance(before, dict) and isinstance(at_kill, dict)
    check_load_moved(before, at_kill, final, survivors, victim, run, killed_at)


def test_http_rotation_survives_a_killed_server(servers: list[RunningServer], retries: RetryCounter) -> None:
    """OcrClient over servers 1 and 2 (HTTP, endpoints picked by the client), sequential; server 1 dies."""
    blob, expected = page()
    total, kill_after = 20, 8
    run = Run(expected)
    victim, survivors = 1, [2]
    counts_before = {i: success_count(servers[i]) for i in (1, 2)}
    killed_at = 0.0
    with OcrClient([servers[1].http_url, servers[2].http_url], protocol="http", timeout=60, retries=5) as client:
        for n in range(total):
            if n == kill_after:
                counts = {i: success_count(servers[i]) for i in (1, 2)}
                before = {i: counts[i] - counts_before[i] for i in (1, 2)}
                at_kill = {2: counts[2]}
                killed_at = kill(servers[victim])
            start = time.monotonic()
            try:
                run.record(start, client.ocr(blob, SMALL).texts, None)
            except OcrError as err:
                run.record(start, None, err)
    recover = run.report(total, killed_at, retries.count, "http")
    assert len(run.records) == total
    assert run.failures() == []
    assert recover < 30
    check_load_moved(before, at_kill, {2: success_count(servers[2])}, survivors, victim, run, killed_at)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_cli_over_endpoints_with_one_down(servers: list[RunningServer], tmp_path: Path, protocol: str) -> None:
    """`ocr-client` with a dead endpoint among its --url values: health is ready, every image is read."""
    from ocr_client import cli

    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    alive = servers[2].grpc_url if protocol == "grpc" else servers[2].http_url
    blob, expected = page()
    for i in range(4):
        (tmp_path / f"p{i}.png").write_bytes(blob)
    out = tmp_path / "preds.jsonl"
    common = ["--protocol", protocol, "--timeout", "30"]
    assert cli.main(["health", *common, "--url", dead, "--url", alive]) == 0
    assert cli.main(["health", *common, "--url", dead]) == 1
    assert cli.main(["infer", "-q", *common, "--url", f"{dead},{alive}", "--limit-type", "max",
                     "--limit-side-len", "416", "--jsonl", str(out), str(tmp_path)]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 4
    assert all([norm(ln["text"]) for ln in r["lines"]] == expected for r in records)
