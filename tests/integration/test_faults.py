"""Faults under the watchdog (`launch_server.py --supervise`): killed stubs, a killed server.

The supervisor runs as a subprocess on free ports with its own model repository. Each test kills
something with SIGKILL while clients keep sending requests, then checks that service comes back
within 10 s, that readiness was false while healing, and that every request got an answer or an
error (client timeouts bound every call, so a hung request fails the test).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from helpers import norm, png, text_page
from ocr_server.launcher import (
    ADMIN_HEADER,
    UNHEALTHY_RE,
    ServerOptions,
    model_of_instance,
    proc_stat,
    server_command,
    stub_processes,
    tritonserver_child,
)
from ocr_server.local_server import RunningServer, accepts, free_port

ROOT = Path(__file__).resolve().parents[2]
RESTORE_LIMIT_S = 10.0
ADMIN_KEY = "test-admin-key-0123456789"


class Supervised(RunningServer):
    """The supervisor process (`proc`) on its ports; the tritonserver it runs changes over time."""

    def server_pid(self) -> int | None:
        """The tritonserver the supervisor runs now."""
        return tritonserver_child(self.proc.pid)

    def steady_server(self, timeout: float = 60.0) -> int:
        """The server once it runs and is ready (after a heal or restart that an earlier test caused)."""
        wait_until(lambda: self.server_pid() is not None and _ready(self.grpc_url) is True, timeout, 0.2)
        pid = self.server_pid()
        assert pid is not None
        return pid



def _ready(url: str) -> bool | None:
    """Server and `ocr` readiness as the server reports it; None when it does not answer in time."""
    import tritonclient.grpc as grpcclient

    try:
        with grpcclient.InferenceServerClient(url) as c:
            return c.is_server_ready(client_timeout=5) and c.is_model_ready("ocr", client_timeout=5)
    except Exception:  # noqa: BLE001 - down, restarting or too busy to answer
        return None


def wait_until(predicate, timeout: float, interval: float = 0.05) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if predicate():
            return time.monotonic() - t0
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


@pytest.fixture(scope="module")
def supervised(tmp_path_factory: pytest.TempPathFactory):
    from ocr_server.assemble import assemble

    tmp = tmp_path_factory.mktemp("supervised")
    repo = assemble("cpu", "v4", tmp / "repo", {}, ROOT / "build" / "models", ROOT / "build" / "engines")
    ports = [free_port(), free_port(), free_port()]
    log_path = tmp / "supervisor.log"
    env = dict(os.environ, OCR_ADMIN_KEY=ADMIN_KEY)
    cmd = [sys.executable, "-m", "ocr_server.launcher", "--supervise", "--model-repository", str(repo),
           "--http-port", str(ports[0]), "--grpc-port", str(ports[1]), "--metrics-port", str(ports[2]),
           "--probe-interval", "1", "--watchdog-metrics-port", str(free_port()), "--no-front"]
    proc = subprocess.Popen(cmd, env=env, stdout=log_path.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    sup = Supervised(proc, ports[0], ports[1], ports[2], log_path, repo)
    try:
        # tritonserver opens gRPC first, then HTTP and metrics: wait for all three
        wait_until(lambda: proc.poll() is not None or (_ready(sup.grpc_url) is True and all(map(accepts, ports))),
                   120, 0.3)
        assert proc.poll() is None, sup.log()[-3000:]
        yield sup
    finally:
        server = sup.server_pid()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if server is not None:  # the server and its stubs are gone with the supervisor
            time.sleep(1)
            st = proc_stat(server)
            assert st is None or st[0] == "Z", "tritonserver outlived the supervisor"


@dataclass
class Traffic:
    """Client threads sending requests until stopped; every request's outcome is recorded."""

    url: str
    threads: int = 3
    timeout: float = 30.0
    started: int = 0
    outcomes: list[tuple[float, float, str]] = field(default_factory=list)  # (start, finish, "ok" | error)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)
    workers: list[threading.Thread] = field(default_factory=list)

    def run(self, blob: bytes, expected: list[str]) -> None:
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException

        with grpcclient.InferenceServerClient(self.url) as c:
            while not self.stop.is_set():
                x = grpcclient.InferInput("image_bytes", [1], "BYTES")
                x.set_data_from_numpy(np.array([blob], dtype=np.object_))
                with self.lock:
                    self.started += 1
                start = time.monotonic()
                try:
                    r = c.infer("ocr", [x], client_timeout=self.timeout)
                    texts = [norm(t.decode()) for t in r.as_numpy("texts")]
                    outcome = "ok" if texts == expected else f"wrong:{texts}"
                except InferenceServerException as exc:
                    outcome = f"{exc.status()}: {exc.message()}"[:200]
                with self.lock:
                    self.outcomes.append((start, time.monotonic(), outcome))
                time.sleep(0.02)

    def __enter__(self) -> Traffic:
        img, texts = text_page(2, width=500, seed=31)
        blob, expected = png(img), [norm(t) for t in texts]
        for _ in range(self.threads):
            t = threading.Thread(target=self.run, args=(blob, expected), daemon=True)
            t.start()
            self.workers.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.workers:
            t.join(self.timeout + 10)
        assert not any(t.is_alive() for t in self.workers), "a request hung past its timeout"

    def summary(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for _, _, o in self.outcomes:
            key = o.split(":")[0] if not o.startswith("wrong") else "wrong"
            counts[key] = counts.get(key, 0) + 1
        return counts


def watch_readiness(url: str, stop: threading.Event, seen: list[bool]) -> None:
    while not stop.is_set():
        answer = _ready(url)
        if answer is not None:
            seen.append(answer)
        time.sleep(0.03)


def kill_stub_and_measure(sup: Supervised, model: str) -> dict:
    server = sup.steady_server()
    victims = [s for s in stub_processes(server) if s.model == model and s.alive]
    assert victims, f"no stub for {model}: {stub_processes(server)}"
    unloads_before = sup.log().count(f"successfully unloaded '{model}'")
    stop, seen = threading.Event(), list[bool]()
    watcher = threading.Thread(target=watch_readiness, args=(sup.grpc_url, stop, seen), daemon=True)
    with Traffic(sup.grpc_url) as traffic:
        wait_until(lambda: any(o == "ok" for _, _, o in traffic.outcomes), 60)
        watcher.start()
        killed_at = time.monotonic()
        os.kill(victims[0].pid, signal.SIGKILL)

        def restored() -> bool:
            with traffic.lock:
                ok = any(start > killed_at and o == "ok" for start, _, o in traffic.outcomes)
            return ok and _ready(sup.grpc_url) is True

        # restored = a request sent after the kill succeeded (it needed the killed model), and the
        # server reports ready
        wait_until(restored, 30, 0.05)
        restore_s = time.monotonic() - killed_at
        time.sleep(0.5)
        stop.set()
        watcher.join(5)
    with traffic.lock:
        finished = len(traffic.outcomes)

    # Settle before judging (and before the next test): Triton tears the dead stub's model instance
    # down in the background after the heal, within ~2 s when it finishes at all. Now and then (about
    # 1 kill in 70 here) that teardown aborts tritonserver itself (boost::interprocess::lock_exception
    # in libtriton_python.so, an upstream python_backend bug: the SIGKILLed stub died holding a
    # shared-memory mutex); the watchdog then restarts the server. Either way the killed stub must
    # end up replaced.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and sup.server_pid() == server and \
            sup.log().count(f"successfully unloaded '{model}'") == unloads_before:
        time.sleep(0.1)
    current = sup.steady_server()
    new = [s for s in stub_processes(current) if s.model == model and s.alive]
    return {"restore_s": restore_s, "readiness": seen, "summary": traffic.summary(), "started": traffic.started,
            "finished": finished, "new_stubs": new, "old_pid": victims[0].pid, "server_restarted": current != server}


def test_watchdog_helpers(tmp_path):
    assert model_of_instance("cls_model_0_0") == "cls_model"
    assert model_of_instance("det_model_0") == "det_model"
    assert model_of_instance("rec_v2_model_1_3") == "rec_v2_model"
    message = "in ensemble 'ocr', internal error: cls_model: Stub process 'cls_model_0_0' is not healthy."
    assert UNHEALTHY_RE.findall(message) == ["cls_model_0_0"]
    plain, _ = server_command(ServerOptions(tmp_path))
    assert not any(a.startswith(("--model-control-mode", "--http-restricted-api", "--grpc-restricted")) for a in plain)
    assert "--http-address=127.0.0.1" in plain and "--metrics-config=summary_latencies=true" in plain
    supervised_cmd, env = server_command(ServerOptions(tmp_path, admin_key="k3y", explicit_model_control=True))
    assert "--model-control-mode=explicit" in supervised_cmd and "--load-model=*" in supervised_cmd
    restricted = [a for a in supervised_cmd if "restricted" in a]
    assert restricted == [f"--http-restricted-api=model-repository,shared-memory,trace,logging:{ADMIN_HEADER}=k3y",
                          f"--grpc-restricted-protocol=model-repository,shared-memory,trace,logging:{ADMIN_HEADER}=k3y"]
    assert "OCR_ADMIN_KEY" not in env
    # per-request buffers stay on the heap (no mmap + page faults per image); the image runs the same launcher
    assert env["MALLOC_MMAP_THRESHOLD_"] == str(32 << 20) and env["MALLOC_TRIM_THRESHOLD_"] == str(256 << 20)
    entrypoint = (ROOT / "docker" / "entrypoint.sh").read_text()
    assert "exec ocr-serve --gpu" in entrypoint and "exec tritonserver" not in entrypoint


def test_admin_apis_are_restricted(supervised):
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    with grpcclient.InferenceServerClient(supervised.grpc_url) as c:
        for call in (lambda: c.unload_model("ocr"), lambda: c.load_model("ocr"),
                     lambda: c.get_model_repository_index(), lambda: c.get_log_settings(),
                     lambda: c.get_trace_settings(), lambda: c.get_system_shared_memory_status()):
            with pytest.raises(InferenceServerException, match="restricted"):
                call()
        # what the watchdog uses works with the key; inference and health need none
        index = c.get_model_repository_index(headers={f"triton-grpc-protocol-{ADMIN_HEADER}": ADMIN_KEY})
        assert {m.name for m in index.models} >= {"ocr", "det_model", "rec_pipeline"}
        assert c.is_server_ready() and c.is_model_ready("ocr")
        assert c.get_model_metadata("ocr").name == "ocr"
    http = httpclient.InferenceServerClient(supervised.http_url)
    with pytest.raises(InferenceServerException, match="restricted"):
        http.unload_model("ocr")
    assert http.is_model_ready("ocr")
    http.close()


def test_listens_on_loopback_only(supervised):
    server = supervised.server_pid()
    cmdline = Path(f"/proc/{server}/cmdline").read_bytes().split(b"\0")
    for flag in (b"--http-address=127.0.0.1", b"--grpc-address=127.0.0.1", b"--metrics-address=127.0.0.1",
                 b"--model-control-mode=explicit"):
        assert flag in cmdline


@pytest.mark.parametrize("model", ["rec_model", "det_preprocess"])
def test_killed_stub_is_healed_within_10s(supervised, model):
    r = kill_stub_and_measure(supervised, model)
    how = "the server aborted (upstream teardown bug) and was restarted" if r["server_restarted"] else "reloaded"
    print(f"\n{model}: service restored {r['restore_s']:.2f} s after SIGKILL ({how}); requests {r['summary']}")
    assert r["restore_s"] <= RESTORE_LIMIT_S, r
    assert r["new_stubs"] and r["new_stubs"][0].pid != r["old_pid"], r
    if r["server_restarted"]:  # only for that reason: the server exited by itself
        assert "restarting tritonserver: tritonserver exited" in supervised.log(), supervised.log()[-4000:]
    assert False in r["readiness"], "readiness never reported false while healing"
    assert r["readiness"][-1] is True
    assert r["started"] == r["finished"], "a request got neither a result nor an error"
    assert set(r["summary"]) <= {"ok", "StatusCode.INTERNAL", "StatusCode.UNAVAILABLE", "StatusCode.NOT_FOUND"}, r
    assert "wrong" not in r["summary"]
    assert f"healing {model}" in supervised.log()


def test_hung_stub_is_found_by_the_probe_and_replaced(supervised):
    """A stub that is alive but does not answer (SIGSTOP) is invisible in /proc; the probe finds it."""
    server = supervised.steady_server()
    victim = next(s for s in stub_processes(server) if s.model == "det_postprocess" and s.alive)
    os.kill(victim.pid, signal.SIGSTOP)
    stopped_at = time.monotonic()
    try:
        wait_until(lambda: "healing det_postprocess: probe" in supervised.log(), 60, 0.2)
        wait_until(lambda: _ready(supervised.grpc_url) is True and any(
            s.model == "det_postprocess" and s.alive and s.pid != victim.pid for s in stub_processes(server)), 30)
        restore_s = time.monotonic() - stopped_at
    finally:
        try:
            os.kill(victim.pid, signal.SIGKILL)  # normally done by the watchdog already
        except OSError:
            pass
    print(f"\nhung det_postprocess stub: replaced {restore_s:.2f} s after SIGSTOP")
    wait_until(lambda: (proc_stat(victim.pid) or ("Z",))[0] in ("Z", "X"), 10)
    img, texts = text_page(2, width=500, seed=33)
    from ocr_client import OcrClient

    with OcrClient(supervised.grpc_url, timeout=60) as client:
        assert [norm(t) for t in client.ocr(img).texts] == [norm(t) for t in texts]


def test_killed_server_is_restarted_and_client_retries(supervised):
    from ocr_client import OcrClient

    img, texts = text_page(2, width=500, seed=32)
    old = supervised.steady_server()
    old_stubs = stub_processes(old)
    os.kill(old, signal.SIGKILL)
    killed_at = time.monotonic()
    # a client call made right after the crash rides out the restart: UNAVAILABLE is retried with
    # backoff within the call's deadline (enough retries for a restart of a few seconds)
    with OcrClient(supervised.grpc_url, timeout=60, retries=30) as client:
        result = client.ocr(img)
    restore_s = time.monotonic() - killed_at
    print(f"\nserver SIGKILL: a retrying client call succeeded {restore_s:.2f} s after the kill")
    assert [norm(t) for t in result.texts] == [norm(t) for t in texts]
    new = supervised.server_pid()
    assert new is not None and new != old
    assert restore_s <= 60
    def gone(pid: int) -> bool:  # exited (a zombie left to an init that does not reap counts as gone)
        st = proc_stat(pid)
        return st is None or st[0] in ("Z", "X")

    try:
        wait_until(lambda: all(gone(s.pid) for s in old_stubs), 20, 0.2)  # no orphaned stubs
    except AssertionError:
        raise AssertionError(f"stubs outlived their server: {[(s, proc_stat(s.pid)) for s in old_stubs]}") from None
    def leaked() -> list:
        return [s.shm_region for s in old_stubs if s.shm_region and Path("/dev/shm", s.shm_region).exists()]

    try:  # the watchdog removes the dead server's regions while it restarts it
        wait_until(lambda: not leaked(), 15, 0.2)
    except AssertionError:
        raise AssertionError(f"/dev/shm regions of the dead server leaked: {leaked()}") from None
    # the watchdog restarted it: from its check loop, or from its start-up wait if the kill came that early
    log_text = supervised.log()
    assert "restarting tritonserver" in log_text or "failed to start (attempt 1 of 3)" in log_text
