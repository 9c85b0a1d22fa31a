"""Two supervised servers from one checkout: each its own repository and model set, faults kept apart.

Both are started the way a user would, `ocr-serve --model-set SET --http-port ... ` (its default
repository, no --repository), one with v4 and one with v5. Each must answer with its own set; killing
a stub of one, then its tritonserver, makes its watchdog heal and restart it without touching the
other's processes or /dev/shm regions; a third instance on the same ports is refused before it
assembles anything.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import norm
from ocr_server.instance import instance_repository
from ocr_server.launcher import stub_processes, tritonserver_child
from ocr_server.local_server import free_port
from ocr_server.paths import BUILD_DIR

ADMIN_KEY = "test-admin-key-instances-0123"
LINE = "TOTAL 42.50"


@dataclass
class Instance:
    model_set: str
    proc: subprocess.Popen
    ports: tuple[int, int, int]  # http, grpc, metrics
    log_path: Path

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.ports[1]}"

    @property
    def repository(self) -> Path:
        return instance_repository(BUILD_DIR / "repositories", "cpu", self.model_set, *self.ports)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def server_pid(self) -> int | None:
        """The tritonserver the supervisor runs now."""
        return tritonserver_child(self.proc.pid)

    def stubs(self) -> dict[int, str]:
        """{pid: /dev/shm region} of the live stubs of the current server."""
        pid = self.server_pid()
        return {} if pid is None else {s.pid: s.shm_region for s in stub_processes(pid) if s.alive}


def serve_command(model_set: str, ports: tuple[int, int, int]) -> list[str]:
    return [sys.executable, "-m", "ocr_server.serve", "--model-set", model_set, "--http-port", str(ports[0]),
            "--grpc-port", str(ports[1]), "--metrics-port", str(ports[2]), "--probe-interval", "1",
            "--no-front"]  # it calls rec_model directly, which the public front does not serve


def ready(inst: Instance) -> bool:
    import tritonclient.grpc as grpcclient

    try:
        with grpcclient.InferenceServerClient(inst.grpc_url) as c:
            return bool(c.is_server_ready(client_timeout=5) and c.is_model_ready("ocr", client_timeout=5))
    except Exception:  # noqa: BLE001 - starting, healing or restarting
        return False


def wait_until(predicate, timeout: float, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


@pytest.fixture(scope="module")
def instances(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Instance]]:
    tmp = tmp_path_factory.mktemp("instances")
    env = dict(os.environ, OCR_ADMIN_KEY=ADMIN_KEY)
    started: dict[str, Instance] = {}
    try:
        for model_set in ("v4", "v5"):
            ports = (free_port(), free_port(), free_port())
            log_path = tmp / f"{model_set}.log"
            proc = subprocess.Popen(serve_command(model_set, ports), env=env, stdout=log_path.open("w"),
                                    stderr=subprocess.STDOUT, start_new_session=True)
            started[model_set] = Instance(model_set, proc, ports, log_path)
        for inst in started.values():
            wait_until(lambda inst=inst: inst.proc.poll() is not None or ready(inst), 240, 0.3)
            assert inst.proc.poll() is None, inst.log()[-3000:]
        yield started
    finally:
        for inst in started.values():
            inst.proc.send_signal(signal.SIGTERM)
        for inst in started.values():
            try:
                inst.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(inst.proc.pid, signal.SIGKILL)
                inst.proc.wait()
    for inst in started.values():  # a server's own repository goes with it
        assert not inst.repository.exists(), f"{inst.repository} left behind"


def line_crop(text: str) -> np.ndarray:
    """One printed text line, 48 px high: what rec_pipeline sends rec_model."""
    img = np.full((48, 300, 3), 255, np.uint8)
    cv2.putText(img, text, (8, 34), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (0, 0, 0), 2, cv2.LINE_AA)
    return img


def recognise(inst: Instance, crop: np.ndarray) -> list[int]:
    """rec_model's best class per timestep for one crop (greedy CTC input: 0 is blank)."""
    import tritonclient.grpc as grpcclient

    x = grpcclient.InferInput("rec_input", [1, *crop.shape], "UINT8")
    x.set_data_from_numpy(crop[None])
    with grpcclient.InferenceServerClient(inst.grpc_url) as c:
        out = c.infer("rec_model", [x], client_timeout=60).as_numpy("rec_char_ids")
    assert out is not None
    return [int(i) for i in out.reshape(-1)]


