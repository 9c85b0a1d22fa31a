"""GPU-target model configs: they parse, follow the tensor contract, match the ONNX graphs and the
engine profiles, and the assembled GPU repository keeps every shape inside the profiles."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")

from ocr_server import pbtxt  # noqa: E402
from ocr_server.engines.layout import MODEL_SETS, RUNTIME_MODELS  # noqa: E402
from ocr_server.engines.profiles import load_profiles  # noqa: E402

GPU = ROOT / "model_repository" / "gpu"
CONFIGS = sorted(GPU.glob("**/config.pbtxt"))

# the contract of docs/architecture.md ("Runtime models"): name -> (data type, dims)
CONTRACT: dict[str, dict[str, Any]] = {
    "det_model": {"max_batch": 0, "inputs": {"det_input": ("UINT8", [-1, -1, -1, 3])},
                  "outputs": {"prob_map": ("UINT8", [-1, 1, -1, -1])}},
    "cls_model": {"max_batch": "positive", "inputs": {"cls_input": ("UINT8", [48, 192, 3])},
                  "outputs": {"cls_probs": ("FP32", [2])}},
    "rec_model": {"max_batch": "positive", "inputs": {"rec_input": ("UINT8", [48, -1, 3])},
                  "outputs": {"rec_char_ids": ("INT32", [-1]), "rec_char_probs": ("FP32", [-1])}},
    "ori_model": {"max_batch": "positive", "inputs": {"ori_input": ("UINT8", [224, 224, 3])},
                  "outputs": {"ori_probs": ("FP32", [4])}},
}
# ONNX TensorProto element type / onnxruntime type -> Triton data type (without TYPE_)
ONNX_TYPES = {1: "FP32", 2: "UINT8", 6: "INT32"}
ORT_TYPES = {"tensor(float)": "FP32", "tensor(uint8)": "UINT8", "tensor(int32)": "INT32"}
PROFILE_TYPES = {"float32": "FP32", "uint8": "UINT8"}


def _parse(path: Path):
    return pbtxt.load(path)


def _dtype(t) -> str:
    """A config tensor's data type without the TYPE_ prefix: 'FP32', 'UINT8', 'INT32'."""
    return model_config_pb2.DataType.Name(t.data_type).removeprefix("TYPE_")


@pytest.fixture(scope="module")
def configs():
    return {p.parent.name: _parse(p) for p in CONFIGS}


@pytest.fixture(scope="module")
def profiles():
    return load_profiles()


def test_every_gpu_config_parses():
    assert {p.parent.name for p in CONFIGS} == set(RUNTIME_MODELS)
    for path in CONFIGS:
        _parse(path)  # raises on any unknown field / syntax error


@pytest.mark.parametrize("model", list(RUNTIME_MODELS))
def test_contract(configs, model):
    cfg, want = configs[model], CONTRACT[model]
    assert cfg.name == model
    assert cfg.platform == "tensorrt_plan" and cfg.backend in ("", "tensorrt")
    assert cfg.instance_group and all(g.kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
                                      for g in cfg.instance_group)
    if want["max_batch"] == 0:
        assert cfg.max_batch_size == 0 and not cfg.HasField("dynamic_batching")
    else:
        assert cfg.max_batch_size > 0 and cfg.HasField("dynamic_batching")
        db = cfg.dynamic_batching
        # one rec_pipeline instance sends one chunk at a time: a preferred size is only formed by chance
        assert not db.preferred_batch_size
        assert 0 < db.max_queue_delay_microseconds <= 500  # short: the crops of one page are one chunk already
    for tensors, expected in ((cfg.input, want["inputs"]), (cfg.output, want["outputs"])):
        assert {t.name: (_dtype(t), list(t.dims)) for t in tensors} == expected


def _doc_table() -> dict[str, tuple[list[tuple[str, str, int]], list[tuple[str, str, int]]]]:
    """docs/architecture.md runtime-model rows -> ([(name, dtype, rank)] of the inputs, the same of the outputs)."""
    doc = (ROOT / "docs" / "architecture.md").read_text()
    tensor = re.compile(r"`(\w+)` (\w+) \[([^\]]*)\]")
    rows: dict[str, tuple[list[tuple[str, str, int]], list[tuple[str, str, int]]]] = {}
    for m in re.finditer(r"^\| `(\w+_model)` \|([^|]*)\|([^|]*)\|", doc, re.M):
        inputs, outputs = ([(name, dt, len(dims.split(","))) for name, dt, dims in tensor.findall(cell)]
                           for cell in (m.group(2), m.group(3)))
        rows[m.group(1)] = (inputs, outputs)
    return rows


