"""What this machine has: GPU (name, compute capability), TensorRT version, trtexec.

Nothing here needs the `tensorrt` Python package: the TensorRT version also comes from the
`libnvinfer.so.X.Y.Z` file name, `getInferLibVersion()` through ctypes, or dpkg, which is what the
tritonserver image has.
"""
from __future__ import annotations

import ctypes
import glob
import importlib.util
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["GpuInfo", "EnvironmentError_", "gpu_info", "tensorrt_version", "find_trtexec", "has_module", "LIB_DIRS"]

LIB_DIRS = ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/local/tensorrt/lib",
            "/opt/tensorrt/lib", "/usr/local/cuda/lib64", "/usr/lib64"]
TRTEXEC_CANDIDATES = ["/usr/src/tensorrt/bin/trtexec", "/opt/tensorrt/bin/trtexec", "/workspace/tensorrt/bin/trtexec",
                      "/usr/local/tensorrt/bin/trtexec"]


class EnvironmentError_(RuntimeError):
    """This machine cannot build or serve the GPU target (the message says what is missing)."""


@dataclass(frozen=True)
class GpuInfo:
    name: str
    compute_capability: str  # "7.5"
    index: int = 0


def _run(cmd: list[str], timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def gpu_info(index: int = 0) -> GpuInfo:
    """Name and compute capability of GPU `index` via nvidia-smi (CUDA runtime as a fallback)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        raise EnvironmentError_("no GPU: `nvidia-smi` is not on PATH. The GPU target needs an NVIDIA GPU with its "
                                "driver (inside Docker: run with --gpus all and the NVIDIA Container Toolkit); "
                                "use the CPU target (scripts/serve.sh without --gpu) on this machine")
    res = _run([smi, "--query-gpu=name,compute_cap", "--format=csv,noheader", "-i", str(index)])
    if res.returncode == 0 and res.stdout.strip():
        name, _, cc = res.stdout.strip().splitlines()[0].rpartition(",")
        if name.strip() and cc.strip() and cc.strip()[0].isdigit():
            return GpuInfo(name.strip(), cc.strip(), index)
    res_name = _run([smi, "--query-gpu=name", "--format=csv,noheader", "-i", str(index)])
    if res_name.returncode != 0 or not res_name.stdout.strip():
        detail = (res_name.stderr or res_name.stdout or res.stderr).strip()
        raise EnvironmentError_(f"no usable GPU {index}: nvidia-smi failed ({detail or 'no device listed'}); check "
                                "the driver, `nvidia-smi -L`, and that the container was started with --gpus")
    return GpuInfo(res_name.stdout.strip().splitlines()[0].strip(), _cc_from_cudart(index), index)


def _load_first(names: list[str]) -> ctypes.CDLL | None:
    for name in names:
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


def _cc_from_cudart(index: int) -> str:
    """Compute capability via cudaDeviceGetAttribute (older drivers lack nvidia-smi's compute_cap field)."""
    lib = _load_first(["libcudart.so", "libcudart.so.12", "libcudart.so.11.0",
                       *sorted(glob.glob("/usr/local/cuda*/lib64/libcudart.so*"))])
    if lib is None:
        raise EnvironmentError_("cannot read the GPU compute capability: nvidia-smi has no compute_cap field and "
                                "libcudart is not loadable; update the NVIDIA driver or install the CUDA runtime")
    major, minor = ctypes.c_int(), ctypes.c_int()
    # cudaDevAttrComputeCapabilityMajor = 75, ...Minor = 76
    if lib.cudaDeviceGetAttribute(ctypes.byref(major), 75, index) or \
            lib.cudaDeviceGetAttribute(ctypes.byref(minor), 76, index):
        raise EnvironmentError_(f"cudaDeviceGetAttribute failed for GPU {index}")
    return f"{major.value}.{minor.value}"


def _version_from_int(v: int) -> str:
    if v >= 100000:  # TensorRT >= 10: major*10000 + minor*100 + patch
        return f"{v // 10000}.{(v // 100) % 100}.{v % 100}"
    return f"{v // 1000}.{(v // 100) % 10}.{v % 100}"  # TensorRT 8.x


def has_module(name: str) -> bool:
    """True when `import name` would find a module (already imported ones included)."""
    if name in sys.modules:
        return sys.modules[name] is not None
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _has_tensorrt_package() -> bool:
    return has_module("tensorrt")


def tensorrt_version() -> tuple[str, str]:
    """(version, where it came from). Raises EnvironmentError_ when no TensorRT is installed."""
    if _has_tensorrt_package():
        try:
            import tensorrt  # noqa: PLC0415  (lazy on purpose)
            return str(tensorrt.__version__), "python package tensorrt"
        except Exception:  # a broken wheel: fall through to the library
            pass
    dirs = [d for d in os.environ.get("LD_LIBRARY_PATH", "").split(":") if d] + LIB_DIRS
    for d in dirs:
        for path in sorted(glob.glob(os.path.join(d, "libnvinfer.so.*.*.*")), reverse=True):
            parts = Path(path).name.split(".so.", 1)[1].split(".")
            if len(parts) >= 3 and all(p.isdigit() for p in parts[:3]):
                return ".".join(parts[:3]), path
    lib = _load_first(["libnvinfer.so.10", "libnvinfer.so", "libnvinfer.so.8"])
    if lib is not None:
        try:
            return _version_from_int(int(lib.getInferLibVersion())), "libnvinfer getInferLibVersion()"
        except AttributeError:
            pass
    if shutil.which("dpkg-query"):
        for pkg in ("libnvinfer10", "libnvinfer8", "tensorrt"):
            res = _run(["dpkg-query", "-W", "-f=${Version}", pkg])
            if res.returncode == 0 and res.stdout.strip():
                return res.stdout.strip().split("-")[0], f"dpkg {pkg}"
    raise EnvironmentError_("no TensorRT: neither the `tensorrt` Python package nor libnvinfer.so was found. Run "
                            "inside the NGC image (docker/Dockerfile) or install TensorRT 10.x "
                            "(docs/gpu.md lists the image / TensorRT pairs)")


def find_trtexec() -> str | None:
    """$TRTEXEC, `trtexec` on PATH, or the usual NGC / tarball locations."""
    env = os.environ.get("TRTEXEC")
    if env:
        return env if os.access(env, os.X_OK) else None
    found = shutil.which("trtexec")
    if found:
        return found
    for cand in TRTEXEC_CANDIDATES:
        if os.access(cand, os.X_OK):
            return cand
    return None