def ctc_text(ids: list[int], model_set: str) -> str:
    labels = (BUILD_DIR / "models" / model_set / "dict.txt").read_text(encoding="utf-8").splitlines() + [" "]
    chars, last = [], 0
    for i in ids:
        if i != last and i != 0:
            chars.append(labels[i - 1] if i - 1 < len(labels) else "?")
        last = i
    return "".join(chars)


def ocr_text(inst: Instance) -> str:
    from ocr_client import OcrClient

    img = np.full((90, 420, 3), 255, np.uint8)
    cv2.putText(img, LINE, (20, 55), cv2.FONT_HERSHEY_SIMPLEX, 1.1, (0, 0, 0), 2, cv2.LINE_AA)
    with OcrClient(inst.grpc_url, timeout=60, retries=10) as client:
        return norm("".join(client.ocr(img, limit_type="max", limit_side_len=960).texts))


def test_each_server_has_its_own_repository_and_set(instances: dict[str, Instance]) -> None:
    repos = set()
    for model_set, inst in instances.items():
        server = inst.server_pid()
        assert server is not None
        argv = Path(f"/proc/{server}/cmdline").read_bytes().decode().split("\0")
        assert f"--model-repository={inst.repository}" in argv, argv
        assert (inst.repository / "MODEL_SET").read_text().split() == [model_set, "cpu"]
        repos.add(inst.repository)
    assert len(repos) == 2


def test_each_server_answers_with_its_own_set(instances: dict[str, Instance]) -> None:
    """rec_model's class ids read right only with the dictionary of the server's own set."""
    crop = line_crop(LINE)
    ids = {s: recognise(inst, crop) for s, inst in instances.items()}
    for own, other in (("v4", "v5"), ("v5", "v4")):
        assert norm(ctc_text(ids[own], own)) == norm(LINE), (own, ctc_text(ids[own], own))
        assert norm(ctc_text(ids[own], other)) != norm(LINE), f"{own}'s ids also read with the {other} dictionary"
    for inst in instances.values():
        assert ocr_text(inst) == norm(LINE)


def test_a_third_instance_on_the_same_ports_is_refused(instances: dict[str, Instance]) -> None:
    inst = instances["v4"]
    before = (inst.repository / "MODEL_SET").stat().st_mtime_ns
    r = subprocess.run(serve_command("v4", inst.ports), capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "in use by another server" in r.stderr, r.stderr
    assert (inst.repository / "MODEL_SET").stat().st_mtime_ns == before  # not reassembled under it
    assert ready(inst)


def test_faults_of_one_server_never_touch_the_other(instances: dict[str, Instance]) -> None:
    a, b = instances["v4"], instances["v5"]
    wait_until(lambda: ready(a) and ready(b), 60)
    b_server, b_stubs = b.server_pid(), b.stubs()
    assert b_server is not None and b_stubs
    b_log = len(b.log())

    # 1. a stub of A dies: A's watchdog heals it
    a_server = a.server_pid()
    assert a_server is not None
    victim = next(s for s in stub_processes(a_server) if s.model == "rec_model" and s.alive)
    os.kill(victim.pid, signal.SIGKILL)
    wait_until(lambda: "healed rec_model" in a.log() and ready(a), 60)
    assert ocr_text(b) == norm(LINE)

    # 2. A's tritonserver dies: A's watchdog kills the orphans of its own server and restarts it
    os.kill(a_server, signal.SIGKILL)
    wait_until(lambda: a.server_pid() not in (None, a_server) and ready(a), 120)
    assert ocr_text(a) == norm(LINE)

    assert b.server_pid() == b_server
    assert b.stubs() == b_stubs, "the other server's stubs changed"
    for region in b_stubs.values():
        assert region and Path("/dev/shm", region).exists(), f"the other server's region {region} was removed"
    assert not any(w in b.log()[b_log:] for w in ("healing", "restarting", "killing")), b.log()[b_log:]
    assert ocr_text(b) == norm(LINE)
