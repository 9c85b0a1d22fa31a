#!/usr/bin/env python3
"""Run the embedded `tritonserver` (from the nvidia-pytriton wheel) on a model repository.

This is what `scripts/serve.sh` executes and what the integration tests start. It
  * lays out the Python backend (symlinks to the wheel's backend + the stub of this venv's Python),
  * starts tritonserver with the CPU flags, this venv first on PATH (the stub finds the venv there)
    and this interpreter's LIBDIR on LD_LIBRARY_PATH (the stub links libpython),
  * forwards SIGINT/SIGTERM and exits with the server's status.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class ServerOptions:
    model_repository: Path
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    host: str = "127.0.0.1"
    log_verbose: int = 0
    extra_args: list[str] = field(default_factory=list)
    gpu: bool = False


def triton_dir() -> Path:
    purelib = Path(sysconfig.get_paths()["purelib"])
    ts = purelib / "pytriton" / "tritonserver"
    if not (ts / "bin" / "tritonserver").exists():
        raise SystemExit(f"tritonserver not found under {ts}: run scripts/setup_env.sh (installs nvidia-pytriton)")
    return ts


def prepare_backends(build_dir: Path) -> Path:
    """build/triton_backends/python/ with symlinks to the wheel's Python backend and our stub."""
    ts = triton_dir()
    pyv = f"{sys.version_info.major}.{sys.version_info.minor}"
    py_dir = build_dir / "triton_backends" / "python"
    py_dir.mkdir(parents=True, exist_ok=True)
    links = {
        "libtriton_python.so": ts / "backends" / "python" / "libtriton_python.so",
        "triton_python_backend_utils.py": ts / "backends" / "python" / "triton_python_backend_utils.py",
        "triton_python_backend_stub": ts / "python_backend_stubs" / pyv / "triton_python_backend_stub",
    }
    for name, target in links.items():
        if not target.exists():
            raise SystemExit(f"missing {target} (Python {pyv} stub?)")
        link = py_dir / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target)
    return py_dir.parent


def server_command(opts: ServerOptions, build_dir: Path = ROOT / "build") -> tuple[list[str], dict[str, str]]:
    ts = triton_dir()
    backends = prepare_backends(build_dir)
    venv_bin = str(Path(sys.executable).parent)
    env = dict(os.environ)
    env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "")
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in [libdir, env.get("LD_LIBRARY_PATH", "")] if p)
    env.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(1 << 28))
    env.setdefault("OMP_NUM_THREADS", "1")
    cmd = [
        str(ts / "bin" / "tritonserver"),
        f"--model-repository={opts.model_repository}",
        f"--backend-directory={backends}",
        f"--cache-directory={ts / 'caches'}",
        f"--http-port={opts.http_port}", f"--grpc-port={opts.grpc_port}", f"--metrics-port={opts.metrics_port}",
        f"--http-address={opts.host}", f"--grpc-address={opts.host}", f"--metrics-address={opts.host}",
        "--disable-auto-complete-config", "--exit-timeout-secs=10", "--strict-readiness=true",
        f"--log-verbose={opts.log_verbose}",
    ]
    if not opts.gpu:
        cmd += ["--pinned-memory-pool-byte-size=0", "--cuda-memory-pool-byte-size=0:0", "--allow-gpu-metrics=false"]
    return cmd + opts.extra_args, env


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-repository", type=Path, default=ROOT / "build" / "model_repository")
    ap.add_argument("--host", default=os.environ.get("OCR_HOST", "127.0.0.1"),
                    help="listen address for HTTP, gRPC and metrics (default 127.0.0.1; 0.0.0.0 for all)")
    ap.add_argument("--http-port", type=int, default=int(os.environ.get("OCR_HTTP_PORT", 8000)))
    ap.add_argument("--grpc-port", type=int, default=int(os.environ.get("OCR_GRPC_PORT", 8001)))
    ap.add_argument("--metrics-port", type=int, default=int(os.environ.get("OCR_METRICS_PORT", 8002)))
    ap.add_argument("--gpu", action="store_true", help="serve a GPU repository (keeps the CUDA memory pools)")
    ap.add_argument("--log-verbose", type=int, default=0)
    args, extra = ap.parse_known_args(argv)
    opts = ServerOptions(args.model_repository, args.http_port, args.grpc_port, args.metrics_port, args.host,
                         args.log_verbose, extra, args.gpu)
    cmd, env = server_command(opts)
    proc = subprocess.Popen(cmd, env=env)

    def forward(signum: int, _frame: object) -> None:
        proc.send_signal(signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    return proc.wait()


if __name__ == "__main__":
    sys.exit(main())
