#!/usr/bin/env python3
"""Run the embedded `tritonserver` (from the nvidia-pytriton wheel) on a model repository.

This is what `scripts/serve.sh` executes and what the integration tests start. It
  * lays out the Python backend (symlinks to the wheel's backend + the stub of this venv's Python),
  * starts tritonserver with the CPU flags, this venv first on PATH (the stub finds the venv there)
    and this interpreter's LIBDIR on LD_LIBRARY_PATH (the stub links libpython),
  * forwards SIGINT/SIGTERM and exits with the server's status.

Unless --no-front, clients talk to the public front (ocr_server.front, docs/front.md) on
--host/--http-port/--grpc-port: it checks every request before Triton sees it and serves only the
`ocr` model; tritonserver's own HTTP/gRPC frontends listen on Unix sockets in an owner-only directory
(--socket-dir, or one the launcher creates and removes), or on loopback ports if
--internal-http-port/--internal-grpc-port ask for them. On SIGTERM/SIGINT
the front is drained first (readiness false, new requests UNAVAILABLE/503, in-flight requests get up
to --grace-period s), then tritonserver is stopped, so the ensemble's calls to its steps finish.

With --supervise (the default of serve.sh) it also runs a watchdog around the server:
  * tritonserver runs with --model-control-mode=explicit --load-model=*; on Unix sockets their
    directory's permissions guard the admin APIs; on TCP (--no-front, internal ports) the
    model-repository (load/unload/index), shared-memory, trace and logging APIs are restricted to
    callers that send the admin header (`ocr-admin-key: <key>` over HTTP,
    `triton-grpc-protocol-ocr-admin-key` over gRPC); the key is OCR_ADMIN_KEY or a random one that
    only the watchdog knows, and it is on tritonserver's command line (the only way 2.51 takes it);
  * every --check-interval it looks for the Python stub processes of each model (a crashed stub is
    never restarted by Triton and the model keeps reporting ready), and every --probe-interval it
    sends a tiny real OCR request; a dead stub or a "Stub process ... is not healthy" error makes it
    unload the affected models (readiness turns false at once), load them again, reload the
    ensemble if Triton dropped it, and kill the replaced stub if it still hangs around;
  * if tritonserver exits, or the probe times out --probe-failures times in a row, or a reload
    fails, it restarts the server (with backoff when it keeps dying), after killing the stubs the
    dead server left behind and removing their /dev/shm regions.
"""
from __future__ import annotations

import argparse
import ctypes
import importlib.util
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ocr_server.paths import REPO_ROOT as ROOT
from ocr_server.server_log import forward_lines
from ocr_server.watchdog_metrics import WatchdogMetrics
from ppocr_steps.metrics import PROBE_PARAMETER

ADMIN_HEADER = "ocr-admin-key"
RESTRICTED_APIS = ("model-repository", "shared-memory", "trace", "logging")
ENSEMBLE = "ocr"

log = logging.getLogger("watchdog")


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
    admin_key: str | None = None      # set: restrict RESTRICTED_APIS to callers sending it
    explicit_model_control: bool = False
    metrics_host: str | None = None   # default: host (the front moves HTTP/gRPC to loopback, not metrics)
    socket_dir: Path | None = None    # set: HTTP and gRPC listen on Unix sockets there, not on host:port

    def socket_path(self, protocol: str) -> Path:
        """The Unix socket of `protocol` ("grpc" | "http"): gRPC's address gets ":<grpc-port>" appended, HTTP's not."""
        assert self.socket_dir is not None
        return self.socket_dir / ("http.sock" if protocol == "http" else f"grpc.sock:{self.grpc_port}")


@dataclass
class FrontSettings:
    """The public front: where clients connect, and its options (server/ocr_server/front/app.py)."""

    host: str
    http_port: int
    grpc_port: int
    grace_period: float = 30.0
    auth_token_file: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    request_log: bool = True
    max_request_bytes: int | None = None  # None: the front's default
    routers: tuple[str, ...] = ()         # extra APIRouters of the HTTP front, "module:attribute"
    gateway_port: int = 0                 # the PaddleX serving API (POST /ocr) on its own port; 0: none

    def command(self, upstream: ServerOptions) -> list[str]:
        if upstream.socket_dir is not None:  # Triton on owner-only Unix sockets: no TCP door but the front
            grpc, http = f"unix:{upstream.socket_path('grpc')}", f"unix:{upstream.socket_path('http')}"
        else:
            grpc, http = f"127.0.0.1:{upstream.grpc_port}", f"127.0.0.1:{upstream.http_port}"
        cmd = [sys.executable, "-m", "ocr_server.front", f"--upstream-grpc={grpc}", f"--upstream-http={http}",
               f"--host={self.host}",
               f"--http-port={self.http_port}", f"--grpc-port={self.grpc_port}", f"--grace-period={self.grace_period}"]
        for flag, path in (("--auth-token-file", self.auth_token_file), ("--tls-cert", self.tls_cert),
                           ("--tls-key", self.tls_key)):
            if path is not None:
                cmd.append(f"{flag}={path}")
        if self.max_request_bytes is not None:
            cmd.append(f"--max-request-bytes={self.max_request_bytes}")
        cmd += [f"--router={spec}" for spec in self.routers]
        if self.gateway_port:
            cmd.append(f"--gateway-port={self.gateway_port}")
        return cmd + ([] if self.request_log else ["--no-request-log"])


