"""Machine detection and the GPU preflight (fake nvidia-smi / libnvinfer; no GPU needed)."""
from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

from ocr_server.engines import environment  # noqa: E402
from ocr_server.engines.cli import main  # noqa: E402
from ocr_server.engines.environment import EnvironmentError_, find_trtexec, gpu_info, tensorrt_version  # noqa: E402
from ocr_server.engines.layout import RUNTIME_MODELS  # noqa: E402
from ocr_server.engines.manifest import EngineManifest, ModelEntry  # noqa: E402
from ocr_server.engines.preflight import PreflightError, preflight  # noqa: E402
from ocr_server.engines.profiles import load_profiles  # noqa: E402


def _exe(directory: Path, name: str, body: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(0o755)
    return path


@pytest.fixture()
def no_gpu(monkeypatch, tmp_path):
    """PATH without nvidia-smi, no tensorrt package, no libnvinfer."""
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    monkeypatch.setattr(environment, "_has_tensorrt_package", lambda: False)
    monkeypatch.setattr(environment, "LIB_DIRS", [])
    monkeypatch.setattr(environment, "_load_first", lambda names: None)
    monkeypatch.delenv("LD_LIBRARY_PATH", raising=False)


@pytest.fixture()
def t4(monkeypatch, tmp_path):
    """A fake Tesla T4 (nvidia-smi) with a fake TensorRT 10.4.0 library."""
    bindir = tmp_path / "bin"
    _exe(bindir, "nvidia-smi", 'echo "Tesla T4, 7.5"\n')
    libdir = tmp_path / "lib"
    libdir.mkdir()
    (libdir / "libnvinfer.so.10.4.0").write_bytes(b"")
    monkeypatch.setenv("PATH", f"{bindir}:/usr/bin:/bin")
    monkeypatch.setattr(environment, "_has_tensorrt_package", lambda: False)
    monkeypatch.setattr(environment, "LIB_DIRS", [str(libdir)])
    monkeypatch.delenv("LD_LIBRARY_PATH", raising=False)
    return tmp_path


def test_no_nvidia_smi_says_why(no_gpu):
    with pytest.raises(EnvironmentError_, match="no GPU: `nvidia-smi` is not on PATH"):
        gpu_info()


def test_no_tensorrt_says_what_to_install(no_gpu, monkeypatch):
    monkeypatch.setattr(environment.shutil, "which", lambda name: None)
    with pytest.raises(EnvironmentError_, match="no TensorRT"):
        tensorrt_version()


def test_fake_t4_is_detected(t4):
    assert gpu_info() == environment.GpuInfo("Tesla T4", "7.5", 0)
    version, where = tensorrt_version()
    assert version == "10.4.0" and where.endswith("libnvinfer.so.10.4.0")


def test_nvidia_smi_without_devices(monkeypatch, tmp_path):
    _exe(tmp_path / "bin", "nvidia-smi", 'echo "No devices were found" >&2; exit 6\n')
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    with pytest.raises(EnvironmentError_, match="No devices were found"):
        gpu_info()


def test_version_from_int():
    assert environment._version_from_int(100400) == "10.4.0"
    assert environment._version_from_int(8601) == "8.6.1"


def test_find_trtexec(monkeypatch, tmp_path):
    exe = _exe(tmp_path, "trtexec", "exit 0\n")
    monkeypatch.setenv("TRTEXEC", str(exe))
    assert find_trtexec() == str(exe)
    monkeypatch.setenv("TRTEXEC", str(tmp_path / "missing"))
    assert find_trtexec() is None


def _engines(root: Path, trt: str = "10.4.0.26", cc: str = "7.5") -> Path:
    entries = {}
    for model in RUNTIME_MODELS:
        plan = root / "v4" / model / "model.plan"
        plan.parent.mkdir(parents=True)
        plan.write_bytes(model.encode())
        entries[model] = ModelEntry(onnx=f"{model}.onnx", onnx_sha256="x", plan=f"{model}/model.plan",
                                    plan_sha256=hashlib.sha256(model.encode()).hexdigest())
    EngineManifest("v4", trt, "Tesla T4", cc, entries, load_profiles().sha256).write(root / "v4")
    return root


def test_preflight_ok_on_matching_machine(t4):
    report = preflight(_engines(t4 / "engines"), "v4", load_profiles())
    assert "Tesla T4" in report.summary() and "10.4.0" in report.summary()


def test_preflight_refuses_engines_from_another_machine(t4):
    with pytest.raises(PreflightError, match="engine built for TensorRT 10.4.0 on sm_86"):
        preflight(_engines(t4 / "engines", cc="8.6"), "v4", load_profiles())


def test_preflight_without_engines_says_how_to_build(t4):
    with pytest.raises(PreflightError, match="scripts/build_engines.sh --model-set v5"):
        preflight(t4 / "engines", "v5", load_profiles())


def test_preflight_cli_fails_fast_without_gpu(no_gpu, capsys):
    assert main(["preflight", "--model-set", "v4", "--engines", "build/engines"]) == 1
    err = capsys.readouterr().err
    assert "no GPU" in err and "CPU target" in err


def test_preflight_cli_on_this_machine_exits_quickly():
    """On a machine without a GPU the real CLI (python -m ocr_server.engines preflight) exits 1 with the reason."""
    res = subprocess.run([sys.executable, "-m", "ocr_server.engines", "preflight", "--model-set", "v4"], cwd=ROOT,
                         env={"PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, timeout=60)
    if res.returncode == 0:
        pytest.skip("this machine has a GPU, TensorRT and matching engines")
    assert res.returncode == 1 and "ocr-engines preflight:" in res.stderr
