"""TensorRT-calling code against a fake `tensorrt` module (no GPU, no TensorRT needed)."""
from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest

ROOT = Path(__file__).resolve().parents[2]

import fake_tensorrt  # noqa: E402
from fake_tensorrt import FakeCuda, FakeLayer, FakeParserError, FakeTensor, network_io  # noqa: E402
from ocr_server.engines.builder import BuildError, build_with_python, build_with_trtexec, import_tensorrt  # noqa: E402
from ocr_server.engines.commands import plan_builds  # noqa: E402
from ocr_server.engines.profiles import load_profiles  # noqa: E402
from ocr_server.engines.runner import CudaRuntime  # noqa: E402


@pytest.fixture()
def fake_trt():
    saved = sys.modules.get("tensorrt")
    trt, state = fake_tensorrt.install()
    yield trt, state
    fake_tensorrt.uninstall()
    if saved is not None:
        sys.modules["tensorrt"] = saved


@pytest.fixture()
def spec(tmp_path):
    onnx = tmp_path / "models" / "v4" / "det.onnx"
    onnx.parent.mkdir(parents=True)
    onnx.write_bytes(b"not really onnx")
    return plan_builds("v4", load_profiles(), tmp_path / "models", tmp_path / "engines", ["det_model"])[0]


def test_modules_do_not_import_tensorrt_at_import_time():
    code = ("import sys, pkgutil, importlib, ocr_server.engines; "
            "[importlib.import_module('ocr_server.engines.' + m.name) "
            "for m in pkgutil.iter_modules(ocr_server.engines.__path__) "
            "if m.name not in ('__main__', 'fake_tensorrt')]; assert 'tensorrt' not in sys.modules, 'eager import'")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_python_build_sets_fp16_profile_and_workspace(fake_trt, spec):
    _, state = fake_trt
    out = spec.plan.with_name("model.plan.tmp")
    res = build_with_python(spec, out)
    assert out.read_bytes() == b"FAKE-PLAN" and res.builder == "python" and res.plan_bytes == 9
    assert ("set_flag", "FP16") in state.calls
    assert ("set_shape", ("det_input", (1, 32, 32, 3), (1, 736, 1312, 3), (4, 4000, 4000, 3))) in state.calls
    assert ("set_memory_pool_limit", ("WORKSPACE", 2048 << 20)) in state.calls
    assert ("set_flag", "OBEY_PRECISION_CONSTRAINTS") not in state.calls
    assert spec.log_path.exists()


def test_every_parser_error_is_logged_and_raised(fake_trt, spec, caplog):
    _, state = fake_trt
    state.parser_errors = [FakeParserError("Unsupported operator Foo", 12, "foo_0", "Foo"),
                           FakeParserError("Invalid weights", 40, "conv_3", "Conv")]
    with caplog.at_level(logging.ERROR), pytest.raises(BuildError) as err:
        build_with_python(spec, spec.plan)
    for text in ("Unsupported operator Foo", "Invalid weights", "node_name=foo_0", "node 40"):
        assert text in str(err.value)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "Unsupported operator Foo" in logged and "Invalid weights" in logged
    assert not spec.plan.exists()


@pytest.mark.parametrize("name, shape, dtype, outputs", [
    ("x", (-1, -1, -1, 3), "uint8", ["prob_map"]),               # not renamed
    ("det_input", (-1, 3, -1, -1), "float32", ["prob_map"]),     # from before the graph edit: FP32 NCHW
    ("det_input", (-1, -1, -1, 3), "uint8", ["prob_map", "extra"]),
])
def test_onnx_with_other_io_is_refused(fake_trt, spec, name, shape, dtype, outputs):
    trt, state = fake_trt
    state.inputs = [FakeTensor(name, shape, trt.DataType(dtype))]
    state.outputs = [FakeTensor(n) for n in outputs]
    with pytest.raises(BuildError, match="det_input uint8 NHWC .*fetch_models.py"):
        build_with_python(spec, spec.plan)
    assert ("build_serialized_network", None) not in state.calls


def test_rec_network_with_greedy_ctc_outputs_builds(fake_trt, tmp_path):
    _, state = fake_trt
    profiles = load_profiles()
    state.inputs, state.outputs = network_io(profiles["rec_model"])
    rec = plan_builds("v4", profiles, tmp_path / "models", tmp_path / "engines", ["rec_model"])[0]
    assert build_with_python(rec, rec.plan).plan_bytes == len(state.engine_bytes)
    assert ("set_shape", ("rec_input", (1, 48, 8, 3), (16, 48, 384, 3), (64, 48, 3200, 3))) in state.calls


