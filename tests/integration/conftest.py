"""A real tritonserver (embedded CPU target) started once per test session on free ports."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("OCR_SHARED_DIR", ROOT.parent / "shared"))
EVALDATA = SHARED / "evaldata"
sys.path.insert(0, str(ROOT / "scripts"))

from assemble_repository import assemble  # noqa: E402
from launch_server import ServerOptions, server_command  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def start_server(tmp: Path, model_set: str = "v4", overrides: dict | None = None, extra_args: list[str] | None = None,
                 timeout: float = 120.0) -> RunningServer:
    repo = assemble("cpu", model_set, tmp / f"repo_{model_set}", overrides or {}, ROOT / "build" / "models",
                    ROOT / "build" / "engines")
    opts = ServerOptions(repo, free_port(), free_port(), free_port(), extra_args=extra_args or [])
    cmd, env = server_command(opts, build_dir=ROOT / "build")
    log_path = tmp / f"tritonserver_{model_set}_{opts.grpc_port}.log"
    proc = subprocess.Popen(cmd, env=env, stdout=log_path.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    server = RunningServer(proc, opts.http_port, opts.grpc_port, opts.metrics_port, log_path, repo)
    import tritonclient.http as httpclient

    deadline = time.time() + timeout
    client = httpclient.InferenceServerClient(server.http_url)
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"tritonserver exited with {proc.returncode}:\n{server.log()[-4000:]}")
        try:
            if client.is_server_ready():
                return server
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.3)
    stop_server(server)
    raise RuntimeError(f"tritonserver not ready after {timeout}s:\n{server.log()[-4000:]}")


def stop_server(server: RunningServer) -> None:
    if server.proc.poll() is None:
        server.proc.terminate()
        try:
            server.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.proc.pid, 9)
            server.proc.wait()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory):
    """The default server (v4 models, repository defaults)."""
    srv = start_server(tmp_path_factory.mktemp("triton"))
    yield srv
    stop_server(srv)


@pytest.fixture(scope="session")
def client(server: RunningServer):
    from ocr_client import OcrClient

    with OcrClient(server.grpc_url, timeout=120) as c:
        yield c


@pytest.fixture(scope="session")
def evaldata() -> Path:
    if not (EVALDATA / "sroie_receipts_en" / "labels.jsonl").exists():
        pytest.skip(f"evaluation data not found at {EVALDATA} (set OCR_SHARED_DIR)")
    return EVALDATA


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
