"""The CPU runtimes of the det/cls/rec models (ppocr_steps.onnx_runtime) on a small graph."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper  # noqa: E402

from ppocr_steps.onnx_runtime import OrtModel, OvModel, load_runtime_model  # noqa: E402


def _small_net(path: Path) -> Path:
    """UINT8 [N,H,W,3] -> Cast, Transpose, 3x3 Conv, HardSwish-as-exported, two outputs (ids, max), like rec."""
    rng = np.random.default_rng(0)
    w = onnx.numpy_helper.from_array(rng.normal(size=(5, 3, 3, 3)).astype(np.float32) / 50, "w")
    nodes = [
        helper.make_node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["xf"], ["xt"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["xt", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("HardSigmoid", ["c"], ["g"], alpha=1 / 6, beta=0.5),
        helper.make_node("Mul", ["c", "g"], ["h"]),
        helper.make_node("ReduceMean", ["h"], ["m"], axes=[2], keepdims=0),  # [N,5,W]
        helper.make_node("Transpose", ["m"], ["t"], perm=[0, 2, 1]),  # [N,W,5]
        helper.make_node("Softmax", ["t"], ["s"], axis=2),
        helper.make_node("ArgMax", ["s"], ["i64"], axis=2, keepdims=0),
        helper.make_node("Cast", ["i64"], ["ids"], to=TensorProto.INT32),
        helper.make_node("ReduceMax", ["s"], ["probs"], axes=[2], keepdims=0),
    ]
    graph = helper.make_graph(nodes, "net", [helper.make_tensor_value_info("x", TensorProto.UINT8, ["N", 8, "W", 3])],
                              [helper.make_tensor_value_info("ids", TensorProto.INT32, ["N", "W"]),
                               helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", "W"])], initializer=[w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture
def net_dir(tmp_path: Path) -> Path:
    _small_net(tmp_path / "model.onnx")
    _small_net(tmp_path / "model.openvino.onnx")
    return tmp_path


def _params(**extra: str) -> dict[str, str]:
    return {"onnx_file": "model.onnx", "openvino_file": "model.openvino.onnx", "intra_op_threads": "1",
            "allow_spinning": "false", "cpu_mem_arena": "true", "performance_hint": "LATENCY", "num_streams": "1",
            "cpu_pinning": "false",
            **extra}


def test_onnxruntime_is_chosen_by_the_runtime_parameter(net_dir: Path) -> None:
    model = load_runtime_model(str(net_dir), _params(runtime="onnxruntime"))
    assert isinstance(model, OrtModel)
    assert (model.input_name, model.output_names) == ("x", ["ids", "probs"])


def test_openvino_f32_gives_onnxruntimes_results_for_every_shape(net_dir: Path) -> None:
    pytest.importorskip("openvino")
    ort_model = load_runtime_model(str(net_dir), _params(runtime="onnxruntime"))
    ov_model = load_runtime_model(str(net_dir), _params(runtime="openvino", inference_precision="f32"))
    assert isinstance(ov_model, OvModel) and ov_model.precision == "f32"
    assert (ov_model.input_name, ov_model.output_names) == ("x", ["ids", "probs"])
    rng = np.random.default_rng(1)
    for shape in [(2, 8, 16, 3), (1, 8, 40, 3), (2, 8, 16, 3), (5, 8, 24, 3)]:  # dynamic N and W, a shape again
        x = rng.integers(0, 256, shape, dtype=np.uint8)
        (ids_o, probs_o), (ids_v, probs_v) = ort_model.run(x), ov_model.run(x)
        assert ids_v.dtype == np.int32 and ids_v.shape == (shape[0], shape[2])
        np.testing.assert_array_equal(ids_v, ids_o)
        np.testing.assert_allclose(probs_v, probs_o, atol=1e-4)  # OpenVINO's own kernels round differently
    ids, probs = ov_model(x)  # several outputs: a tuple in the graph's order
    assert ids.shape == probs.shape == (5, 24)


def test_openvino_precision_is_the_one_configured(net_dir: Path) -> None:
    pytest.importorskip("openvino")
    model = load_runtime_model(str(net_dir), _params(runtime="openvino", inference_precision="bf16"))
    assert model.precision == "bf16"  # type: ignore[union-attr]
    assert model.compiled.get_property("ENABLE_CPU_PINNING") is False  # type: ignore[union-attr]
    pinned = load_runtime_model(str(net_dir), _params(runtime="openvino", inference_precision="f32",
                                                      cpu_pinning="true"))
    assert pinned.compiled.get_property("ENABLE_CPU_PINNING") is True  # type: ignore[union-attr]


@pytest.mark.parametrize("params, message", [
    ({"runtime": "tensorflow"}, "runtime must be one of"),
    ({"runtime": "openvino"}, "inference_precision missing"),
    ({"runtime": "openvino", "inference_precision": "f16"}, "inference_precision must be one of"),
    ({"runtime": "openvino", "inference_precision": "f32", "performance_hint": "FAST"}, "performance_hint"),
    ({"runtime": "onnxruntime", "allow_spinning": "maybe"}, "allow_spinning must be true or false"),
    ({"runtime": "openvino", "inference_precision": "f32", "cpu_pinning": "yes"}, "cpu_pinning must be true or false"),
])
def test_bad_runtime_parameters_are_refused_with_what_to_fix(net_dir: Path, params: dict[str, str],
                                                              message: str) -> None:
    if params.get("runtime") == "openvino":
        pytest.importorskip("openvino")
    with pytest.raises(ValueError, match=message):
        load_runtime_model(str(net_dir), _params(**params))
