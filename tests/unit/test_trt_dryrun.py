"""`scripts/build_engines.sh --dry-run` prints complete trtexec commands without TensorRT or models."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

from ocr_server.engines.profiles import load_profiles, shape_spec  # noqa: E402


def _dry_run(*args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "TRTEXEC"}
    env["PATH"] = "/usr/bin:/bin"  # no trtexec, no nvidia-smi
    env["PYTHON"] = sys.executable
    res = subprocess.run(["bash", str(ROOT / "scripts" / "build_engines.sh"), "--dry-run", *args], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return res.stdout


def _commands(text: str) -> dict[str, str]:
    """model -> its trtexec command joined on one line."""
    joined = text.replace("\\\n", " ")
    out = {}
    for line in joined.splitlines():
        if line.startswith("trtexec ") and "--layerPrecisions" not in line:
            m = re.search(r"engines/v\d/(\w+)/model\.plan", line)
            assert m, line
            out[m.group(1)] = line
    return out


@pytest.mark.parametrize("model_set", ["v4", "v5"])
def test_dry_run_prints_complete_trtexec_builds(model_set):
    out = _dry_run("--model-set", model_set)
    cmds = _commands(out)
    profiles = load_profiles()
    assert set(cmds) == {"det_model", "cls_model", "rec_model", "ori_model"}
    for model, cmd in cmds.items():
        p = profiles[model]
        for flag in (f"--onnx=build/models/{model_set}/{p.onnx}", f"--saveEngine=build/engines/{model_set}/{model}/"
                     "model.plan", "--fp16", f"--minShapes={p.input}:{shape_spec(p.min)}",
                     f"--optShapes={p.input}:{shape_spec(p.opt)}", f"--maxShapes={p.input}:{shape_spec(p.max)}",
                     "--memPoolSize=workspace:2048", "--skipInference"):
            assert flag in cmd, (model, flag)
        assert f"mkdir -p build/engines/{model_set}/{model}" in out
    # the detector takes the resized uint8 image, NHWC; trtexec keeps the graph's I/O types
    assert "--maxShapes=det_input:4x4000x4000x3" in cmds["det_model"] and "IOFormats" not in out
    assert "det_input uint8 NHWC" in out and "-> rec_char_ids, rec_char_probs" in out
    assert "trtexec not found" in out and "manifest.json" in out


def test_dry_run_without_fetched_models(tmp_path):
    out = _dry_run("--model-set", "v5", "--models-dir", str(tmp_path / "nothing"), "--workspace", "4096",
                   "--gpu-target", "sm_75")
    assert out.count("not fetched yet: run ocr-fetch-models --model-set v5") == 4
    assert len(_commands(out)) == 4 and "--memPoolSize=workspace:4096" in out and "compute capability sm_75" in out


def test_dry_run_precision_fp32_and_subset():
    out = _dry_run("--model-set", "v4", "--precision", "fp32", "--models", "rec_model")
    cmds = _commands(out)
    assert list(cmds) == ["rec_model"] and "--fp16" not in cmds["rec_model"]


def test_fallback_command_pins_layerprecisions():
    if not (ROOT / "build" / "models" / "v4" / "rec.onnx").exists():
        pytest.skip("models not fetched")
    pytest.importorskip("onnx")
    out = _dry_run("--model-set", "v4", "--models", "rec_model", "--show-fallback")
    fallback = [line for line in out.replace("\\\n", " ").splitlines() if "--layerPrecisions" in line]
    assert fallback and "--precisionConstraints=obey" in fallback[0] and "ReduceMean" in fallback[0]


def test_help_and_bad_option():
    res = subprocess.run(["bash", str(ROOT / "scripts" / "build_engines.sh"), "--help"], cwd=ROOT,
                         env={**os.environ, "PYTHON": sys.executable}, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "--dry-run" in res.stdout and "--gpu-target" in res.stdout
    res = subprocess.run(["bash", str(ROOT / "scripts" / "build_engines.sh"), "--model-set", "v9"], cwd=ROOT,
                         env={**os.environ, "PYTHON": sys.executable}, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "invalid choice" in res.stderr
