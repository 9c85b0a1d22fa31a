"""Start a real tritonserver in the background on free loopback ports, and stop it.

Used by the integration tests (tests/integration/conftest.py), the benchmark (scripts/bench.py) and
anything else that needs a throw-away server: assemble a CPU repository (server/ocr_server/assemble.py)
with optional parameter overrides, launch it the way serve.sh does (server/ocr_server/launcher.py) and
wait until the `ocr` model is ready. `start_fronted` runs the supervised launcher with the public front
(Triton on owner-only Unix sockets behind it, or on loopback ports with `internal_tcp`), as `ocr-serve` does.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ocr_server.assemble import assemble
from ocr_server.launcher import ServerOptions, server_command, tritonserver_child
from ocr_server.paths import REPO_ROOT as ROOT

__all__ = ["FrontedServer", "RunningServer", "accepts", "free_port", "start_fronted", "start_server",
           "stop_fronted", "stop_server"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def accepts(port: int) -> bool:
    """Whether something accepts connections on loopback `port`."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return True
    except OSError:
        return False


@dataclass
class RunningServer:
    proc: subprocess.Popen
    http_port: int
    grpc_port: int
    metrics_port: int
    log_path: Path
    repository: Path

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_tail(self, n: int = 4000) -> str:
        return self.log()[-n:]


def start_server(work: Path, model_set: str = "v4", overrides: dict[str, dict[str, str]] | None = None,
                 extra_args: list[str] | None = None, timeout: float = 300.0,
                 instances: dict[str, int] | None = None) -> RunningServer:
    """Assemble `work/repo_<set>` (CPU target) with `overrides` ({model: {key: value}}) and serve it.
    `instances` ({model: count}) sets the instance count of those models in the assembled copy."""
    work.mkdir(parents=True, exist_ok=True)
    repo = assemble("cpu", model_set, work / f"repo_{model_set}", overrides or {}, ROOT / "build" / "models",
                    ROOT / "build" / "engines", instances)
    opts = ServerOptions(repo, free_port(), free_port(), free_port(), extra_args=extra_args or [])
    cmd, env = server_command(opts, build_dir=ROOT / "build")
    log_path = work / f"tritonserver_{model_set}_{opts.grpc_port}.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = RunningServer(proc, opts.http_port, opts.grpc_port, opts.metrics_port, log_path, repo)
    import tritonclient.grpc as grpcclient

    deadline = time.monotonic() + timeout
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"tritonserver exited with {proc.returncode}:\n{server.log_tail()}")
            try:
                # tritonserver opens gRPC first, then HTTP and metrics: wait for all three
                if client.is_server_ready(client_timeout=2) and client.is_model_ready("ocr", client_timeout=2) \
                        and accepts(server.http_port) and accepts(server.metrics_port):
                    return server
            except Exception:  # noqa: BLE001 - not up yet
                pass
            time.sleep(0.3)
    stop_server(server)
    raise RuntimeError(f"tritonserver not ready after {timeout:.0f} s:\n{server.log_tail()}")


def stop_server(server: RunningServer) -> None:
    if server.proc.poll() is None:
        server.proc.terminate()
        try:
            server.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.proc.pid, 9)
            server.proc.wait()


@dataclass
class FrontedServer(RunningServer):
    """`ocr-launch --supervise` with the public front: clients use http_port/grpc_port; Triton listens where
    its command line says (Unix sockets by default, loopback ports with `internal_tcp`)."""

    extra: list[str] = field(default_factory=list)

    def triton_args(self) -> dict[str, str]:
        """tritonserver's `--name=value` options ({} if it does not run)."""
        pid = self.triton_pid()
        if pid is None:
            return {}
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        return dict(a[2:].split("=", 1) for a in argv if a.startswith("--") and "=" in a)

    @property
    def internal_grpc_url(self) -> str:
        """Triton's own gRPC, behind the front: `unix:<dir>/grpc.sock:<port>` or `127.0.0.1:<port>`."""
        args = self.triton_args()
        return f"{args['grpc-address']}:{args['grpc-port']}"

    @property
    def internal_http_url(self) -> str:
        """Triton's own HTTP: `unix:<dir>/http.sock` (the front's --upstream-http form) or `127.0.0.1:<port>`."""
        args = self.triton_args()
        address = args["http-address"]
        return address if address.startswith("unix:") else f"{address}:{args['http-port']}"

    def socket_dir(self) -> Path | None:
        """The directory of Triton's Unix sockets, None if it listens on TCP."""
        address = self.triton_args().get("grpc-address", "")
        return Path(address[len("unix:"):]).parent if address.startswith("unix:") else None

    def triton_pid(self) -> int | None:
        """The tritonserver process the launcher runs now."""
        return tritonserver_child(self.proc.pid)

    def ready(self) -> bool:
        """The front's readiness (Triton ready, the `ocr` model ready, not draining)."""
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=5) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False


def start_fronted(work: Path, extra: list[str] | None = None, model_set: str = "v4",
                  timeout: float = 180.0, ports: list[int] | None = None, internal_tcp: bool = False) -> FrontedServer:
    """Assemble `work/repo` and run the supervised launcher with the front on free loopback ports (or
    `ports`: public http, grpc, metrics, e.g. those of a server stopped before). Triton listens on the
    launcher's own Unix sockets, or on free loopback ports with `internal_tcp` (for direct TCP clients)."""
    work.mkdir(parents=True, exist_ok=True)
    repo = assemble("cpu", model_set, work / "repo", {}, ROOT / "build" / "models", ROOT / "build" / "engines")
    ports = ports or [free_port() for _ in range(3)]
    log_path = work / f"launcher_{ports[1]}.log"
    cmd = [sys.executable, "-m", "ocr_server.launcher", "--supervise", "--model-repository", str(repo),
           "--http-port", str(ports[0]), "--grpc-port", str(ports[1]), "--metrics-port", str(ports[2]),
           *(["--internal-http-port", str(free_port()), "--internal-grpc-port", str(free_port())]
             if internal_tcp else []),
           *([] if any(a.startswith("--gateway-port") for a in extra or []) else ["--no-gateway"]), *(extra or [])]
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = FrontedServer(proc, ports[0], ports[1], ports[2], log_path, repo, extra or [])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"launcher exited with {proc.returncode}:\n{server.log()[-3000:]}")
        if server.ready():
            return server
        time.sleep(0.3)
    stop_fronted(server)
    raise RuntimeError(f"front not ready after {timeout:.0f} s:\n{server.log()[-3000:]}")


def stop_fronted(server: FrontedServer, timeout: float = 60.0) -> int:
    """SIGTERM (the front drains, then tritonserver stops); the exit status of the launcher."""
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(server.proc.pid, signal.SIGKILL)
            server.proc.wait()
    return server.proc.returncode
