"""Repository consistency: every config.pbtxt parses with tritonclient's model_config_pb2, the ensemble's
maps match the step configs (names, dtypes, ranks), the Python steps' `parameters` are accepted by
ppocr_steps.settings, and the CPU runtime configs match the fetched ONNX graphs."""
from __future__ import annotations

import ast
import json
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
from ocr_server import pbtxt  # noqa: E402
from ocr_server.paths import MODEL_MANIFEST  # noqa: E402

from ppocr_steps.det_preprocess import IMAGE_INFO_COLUMNS  # noqa: E402
from ppocr_steps.orientation import ORI_SIZE  # noqa: E402
from ppocr_steps.params import OcrParams  # noqa: E402
from ppocr_steps.recognize import CLS_SHAPE, load_dictionary  # noqa: E402
from ppocr_steps.settings import (  # noqa: E402
    STEP_SETTINGS,
    PostprocessSettings,
    PreprocessSettings,
    RecognitionSettings,
    defaults_from_parameters,
    settings_from_parameters,
)

ROOT = Path(__file__).resolve().parents[2]
ENSEMBLE_DIR = ROOT / "ensemble"
STEPS_DIR = ROOT / "python_backend" / "models"
TARGETS_DIR = ROOT / "model_repository"
RUNTIME_MODELS = ("det_model", "cls_model", "rec_model", "ori_model")
STEP_MODELS = ("det_preprocess", "det_postprocess", "rec_pipeline")
REC_PIPELINE_OWN_KEYS = {"dictionary", "cls_model_name", "rec_model_name"}
DET_PREPROCESS_OWN_KEYS = {"ori_model_name", "ori_labels"}
MODEL_SETS_DIR = ROOT / "build" / "models"
MODEL_SET_NAMES = list(json.loads(MODEL_MANIFEST.read_text())["sets"])

if TYPE_CHECKING:  # the generated module has no type information: ModelConfig is Any
    from tritonclient.grpc.model_config_pb2 import ModelConfig
else:
    ModelConfig = model_config_pb2.ModelConfig
DataType = model_config_pb2.DataType


def all_config_paths() -> list[Path]:
    paths = sorted(ENSEMBLE_DIR.glob("*/config.pbtxt")) + sorted(STEPS_DIR.glob("*/config.pbtxt"))
    return paths + sorted(TARGETS_DIR.glob("*/*/config.pbtxt"))


def targets() -> list[str]:
    """Target directories that hold at least one runtime config (cpu always; gpu once written)."""
    return sorted(p.name for p in TARGETS_DIR.iterdir() if p.is_dir() and any(p.glob("*/config.pbtxt")))


def load(path: Path) -> ModelConfig:
    return pbtxt.load(path)


def parameters(cfg: ModelConfig) -> dict[str, str]:
    return pbtxt.parameters(cfg)


def model_set(target: str) -> dict[str, ModelConfig]:
    """What server/ocr_server/assemble.py puts in a repository for `target`."""
    models = {"ocr": load(ENSEMBLE_DIR / "ocr" / "config.pbtxt")}
    for step in STEP_MODELS:
        models[step] = load(STEPS_DIR / step / "config.pbtxt")
    for name in RUNTIME_MODELS:
        path = TARGETS_DIR / target / name / "config.pbtxt"
        if path.exists():
            models[name] = load(path)
    return models


def signature(cfg: ModelConfig, tensor) -> tuple[str, list[int]]:
    """(dtype name, full dims including the implicit batch dimension when max_batch_size > 0)."""
    dims = list(tensor.dims)
    if cfg.max_batch_size > 0:
        dims = [-1, *dims]
    return DataType.Name(tensor.data_type), dims


def dims_compatible(a: list[int], b: list[int]) -> bool:
    return len(a) == len(b) and all(x == y or x < 0 or y < 0 for x, y in zip(a, b, strict=True))


def by_name(tensors) -> dict:
    return {t.name: t for t in tensors}


TARGETS = targets()


# ---------------------------------------------------------------- parsing

def test_expected_configs_exist() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in all_config_paths()}
    assert "ensemble/ocr/config.pbtxt" in names
    for step in STEP_MODELS:
        assert f"python_backend/models/{step}/config.pbtxt" in names
    for name in RUNTIME_MODELS:
        assert f"model_repository/cpu/{name}/config.pbtxt" in names
    assert "cpu" in TARGETS