def test_configs_match_architecture_doc(configs):
    rows = _doc_table()
    if not rows:
        pytest.skip("docs/architecture.md has no runtime-model table")
    assert set(rows) == set(RUNTIME_MODELS)
    for model, documented in rows.items():
        cfg = configs[model]
        batch = 1 if cfg.max_batch_size else 0  # the doc may show a batched model's dims with or without N
        for tensors, doc in zip((cfg.input, cfg.output), documented, strict=True):
            assert [(t.name, _dtype(t)) for t in tensors] == [(n, dt) for n, dt, _ in doc], model
            for t, (name, _, rank) in zip(tensors, doc, strict=True):
                assert rank in (len(t.dims), len(t.dims) + batch), (model, name, rank, list(t.dims))


@pytest.mark.parametrize("model", list(RUNTIME_MODELS))
def test_configs_match_engine_profiles(configs, profiles, model):
    cfg, prof = configs[model], profiles[model]
    assert cfg.input[0].name == prof.input and [t.name for t in cfg.output] == list(prof.outputs)
    assert _dtype(cfg.input[0]) == PROFILE_TYPES[prof.dtype], "the engine's input type is the profile's dtype"
    dims = list(cfg.input[0].dims)
    full = dims if cfg.max_batch_size == 0 else [-1, *dims]
    if cfg.max_batch_size:
        assert cfg.max_batch_size == prof.max_batch, "max_batch_size must equal the profile's max batch"
    assert len(full) == len(prof.min)
    for i, d in enumerate(full):
        if d == -1:
            assert i == 0 or prof.min[i] < prof.max[i], f"dim {i} is dynamic in the config but fixed in the profile"
        else:
            assert prof.min[i] == prof.max[i] == d, f"dim {i} = {d} but the profile allows {prof.min[i]}..{prof.max[i]}"
    for w in cfg.model_warmup:
        assert w.inputs[prof.input].data_type == cfg.input[0].data_type, f"warmup {w.name} data type"
        shape = list(w.inputs[prof.input].dims)
        shape = shape if cfg.max_batch_size == 0 else [w.batch_size, *shape]
        assert prof.covers(shape), f"warmup {w.name} {shape} outside the profile"


def test_gpu_and_cpu_configs_agree():
    for model in RUNTIME_MODELS:
        cpu_path = ROOT / "model_repository" / "cpu" / model / "config.pbtxt"
        if not cpu_path.exists():
            pytest.skip("model_repository/cpu not present")
        cpu, gpu = _parse(cpu_path), _parse(GPU / model / "config.pbtxt")
        io = lambda c: [(t.name, t.data_type, list(t.dims)) for t in (*c.input, *c.output)]  # noqa: E731
        assert io(cpu) == io(gpu), model
        assert (cpu.max_batch_size == 0) == (gpu.max_batch_size == 0), model


def _onnx_io(path: Path):
    """[(name, Triton data type, dims with None for symbolic)] for inputs and outputs (onnx, else onnxruntime)."""
    try:
        import onnx
    except ImportError:
        onnx = None  # type: ignore[assignment]  # onnxruntime reads the graph instead
    if onnx is not None:
        g = onnx.load(str(path), load_external_data=False).graph
        inits = {i.name for i in g.initializer}

        def fmt(v):
            return (v.name, ONNX_TYPES.get(v.type.tensor_type.elem_type, "?"),
                    [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                     for d in v.type.tensor_type.shape.dim])
        return [fmt(v) for v in g.input if v.name not in inits], [fmt(v) for v in g.output]
    ort = pytest.importorskip("onnxruntime")
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    conv = lambda a: (a.name, ORT_TYPES.get(a.type, "?"),  # noqa: E731
                      [d if isinstance(d, int) and d > 0 else None for d in a.shape])
    return [conv(a) for a in s.get_inputs()], [conv(a) for a in s.get_outputs()]