def test_builder_failure_reports_logger_errors(fake_trt, spec):
    _, state = fake_trt
    state.build_fails = True
    with pytest.raises(BuildError, match="out of memory"):
        build_with_python(spec, spec.plan)


def test_old_tensorrt_is_refused():
    saved = sys.modules.get("tensorrt")
    fake_tensorrt.install(version="8.6.1")
    try:
        with pytest.raises(BuildError, match="TensorRT 10.x"):
            import_tensorrt()
    finally:
        fake_tensorrt.uninstall()
        if saved is not None:
            sys.modules["tensorrt"] = saved


def test_missing_tensorrt_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import raises ImportError
    with pytest.raises(BuildError, match="NGC TensorRT image"):
        import_tensorrt()


def test_fallback_pins_sensitive_layers(fake_trt, spec):
    trt, state = fake_trt
    f = trt.float32
    state.layers = [
        FakeLayer("det_input_cast", trt.LayerType.CAST, [FakeTensor("det_input_f32", dtype=f)]),
        FakeLayer("conv_0", trt.LayerType.CONVOLUTION, [FakeTensor("c", dtype=f)]),
        FakeLayer("p2o.ReduceMean.0", trt.LayerType.REDUCE, [FakeTensor("r", dtype=f)]),
        FakeLayer("p2o.Sub.0", trt.LayerType.ELEMENTWISE, [FakeTensor("s", dtype=f)], op=trt.ElementWiseOperation.SUB),
        FakeLayer("pow_by_type", trt.LayerType.ELEMENTWISE, [FakeTensor("p", dtype=f)],
                  op=trt.ElementWiseOperation.POW),
        FakeLayer("shape_math", trt.LayerType.UNARY, [FakeTensor("i", dtype=trt.int32)]),
        FakeLayer("softmax_9", trt.LayerType.SOFTMAX, [FakeTensor("sm", dtype=f)]),
    ]
    res = build_with_python(spec.with_fp32_layers(["p2o.Sub.0"]), spec.plan)
    assert res.fp32_layers == ["p2o.ReduceMean.0", "p2o.Sub.0", "pow_by_type", "softmax_9"]
    assert ("set_flag", "OBEY_PRECISION_CONSTRAINTS") in state.calls
    pinned = {layer.name: layer for layer in state.layers}
    assert pinned["p2o.Sub.0"].precision == trt.float32 and pinned["p2o.Sub.0"].output_types == {0: trt.float32}
    assert pinned["conv_0"].precision is None and pinned["shape_math"].precision is None
    assert pinned["det_input_cast"].precision is None  # the uint8 -> float Cast of the input stays as parsed


def test_sensitive_nodes_follow_decomposed_layernorm():
    from ocr_server.engines.precision import select_sensitive_nodes
    n = lambda op, name, ins, outs: SimpleNamespace(op_type=op, name=name, input=ins, output=outs)  # noqa: E731
    graph = [n("Conv", "conv", ["x"], ["a"]), n("ReduceMean", "rm0", ["a"], ["m"]), n("Sub", "sub", ["a", "m"], ["d"]),
             n("Pow", "pow", ["d", "two"], ["d2"]), n("ReduceMean", "rm1", ["d2"], ["v"]),
             n("Add", "eps", ["v", "e"], ["ve"]), n("Sqrt", "sqrt", ["ve"], ["s"]), n("Div", "div", ["d", "s"], ["y"]),
             n("Mul", "gamma", ["y", "g"], ["yg"]), n("Add", "beta", ["yg", "b"], ["z"]),
             n("Softmax", "", ["z"], ["p"])]
    assert select_sensitive_nodes(graph) == ["rm0", "sub", "pow", "rm1", "eps", "sqrt", "div", "node_of_p"]


def test_sensitive_nodes_of_the_real_rec_graph():
    pytest.importorskip("onnx")
    from ocr_server.engines.precision import sensitive_onnx_nodes
    onnx_path = ROOT / "build" / "models" / "v4" / "rec.onnx"
    if not onnx_path.exists():
        pytest.skip("models not fetched (ocr-fetch-models --model-set v4)")
    names = sensitive_onnx_nodes(onnx_path)
    assert any("ReduceMean" in x for x in names) and any("Softmax" in x for x in names)
    assert not any("Conv" in x for x in names)


def _fake_trtexec(tmp_path: Path, body: str) -> str:
    exe = tmp_path / "trtexec"
    exe.write_text("#!/usr/bin/env bash\n" + body)
    exe.chmod(0o755)
    return str(exe)