def request_bytes_limit(repository: Path) -> int | None:
    """The largest request det_preprocess can accept: max_images_per_request images of max_image_bytes
    (plus their 4-byte length prefixes) and 1 MiB for the other inputs and headers. The front refuses
    anything bigger before it is copied into Triton; None if the repository does not say."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    try:
        text = (repository / "det_preprocess" / "config.pbtxt").read_text()
        params = text_format.Parse(text, model_config_pb2.ModelConfig()).parameters
        images = int(params["max_images_per_request"].string_value)
        image_bytes = int(params["max_image_bytes"].string_value)
    except (OSError, ValueError, text_format.ParseError):
        return None
    return images * (image_bytes + 4) + (1 << 20)


class FrontProcess:
    """The front as a child process: started beside tritonserver, drained before it stops."""

    def __init__(self, settings: FrontSettings, upstream: ServerOptions, stdout: Any = None) -> None:
        self.settings, self.upstream, self.stdout = settings, upstream, stdout
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        log.info("starting the front (grpc %s, http %s on %s)", self.settings.grpc_port, self.settings.http_port,
                 self.settings.host)
        # a session of its own: a terminal's Ctrl-C reaches the launcher only, which drains in order
        self.proc = subprocess.Popen(self.settings.command(self.upstream), stdout=self.stdout,
                                     stderr=subprocess.STDOUT if self.stdout else None, preexec_fn=_set_pdeathsig,
                                     start_new_session=True)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def drain(self) -> None:
        """SIGTERM: the front refuses new requests and waits for the ones in flight (its grace period)."""
        if not self.alive():
            return
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=self.settings.grace_period + 15)
        except subprocess.TimeoutExpired:
            log.warning("the front did not stop after its grace period; killing it")
            self.proc.kill()
            self.proc.wait()


def triton_dir() -> Path:
    # where pip put the wheel: a system Python (the cpu image) installs outside sysconfig's purelib
    spec = importlib.util.find_spec("pytriton")
    base = Path(spec.origin).parent if spec and spec.origin else Path(sysconfig.get_paths()["purelib"]) / "pytriton"
    ts = base / "tritonserver"
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
        if link.is_symlink() and os.readlink(link) == str(target):
            continue  # already right: leave it alone (other servers may be starting from it)
        tmp = py_dir / f".{name}.{os.getpid()}"
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        tmp.symlink_to(target)
        os.replace(tmp, link)  # atomic: a concurrently starting server never sees the link missing
    return py_dir.parent


NGC_TRITON = Path("/opt/tritonserver")


def decoder_pixel_limit(model_repository: Path) -> str | None:
    """det_preprocess's max_image_pixels in the repository: OpenCV enforces it while decoding
    (OPENCV_IO_MAX_IMAGE_PIXELS, read once when a stub loads cv2); None if there is no such config."""
    path = Path(model_repository) / "det_preprocess" / "config.pbtxt"
    if not path.exists():
        return None
    from ocr_server import pbtxt

    return pbtxt.parameters(pbtxt.load(path)).get("max_image_pixels")


def listen_addresses(opts: ServerOptions) -> list[str]:
    """HTTP and gRPC on host:port, or on Unix sockets in the owner-only `opts.socket_dir`.

    tritonserver has no way to read the restricted-API key from a file, and its command line is
    readable by every local user (`ps`). With the sockets in a directory only the service user can
    enter, the file permissions guard the admin APIs instead of a key: no key exists (the front proxy
    is the one TCP door for clients and forwards only the public APIs).
    """
    if opts.socket_dir is None:
        return [f"--http-address={opts.host}", f"--grpc-address={opts.host}"]
    opts.socket_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(opts.socket_dir, 0o700)
    for protocol in ("http", "grpc"):  # a socket left by a killed server would make the bind fail
        opts.socket_path(protocol).unlink(missing_ok=True)
    return [f"--{protocol}-address=unix:{opts.socket_dir / protocol}.sock" for protocol in ("http", "grpc")]


MALLOC_MMAP_THRESHOLD = 32 << 20   # glibc's largest: only allocations above it get their own mmap
MALLOC_TRIM_THRESHOLD = 256 << 20  # free heap kept for the next request's buffers
# Each Python-step instance moves its tensors through its own /dev/shm region, which starts at the
# default size and grows (never shrinks) in steps: a typical page fits the first size, a 4000 px page
# needs one or two steps. /dev/shm must hold instances x their peak (docs/kubernetes.md sizes it).
PYTHON_SHM_DEFAULT_BYTES = 16 << 20
PYTHON_SHM_GROWTH_BYTES = 32 << 20


def server_command(opts: ServerOptions, build_dir: Path = ROOT / "build") -> tuple[list[str], dict[str, str]]:
    """The tritonserver command line and environment for `opts`.

    CPU: the embedded server of the nvidia-pytriton wheel with our Python-backend layout. GPU: the
    wheel has no TensorRT backend, so a full Triton is used, from $TRITON_HOME or /opt/tritonserver
    (the NGC image), with its own backends (tensorrt + python).
    """
    if opts.gpu:
        home = Path(os.environ.get("TRITON_HOME", NGC_TRITON))
        if not (home / "bin" / "tritonserver").exists() or not (home / "backends" / "tensorrt").exists():
            raise SystemExit(f"--gpu needs a Triton with the TensorRT backend at {home} (set TRITON_HOME), e.g. "
                             "the NGC image of docker/ (docs/gpu.md); the pip-installed server is CPU-only")
        ts, backends = home, home / "backends"
    else:
        ts = triton_dir()
        backends = prepare_backends(build_dir)
    venv_bin = str(Path(sys.executable).parent)
    env = dict(os.environ)
    env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "")
    if not opts.gpu:  # the wheel's stub links libpython; a full Triton's stub finds it, and CUDA's libs stay first
        libdir = sysconfig.get_config_var("LIBDIR") or ""
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in [libdir, env.get("LD_LIBRARY_PATH", "")] if p)
    pixel_limit = decoder_pixel_limit(opts.model_repository)
    if pixel_limit is not None:
        env["OPENCV_IO_MAX_IMAGE_PIXELS"] = pixel_limit
    env.setdefault("OMP_NUM_THREADS", "1")
    # glibc malloc would return each large buffer (decoded image, probability map, ...) to the kernel at
    # free and fault it in again on the next request; keeping them on the heap lets requests reuse the
    # pages (docs/benchmarks.md), at the price of each process keeping its peak heap.
    env.setdefault("MALLOC_MMAP_THRESHOLD_", str(MALLOC_MMAP_THRESHOLD))
    env.setdefault("MALLOC_TRIM_THRESHOLD_", str(MALLOC_TRIM_THRESHOLD))
    env.pop("OCR_ADMIN_KEY", None)  # the stubs inherit the environment: keep the key out of it
    cmd = [
        str(ts / "bin" / "tritonserver"),
        f"--model-repository={opts.model_repository}",
        f"--backend-directory={backends}",
        f"--cache-directory={ts / 'caches'}",
        f"--http-port={opts.http_port}", f"--grpc-port={opts.grpc_port}", f"--metrics-port={opts.metrics_port}",
        *listen_addresses(opts), f"--metrics-address={opts.metrics_host or opts.host}",
        "--disable-auto-complete-config", "--exit-timeout-secs=10", "--strict-readiness=true",
        "--metrics-config=summary_latencies=true",  # p50/p99 of docker/grafana/dashboards/ocr.json
        f"--backend-config=python,shm-default-byte-size={PYTHON_SHM_DEFAULT_BYTES}",
        f"--backend-config=python,shm-growth-byte-size={PYTHON_SHM_GROWTH_BYTES}",
        f"--log-verbose={opts.log_verbose}",
    ]
    if opts.explicit_model_control:
        cmd += ["--model-control-mode=explicit", "--load-model=*"]
    if opts.admin_key and opts.socket_dir is None:
        apis = ",".join(RESTRICTED_APIS)
        cmd += [f"--http-restricted-api={apis}:{ADMIN_HEADER}={opts.admin_key}",
                f"--grpc-restricted-protocol={apis}:{ADMIN_HEADER}={opts.admin_key}"]
    if not opts.gpu:
        cmd += ["--pinned-memory-pool-byte-size=0", "--cuda-memory-pool-byte-size=0:0", "--allow-gpu-metrics=false"]
    return cmd + opts.extra_args, env


# ---------------------------------------------------------------------------------------------- /proc
@dataclass(frozen=True)
class StubProcess:
    pid: int
    model: str       # the model directory name (= model name)
    instance: str    # e.g. cls_model_0_0
    state: str       # /proc state letter: R, S, D, Z (zombie: dead, not yet reaped), ...
    shm_region: str = ""  # its shared-memory region in /dev/shm

    @property
    def alive(self) -> bool:
        return self.state not in ("Z", "X")


def proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of a process, or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields_ = stat[stat.rfind(")") + 2:].split()
    return fields_[0], int(fields_[1])


def tritonserver_child(parent: int) -> int | None:
    """The live tritonserver process whose parent is `parent` (a launcher), or None."""
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            st = proc_stat(int(entry.name))
            if st and st[1] == parent and st[0] not in ("Z", "X"):
                try:
                    exe = Path(entry.path, "cmdline").read_bytes().split(b"\0")[0]
                except OSError:
                    continue
                if exe.endswith(b"tritonserver"):
                    return int(entry.name)
    return None


def stubs_of_repository(repo: str) -> dict[int, str]:
    """{pid: /dev/shm region} of live Python-backend stubs serving a model of `repo`, whoever their parent is."""
    stubs = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            region = stub_region(int(entry.name), repo)
            if region is not None:
                stubs[int(entry.name)] = region
    return stubs


def _stub_args(pid: int) -> list[str]:
    """The command line of process `pid` if it is a Python-backend stub (argv[1]: its model.py), else []."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return []
    args = [a.decode(errors="replace") for a in argv if a]
    return args if len(args) > 1 and args[0].endswith("triton_python_backend_stub") else []


