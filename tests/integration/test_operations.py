"""Operating the supervised server (`ocr_server.launcher --supervise`): secrets, honest metrics, overload, clean logs.

One launcher runs for the module with tritonserver's HTTP/gRPC on owner-only Unix sockets
(`--socket-dir`), the watchdog's own metrics on a free port, a probe every second that gives up
after 2 s, and queues made small (2 requests, 4 s) in its copy of the repository so that a burst
of a few dozen requests is several times what it can hold. The tests run in file order; the last
one stops the server with requests in flight and reads its log.
"""
from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import png, text_page
from ocr_server.launcher import stub_processes, tritonserver_child
from ocr_server.local_server import free_port
from ocr_server.server_log import CPU_NOISE

ROOT = Path(__file__).resolve().parents[2]
ADMIN_KEY = "ops-test-admin-key-must-not-leak-0123"
QUEUE_SIZE, QUEUE_TIMEOUT_S = 2, 4


@dataclass
class Launcher:
    proc: subprocess.Popen
    socket_dir: Path
    grpc_port: int
    metrics_port: int
    watchdog_port: int
    log_path: Path

    @property
    def grpc_url(self) -> str:
        return f"unix:{self.socket_dir}/grpc.sock:{self.grpc_port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def server_pid(self) -> int | None:
        return tritonserver_child(self.proc.pid)


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    return {m.group(1): float(m.group(2)) for m in re.finditer(r"^(\S+)\s+(\S+)$", text, re.M)}


def metrics_up(port: int) -> bool:
    try:
        scrape(port)
    except OSError:
        return False
    return True


def ocr_ready(url: str) -> bool:
    import tritonclient.grpc as grpcclient

    try:
        with grpcclient.InferenceServerClient(url) as c:
            return bool(c.is_server_ready(client_timeout=5) and c.is_model_ready("ocr", client_timeout=5))
    except Exception:  # noqa: BLE001 - not up yet
        return False


def small_queues(repo: Path) -> None:
    """Shrink every bounded queue of the assembled repository (same mechanism, a capacity a test can exceed)."""
    for config in repo.glob("*/config.pbtxt"):
        text = config.read_text()
        text = re.sub(r"max_queue_size: \d+", f"max_queue_size: {QUEUE_SIZE}", text)
        text = re.sub(r"default_timeout_microseconds: \d+", f"default_timeout_microseconds: {QUEUE_TIMEOUT_S}000000",
                      text)
        config.write_text(text)