@pytest.mark.parametrize("model_set", MODEL_SETS)
@pytest.mark.parametrize("model", list(RUNTIME_MODELS))
def test_configs_match_onnx_graphs(configs, model_set, model):
    onnx_path = ROOT / "build" / "models" / model_set / f"{RUNTIME_MODELS[model]}.onnx"
    if not onnx_path.exists():
        pytest.skip(f"{onnx_path} not fetched (ocr-fetch-models --model-set {model_set})")
    cfg = configs[model]
    inputs, outputs = _onnx_io(onnx_path)
    for tensors, graph in ((cfg.input, inputs), (cfg.output, outputs)):
        assert [t.name for t in tensors] == [g[0] for g in graph], (model_set, model)
        for t, (name, elem, dims) in zip(tensors, graph, strict=True):
            assert _dtype(t) == elem, f"{model_set} {name}: config {_dtype(t)} vs ONNX {elem}"
            cdims = list(t.dims) if cfg.max_batch_size == 0 else [-1, *t.dims]
            assert len(cdims) == len(dims), f"{model_set} {name}: rank {len(cdims)} vs ONNX {len(dims)}"
            for c, o in zip(cdims, dims, strict=True):
                assert c == -1 or o is None or c == o, f"{model_set} {name}: config {cdims} vs ONNX {dims}"


@pytest.mark.parametrize("model_set", MODEL_SETS)
def test_assembled_gpu_repository_stays_within_the_profiles(tmp_path, profiles, model_set):
    """The GPU repository the server would load (assemble_repository.py --target gpu, fake plans) keeps
    every shape the pipeline can send inside the engine profiles."""
    assemble = ROOT / "server" / "ocr_server" / "assemble.py"
    if not assemble.exists() or not (ROOT / "python_backend" / "models").exists():
        pytest.skip("server/ocr_server/assemble.py or the python steps are not present")
    pytest.importorskip("cv2")
    import importlib.util

    from ocr_server.engines import stats
    models_dir, engines_dir = tmp_path / "models", tmp_path / "engines"
    (models_dir / model_set).mkdir(parents=True)
    (models_dir / model_set / "dict.txt").write_text("a\n")
    (models_dir / model_set / "ori_labels.txt").write_text("0\n90\n180\n270\n")
    for model, role in RUNTIME_MODELS.items():
        (models_dir / model_set / f"{role}.onnx").write_bytes(b"")
        (models_dir / model_set / f"{role}.openvino.onnx").write_bytes(b"")  # the CPU target's OpenVINO copy
        (engines_dir / model_set / model).mkdir(parents=True)
        (engines_dir / model_set / model / "model.plan").write_bytes(b"")
    spec = importlib.util.spec_from_file_location("assemble_repository", assemble)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "repo"
    argv = ["--target", "gpu", "--model-set", model_set, "--out", str(out), "--models-dir", str(models_dir),
            "--engines-dir", str(engines_dir)]
    assert mod.main(argv) == 0
    for model in RUNTIME_MODELS:
        assert (out / model / "1" / "model.plan").exists()
        assert _parse(out / model / "config.pbtxt").platform == "tensorrt_plan"
    counts = {step: [g.count for g in _parse(out / step / "config.pbtxt").instance_group]
              for step in ("det_preprocess", "det_postprocess", "rec_pipeline")}
    instances = json.loads((GPU / "step_instances.json").read_text())
    wanted = {step: n for step, n in instances.items() if step != "doc"}
    assert counts == {step: [n] for step, n in wanted.items()}
    assert min(wanted.values()) > 1, "the Python steps feed the GPU from several CPU instances"
    cpu_out = tmp_path / "cpu_repo"
    assert mod.main(["--target", "cpu", "--model-set", model_set, "--out", str(cpu_out), "--models-dir",
                     str(models_dir), "--engines-dir", str(engines_dir)]) == 0
    for step in wanted:  # the CPU target keeps the counts of python_backend/models/*/config.pbtxt
        source = _parse(ROOT / "python_backend" / "models" / step / "config.pbtxt")
        assert _parse(cpu_out / step / "config.pbtxt").instance_group == source.instance_group
    try:
        ctx = stats.pipeline_settings(params=stats.repository_step_parameters(out))
    except RuntimeError as exc:
        pytest.skip(str(exc))
    bad = stats.uncovered(stats.extreme_shapes(ctx), profiles)
    assert not bad, ("the assembled GPU repository lets the pipeline send shapes the engines cannot run; apply "
                     "the GPU step_parameters of model_repository/gpu/profiles.json when assembling --target gpu "
                     "(python -m ocr_server.engines step-params prints them as MODEL.KEY=VALUE for --param):\n  "
                     + "\n  ".join(bad))


# ---- docker/: compose, Prometheus, Grafana provisioning and dashboard ----