def _shm_region(stub_args: list[str]) -> str:
    return next((a for a in stub_args if a.startswith("triton_python_backend_shm_region")), "")


def stub_region(pid: int, repo: str) -> str | None:
    """The /dev/shm region ("" if not named) of process `pid` if it is a Python-backend stub serving a
    model of `repo`; None if it is not (or no longer exists)."""
    args = _stub_args(pid)
    return _shm_region(args) if args and args[1].startswith(repo) else None


def serves_another_server(pid: int, server_pid: int | None) -> bool:
    """Whether process `pid` is the child of a live tritonserver other than `server_pid`: a stub of another
    instance, never an orphan of ours, whatever repository it serves."""
    st = proc_stat(pid)
    if st is None or st[1] == server_pid:
        return False
    parent = proc_stat(st[1])
    if parent is None or parent[0] in ("Z", "X"):
        return False
    try:
        exe = Path(f"/proc/{st[1]}/cmdline").read_bytes().split(b"\0")[0]
    except OSError:
        return False
    return exe.endswith(b"tritonserver")


def stub_processes(server_pid: int) -> list[StubProcess]:
    """The Python-backend stub processes that `server_pid` started (zombies included)."""
    out = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        st = proc_stat(pid)
        if st is None or st[1] != server_pid:
            continue
        args = _stub_args(pid)
        if args:
            model = Path(args[1]).parent.parent.name
            instance = next((a for a in args if re.fullmatch(re.escape(model) + r"(_\d+)+", a)), model)
            shm = _shm_region(args)
        elif st[0] == "Z":
            try:
                comm = Path(f"/proc/{pid}/comm").read_text().strip()
            except OSError:
                continue
            if not comm.startswith("triton_python"):
                continue
            model, instance, shm = "?", "?", ""
        else:
            continue
        out.append(StubProcess(pid, model, instance, st[0], shm))
    return out


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


