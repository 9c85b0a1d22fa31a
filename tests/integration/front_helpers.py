"""A supervised server behind the public front (`ocr-launch --supervise`), for the front's tests."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ocr_server.local_server import free_port
from ocr_server.paths import REPO_ROOT as ROOT


@dataclass
class Fronted:
    proc: subprocess.Popen
    http_port: int
    grpc_port: int
    internal_http: int
    internal_grpc: int
    metrics_port: int
    log_path: Path
    repository: Path
    extra: list[str] = field(default_factory=list)

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def triton_pid(self) -> int | None:
        """The tritonserver process the launcher runs now."""
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry.name}/stat").read_text()
            except OSError:
                continue
            comm = stat[stat.index("(") + 1:stat.rindex(")")]
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
            if comm == "tritonserver" and ppid == self.proc.pid:
                return int(entry.name)
        return None


def start_fronted(work: Path, extra: list[str] | None = None, timeout: float = 180.0) -> Fronted:
    from ocr_server.assemble import assemble

    work.mkdir(parents=True, exist_ok=True)
    repo = assemble("cpu", "v4", work / "repo", {}, ROOT / "build" / "models", ROOT / "build" / "engines")
    ports = [free_port() for _ in range(5)]
    log_path = work / f"launcher_{ports[1]}.log"
    cmd = [sys.executable, "-m", "ocr_server.launcher", "--supervise", "--model-repository", str(repo),
           "--http-port", str(ports[0]), "--grpc-port", str(ports[1]), "--internal-http-port", str(ports[2]),
           "--internal-grpc-port", str(ports[3]), "--metrics-port", str(ports[4]), *(extra or [])]
    proc = subprocess.Popen(cmd, stdout=log_path.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    server = Fronted(proc, ports[0], ports[1], ports[2], ports[3], ports[4], log_path, repo, extra or [])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"launcher exited with {proc.returncode}:\n{server.log()[-3000:]}")
        if front_ready(server):
            return server
        time.sleep(0.3)
    stop_fronted(server)
    raise RuntimeError(f"front not ready after {timeout:.0f} s:\n{server.log()[-3000:]}")


def front_ready(server: Fronted) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://{server.http_url}/v2/health/ready", timeout=5) as resp:
            return resp.status == 200
    except OSError:
        return False


def stop_fronted(server: Fronted, timeout: float = 60.0) -> int:
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(server.proc.pid, signal.SIGKILL)
            server.proc.wait()
    return server.proc.returncode
