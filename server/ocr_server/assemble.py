#!/usr/bin/env python3
"""Assemble a Triton model repository for one target and model set.

    python server/ocr_server/assemble.py --target cpu --model-set v4 --out build/model_repository

Sources: ensemble/ocr (the public ensemble), python_backend/models/* (the Python steps),
model_repository/<target>/* (det_model, cls_model, rec_model for that target), build/models/<set>
(fetched ONNX + dictionary, server/ocr_server/fetch_models.py) and, for --target gpu, build/engines/<set>
(TensorRT plans, scripts/build_engines.sh). `--param MODEL.KEY=VALUE` overrides a config
`parameters` entry in the assembled copy (unknown keys are refused). Parameter layers, later ones
winning: config.pbtxt, the model set's `config` in models.json, (gpu) profiles.json `step_parameters`,
--param. The effective parameters of every model are printed.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

from ocr_server import pbtxt
from ocr_server.manifest import default_model_set, model_set_names
from ocr_server.manifest import model_set as manifest_set
from ocr_server.paths import REPO_ROOT as ROOT

STEPS = ["det_preprocess", "det_postprocess", "rec_pipeline"]
RUNTIME = {"det_model": "det", "cls_model": "cls", "rec_model": "rec", "ori_model": "ori"}
# Limits set once (in their source model's config) and copied into the models that also enforce them
# (ppocr_steps.settings.InputLimits): every step and CPU runtime model can be called directly, and is
# bounded like the `ocr` path.
SHARED_LIMITS = {
    ("det_preprocess", ("max_images_per_request", "max_image_pixels", "min_image_side", "max_side_limit",
                        "min_side_len", "max_batch_pixels")): ("det_postprocess", "rec_pipeline", *RUNTIME),
    ("det_postprocess", ("max_boxes_per_request",)): ("rec_pipeline", *RUNTIME),
    ("rec_pipeline", ("rec_image_height", "rec_max_width")): ("det_postprocess", *RUNTIME),
}


def link_or_copy(src: Path, dst: Path) -> None:
    if not src.exists():
        raise SystemExit(f"missing {src}: run server/ocr_server/fetch_models.py (or scripts/build_engines.sh for gpu)")
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists() or dst.is_symlink():
        dst.unlink()
    dst.symlink_to(src.resolve())


def source_configs(target: str) -> dict[str, Path]:
    """The config.pbtxt each model of the repository is assembled from."""
    configs: dict[str, Path] = {"ocr": ROOT / "ensemble" / "ocr" / "config.pbtxt"}
    for step in STEPS:
        configs[step] = ROOT / "python_backend" / "models" / step / "config.pbtxt"
    for model in RUNTIME:
        configs[model] = ROOT / "model_repository" / target / model / "config.pbtxt"
    return configs


def parameter_layers(target: str, model_set: str,
                     overrides: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """{model: {key: value}} to set over config.pbtxt: the model set's manifest `config` and its
    `<target>_config` (settings of that target's runtime models), then (gpu) profiles.json
    `step_parameters`, then `overrides` (--param); later layers win."""
    merged: dict[str, dict[str, str]] = {}
    spec = manifest_set(model_set)
    for dotted, value in {**spec.get("config", {}), **spec.get(f"{target}_config", {})}.items():
        if dotted.startswith("_"):  # a note (where the set's defaults come from)
            continue
        model, key = dotted.split(".", 1)
        merged.setdefault(model, {})[key] = str(value)
    if target == "gpu":  # shapes the TensorRT profiles cover (model_repository/gpu/profiles.json)
        profiles = json.loads((ROOT / "model_repository" / "gpu" / "profiles.json").read_text())
        for model, values in profiles.get("step_parameters", {}).items():
            if isinstance(values, dict):
                merged.setdefault(model, {}).update(values)
    for model, values in overrides.items():
        merged.setdefault(model, {}).update(values)
    return merged


def step_instances(target: str) -> dict[str, int]:
    """Instance counts of the Python steps on `target` (gpu: model_repository/gpu/step_instances.json;
    kept out of profiles.json, whose hash is bound to the built engines)."""
    if target != "gpu":
        return {}
    counts = json.loads((ROOT / "model_repository" / "gpu" / "step_instances.json").read_text())
    instances = {m: int(n) for m, n in counts.items() if m != "doc"}
    if set(instances) - set(STEPS) or any(n < 1 for n in instances.values()):
        raise SystemExit(f"step_instances.json: positive counts of {STEPS} expected, got {instances}")
    return instances


def effective_configs(target: str, model_set: str, overrides: dict[str, dict[str, str]] | None = None,
                      instances: dict[str, int] | None = None) -> dict[str, pbtxt.ModelConfig]:
    """Every model's config as it will be served: config.pbtxt + manifest + profiles + --param;
    `instances` ({model: count}) overrides instance counts (after step_instances.json on the GPU)."""
    sources = source_configs(target)
    layers = parameter_layers(target, model_set, overrides or {})
    unknown = set(layers) - set(sources)
    if unknown:
        raise SystemExit(f"--param names unknown model(s) {sorted(unknown)}; models: {sorted(sources)}")
    requested = instances or {}
    if set(requested) - set(sources) or any(n < 1 for n in requested.values()):
        raise SystemExit(f"instance counts must be >= 1 for known models {sorted(sources)}, got {requested}")
    counts = {**step_instances(target), **requested}
    configs = {}
    for name, src in sources.items():
        config = pbtxt.load(src)
        try:
            pbtxt.set_parameters(config, layers.get(name, {}))
        except KeyError as exc:
            raise SystemExit(f"--param {name}: {exc.args[0]} (in {src.relative_to(ROOT)})") from None
        if name in counts:
            if len(config.instance_group) != 1:
                raise SystemExit(f"{src.relative_to(ROOT)}: one instance_group expected to set its count")
            config.instance_group[0].count = counts[name]
        configs[name] = config
    share_limits(configs, target)
    return configs


def share_limits(configs: dict[str, pbtxt.ModelConfig], target: str) -> None:
    """Copy SHARED_LIMITS from their source config into the configs that enforce them as well."""
    for (source, keys), receivers in SHARED_LIMITS.items():
        values = {key: pbtxt.parameters(configs[source])[key] for key in keys}
        for receiver in receivers:
            if receiver in RUNTIME and target != "cpu":  # TensorRT: the engine profiles bound the shapes
                continue
            for key, value in values.items():
                configs[receiver].parameters[key].string_value = value


def describe_parameters(configs: dict[str, pbtxt.ModelConfig]) -> str:
    """The effective `parameters` of each model, one `model.key = value` per line."""
    lines = [f"{name}.{key} = {value}" for name, config in configs.items()
             for key, value in pbtxt.parameters(config).items()]
    return "\n".join(lines)


def request_defaults(configs: dict[str, pbtxt.ModelConfig]) -> dict[str, str]:
    """The per-request defaults a repository serves: det_preprocess's `default_<name>` parameters."""
    params = pbtxt.parameters(configs["det_preprocess"])
    return {key.removeprefix("default_"): value for key, value in params.items() if key.startswith("default_")}


def assemble(target: str, model_set: str, out: Path, overrides: dict[str, dict[str, str]],
             models_dir: Path, engines_dir: Path, instances: dict[str, int] | None = None) -> Path:
    configs = effective_configs(target, model_set, overrides, instances)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for name, config in configs.items():
        (out / name / "1").mkdir(parents=True)
        pbtxt.write(config, out / name / "config.pbtxt",
                    f"Assembled by ocr-assemble ({target}, {model_set}); edit the source, not this copy.")
    for step in STEPS:
        shutil.copy(ROOT / "python_backend" / "models" / step / "1" / "model.py", out / step / "1" / "model.py")
    link_or_copy(models_dir / model_set / "dict.txt", out / "rec_pipeline" / "1" / "dict.txt")
    link_or_copy(models_dir / model_set / "ori_labels.txt", out / "det_preprocess" / "1" / "ori_labels.txt")
    for model, role in RUNTIME.items():
        if target == "cpu":
            shutil.copy(ROOT / "model_repository" / "cpu" / "onnx_model.py", out / model / "1" / "model.py")
            link_or_copy(models_dir / model_set / f"{role}.onnx", out / model / "1" / "model.onnx")
            link_or_copy(models_dir / model_set / f"{role}.openvino.onnx", out / model / "1" / "model.openvino.onnx")
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
    print(f"model repository ({args.target}, {args.model_set}) assembled in {out}; effective parameters:")
    print(describe_parameters(pbtxt.load_repository(out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