# ---------------------------------------------------------------------------------------------- watchdog
UNHEALTHY_RE = re.compile(r"Stub process '([^']+)' is not healthy")


def model_of_instance(instance: str) -> str:
    """'cls_model_0_0' -> 'cls_model' (Triton names instances <model>_<group>_<index>)."""
    return re.sub(r"(_\d+){1,2}$", "", instance)


def probe_image() -> bytes:
    """A small PNG with one printed line: the probe goes through every step, cls and rec included."""
    import cv2
    import numpy as np

    img = np.full((64, 256, 3), 255, np.uint8)
    cv2.putText(img, "OK 42", (20, 45), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (0, 0, 0), 2, cv2.LINE_AA)
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return buf.tobytes()


def _set_pdeathsig() -> None:
    """In the child: get SIGTERM when the supervisor dies, so no server outlives its watchdog."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Supervisor:
    """tritonserver + watchdog (see the module docstring)."""

    def __init__(self, opts: ServerOptions, build_dir: Path = ROOT / "build", check_interval: float = 0.25,
                 probe_interval: float = 2.0, probe_timeout: float = 30.0, probe_failures: int = 3,
                 startup_timeout: float = 300.0, stdout: Any = None, metrics_port: int = 0,
                 front: FrontSettings | None = None) -> None:
        if not opts.admin_key and opts.socket_dir is None:  # with sockets, their permissions guard the admin APIs
            opts.admin_key = os.environ.get("OCR_ADMIN_KEY") or secrets.token_urlsafe(24)
        opts.explicit_model_control = True
        self.opts, self.build_dir = opts, build_dir
        self.check_interval, self.probe_interval = check_interval, probe_interval
        self.probe_timeout, self.probe_failures = probe_timeout, probe_failures
        self.startup_timeout = startup_timeout
        self.stdout = stdout
        self.proc: subprocess.Popen | None = None
        self.expected: Counter[str] = Counter()
        self.stopping = threading.Event()
        self.paused = threading.Event()      # set while healing/restarting: the probe waits
        self.unhealthy: set[str] = set()      # models reported by the probe
        self.probe_timeouts = 0
        self.epoch = 0                        # +1 after each heal or restart: older probe answers are stale
        self.lock = threading.Lock()
        self.restarts = 0
        self.heals = 0
        self._client: Any = None
        self._image = probe_image()
        self.shm_regions: set[str] = set()   # /dev/shm regions of the current server's stubs
        self.stub_pids: set[int] = set()      # stub processes of the current server
        self.progress_mark: int | None = None  # ensemble successes when the first of the timed-out probes began
        self.metrics = WatchdogMetrics(self.is_ready, self.server_processes)
        self.metrics_port = metrics_port
        self.log_thread: threading.Thread | None = None
        self.front = FrontProcess(front, opts, stdout) if front is not None else None

    # -- admin calls -------------------------------------------------------------------------
    @property
    def url(self) -> str:
        if self.opts.socket_dir is not None:
            return f"unix:{self.opts.socket_path('grpc')}"
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.opts.host, self.opts.host)
        return f"[{host}]:{self.opts.grpc_port}" if ":" in host else f"{host}:{self.opts.grpc_port}"

    def client(self) -> Any:
        import tritonclient.grpc as grpcclient

        if self._client is None:
            self._client = grpcclient.InferenceServerClient(self.url)
        return self._client

    def _reset_client(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            except Exception:  # noqa: BLE001
                pass
        self._client = None

    @property
    def headers(self) -> dict[str, str]:
        return {f"triton-grpc-protocol-{ADMIN_HEADER}": self.opts.admin_key} if self.opts.admin_key else {}

    def model_states(self) -> dict[str, str]:
        index = self.client().get_model_repository_index(headers=self.headers, client_timeout=10)
        return {m.name: m.state for m in index.models}

    # -- server process ----------------------------------------------------------------------
    def start_server(self) -> None:
        cmd, env = server_command(self.opts, self.build_dir)
        log.info("starting tritonserver (grpc %s, http %s, metrics %s)", self.opts.grpc_port, self.opts.http_port,
                 self.opts.metrics_port)
        # its own session: a Ctrl-C in the terminal reaches only the launcher, which stops the server in order
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     preexec_fn=_set_pdeathsig, start_new_session=True)
        assert self.proc.stdout is not None
        sink: Any = self.stdout or sys.stderr
        self.log_thread = forward_lines(self.proc.stdout, getattr(sink, "buffer", sink),
                                        drop_cuda_noise=not self.opts.gpu,
                                        drop_socket_noise=self.opts.socket_dir is not None)
        self._reset_client()
        self.wait_ready(self.startup_timeout)
        self.snapshot()
        log.info("tritonserver ready (pid %d); watching stubs %s", self.proc.pid, dict(self.expected))

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.stopping.is_set():
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"tritonserver exited with {self.proc.returncode} while starting")
            try:
                if self.client().is_server_ready(client_timeout=5):
                    return
            except Exception:  # noqa: BLE001 - not up yet: a fresh channel next time (no gRPC reconnect backoff)
                self._reset_client()
            time.sleep(0.2)
        if not self.stopping.is_set():
            raise TimeoutError(f"tritonserver not ready after {timeout:.0f} s")

    def python_models(self) -> set[str]:
        """The loaded models served by the Python backend (each has at least one stub process)."""
        names = set()
        for model, state in self.model_states().items():
            if state == "READY":
                config = self.client().get_model_config(model, as_json=True, client_timeout=10)["config"]
                if config.get("backend") == "python":
                    names.add(model)
        return names

    def snapshot(self) -> None:
        """Remember the stubs (and their shared memory) of the server as it is now, healthy."""
        assert self.proc is not None
        stubs = [s for s in stub_processes(self.proc.pid) if s.alive]
        self.expected = Counter(s.model for s in stubs)
        self.stub_pids |= {s.pid for s in stubs}
        try:
            for model in self.python_models():
                self.expected[model] = max(self.expected[model], 1)
        except Exception as exc:  # noqa: BLE001 - the /proc view alone still works
            log.warning("could not list the Python models: %s", exc)
        self.shm_regions |= {s.shm_region for s in stubs if s.shm_region}

    def kill_orphans(self, wait: float = 3.0) -> None:
        """After the server died: stubs normally exit with it, but one that was busy can hang on forever."""
        repo = str(self.opts.model_repository).rstrip("/") + "/"
        server_pid = self.proc.pid if self.proc is not None else None
        deadline = time.monotonic() + wait
        while True:
            left = []
            # the stubs we saw, and any other stub of this repository (one started by a reload just
            # before the crash was never seen): with the server dead, all of them are orphans, unless
            # another live tritonserver runs them (an instance that was pointed at the same repository)
            orphans = {pid: region for pid, region in stubs_of_repository(repo).items()
                       if not serves_another_server(pid, server_pid)}
            self.shm_regions |= {region for region in orphans.values() if region}
            for pid in self.stub_pids | set(orphans):
                st = proc_stat(pid)
                if st is None or st[0] in ("Z", "X"):
                    continue
                if stub_region(pid, repo) is not None and not serves_another_server(pid, server_pid):
                    left.append(pid)  # still ours, not a reused pid
            if not left or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        for pid in left:
            log.warning("killing stub pid %d left behind by the dead server", pid)
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        self.stub_pids.clear()

    def remove_stale_shm(self) -> None:
        """After the server died: a killed tritonserver leaves its stubs' /dev/shm regions behind."""
        removed = 0
        for name in self.shm_regions:
            path = Path("/dev/shm") / name
            try:
                removed += path.stat().st_size
                path.unlink()
            except OSError:
                pass
        if removed:
            log.info("removed %.1f MiB of shared memory left by the dead server", removed / 2 ** 20)
        self.shm_regions.clear()

    def stop_server(self, grace: float = 20.0) -> int | None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return None if proc is None else proc.returncode
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            log.warning("tritonserver did not stop within %.0f s; killing it", grace)
            proc.kill()
            return proc.wait()

    def restart_server(self, why: str, grace: float = 15.0) -> None:
        self.paused.set()
        self.restarts += 1
        self.metrics.restarts.inc()
        log.error("restarting tritonserver: %s", why)
        self.stop_server(grace=grace)
        self.kill_orphans()
        self.remove_stale_shm()
        delay = 1.0
        while not self.stopping.is_set():
            try:
                self.start_server()
                break
            except Exception as exc:  # noqa: BLE001 - keep trying, with backoff
                log.error("tritonserver failed to start: %s; retrying in %.0f s", exc, delay)
                self.stop_server(grace=5.0)
                self.stopping.wait(delay)
                delay = min(delay * 2, 30.0)
        self.forget_probe_results()
        self.paused.clear()

    def forget_probe_results(self) -> None:
        """After a heal or restart: what the probe saw before is about a server that is no more. A probe
        request that was in flight during the heal fails late with the old stub's error; without the
        epoch it would start a second heal that kills the new, healthy stub."""
        with self.lock:
            self.unhealthy.clear()
            self.probe_timeouts = 0
            self.progress_mark = None
            self.epoch += 1

    # -- healing -----------------------------------------------------------------------------
    def dead_models(self) -> set[str]:
        assert self.proc is not None
        stubs = [s for s in stub_processes(self.proc.pid) if s.alive]
        # remember every stub and its /dev/shm region, so that a crash of the server can be cleaned up
        self.stub_pids |= {s.pid for s in stubs}
        self.shm_regions |= {s.shm_region for s in stubs if s.shm_region}
        alive = Counter(s.model for s in stubs)
        for model, n in alive.items():  # learn instances that appeared after the snapshot
            self.expected[model] = max(self.expected[model], n)
        return {m for m, n in self.expected.items() if alive[m] < n}

    def heal(self, models: set[str], why: str) -> None:
        """Unload the models (readiness false from here), load them again, bring the ensemble back.

        The new instance is loaded as soon as Triton has marked the old one UNLOADING: the old one can
        take seconds to finish (requests caught in the dead stub fail after a few seconds) and
        sometimes never does, so waiting for it would make healing slow or stuck.
        """
        self.paused.set()
        self.heals += 1
        for model in models:
            self.metrics.heals.labels(model).inc()
        t0 = time.monotonic()
        log.warning("healing %s: %s", ", ".join(sorted(models)), why)
        assert self.proc is not None
        old = [s for s in stub_processes(self.proc.pid) if s.model in models and s.alive]
        try:
            client = self.client()
            for model in sorted(models):
                client.unload_model(model, headers=self.headers, client_timeout=10)
            deadline = time.monotonic() + 5
            while any(self.model_states().get(m) == "READY" for m in models):
                if time.monotonic() > deadline:
                    raise TimeoutError("models still READY 5 s after unload")
                time.sleep(0.02)
            for model in sorted(models):
                client.load_model(model, headers=self.headers, client_timeout=60)
            for model in sorted(m for m, s in self.model_states().items() if s not in ("READY", "UNLOADING")):
                client.load_model(model, headers=self.headers, client_timeout=60)  # e.g. the ensemble
            self.wait_ready(30)
        except Exception as exc:  # noqa: BLE001 - the server is in an unknown state: start it afresh
            self.restart_server(f"healing {sorted(models)} failed: {exc}", grace=5.0)
            return
        for stub in old:  # a hung (not dead) old stub would linger: the new instance replaced it
            state = proc_stat(stub.pid)
            if state is not None and state[0] not in ("Z", "X"):
                log.warning("killing the replaced stub %s (pid %d, state %s)", stub.instance, stub.pid, state[0])
                try:
                    os.kill(stub.pid, signal.SIGKILL)
                except OSError:
                    pass
            if stub.shm_region:  # its shared memory has no user left (a mapping survives the unlink)
                try:
                    os.unlink(Path("/dev/shm") / stub.shm_region)
                except OSError:
                    pass
                self.shm_regions.discard(stub.shm_region)
        self.snapshot()
        self.forget_probe_results()
        log.warning("healed %s in %.2f s", ", ".join(sorted(models)), time.monotonic() - t0)
        self.paused.clear()

    # -- probe -------------------------------------------------------------------------------
    def probe_once(self) -> None:
        import numpy as np
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException

        inputs = []
        for name, dtype, value in (("image_bytes", "BYTES", np.array([self._image], dtype=np.object_)),
                                   ("limit_type", "BYTES", np.array([b"max"], dtype=np.object_)),
                                   ("limit_side_len", "INT32", np.array([256], np.int32))):
            t = grpcclient.InferInput(name, list(value.shape), dtype)
            t.set_data_from_numpy(value)
            inputs.append(t)
        epoch = self.epoch
        completed = self.completed_requests()
        try:
            with grpcclient.InferenceServerClient(self.url) as c:
                c.infer(ENSEMBLE, inputs, client_timeout=self.probe_timeout, parameters={PROBE_PARAMETER: True})
        except InferenceServerException as exc:
            if not self.stopping.is_set():
                self.metrics.probe_failures.inc()
            message = str(exc)
            timed_out = "Deadline" in message or "DEADLINE_EXCEEDED" in str(exc.status())
            found = {model_of_instance(i) for i in UNHEALTHY_RE.findall(message)}
            with self.lock:
                if self.paused.is_set() or self.epoch != epoch or self.stopping.is_set():
                    return  # about a server being healed, already healed, or being stopped
                if timed_out:
                    self.probe_timeouts += 1
                    if self.progress_mark is None:
                        self.progress_mark = completed
                else:
                    self.unhealthy |= found
            if timed_out:
                log.warning("probe timed out after %.0f s (%d in a row)", self.probe_timeout, self.probe_timeouts)
            elif not found:
                log.warning("probe failed: %s", message)
            return
        with self.lock:
            if self.epoch == epoch:
                self.probe_timeouts = 0
                self.progress_mark = None

    def probe_loop(self) -> None:
        while not self.stopping.wait(self.probe_interval):
            if self.paused.is_set() or self.proc is None or self.proc.poll() is not None:
                continue
            try:
                self.probe_once()
            except Exception as exc:  # noqa: BLE001
                log.warning("probe error: %s", exc)

    # -- liveness by progress, readiness and usage for the metrics ----------------------------------
    def completed_requests(self) -> int | None:
        """Requests the ensemble has answered successfully so far (statistics API), None if it cannot tell.

        A probe that times out behind a backlog says nothing about a server that keeps answering the
        requests ahead of it: the watchdog restarts only when this count stood still meanwhile.
        """
        try:
            stats = self.client().get_inference_statistics(ENSEMBLE, client_timeout=5)
            return sum(int(m.inference_stats.success.count) for m in stats.model_stats)
        except Exception:  # noqa: BLE001 - no answer is no evidence of progress
            return None

    def making_progress(self) -> bool:
        with self.lock:
            mark = self.progress_mark
        now = self.completed_requests()
        return mark is not None and now is not None and now > mark

    def is_ready(self) -> bool:
        """tritonserver runs, is not being healed or restarted, and says it is ready."""
        import tritonclient.grpc as grpcclient

        proc = self.proc
        if proc is None or proc.poll() is not None or self.paused.is_set() or self.stopping.is_set():
            return False
        try:
            with grpcclient.InferenceServerClient(self.url) as c:
                return bool(c.is_server_ready(client_timeout=2))
        except Exception:  # noqa: BLE001 - no answer in time: not ready
            return False

    def server_processes(self) -> list[tuple[int, str]]:
        """(pid, name) of tritonserver and its live stubs (named by model) for the CPU/memory metrics."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return []
        return [(proc.pid, "tritonserver")] + [(s.pid, s.model) for s in stub_processes(proc.pid) if s.alive]

    # -- main loop ---------------------------------------------------------------------------
    def check(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            self.restart_server(f"tritonserver exited with status {self.proc.returncode}")
            return
        if self.front is not None and not self.front.alive():
            assert self.front.proc is not None
            log.error("the front exited with status %s; starting it again", self.front.proc.returncode)
            self.front.start()
        dead = self.dead_models()
        if dead:
            self.heal(dead, "stub process died")
            return
        with self.lock:
            unhealthy, timeouts = set(self.unhealthy), self.probe_timeouts
        if unhealthy:
            self.heal(unhealthy, "probe: stub is not healthy")
        elif timeouts >= self.probe_failures:
            if self.making_progress():
                log.warning("%d probes in a row timed out, but requests are completing: busy, not stuck", timeouts)
                with self.lock:
                    self.probe_timeouts = 0
                    self.progress_mark = None
            else:
                self.restart_server(f"{timeouts} probes in a row timed out and no request completed meanwhile")

    def run(self) -> int:
        def stop(signum: int, _frame: object) -> None:
            log.info("signal %d: stopping", signum)
            self.stopping.set()

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        if self.metrics_port:
            try:
                self.metrics.serve(self.metrics_port, self.opts.host)
            except OSError as exc:  # serving matters more than the watchdog's own metrics
                log.error("watchdog metrics not exported on %s:%d: %s", self.opts.host, self.metrics_port, exc)
        for attempt in range(1, 4):  # a server that dies while starting gets two more chances
            try:
                self.start_server()
                break
            except Exception as exc:  # noqa: BLE001
                log.error("tritonserver failed to start (attempt %d of 3): %s", attempt, exc)
                self.stop_server(grace=5.0)
                self.kill_orphans()
                self.remove_stale_shm()
                if attempt == 3 or self.stopping.wait(2.0 * attempt):
                    return 1
        if self.front is not None:
            self.front.start()
        prober = threading.Thread(target=self.probe_loop, name="probe", daemon=True)
        prober.start()
        while not self.stopping.wait(self.check_interval):
            try:
                self.check()
            except Exception as exc:  # noqa: BLE001 - the watchdog itself must not die
                log.exception("watchdog check failed: %s", exc)
        if self.front is not None:
            log.info("draining the front (up to %.0f s)", self.front.settings.grace_period)
            self.front.drain()
        code = self.stop_server()
        if self.log_thread is not None:
            self.log_thread.join(timeout=5)  # the server's last lines
        self.kill_orphans()
        self.remove_stale_shm()
        log.info("stopped (restarts: %d, heals: %d)", self.restarts, self.heals)
        return 0 if code in (None, 0, -signal.SIGTERM) else code


def build_parser() -> argparse.ArgumentParser:
    """The launcher's options (ocr-serve reads the ports from them too)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-repository", type=Path, default=ROOT / "build" / "model_repository")
    ap.add_argument("--host", default=os.environ.get("OCR_HOST", "127.0.0.1"),
                    help="listen address for HTTP, gRPC and metrics (default 127.0.0.1; 0.0.0.0 for all)")
    ap.add_argument("--http-port", type=int, default=int(os.environ.get("OCR_HTTP_PORT", 8000)))
    ap.add_argument("--grpc-port", type=int, default=int(os.environ.get("OCR_GRPC_PORT", 8001)))
    ap.add_argument("--metrics-port", type=int, default=int(os.environ.get("OCR_METRICS_PORT", 8002)))
    ap.add_argument("--gpu", action="store_true", help="serve a GPU repository (keeps the CUDA memory pools)")
    ap.add_argument("--log-verbose", type=int, default=0)
    ap.add_argument("--supervise", action="store_true",
                    help="run the watchdog: explicit model control, restricted admin APIs, stub healing, restarts")
    ap.add_argument("--check-interval", type=float, default=0.25, help="seconds between stub-process checks")
    ap.add_argument("--probe-interval", type=float, default=2.0, help="seconds between probe requests")
    ap.add_argument("--probe-timeout", type=float, default=30.0, help="timeout of one probe request")
    ap.add_argument("--probe-failures", type=int, default=3,
                    help="probe timeouts in a row that restart the server, if no request completed meanwhile")
    ap.add_argument("--watchdog-metrics-port", type=int, default=int(os.environ.get("OCR_WATCHDOG_METRICS_PORT", 8003)),
                    help="port of the watchdog's own metrics (heals, restarts, probe failures, readiness, CPU and "
                         "memory of the server's processes) on --host; 0: not exported")
    ap.add_argument("--socket-dir", type=Path, default=os.environ.get("OCR_SOCKET_DIR") or None,
                    help="tritonserver's HTTP and gRPC listen on Unix sockets in this owner-only directory "
                         "(<dir>/grpc.sock:<grpc-port>, <dir>/http.sock) instead of --host: only the "
                         "service user (and the front proxy) can reach them, so no admin key is needed; "
                         "default with the front: a new one under $XDG_RUNTIME_DIR or /tmp, removed on exit")
    ap.add_argument("--no-front", action="store_true",
                    help="no public front: Triton's own HTTP/gRPC frontends listen on --host (docs/front.md)")
    ap.add_argument("--internal-http-port", type=int, default=0,
                    help="put Triton's HTTP behind the front on this loopback port instead of a Unix socket (the "
                         "admin key is then on tritonserver's command line, docs/operations.md)")
    ap.add_argument("--internal-grpc-port", type=int, default=0,
                    help="the same for Triton's gRPC (either flag selects loopback TCP; the other port: a free one)")
    ap.add_argument("--grace-period", type=float, default=float(os.environ.get("OCR_GRACE_PERIOD", 30.0)),
                    help="seconds in-flight requests get to finish at SIGTERM/SIGINT (default 30)")
    ap.add_argument("--auth-token-file", type=Path, help="require 'authorization: Bearer <token>' (owner-only file)")
    ap.add_argument("--tls-cert", type=Path, help="PEM certificate for TLS on the front's gRPC and HTTP ports")
    ap.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    ap.add_argument("--no-request-log", action="store_true", help="no JSON line per request from the front")
    ap.add_argument("--gateway-port", type=int, default=int(os.environ.get("OCR_GATEWAY_PORT", 8080)),
                    help="the front also serves the PaddleX serving API (POST /ocr, /docs) on this port of --host "
                         "(default 8080; a port already taken is logged and skipped)")
    ap.add_argument("--no-gateway", action="store_true", help="no PaddleX serving API port")
    ap.add_argument("--front-router", action="append", default=[], metavar="MODULE:ATTR",
                    help="an extra FastAPI APIRouter for the HTTP front (e.g. the documents endpoint); repeatable")
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args, extra = ap.parse_known_args(argv)
    opts = ServerOptions(args.model_repository, args.http_port, args.grpc_port, args.metrics_port, args.host,
                         args.log_verbose, extra, args.gpu, socket_dir=args.socket_dir)
    front, own_socket_dir = None, None
    if not args.no_front:
        if (args.tls_cert is None) != (args.tls_key is None):
            ap.error("--tls-cert and --tls-key go together")
        front = FrontSettings(args.host, args.http_port, args.grpc_port, args.grace_period, args.auth_token_file,
                              args.tls_cert, args.tls_key, not args.no_request_log,
                              request_bytes_limit(args.model_repository), tuple(args.front_router),
                              0 if args.no_gateway else args.gateway_port)
        internal_tcp = bool(args.internal_http_port or args.internal_grpc_port)
        if internal_tcp and opts.socket_dir is not None:
            ap.error("--socket-dir and --internal-http-port/--internal-grpc-port exclude each other")
        if internal_tcp:  # asked for: Triton on loopback TCP ports, admin APIs behind the key
            opts.http_port = args.internal_http_port or free_loopback_port()
            opts.grpc_port = args.internal_grpc_port or free_loopback_port()
        elif opts.socket_dir is None:  # the default: owner-only sockets, no key, no TCP door but the front's
            opts.socket_dir = own_socket_dir = private_socket_dir()
        opts.metrics_host, opts.host = opts.host, "127.0.0.1"
    elif args.auth_token_file or args.tls_cert:
        ap.error("--auth-token-file and --tls-cert are served by the front: drop --no-front")
    if opts.socket_dir is not None and len(str(opts.socket_path("grpc"))) > MAX_SOCKET_PATH:
        ap.error(f"--socket-dir {opts.socket_dir}: too long for a Unix socket path ({MAX_SOCKET_PATH} bytes)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s watchdog %(levelname)s %(message)s", stream=sys.stderr)
    try:
        if args.supervise:
            return Supervisor(opts, check_interval=args.check_interval, probe_interval=args.probe_interval,
                              probe_timeout=args.probe_timeout, probe_failures=args.probe_failures,
                              metrics_port=args.watchdog_metrics_port, front=front).run()
        return run_plain(opts, front)
    finally:
        if own_socket_dir is not None:
            shutil.rmtree(own_socket_dir, ignore_errors=True)