def test_trtexec_success(spec, tmp_path):
    exe = _fake_trtexec(tmp_path, 'for a in "$@"; do case "$a" in --saveEngine=*) echo -n PLAN > "${a#*=}";; esac; '
                                  'done; echo "[I] Engine built"\n')
    out = spec.plan.with_name("model.plan.tmp")
    out.parent.mkdir(parents=True, exist_ok=True)
    res = build_with_trtexec(spec, exe, out)
    assert res.builder == "trtexec" and out.read_bytes() == b"PLAN"
    log_text = spec.log_path.read_text()
    assert "--fp16" in log_text and "--maxShapes=det_input:4x4000x4000x3" in log_text
    assert "IOFormats" not in log_text  # trtexec keeps the network's uint8 input / int32 output types


def test_trtexec_errors_are_logged_and_raised(spec, tmp_path, caplog):
    exe = _fake_trtexec(tmp_path, 'echo "[E] [TRT] ModelImporter.cpp:771: ERROR: builtin_op_importers.cpp:4870 '
                                  'In function importFallbackPluginImporter: Assertion failed"\n'
                                  'echo "[E] Failed to parse onnx file"\nexit 1\n')
    with caplog.at_level(logging.ERROR), pytest.raises(BuildError) as err:
        build_with_trtexec(spec, exe, spec.plan)
    assert "Failed to parse onnx file" in str(err.value) and "exit code 1" in str(err.value)
    assert sum("[E]" in r.getMessage() for r in caplog.records) == 2


def test_trt_runner_moves_data_through_the_engine(fake_trt, tmp_path):
    import numpy as np
    from ocr_server.engines.runner import TrtRunner
    _, state = fake_trt
    state.cuda = fake_cuda = FakeCuda()
    cuda = cast(CudaRuntime, fake_cuda)  # it has the calls TrtRunner makes
    state.infer = lambda x: 255 - x[:, None, :, :, 0]  # det: uint8 NHWC in, UINT8 [N,1,H,W] map out
    plan = tmp_path / "model.plan"
    plan.write_bytes(state.engine_bytes)
    runner = TrtRunner(plan, cuda=cuda)
    x = np.arange(24, dtype=np.uint8).reshape(1, 2, 4, 3)
    y = runner(x)
    assert state.calls[-1] == ("execute", ("uint8", (1, 2, 4, 3)))  # the engine gets uint8, not FP32
    assert y.dtype == np.uint8 and y.shape == (1, 1, 2, 4) and np.array_equal(y, 255 - x[:, None, :, :, 0])
    assert len(fake_cuda.freed) == 2  # device buffers released
    bad = tmp_path / "other.plan"
    bad.write_bytes(b"another TensorRT")
    with pytest.raises(BuildError, match="another TensorRT version"):
        TrtRunner(bad, cuda=cuda)


def test_trt_runner_returns_the_rec_outputs_in_order(fake_trt, tmp_path):
    import numpy as np
    from ocr_server.engines.runner import TrtRunner
    _, state = fake_trt
    state.inputs, state.outputs = network_io(load_profiles()["rec_model"])
    state.cuda = fake_cuda = FakeCuda()
    cuda = cast(CudaRuntime, fake_cuda)  # it has the calls TrtRunner makes
    state.infer = lambda x: (x[:, 0, ::8, 0].astype(np.int32), x[:, 0, ::8, 1] / np.float32(255))  # [N,T] ids, probs
    plan = tmp_path / "model.plan"
    plan.write_bytes(state.engine_bytes)
    x = np.random.default_rng(0).integers(0, 256, (2, 48, 32, 3), dtype=np.uint8)
    probs, ids = TrtRunner(plan, cuda=cuda, outputs=["rec_char_probs", "rec_char_ids"])(x)
    assert ids.dtype == np.int32 and np.array_equal(ids, x[:, 0, ::8, 0].astype(np.int32))
    assert probs.dtype == np.float32 and probs.shape == (2, 4)
    assert np.array_equal(probs, x[:, 0, ::8, 1] / np.float32(255))
    assert len(fake_cuda.freed) == 3
    with pytest.raises(BuildError, match="expected \\['rec_probs'\\]"):
        TrtRunner(plan, cuda=cuda, outputs=["rec_probs"])