DOCKER = ROOT / "docker"


def _yaml(path: Path):
    yaml = pytest.importorskip("yaml")
    return yaml.safe_load(path.read_text())


def test_compose_stack_is_consistent():
    compose = _yaml(DOCKER / "docker-compose.yml")
    services = compose["services"]
    assert {"triton", "build-engines", "prometheus", "grafana"} <= set(services)
    for name in ("triton", "build-engines"):
        svc = services[name]
        assert svc["build"]["dockerfile"] == "docker/Dockerfile" and svc["build"]["context"] == ".."
        devices = svc["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert services["build-engines"]["build"]["target"] == "engine-builder"
    assert services["build-engines"]["profiles"] == ["build"]  # `up` does not rebuild engines
    assert services["triton"]["build"]["target"] == "server"
    assert {"8000:8000", "8001:8001", "8002:8002"} <= set(services["triton"]["ports"])
    assert any(v.endswith("/opt/ocr/build/engines:ro") for v in services["triton"]["volumes"])
    dockerfile = (DOCKER / "Dockerfile").read_text()
    for target in ("AS server", "AS engine-builder"):
        assert target in dockerfile
    assert re.search(r"^ARG TRITON_TAG=\d\d\.\d\d-py3$", dockerfile, re.M), "pin the NGC tag"
    # one NGC release for both images: same default in Dockerfile and compose
    found = re.search(r"^ARG TRITON_TAG=(\S+)$", dockerfile, re.M)
    assert found, "docker/Dockerfile declares no ARG TRITON_TAG"
    tag = found.group(1)
    compose_text = (DOCKER / "docker-compose.yml").read_text()
    assert f"${{TRITON_TAG:-{tag}}}" in compose_text
    doc = (ROOT / "docs" / "gpu.md").read_text()
    assert f"tritonserver:{tag}" in doc and f"tensorrt:{tag}" in doc, "docs/gpu.md must name the pinned images"


def test_prometheus_scrapes_triton():
    prom = _yaml(DOCKER / "prometheus.yml")
    targets = [t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]]
    assert "triton:8002" in targets


def test_grafana_provisioning_and_dashboard():
    import json
    ds = _yaml(DOCKER / "grafana" / "provisioning" / "datasources" / "prometheus.yml")["datasources"][0]
    assert ds["type"] == "prometheus" and ds["url"] == "http://prometheus:9090"
    prov = _yaml(DOCKER / "grafana" / "provisioning" / "dashboards" / "ocr.yml")["providers"][0]
    compose = _yaml(DOCKER / "docker-compose.yml")
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{prov['options']['path']}:ro" in mounts
    dash = json.loads((DOCKER / "grafana" / "dashboards" / "ocr.json").read_text())
    titles = " | ".join(p["title"].lower() for p in dash["panels"])
    for wanted in ("throughput", "p50", "p99", "queue", "per-stage", "lines / s", "errors"):
        assert wanted in titles, wanted
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    # no hard-coded datasource uid: the dashboard's ${datasource} variable picks one of the provisioned type
    variable = next(v for v in dash["templating"]["list"] if v["name"] == "datasource")
    assert variable["type"] == "datasource" and variable["query"] == ds["type"]
    assert all(t["datasource"]["uid"] == "${datasource}" for p in dash["panels"] for t in p["targets"])
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    used = {re.sub(r"_(bucket|sum|count)$", "", m) for e in exprs for m in re.findall(r"\b(ocr_[a-z_]+)", e)}
    documented = set(re.findall(r"^\| `(ocr_[a-z_]+)`", (DOCKER / "grafana" / "METRICS.md").read_text(), re.M))
    required = {"ocr_images_total", "ocr_lines_total", "ocr_characters_total", "ocr_boxes_per_image",
                "ocr_stage_latency_seconds", "ocr_empty_results_total", "ocr_cls_flips_total",
                "ocr_rejected_inputs_total", "ocr_network_compute_seconds_total"}
    assert documented == required
    from ocr_server.watchdog_metrics import WATCHDOG_METRICS

    assert used == required | WATCHDOG_METRICS, used ^ (required | WATCHDOG_METRICS)
    assert any("nv_inference_queue_duration_us" in e for e in exprs)
    assert any('quantile="0.99"' in e for e in exprs)
    assert "summary_latencies=true" in (ROOT / "server" / "ocr_server" / "launcher.py").read_text()
