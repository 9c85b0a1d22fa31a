"""Launcher pieces without a server: the CPU-only log filter, the watchdog's metrics, Unix-socket listeners."""
from __future__ import annotations

import io
import os
from pathlib import Path

from ocr_server.launcher import MAX_SOCKET_PATH, ServerOptions, private_socket_dir, server_command
from ocr_server.server_log import forward_lines, is_cpu_noise
from ocr_server.watchdog_metrics import WATCHDOG_METRICS, WatchdogMetrics, process_usage
from prometheus_client import generate_latest

# What a CPU-only start of the embedded Triton 2.51 prints that no flag silences (plus neighbours that must stay).
CPU_START = b"""\
E1205 16:52:42.501099 2414 server.cc:241] "CudaDriverHelper has not been initialized."
I1205 16:52:42.502000 2414 model_lifecycle.cc:472] "loading: det_model:1"
E1205 16:52:45.293070 2414 ensemble_scheduler.cc:1468] "unable to create stream for ocr: CUDA driver version is \
insufficient for CUDA runtime version"
W1205 16:52:47.494629 2414 pinned_memory_manager.cc:170] "failed to allocate pinned system memory: no pinned memory \
pool, falling back to non-pinned system memory"
E1205 16:52:48.000000 2414 server.cc:300] "some real error"
"""


def test_the_cpu_only_cuda_lines_are_dropped_and_nothing_else() -> None:
    lines = CPU_START.splitlines(keepends=True)
    assert [is_cpu_noise(line) for line in lines] == [True, False, True, True, False]
    read, write = os.pipe()
    os.write(write, CPU_START)
    os.close(write)
    out = io.BytesIO()
    forward_lines(os.fdopen(read, "rb"), out, drop_cuda_noise=True).join(5)
    assert out.getvalue().splitlines() == [lines[1].rstrip(), lines[4].rstrip()]
    read, write = os.pipe()
    os.write(write, CPU_START)
    os.close(write)
    out = io.BytesIO()
    forward_lines(os.fdopen(read, "rb"), out, drop_cuda_noise=False).join(5)  # GPU target: everything
    assert out.getvalue() == CPU_START


def test_the_unix_socket_nodelay_warning_is_dropped_only_with_sockets() -> None:
    line = b"[\x1b[1;33mWARN\x1b[0;39m]  \x1b[33mevhtp.c:4050     \x1b[39m\x1b[94mNODELAY NOT SUPPORTED\x1b[39m :: x\n"
    for drop in (True, False):
        read, write = os.pipe()
        os.write(write, line)
        os.close(write)
        out = io.BytesIO()
        forward_lines(os.fdopen(read, "rb"), out, drop_cuda_noise=True, drop_socket_noise=drop).join(5)
        assert out.getvalue() == (b"" if drop else line)


def test_watchdog_metrics_exposition() -> None:
    metrics = WatchdogMetrics(ready=lambda: True, processes=lambda: [(os.getpid(), "tritonserver"), (1 << 30, "gone")])
    metrics.heals.labels("rec_model").inc()
    metrics.restarts.inc()
    text = generate_latest(metrics.registry).decode()
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
    assert WATCHDOG_METRICS <= names
    assert 'ocr_watchdog_heals_total{model="rec_model"} 1.0' in text
    assert "ocr_server_ready 1.0" in text
    assert 'process="gone"' not in text  # a process that exited between listing and reading is left out
    cpu, rss = process_usage(os.getpid()) or (0.0, 0)
    assert cpu > 0 and rss > 0


def test_unix_sockets_replace_the_admin_key(tmp_path: Path) -> None:
    opts = ServerOptions(tmp_path / "repo", 8100, 8101, 8102, admin_key="secret-key", socket_dir=tmp_path / "sock")
    cmd, env = server_command(opts, build_dir=tmp_path / "build")
    assert not [a for a in cmd if "secret-key" in a or "restricted" in a]
    assert f"--grpc-address=unix:{tmp_path / 'sock'}/grpc.sock" in cmd
    assert f"--http-address=unix:{tmp_path / 'sock'}/http.sock" in cmd
    assert (tmp_path / "sock").stat().st_mode & 0o777 == 0o700
    assert opts.socket_path("grpc") == tmp_path / "sock" / "grpc.sock:8101"
    assert opts.socket_path("http") == tmp_path / "sock" / "http.sock"  # libevhtp does not append the port
    tcp = ServerOptions(tmp_path / "repo", 8100, 8101, 8102, admin_key="secret-key")
    cmd, env = server_command(tcp, build_dir=tmp_path / "build")
    assert "--grpc-address=127.0.0.1" in cmd and any("restricted" in a for a in cmd)  # TCP: the key is needed
    assert "OCR_ADMIN_KEY" not in env


def test_private_socket_dir_is_owner_only_and_short(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    made = private_socket_dir()
    assert made.parent == tmp_path and made.stat().st_mode & 0o777 == 0o700
    deep = tmp_path / ("d" * 100)  # too long for sun_path: falls back to a shorter base
    deep.mkdir()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(deep))
    fallback = private_socket_dir()
    assert fallback.parent != deep and not list(deep.iterdir())
    assert len(str(fallback / "grpc.sock:65535")) <= MAX_SOCKET_PATH
    fallback.rmdir()