@pytest.mark.parametrize("path", all_config_paths(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_config_parses_and_is_named_after_its_directory(path: Path) -> None:
    cfg = load(path)
    assert cfg.name == path.parent.name
    assert cfg.input and cfg.output
    for t in [*cfg.input, *cfg.output]:
        assert t.data_type != DataType.TYPE_INVALID, t.name
        assert len(t.dims) >= 1, t.name
        assert all(d == -1 or d > 0 for d in t.dims), (t.name, list(t.dims))
    assert len({t.name for t in cfg.input}) == len(cfg.input)
    assert len({t.name for t in cfg.output}) == len(cfg.output)


@pytest.mark.parametrize("target", TARGETS)
def test_target_has_every_runtime_model(target: str) -> None:
    for name in RUNTIME_MODELS:
        assert (TARGETS_DIR / target / name / "config.pbtxt").exists(), f"{target}/{name}"


# ---------------------------------------------------------------- ensemble

@pytest.mark.parametrize("target", TARGETS)
def test_ensemble_steps_match_their_configs(target: str) -> None:
    models = model_set(target)
    ens = models["ocr"]
    assert ens.platform == "ensemble" and ens.max_batch_size == 0
    producers: dict[str, tuple[str, list[int], str]] = {}
    for t in ens.input:
        producers[t.name] = (*signature(ens, t), "ensemble input")
    steps = ens.ensemble_scheduling.step
    assert [s.model_name for s in steps] == ["det_preprocess", "det_model", "det_postprocess", "rec_pipeline"]
    for step in steps:
        assert step.model_name in models, f"step model {step.model_name} missing in {target}"
        cfg = models[step.model_name]
        inputs, outputs = by_name(cfg.input), by_name(cfg.output)
        for key, tensor in step.input_map.items():
            assert key in inputs, f"{step.model_name} has no input {key!r}"
            assert tensor in producers, f"ensemble tensor {tensor!r} is consumed before it is produced"
            dtype, dims, who = producers[tensor]
            want_dtype, want_dims = signature(cfg, inputs[key])
            assert dtype == want_dtype, f"{tensor}: {who} gives {dtype}, {step.model_name}.{key} wants {want_dtype}"
            assert len(dims) == len(want_dims), f"{tensor}: rank {dims} vs {step.model_name}.{key} {want_dims}"
            assert dims_compatible(dims, want_dims), f"{tensor}: dims {dims} vs {step.model_name}.{key} {want_dims}"
        required = {t.name for t in cfg.input if not t.optional}
        assert required <= set(step.input_map.keys()), f"{step.model_name}: required inputs not mapped"
        for key, tensor in step.output_map.items():
            assert key in outputs, f"{step.model_name} has no output {key!r}"
            assert tensor not in producers, f"ensemble tensor {tensor!r} produced twice"
            producers[tensor] = (*signature(cfg, outputs[key]), f"{step.model_name}.{key}")
    for t in ens.output:
        assert t.name in producers, f"ensemble output {t.name} is never produced"
        dtype, dims, who = producers[t.name]
        assert (dtype, len(dims)) == (DataType.Name(t.data_type), len(t.dims)), f"{t.name} from {who}"
        assert dims_compatible(dims, list(t.dims))


def test_ensemble_inputs_are_the_first_steps_inputs() -> None:
    ens = load(ENSEMBLE_DIR / "ocr" / "config.pbtxt")
    first, last = ens.ensemble_scheduling.step[0], ens.ensemble_scheduling.step[-1]
    pre = load(STEPS_DIR / first.model_name / "config.pbtxt")
    rec = load(STEPS_DIR / last.model_name / "config.pbtxt")
    assert {t.name for t in ens.input} == {t.name for t in pre.input}
    assert dict(first.input_map) == {t.name: t.name for t in ens.input}
    pre_inputs = by_name(pre.input)
    for t in ens.input:
        p = pre_inputs[t.name]
        assert (t.data_type, list(t.dims), t.optional) == (p.data_type, list(p.dims), p.optional), t.name
    # per-line outputs come from the last step, per-image ones (source_index, page_index) from the first
    per_image = {t.name for t in pre.output} & {t.name for t in ens.output}
    assert per_image == {"source_index", "page_index", "angle"}
    assert {t.name for t in ens.output} == {t.name for t in rec.output} | per_image
    assert dict(last.output_map) == {t.name: t.name for t in rec.output}
    assert {k: v for k, v in first.output_map.items() if k in per_image} == {n: n for n in per_image}
    producer_outputs = {**by_name(rec.output), **{n: by_name(pre.output)[n] for n in per_image}}
    for t in ens.output:
        assert (t.data_type, list(t.dims)) == (producer_outputs[t.name].data_type,
                                               list(producer_outputs[t.name].dims))


def test_optional_inputs_are_exactly_the_request_parameters() -> None:
    """Every OcrParams field is an optional [1] input with the matching dtype, in the ensemble and in
    det_preprocess (whose model.py reads them by the OcrParams field names)."""
    dtype_of = {int: "TYPE_INT32", float: "TYPE_FP32", bool: "TYPE_BOOL", str: "TYPE_STRING"}
    defaults = defaults_from_parameters(parameters(load(STEPS_DIR / "det_preprocess" / "config.pbtxt")))
    for cfg in (load(ENSEMBLE_DIR / "ocr" / "config.pbtxt"), load(STEPS_DIR / "det_preprocess" / "config.pbtxt")):
        optional = {t.name: t for t in cfg.input if t.optional}
        assert set(optional) == {f.name for f in fields(OcrParams)}, cfg.name
        for name, t in optional.items():
            assert DataType.Name(t.data_type) == dtype_of[type(getattr(defaults, name))], (cfg.name, name)
            assert list(t.dims) == [1], (cfg.name, name)
        required = [t for t in cfg.input if not t.optional]
        assert [(t.name, DataType.Name(t.data_type), list(t.dims)) for t in required] == \
            [("image_bytes", "TYPE_STRING", [-1])]


def test_image_info_width_matches_the_package() -> None:
    for step in ("det_preprocess", "det_postprocess", "rec_pipeline"):
        cfg = load(STEPS_DIR / step / "config.pbtxt")
        tensors = by_name([*cfg.input, *cfg.output])
        assert list(tensors["image_info"].dims) == [-1, IMAGE_INFO_COLUMNS], step


# ---------------------------------------------------------------- python steps

def test_python_steps_parameters_accepted_by_settings() -> None:
    pre = parameters(load(STEPS_DIR / "det_preprocess" / "config.pbtxt"))
    settings_from_parameters(pre, PreprocessSettings, ignore=DET_PREPROCESS_OWN_KEYS)
    defaults_from_parameters(pre)  # default_* validate like a request
    assert any(k.startswith("default_") for k in pre)
    settings_from_parameters(parameters(load(STEPS_DIR / "det_postprocess" / "config.pbtxt")), PostprocessSettings)
    rec = parameters(load(STEPS_DIR / "rec_pipeline" / "config.pbtxt"))
    assert REC_PIPELINE_OWN_KEYS <= set(rec)
    settings_from_parameters(rec, RecognitionSettings, ignore=REC_PIPELINE_OWN_KEYS)


def test_python_steps_set_no_default_outside_det_preprocess() -> None:
    for step in ("det_postprocess", "rec_pipeline"):
        keys = parameters(load(STEPS_DIR / step / "config.pbtxt"))
        assert not [k for k in keys if k.startswith("default_")], step


def test_det_preprocess_defaults_are_valid_request_values() -> None:
    pre = parameters(load(STEPS_DIR / "det_preprocess" / "config.pbtxt"))
    defaults = defaults_from_parameters(pre)
    for f in fields(OcrParams):
        assert f"default_{f.name}" in pre, f"det_preprocess does not set default_{f.name}"
    assert isinstance(defaults, OcrParams)


def _string_constants(path: Path) -> set[str]:
    return {n.value for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Constant)
            and isinstance(n.value, str)}


@pytest.mark.parametrize("step", STEP_MODELS)
def test_model_py_uses_the_config_tensor_names(step: str) -> None:
    cfg = load(STEPS_DIR / step / "config.pbtxt")
    constants = _string_constants(STEPS_DIR / step / "1" / "model.py")
    params = {f.name for f in fields(OcrParams)}
    for t in [*cfg.input, *cfg.output]:
        if step == "det_preprocess" and getattr(t, "optional", False):
            assert t.name in params  # read through PARAM_INPUTS = OcrParams fields
            continue
        assert t.name in constants, f"{step}/1/model.py never names tensor {t.name!r}"


@pytest.mark.parametrize(("step", "keys"), [("rec_pipeline", REC_PIPELINE_OWN_KEYS),
                                            ("det_preprocess", DET_PREPROCESS_OWN_KEYS)])
def test_own_keys_match_model_py(step: str, keys: set[str]) -> None:
    tree = ast.parse((STEPS_DIR / step / "1" / "model.py").read_text())
    values = [ast.literal_eval(n.value) for n in ast.walk(tree) if isinstance(n, ast.Assign)
              and any(isinstance(t, ast.Name) and t.id == "OWN_KEYS" for t in n.targets)]
    assert values == [keys]


def step_overrides(target: str, step: str) -> dict[str, str]:
    """Per-target step parameters applied at assembly (`--param`), e.g. gpu/profiles.json step_parameters."""
    path = TARGETS_DIR / target / "profiles.json"
    if not path.exists():
        return {}
    return dict(json.loads(path.read_text()).get("step_parameters", {}).get(step, {}))


@pytest.mark.parametrize("target", TARGETS)
def test_target_step_overrides_are_valid_settings(target: str) -> None:
    for step in STEP_MODELS:
        base = parameters(load(STEPS_DIR / step / "config.pbtxt"))
        extra = step_overrides(target, step)
        assert set(extra) <= set(base), f"{target} overrides unknown {step} parameters {set(extra) - set(base)}"
        ignore = {"rec_pipeline": REC_PIPELINE_OWN_KEYS, "det_preprocess": DET_PREPROCESS_OWN_KEYS}.get(step, set())
        settings_from_parameters({**base, **extra}, STEP_SETTINGS[step], ignore=ignore)


@pytest.mark.parametrize("target", TARGETS)
def test_rec_pipeline_batches_fit_the_runtime_models(target: str) -> None:
    rec = {**parameters(load(STEPS_DIR / "rec_pipeline" / "config.pbtxt")), **step_overrides(target, "rec_pipeline")}
    s = settings_from_parameters(rec, RecognitionSettings, ignore=REC_PIPELINE_OWN_KEYS)
    models = model_set(target)
    cls_cfg, rec_cfg = models[rec["cls_model_name"]], models[rec["rec_model_name"]]
    assert 0 < s.cls_batch_size <= cls_cfg.max_batch_size, target
    assert 0 < s.rec_batch_size <= rec_cfg.max_batch_size, target
    # what rec_pipeline sends: cls [N,48,192,3], rec [N,rec_image_height,W,3] (UINT8 pixels)
    cls_in = by_name(cls_cfg.input)["cls_input"]
    assert dims_compatible(list(cls_in.dims), list(CLS_SHAPE)), target
    rec_in = by_name(rec_cfg.input)["rec_input"]
    assert dims_compatible(list(rec_in.dims), [s.rec_image_height, -1, 3]), target
    assert cls_in.data_type == rec_in.data_type == model_config_pb2.TYPE_UINT8, target
    assert list(by_name(cls_cfg.output)["cls_probs"].dims) == [2]
    assert models["det_model"].max_batch_size == 0  # the ensemble passes whole [N,3,H,W] batches


@pytest.mark.parametrize("target", TARGETS)
def test_det_preprocess_orientation_batches_fit_ori_model(target: str) -> None:
    pre = {**parameters(load(STEPS_DIR / "det_preprocess" / "config.pbtxt")),
           **step_overrides(target, "det_preprocess")}
    s = settings_from_parameters(pre, PreprocessSettings, ignore=DET_PREPROCESS_OWN_KEYS)
    ori = model_set(target)[pre["ori_model_name"]]
    assert 0 < s.ori_batch_size <= ori.max_batch_size, target
    ori_in = by_name(ori.input)["ori_input"]
    assert list(ori_in.dims) == [ORI_SIZE, ORI_SIZE, 3] and ori_in.data_type == model_config_pb2.TYPE_UINT8
    assert list(by_name(ori.output)["ori_probs"].dims) == [4]  # the labels 0/90/180/270


def test_rec_pipeline_dictionary_is_a_plain_file_name() -> None:
    rec = parameters(load(STEPS_DIR / "rec_pipeline" / "config.pbtxt"))
    assert rec["dictionary"] and "/" not in rec["dictionary"]


# ---------------------------------------------------------------- CPU runtime configs vs ONNX graphs

ONNX_TYPES = {1: "TYPE_FP32", 10: "TYPE_FP16", 6: "TYPE_INT32", 7: "TYPE_INT64", 2: "TYPE_UINT8"}
ROLES = {"det_model": "det", "cls_model": "cls", "rec_model": "rec", "ori_model": "ori"}


def _onnx_io(path: Path):
    onnx = pytest.importorskip("onnx")
    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}

    def describe(values):
        out = {}
        for v in values:
            if v.name in initializers:
                continue
            tt = v.type.tensor_type
            out[v.name] = (ONNX_TYPES.get(tt.elem_type, str(tt.elem_type)),
                           [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1 for d in tt.shape.dim])
        return out

    return describe(graph.input), describe(graph.output)


