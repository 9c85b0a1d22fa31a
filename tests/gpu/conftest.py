"""GPU tests: marked `gpu`, skipped with the reason when there is no GPU / TensorRT / engines."""
from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "gpu: needs an NVIDIA GPU and TensorRT 10.x (skipped otherwise)")


def gpu_skip_reason() -> str:
    """'' when a GPU and the TensorRT Python package are usable, else why not."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return "no NVIDIA GPU: nvidia-smi is not on PATH"
    res = subprocess.run([smi, "-L"], capture_output=True, text=True, check=False)
    if res.returncode != 0 or "GPU" not in res.stdout:
        return f"nvidia-smi lists no GPU ({(res.stderr or res.stdout).strip()})"
    if importlib.util.find_spec("tensorrt") is None:
        return "the TensorRT Python package is not installed (run inside the NGC TensorRT image, see docs/gpu.md)"
    return ""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = gpu_skip_reason()
    if not reason:
        return
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        # the marker, not the keywords: a test parametrized with "gpu" (a target, an overlay) runs anywhere
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)