@pytest.fixture(scope="module")
def launcher(tmp_path_factory: pytest.TempPathFactory):
    from ocr_server.assemble import assemble

    tmp = tmp_path_factory.mktemp("ops")
    repo = assemble("cpu", "v4", tmp / "repo", {}, ROOT / "build" / "models", ROOT / "build" / "engines")
    small_queues(repo)
    assert "max_queue_size" in (repo / "det_model" / "config.pbtxt").read_text()
    ports = [free_port() for _ in range(4)]
    log_path = tmp / "launcher.log"
    cmd = [sys.executable, "-m", "ocr_server.launcher", "--supervise", "--model-repository", str(repo),
           "--http-port", str(ports[0]), "--grpc-port", str(ports[1]), "--metrics-port", str(ports[2]),
           "--watchdog-metrics-port", str(ports[3]), "--socket-dir", str(tmp / "sock"),
           "--probe-interval", "1", "--probe-timeout", "2", "--probe-failures", "2"]
    env = dict(os.environ, OCR_ADMIN_KEY=ADMIN_KEY)
    proc = subprocess.Popen(cmd, env=env, stdout=log_path.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    srv = Launcher(proc, tmp / "sock", ports[1], ports[2], ports[3], log_path)
    try:
        deadline = time.monotonic() + 180
        while proc.poll() is None and not ocr_ready(srv.grpc_url) and time.monotonic() < deadline:
            time.sleep(0.3)
        assert proc.poll() is None and ocr_ready(srv.grpc_url), srv.log()[-3000:]
        # Triton logs "Started Metrics Service" a moment before its metrics port accepts connections
        while not metrics_up(srv.metrics_port):
            assert proc.poll() is None and time.monotonic() < deadline, srv.log()[-3000:]
            time.sleep(0.2)
        yield srv
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_no_admin_key_on_any_command_line_or_in_the_stubs(launcher: Launcher) -> None:
    import tritonclient.grpc as grpcclient

    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert ADMIN_KEY not in ps
    server = launcher.server_pid()
    assert server is not None
    argv = Path(f"/proc/{server}/cmdline").read_bytes().decode().split("\0")
    assert not [a for a in argv if "restricted" in a], argv
    assert f"--grpc-address=unix:{launcher.socket_dir}/grpc.sock" in argv
    stubs = [s for s in stub_processes(server) if s.alive]
    assert stubs
    for stub in stubs:
        environ = Path(f"/proc/{stub.pid}/environ").read_bytes()
        assert ADMIN_KEY.encode() not in environ and b"OCR_ADMIN_KEY=" not in environ, stub
    # the sockets' directory is the lock: only the service user can enter it, and that user needs no key
    assert stat.S_IMODE(launcher.socket_dir.stat().st_mode) == 0o700
    with grpcclient.InferenceServerClient(launcher.grpc_url) as c:
        assert "ocr" in {m.name for m in c.get_model_repository_index(client_timeout=10).models}


def test_probes_leave_ocr_metrics_flat(launcher: Launcher) -> None:
    """30 s with no client: the watchdog probes every second, and no ocr_* series moves."""
    before = scrape(launcher.metrics_port)
    time.sleep(30)
    after = scrape(launcher.metrics_port)
    ocr_before = {k: v for k, v in before.items() if k.startswith("ocr_")}
    ocr_after = {k: v for k, v in after.items() if k.startswith("ocr_")}
    assert ocr_before and ocr_after == ocr_before
    probes = 'nv_inference_request_success{model="ocr",version="1"}'
    assert after[probes] - before[probes] >= 10, "the probes did not run: the test proves nothing"
    watchdog = scrape(launcher.watchdog_port)
    assert watchdog["ocr_server_ready"] == 1
    assert watchdog["ocr_server_restarts_total"] == 0 and watchdog["ocr_watchdog_probe_failures_total"] == 0
    assert watchdog['ocr_server_process_resident_memory_bytes{process="tritonserver"}'] > 0
    assert watchdog['ocr_server_process_cpu_seconds_total{process="det_model"}'] > 0


def test_a_burst_beyond_capacity_is_refused_retryably_without_a_restart(launcher: Launcher) -> None:
    from ocr_client import OcrClient, OcrUnavailableError

    server = launcher.server_pid()
    img, _ = text_page(30, width=1400, seed=7)
    blob = png(img)
    outcomes: list[tuple[str, float]] = []
    lock = threading.Lock()

    def one() -> None:
        t0 = time.monotonic()
        try:
            with OcrClient(launcher.grpc_url, timeout=120, retries=0) as client:
                result = client.ocr(blob)
            outcome = "ok" if result.lines else "empty"
        except OcrUnavailableError:
            outcome = "unavailable"
        except Exception as exc:  # noqa: BLE001 - recorded, and fails the test below
            outcome = f"{type(exc).__name__}: {exc}"
        with lock:
            outcomes.append((outcome, time.monotonic() - t0))

    threads = [threading.Thread(target=one) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert not any(t.is_alive() for t in threads), "a request got no answer"
    kinds = {o for o, _ in outcomes}
    assert kinds <= {"ok", "unavailable"}, outcomes
    assert "ok" in kinds and "unavailable" in kinds, outcomes
    refusals = sorted(s for o, s in outcomes if o == "unavailable")
    print(f"burst of 40: {len(refusals)} refused, slowest refusal {refusals[-1]:.2f} s, median "
          f"{refusals[len(refusals) // 2]:.2f} s; slowest answer {max(s for _, s in outcomes):.2f} s")
    # a refusal comes from a full queue at once, or when a queue's timeout ends the wait: never a long backlog
    assert refusals[-1] < 4 * QUEUE_TIMEOUT_S + 20, refusals
    assert ocr_ready(launcher.grpc_url)
    time.sleep(3)  # the watchdog's verdict on the probes that timed out in the burst
    assert launcher.server_pid() == server, launcher.log()[-3000:]
    assert scrape(launcher.watchdog_port)["ocr_server_restarts_total"] == 0
    assert "restarting tritonserver" not in launcher.log()


def test_a_normal_stop_leaves_a_clean_log(launcher: Launcher) -> None:
    """SIGTERM with requests in flight: no traceback, and no CUDA line from the CPU-only start either."""
    from ocr_client import OcrClient, OcrError

    img, _ = text_page(10, width=900, seed=9)
    blob = png(img)
    stop = threading.Event()

    def traffic() -> None:
        with OcrClient(launcher.grpc_url, timeout=30, retries=0) as client:
            while not stop.is_set():
                try:
                    client.ocr(blob)
                except OcrError:
                    time.sleep(0.1)

    threads = [threading.Thread(target=traffic, daemon=True) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(3)
    launcher.proc.send_signal(signal.SIGTERM)
    try:
        code = launcher.proc.wait(timeout=60)
    finally:
        stop.set()
    log = launcher.log()
    assert code == 0, log[-3000:]
    assert "stopped (restarts: 0" in log
    assert "Traceback" not in log, log[log.find("Traceback") - 500:][:4000]
    noise = [line for line in log.splitlines() if any(p.match(line.encode()) for p in CPU_NOISE)]
    assert not noise and "CUDA driver version is insufficient" not in log and "CudaDriverHelper" not in log
    assert "NODELAY NOT SUPPORTED" not in log  # libevhtp on a Unix socket