@pytest.mark.parametrize("model_set_name", MODEL_SET_NAMES)
@pytest.mark.parametrize("name", RUNTIME_MODELS)
def test_cpu_configs_match_onnx(model_set_name: str, name: str) -> None:
    path = MODEL_SETS_DIR / model_set_name / f"{ROLES[name]}.onnx"
    if not path.exists():
        pytest.skip(f"{path.relative_to(ROOT)} not fetched "
                    f"(server/ocr_server/fetch_models.py --model-set {model_set_name})")
    cfg = load(TARGETS_DIR / "cpu" / name / "config.pbtxt")
    assert len(cfg.input) == 1  # onnx_model.py feeds input[0] and returns the outputs in config order
    onnx_in, onnx_out = _onnx_io(path)
    assert list(onnx_out) == [t.name for t in cfg.output], f"{path.name}: {list(onnx_out)} vs config"
    for tensor, graph_side in [(cfg.input[0], onnx_in)] + [(t, onnx_out) for t in cfg.output]:
        assert tensor.name in graph_side, f"{path.name}: {list(graph_side)} vs config {tensor.name}"
        dtype, dims = signature(cfg, tensor)
        g_dtype, g_dims = graph_side[tensor.name]
        assert dtype == g_dtype, (tensor.name, dtype, g_dtype)
        assert len(dims) == len(g_dims), (tensor.name, dims, g_dims)
        assert dims_compatible(dims, g_dims), (tensor.name, dims, g_dims)


