#!/usr/bin/env python3
"""Assemble a Triton model repository for one target and model set.

    python server/ocr_server/assemble.py --target cpu --model-set v4 --out build/model_repository

Sources: ensemble/ocr (the public ensemble), python_backend/models/* (the Python steps),
model_repository/<target>/* (det_model, cls_model, rec_model for that target), build/models/<set>
(fetched ONNX + dictionary, server/ocr_server/fetch_models.py) and, for --target gpu, build/engines/<set>
(TensorRT plans, scripts/build_engines.sh). `--param MODEL.KEY=VALUE` overrides a config
`parameters` entry in the assembled copy (unknown keys are refused).
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

from ocr_server.manifest import default_model_set, model_set_names
from ocr_server.paths import MODEL_MANIFEST, REPO_ROOT as ROOT
STEPS = ["det_preprocess", "det_postprocess", "rec_pipeline"]
RUNTIME = {"det_model": "det", "cls_model": "cls", "rec_model": "rec"}


def set_parameter(config_text: str, key: str, value: str, where: str) -> str:
    pattern = re.compile(r'(\{\s*key:\s*"' + re.escape(key) + r'"\s*value\s*\{\s*string_value:\s*")([^"]*)(")')
    if not pattern.search(config_text):
        raise SystemExit(f"--param {where}.{key}: no parameter '{key}' in {where}/config.pbtxt")
    return pattern.sub(lambda m: m.group(1) + value + m.group(3), config_text)


def link_or_copy(src: Path, dst: Path) -> None:
    if not src.exists():
        raise SystemExit(f"missing {src}: run server/ocr_server/fetch_models.py (or scripts/build_engines.sh for gpu)")
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists() or dst.is_symlink():
        dst.unlink()
    dst.symlink_to(src.resolve())


def assemble(target: str, model_set: str, out: Path, overrides: dict[str, dict[str, str]],
             models_dir: Path, engines_dir: Path) -> Path:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    configs: dict[str, Path] = {"ocr": ROOT / "ensemble" / "ocr" / "config.pbtxt"}
    for step in STEPS:
        configs[step] = ROOT / "python_backend" / "models" / step / "config.pbtxt"
    for model in RUNTIME:
        configs[model] = ROOT / "model_repository" / target / model / "config.pbtxt"
    set_config = json.loads(MODEL_MANIFEST.read_text())["sets"][model_set].get("config", {})
    merged: dict[str, dict[str, str]] = {}
    for dotted, value in set_config.items():
        model, key = dotted.split(".", 1)
        merged.setdefault(model, {})[key] = value
    if target == "gpu":  # shapes the TensorRT profiles cover (model_repository/gpu/profiles.json)
        profiles = json.loads((ROOT / "model_repository" / "gpu" / "profiles.json").read_text())
        for model, values in profiles.get("step_parameters", {}).items():
            if isinstance(values, dict):
                merged.setdefault(model, {}).update(values)
    for model, values in overrides.items():
        merged.setdefault(model, {}).update(values)
    overrides = merged
    unknown = set(overrides) - set(configs)
    if unknown:
        raise SystemExit(f"--param names unknown model(s) {sorted(unknown)}; models: {sorted(configs)}")
    for name, src in configs.items():
        text = src.read_text()
        for key, value in overrides.get(name, {}).items():
            text = set_parameter(text, key, value, name)
        (out / name / "1").mkdir(parents=True)
        (out / name / "config.pbtxt").write_text(text)
    for step in STEPS:
        shutil.copy(ROOT / "python_backend" / "models" / step / "1" / "model.py", out / step / "1" / "model.py")
    link_or_copy(models_dir / model_set / "dict.txt", out / "rec_pipeline" / "1" / "dict.txt")
    for model, role in RUNTIME.items():
        if target == "cpu":
            shutil.copy(ROOT / "model_repository" / "cpu" / "onnx_model.py", out / model / "1" / "model.py")
            link_or_copy(models_dir / model_set / f"{role}.onnx", out / model / "1" / "model.onnx")
        else:
            link_or_copy(engines_dir / model_set / model / "model.plan", out / model / "1" / "model.plan")
    (out / "MODEL_SET").write_text(f"{model_set} {target}\n")
    return out


def parse_overrides(items: list[str]) -> dict[str, dict[str, str]]:
    result: dict[str, dict[str, str]] = {}
    for item in items:
        m = re.fullmatch(r"([a-z_]+)\.([a-z_0-9]+)=(.*)", item)
        if not m:
            raise SystemExit(f"--param {item!r}: expected MODEL.KEY=VALUE, e.g. rec_pipeline.rec_batch_size=8")
        result.setdefault(m.group(1), {})[m.group(2)] = m.group(3)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", choices=["cpu", "gpu"], default="cpu")
    ap.add_argument("--model-set", choices=model_set_names(), default=default_model_set())
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "model_repository")
    ap.add_argument("--models-dir", type=Path, default=ROOT / "build" / "models")
    ap.add_argument("--engines-dir", type=Path, default=ROOT / "build" / "engines")
    ap.add_argument("--param", action="append", default=[], metavar="MODEL.KEY=VALUE",
                    help="override a config.pbtxt parameter in the assembled copy (repeatable)")
    args = ap.parse_args(argv)
    out = assemble(args.target, args.model_set, args.out, parse_overrides(args.param), args.models_dir,
                   args.engines_dir)
    print(f"model repository ({args.target}, {args.model_set}) assembled in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