def test_build_set_gate_fallback_and_manifest(fake_trt, tmp_path, monkeypatch):
    from ocr_server.engines import build_set as bs
    from ocr_server.engines.environment import GpuInfo
    from ocr_server.engines.fp16_gate import GateResult
    profiles = load_profiles()
    models = tmp_path / "models"
    for role in ("det", "cls", "rec", "ori"):
        (models / "v4").mkdir(parents=True, exist_ok=True)
        (models / "v4" / f"{role}.onnx").write_bytes(role.encode())
    specs = plan_builds("v4", profiles, models, tmp_path / "engines")
    monkeypatch.setattr(bs, "sensitive_onnx_nodes", lambda path: ["p2o.ReduceMean.0"])
    _, state = fake_trt
    state.inputs = [FakeTensor("placeholder")]
    built = []

    def fake_build(spec, out):
        built.append((spec.model, spec.pin_sensitive))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(b"P" + spec.model.encode())
        from ocr_server.engines.builder import BuildResult
        return BuildResult(spec.model, out, 1.5, out.stat().st_size, "python",
                           list(spec.fp32_layers) if spec.pin_sensitive else [])

    monkeypatch.setattr(bs, "build_with_python", fake_build)
    calls = {"n": 0}

    def gate(model, plan, onnx):
        calls["n"] += 1
        ok = not (model == "rec_model" and calls["n"] == 3)  # rec fails once in FP16, passes with FP32 layers
        return GateResult(model, ok, {"figure": 1.0}, [] if ok else ["identical texts 0.9 < 0.97"])

    opts = bs.BuildOptions(builder="python", gate=gate, python_available=True)
    manifest = bs.build_set(specs, profiles, GpuInfo("Tesla T4", "7.5"), "10.4.0", opts)
    assert built == [("det_model", False), ("cls_model", False), ("rec_model", False), ("rec_model", True),
                     ("ori_model", False)]
    assert manifest.models["rec_model"].precision == "fp16+fp32-layers"
    assert manifest.models["rec_model"].fp32_layers == ["p2o.ReduceMean.0"]
    assert manifest.models["det_model"].precision == "fp16"
    assert (tmp_path / "engines" / "v4" / "manifest.json").exists()
    assert not list((tmp_path / "engines").rglob("*.tmp"))

    # a model that fails even with the fallback: the set's manifest is removed, the old plan is kept
    opts.gate = lambda model, plan, onnx: GateResult(model, model != "cls_model", {}, ["agreement 0.5 < 0.99"])
    with pytest.raises(BuildError, match="cls_model: FP16 gate failed even with FP32 fallback"):
        bs.build_set(specs, profiles, GpuInfo("Tesla T4", "7.5"), "10.4.0", opts)
    assert not (tmp_path / "engines" / "v4" / "manifest.json").exists()
    assert (tmp_path / "engines" / "v4" / "cls_model" / "model.plan").read_bytes() == b"Pcls_model"



def test_cli_build_then_check_and_preflight_with_fake_gpu(fake_trt, tmp_path, monkeypatch, capsys):
    """`ocr_server.engines build` (Python API path, gate skipped) on a fake T4 + fake TensorRT, then check/preflight."""
    from ocr_server.engines.cli import main
    trt, state = fake_trt
    bindir = tmp_path / "bin"
    bindir.mkdir()
    smi = bindir / "nvidia-smi"
    smi.write_text('#!/usr/bin/env bash\necho "Tesla T4, 7.5"\n')
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:/usr/bin:/bin")
    monkeypatch.delenv("TRTEXEC", raising=False)
    models = tmp_path / "models"
    (models / "v5").mkdir(parents=True)
    for role in ("det", "cls", "rec", "ori"):
        (models / "v5" / f"{role}.onnx").write_bytes(role.encode())
    parse = trt.OnnxParser.parse_from_file
    profiles = load_profiles()

    def parse_named(self, path):  # the fake network follows the file being parsed
        state.inputs[:], state.outputs[:] = network_io(profiles[Path(path).stem + "_model"])
        return parse(self, path)

    monkeypatch.setattr(trt.OnnxParser, "parse_from_file", parse_named)
    out = tmp_path / "engines"
    args = ["--model-set", "v5", "--models-dir", str(models)]
    assert main(["build", *args, "--out", str(out), "--skip-fp16-gate", "--builder", "python"]) == 0
    printed = capsys.readouterr().out
    assert "GPU Tesla T4 (compute 7.5); TensorRT 10.4.0" in printed
    assert printed.count("built in") == 4 and "engines for v5 ready" in printed
    assert main(["check", *args, "--engines", str(out)]) == 0
    assert main(["preflight", *args, "--engines", str(out)]) == 0
    assert "GPU preflight OK" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="--gpu-target sm_86 but this GPU is compute 7.5"):
        main(["build", *args, "--out", str(out), "--skip-fp16-gate", "--gpu-target", "sm_86"])