MAX_SOCKET_PATH = 107  # sun_path holds 108 bytes with the terminating NUL


def private_socket_dir() -> Path:
    """A new owner-only (0700) directory for Triton's sockets: under $XDG_RUNTIME_DIR (a per-user tmpfs)
    when there is one, else the temporary directory; /tmp if those make the socket paths too long."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    candidates = [runtime] if runtime and os.path.isdir(runtime) and os.access(runtime, os.W_OK) else []
    for base in [*candidates, None, "/tmp"]:
        path = Path(tempfile.mkdtemp(prefix="ocr-triton-", dir=base))
        if len(str(path / "grpc.sock:65535")) <= MAX_SOCKET_PATH:
            return path
        path.rmdir()
    raise SystemExit("no directory for Triton's Unix sockets with a short enough path: pass --socket-dir")


def free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_plain(opts: ServerOptions, front: FrontSettings | None) -> int:
    """tritonserver (and the front) without the watchdog; a signal drains the front, then stops the server."""
    cmd, env = server_command(opts)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            preexec_fn=_set_pdeathsig, start_new_session=front is not None)
    assert proc.stdout is not None
    log_thread = forward_lines(proc.stdout, sys.stderr.buffer, drop_cuda_noise=not opts.gpu,
                               drop_socket_noise=opts.socket_dir is not None)
    stopping = threading.Event()
    frontp = FrontProcess(front, opts) if front is not None else None
    if frontp is None:
        def forward(signum: int, _frame: object) -> None:
            proc.send_signal(signum)

        signal.signal(signal.SIGINT, forward)
        signal.signal(signal.SIGTERM, forward)
    else:
        signal.signal(signal.SIGINT, lambda *_: stopping.set())
        signal.signal(signal.SIGTERM, lambda *_: stopping.set())
        frontp.start()
        while not stopping.wait(0.25) and proc.poll() is None:
            pass
        frontp.drain()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    code = proc.wait()
    log_thread.join(timeout=5)
    return code


if __name__ == "__main__":
    sys.exit(main())