@pytest.mark.parametrize("model_set_name", MODEL_SET_NAMES)
def test_dictionary_matches_rec_output_classes(model_set_name: str) -> None:
    directory = MODEL_SETS_DIR / model_set_name
    if not (directory / "original" / "rec.onnx").exists() or not (directory / "dict.txt").exists():
        pytest.skip(f"build/models/{model_set_name} not fetched")
    _, out = _onnx_io(directory / "original" / "rec.onnx")  # the softmax [N,T,C] the served graph reduces
    (classes,) = [dims[-1] for dims in (d for _, d in out.values())]
    if classes < 0:
        pytest.skip("rec output class dimension is dynamic in this graph")
    assert len(load_dictionary(str(directory / "dict.txt"))) == classes


@pytest.mark.parametrize("model_set_name", MODEL_SET_NAMES)
def test_model_set_defaults_are_valid_parameters(model_set_name: str) -> None:
    """A set's `config` (its defaults, server/ocr_server/models.json) names existing parameters of existing models,
    and the merged parameters parse: settings, and default_* as a request's values."""
    manifest = json.loads(MODEL_MANIFEST.read_text())["sets"][model_set_name]
    spec = {**manifest["config"], **manifest.get("cpu_config", {})}
    assert not any(k.split(".")[0] in RUNTIME_MODELS for k in manifest["config"]), \
        "runtime-model settings differ per target: put them in cpu_config / gpu_config"
    merged = {m: parameters(load(STEPS_DIR / m / "config.pbtxt")) for m in STEP_MODELS}
    runtime = {m: parameters(load(TARGETS_DIR / "cpu" / m / "config.pbtxt")) for m in RUNTIME_MODELS}
    for dotted, value in spec.items():
        if dotted.startswith("_"):
            continue
        model, key = dotted.split(".", 1)
        if model in runtime:  # a CPU runtime model's setting, e.g. its inference precision
            assert key in runtime[model], f"{model_set_name}: {dotted} is no parameter of {model}"
            continue
        assert model in merged and key in merged[model], f"{model_set_name}: {dotted} is no parameter of a step"
        merged[model][key] = value
    for model in STEP_MODELS:
        settings_from_parameters(merged[model], STEP_SETTINGS[model],
                                 ignore=REC_PIPELINE_OWN_KEYS | DET_PREPROCESS_OWN_KEYS)
    defaults = defaults_from_parameters(merged["det_preprocess"])
    for field in ("limit_side_len", "limit_type", "thresh", "box_thresh", "unclip_ratio",
                  "use_textline_orientation", "text_rec_score_thresh"):  # every set states its own defaults
        assert f"det_preprocess.default_{field}" in spec, (model_set_name, field)
    assert str(defaults.thresh) == spec["det_preprocess.default_thresh"]
