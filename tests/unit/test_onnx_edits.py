"""The graph edits of server/ocr_server/onnx_edits.py, on small graphs and on the fetched models."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
from ocr_server.onnx_edits import (  # noqa: E402
    concat_conv_as_sum,
    convtranspose_as_depth_to_space,
    ctc_logits_output,
    fuse_affine_activations,
    greedy_ctc_outputs,
    residual_scale_as_multiply,
    uint8_image_input,
    uint8_prob_map_output,
)
from ocr_server.paths import MODEL_MANIFEST  # noqa: E402

from ppocr_steps.ctc_head import kept_timesteps  # noqa: E402
from ppocr_steps.onnx_runtime import OrtModel, OvModel  # noqa: E402

MODEL_SETS = list(json.loads(MODEL_MANIFEST.read_text())["sets"])


def _session(model) -> Any:  # an ort.InferenceSession
    onnx.checker.check_model(model)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _identity_nchw(opset: int = 12):
    """A 'detector' that returns its normalised NCHW input, to see what the edit feeds the network."""
    x = helper.make_tensor_value_info("det_input", TensorProto.FLOAT, ["N", 3, "H", "W"])
    y = helper.make_tensor_value_info("prob_map", TensorProto.FLOAT, ["N", 3, "H", "W"])
    graph = helper.make_graph([helper.make_node("Identity", ["det_input"], ["prob_map"])], "det", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def _softmax_ntc(opset: int):
    x = helper.make_tensor_value_info("rec_input", TensorProto.FLOAT, ["N", "T", 5])
    y = helper.make_tensor_value_info("rec_probs", TensorProto.FLOAT, ["N", "T", 5])
    graph = helper.make_graph([helper.make_node("Softmax", ["rec_input"], ["rec_probs"], axis=2)], "rec", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def test_uint8_input_is_nhwc_and_normalised_per_channel_in_image_order() -> None:
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 0.1)
    sess = _session(uint8_image_input(_identity_nchw(), mean, std))
    (inp,) = sess.get_inputs()
    assert (inp.name, inp.type) == ("det_input", "tensor(uint8)") and inp.shape[3] == 3
    img = np.zeros((1, 2, 3, 3), np.uint8)  # N, H, W, C
    img[0, 0, 1] = (255, 0, 51)
    out = sess.run(None, {"det_input": img})[0]
    assert out.shape == (1, 3, 2, 3) and out.dtype == np.float32
    expected = [(v / 255 - m) / s for v, m, s in zip((255, 0, 51), mean, std, strict=True)]
    np.testing.assert_allclose(out[0, :, 0, 1], expected, rtol=1e-5)
    np.testing.assert_allclose(out[0, :, 1, 2], [-m / s for m, s in zip(mean, std, strict=True)], rtol=1e-5)


def test_uint8_input_matches_paddleocr_normalisation_exactly() -> None:
    """The float32 arithmetic the Python step used: x * (1 / (255 std)) - mean / std, bit for bit."""
    sess = _session(uint8_image_input(_identity_nchw(), (0.5,) * 3, (0.5,) * 3))
    img = np.random.default_rng(0).integers(0, 256, (2, 4, 5, 3), dtype=np.uint8)
    out = sess.run(None, {"det_input": img})[0]
    ref = img.transpose(0, 3, 1, 2).astype(np.float32) * np.float32(1 / 127.5) - np.float32(1.0)
    np.testing.assert_array_equal(out, ref)


def test_uint8_input_refuses_a_graph_without_three_channel_nchw_input() -> None:
    model = _softmax_ntc(12)  # [N,T,5] input
    with pytest.raises(ValueError, match=r"\[N,3,H,W\]"):
        uint8_image_input(model, (0.5,) * 3, (0.5,) * 3)
    with pytest.raises(ValueError, match="std > 0"):
        uint8_image_input(_identity_nchw(), (0.5,) * 3, (0.5, 0.0, 0.5))


def _sigmoid_map(channels: int | str = 1):
    x = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", channels, "H", "W"])
    y = helper.make_tensor_value_info("prob_map", TensorProto.FLOAT, ["N", channels, "H", "W"])
    graph = helper.make_graph([helper.make_node("Sigmoid", ["logits"], ["prob_map"])], "det", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12)], ir_version=8)


@pytest.mark.parametrize("channels", [1, "C"])  # v5's graph leaves the channel dimension symbolic
def test_uint8_prob_map_is_the_rounded_probability_times_255(channels) -> None:
    sess = _session(uint8_prob_map_output(_sigmoid_map(channels)))
    (out,) = sess.get_outputs()
    assert (out.name, out.type) == ("prob_map", "tensor(uint8)")
    logits = np.concatenate([np.linspace(-12, 12, 1001), [-np.inf, np.inf, 0.0]]).astype(np.float32)
    q = sess.run(None, {"logits": logits.reshape(1, 1, 1, -1)})[0].reshape(-1)
    p = 1 / (1 + np.exp(-logits.astype(np.float64)))
    np.testing.assert_array_equal(q, np.floor(p * 255 + 0.5).astype(np.uint8))
    assert q[-3:].tolist() == [0, 255, 128]


def test_uint8_prob_map_refuses_a_graph_without_one_channel_map() -> None:
    with pytest.raises(ValueError, match=r"\[N,1,H,W\]"):
        uint8_prob_map_output(_sigmoid_map(3))
    with pytest.raises(ValueError, match=r"\[N,1,H,W\]"):
        uint8_prob_map_output(_softmax_ntc(12))


# Reduce* take axes as an attribute before opset 18
@pytest.mark.parametrize("opset", [11, 13, 18])
def test_greedy_outputs_are_argmax_and_max_of_the_softmax(opset: int) -> None:
    sess = _session(greedy_ctc_outputs(_softmax_ntc(opset), "rec_char_ids", "rec_char_probs"))
    assert [(o.name, o.type) for o in sess.get_outputs()] == [("rec_char_ids", "tensor(int32)"),
                                                              ("rec_char_probs", "tensor(float)")]
    logits = np.random.default_rng(1).normal(size=(3, 7, 5)).astype(np.float32)
    logits[0, 0] = [0.5, 2.0, 2.0, -1.0, 2.0]  # equal maxima: the first one wins, as np.argmax
    ids, probs = sess.run(None, {"rec_input": logits})
    soft = np.exp(logits) / np.exp(logits).sum(axis=2, keepdims=True)
    assert soft[0, 0, 1] == soft[0, 0, 2]
    np.testing.assert_array_equal(ids, soft.argmax(axis=2))
    np.testing.assert_allclose(probs, soft.max(axis=2), rtol=1e-6)


def _logits_softmax(axis: int | None = 2, opset: int = 13):
    """logits = input * 2 (a node to keep), then the softmax the edit removes (axis None: the default)."""
    x = helper.make_tensor_value_info("rec_input", TensorProto.FLOAT, ["N", "T", 5])
    y = helper.make_tensor_value_info("rec_probs", TensorProto.FLOAT, ["N", "T", 5])
    softmax = helper.make_node("Softmax", ["logits"], ["rec_probs"])
    if axis is not None:
        softmax.attribute.append(helper.make_attribute("axis", axis))
    nodes: list[Any] = [_const("two", 2.0), helper.make_node("Mul", ["rec_input", "two"], ["logits"]), softmax]
    graph = helper.make_graph(nodes, "rec", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


@pytest.mark.parametrize(("axis", "opset"), [(2, 13), (-1, 11), (None, 13)])
def test_ctc_logits_output_is_the_softmax_input(axis: int | None, opset: int) -> None:
    sess = _session(ctc_logits_output(_logits_softmax(axis, opset), "rec_logits"))
    assert [(o.name, o.type, o.shape) for o in sess.get_outputs()] == [("rec_logits", "tensor(float)", ["N", "T", 5])]
    x = np.random.default_rng(7).normal(size=(2, 3, 5)).astype(np.float32)
    np.testing.assert_array_equal(sess.run(None, {"rec_input": x})[0], x * 2)


def test_ctc_logits_output_refuses_other_graphs() -> None:
    with pytest.raises(ValueError, match="computed by a Softmax"):
        ctc_logits_output(_identity_nchw(), "rec_logits")
    with pytest.raises(ValueError, match="last axis"):
        ctc_logits_output(_logits_softmax(axis=1), "rec_logits")
    with pytest.raises(ValueError, match="last axis"):  # before opset 13 the default axis is 1
        ctc_logits_output(_logits_softmax(axis=None, opset=11), "rec_logits")


def test_greedy_outputs_refuse_a_graph_without_ntc_output() -> None:
    with pytest.raises(ValueError, match=r"\[N,T,C\]"):
        greedy_ctc_outputs(_identity_nchw(), "a", "b")


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
@pytest.mark.parametrize("model_set", MODEL_SETS)
def test_fetched_graphs_give_the_wheels_results(models_dir: Path, model_set: str, runtime: str) -> None:
    """The served det/cls/rec graphs (each runtime's copy, OpenVINO at f32) compute what the wheels'
    graphs + the former Python code computed."""
    d = models_dir / model_set
    if not (d / "original" / "rec.onnx").exists():
        pytest.skip(f"build/models/{model_set} not fetched (ocr-fetch-models)")
    if runtime == "openvino":
        pytest.importorskip("openvino")
    norm = json.loads(MODEL_MANIFEST.read_text())["sets"][model_set]["det_normalize"]

    def run(path: Path, x: np.ndarray) -> list[np.ndarray]:
        if path.parent.name == "original":
            return OrtModel(str(path)).run(x)
        if runtime == "openvino":
            return OvModel(str(path.with_suffix(".openvino.onnx")), "f32").run(x)
        return OrtModel(str(path)).run(x)

    img = np.random.default_rng(2).integers(0, 256, (1, 64, 96, 3), dtype=np.uint8)
    planes = img.transpose(0, 3, 1, 2).astype(np.float32)
    scale = np.asarray([1 / (255 * s) for s in norm["std"]], np.float32).reshape(1, 3, 1, 1)
    bias = np.asarray([m / s for m, s in zip(norm["mean"], norm["std"], strict=True)], np.float32).reshape(1, 3, 1, 1)
    ref = run(d / "original" / "det.onnx", planes * scale - bias)[0]
    np.testing.assert_allclose(run(d / "det.onnx", img)[0], ref, atol=1e-4)
    def normalised(pixels: np.ndarray) -> np.ndarray:  # PaddleOCR's cls/rec pre-processing, NHWC -> NCHW
        return (pixels.transpose(0, 3, 1, 2).astype(np.float32) / 255 - 0.5) / 0.5

    crops = np.full((2, 48, 160, 3), 255, np.uint8)  # printed text, so that the recogniser reads characters
    for crop, text in zip(crops, ("OCR 2026", "Total 9.50"), strict=True):
        cv2.putText(crop, text, (4, 34), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (0, 0, 0), 2)
    soft = run(d / "original" / "rec.onnx", normalised(crops))[0]
    ids, probs = run(d / "rec.onnx", crops)
    # the fused affines/hardswish change float rounding only (a few 1e-6 on these probabilities)
    assert np.mean(ids == soft.argmax(axis=2)) >= 0.99
    expected = soft.max(axis=2)
    if runtime == "openvino":  # its host head gives the probability where greedy CTC keeps the timestep
        kept = kept_timesteps(ids)
        assert kept.any()
        expected = np.where(kept, expected, 0)
    np.testing.assert_allclose(probs, expected, atol=2e-5 if runtime == "onnxruntime" else 1e-4)
    lines = np.random.default_rng(4).integers(0, 256, (3, 48, 192, 3), dtype=np.uint8)
    np.testing.assert_allclose(run(d / "cls.onnx", lines)[0], run(d / "original" / "cls.onnx", normalised(lines))[0],
                               atol=2e-5 if runtime == "onnxruntime" else 1e-4)


# ------------------------------------------------------------------------- fuse_affine_activations
def _const(name: str, value) -> object:
    return helper.make_node("Constant", [], [name], value=onnx.numpy_helper.from_array(np.asarray(value, np.float32)),
                            name=f"{name}_const")


def _lcnet_block(second_pad: int = 0, conv_used_twice: bool = False):
    """Conv3x3 -> *s1 +b1 -> hardswish (Add 3, Clip 0..6, Mul, Div 6) -> *s2 +b2 -> Conv (pad second_pad),
    as PaddlePaddle's exporter writes PP-LCNet blocks."""
    rng = np.random.default_rng(5)
    w1 = onnx.numpy_helper.from_array(rng.normal(size=(4, 2, 3, 3)).astype(np.float32), "w1")
    b1 = onnx.numpy_helper.from_array(rng.normal(size=4).astype(np.float32), "b1")
    k = 1 + 2 * second_pad
    w2 = onnx.numpy_helper.from_array(rng.normal(size=(3, 4, k, k)).astype(np.float32), "w2")
    nodes: list[Any] = [
        _const("s1", [1.7]), _const("c1", [0.3]), _const("three", [3.0]), _const("zero", 0.0), _const("six", 6.0),
        _const("six1", [6.0]), _const("s2", [0.4]), _const("c2", [-0.2]),
        helper.make_node("Conv", ["x", "w1", "b1"], ["conv1"], pads=[1, 1, 1, 1]),
        helper.make_node("Mul", ["s1", "conv1"], ["a1"]),
        helper.make_node("Add", ["a1", "c1"], ["a2"]),
        helper.make_node("Add", ["a2", "three"], ["h1"]),
        helper.make_node("Clip", ["h1", "zero", "six"], ["h2"]),
        helper.make_node("Mul", ["a2", "h2"], ["h3"]),
        helper.make_node("Div", ["h3", "six1"], ["act"]),
        helper.make_node("Mul", ["s2", "act"], ["l1"]),
        helper.make_node("Add", ["l1", "c2"], ["l2"]),
        helper.make_node("Conv", ["l2", "w2"], ["y"], pads=[second_pad] * 4),
    ]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, None, None])]
    if conv_used_twice:
        outputs.append(helper.make_tensor_value_info("conv1", TensorProto.FLOAT, [1, 4, 8, 10]))
    graph = helper.make_graph(nodes, "block", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 8, 10])],
                              outputs, initializer=[w1, b1, w2])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12)], ir_version=8)


def _run_block(model) -> np.ndarray:
    x = np.random.default_rng(6).normal(size=(1, 2, 8, 10)).astype(np.float32) * 3
    return _session(model).run(["y"], {"x": x})[0]


def test_fuse_folds_affines_into_convs_and_rewrites_hardswish() -> None:
    ref = _run_block(_lcnet_block())
    model, counts = fuse_affine_activations(_lcnet_block())
    assert counts == {"affine_after_conv": 2, "hardswish": 1, "affine_before_conv": 1}
    assert [n.op_type for n in model.graph.node] == ["Conv", "HardSigmoid", "Mul", "Conv"]
    np.testing.assert_allclose(_run_block(model), ref, rtol=1e-5, atol=1e-5)


def test_fuse_keeps_an_affine_before_a_padded_conv() -> None:
    """Zero padding is not shifted by the affine, so folding it into a padded Conv would be wrong."""
    ref = _run_block(_lcnet_block(second_pad=1))
    model, counts = fuse_affine_activations(_lcnet_block(second_pad=1))
    assert counts["affine_before_conv"] == 0 and counts["affine_after_conv"] == 2
    np.testing.assert_allclose(_run_block(model), ref, rtol=1e-5, atol=1e-5)


def test_fuse_leaves_a_conv_whose_output_is_also_used_elsewhere() -> None:
    model, counts = fuse_affine_activations(_lcnet_block(conv_used_twice=True))
    assert counts["affine_after_conv"] == 0
    np.testing.assert_allclose(_run_block(model), _run_block(_lcnet_block(conv_used_twice=True)), rtol=1e-5,
                               atol=1e-5)


def test_fuse_leaves_a_graph_without_the_patterns_unchanged() -> None:
    model = _identity_nchw()
    before = model.SerializeToString()
    model, counts = fuse_affine_activations(model)
    assert not any(counts.values()) and model.SerializeToString() == before


# ----------------------------------------------------------------- convtranspose_as_depth_to_space
def _db_head(kernel: int = 2, stride: int = 2, pads: int = 0):
    """The DB head's upsampling: ConvTranspose(4->3) + per-channel bias + Relu, ConvTranspose(3->1) +
    bias, sigmoid and the UINT8 map (uint8_prob_map_output)."""
    rng = np.random.default_rng(7)
    inits = [onnx.numpy_helper.from_array(v.astype(np.float32), n) for n, v in (
        ("w1", rng.normal(size=(4, 3, kernel, kernel))), ("b1", rng.normal(size=(1, 3, 1, 1))),
        ("w2", rng.normal(size=(3, 1, kernel, kernel))), ("b2", rng.normal(size=(1, 1, 1, 1))))]
    nodes = [
        helper.make_node("ConvTranspose", ["x", "w1"], ["up1"], kernel_shape=[kernel] * 2, strides=[stride] * 2,
                         pads=[pads] * 4),
        helper.make_node("Add", ["up1", "b1"], ["up1b"]),
        helper.make_node("Relu", ["up1b"], ["act"]),
        helper.make_node("ConvTranspose", ["act", "w2"], ["up2"], kernel_shape=[kernel] * 2, strides=[stride] * 2,
                         pads=[pads] * 4),
        helper.make_node("Add", ["up2", "b2"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], ["prob_map"]),
    ]
    graph = helper.make_graph(nodes, "head", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 5, 7])],
                              [helper.make_tensor_value_info("prob_map", TensorProto.FLOAT, [1, 1, None, None])],
                              initializer=inits)
    return uint8_prob_map_output(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12)], ir_version=8))


def _run_head(model) -> np.ndarray:
    x = np.random.default_rng(8).normal(size=(1, 4, 5, 7)).astype(np.float32)
    return _session(model).run(["prob_map"], {"x": x})[0]


def test_convtranspose_becomes_conv_and_depth_to_space_after_the_elementwise_ops() -> None:
    ref = _run_head(_db_head())
    model, counts = convtranspose_as_depth_to_space(_db_head())
    assert counts == {"convtranspose": 2, "elementwise_before_depth_to_space": 8}
    ops = [n.op_type for n in model.graph.node]
    assert "ConvTranspose" not in ops and ops.count("DepthToSpace") == 2
    # everything after the last Conv, the UINT8 cast included, runs before its DepthToSpace
    assert ops[ops.index("Conv", ops.index("DepthToSpace")):] == ["Conv", "Add", "Sigmoid", "Mul", "Add", "Clip",
                                                                  "Cast", "DepthToSpace"]
    out = _run_head(model)
    assert out.shape == ref.shape == (1, 1, 20, 28) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= 1  # float rounding only, at the 0.5 boundary


@pytest.mark.parametrize(("kernel", "stride", "pads"), [(3, 2, 0), (2, 2, 1), (2, 1, 0)])
def test_convtranspose_with_overlapping_or_padded_blocks_is_left_as_it_is(kernel: int, stride: int,
                                                                          pads: int) -> None:
    before = _db_head(kernel, stride, pads).SerializeToString()
    model, counts = convtranspose_as_depth_to_space(_db_head(kernel, stride, pads))
    assert not any(counts.values()) and model.SerializeToString() == before


def test_depth_to_space_stays_before_an_op_that_mixes_channels() -> None:
    model = _db_head()
    model.graph.node.insert(2, helper.make_node("Softmax", ["up1b"], ["mixed"], axis=1))
    model.graph.node[3].input[0] = "mixed"  # Relu reads a softmax across the channels
    ref = _run_head(model)
    model, counts = convtranspose_as_depth_to_space(model)
    assert counts["convtranspose"] == 2
    ops = [n.op_type for n in model.graph.node]
    first = ops.index("DepthToSpace")
    assert ops[first - 2:first + 2] == ["Conv", "Add", "DepthToSpace", "Softmax"]  # the bias moved, not the softmax
    assert np.abs(_run_head(model).astype(int) - ref.astype(int)).max() <= 1


def _stem(groups: int = 1, second_user: bool = False):
    """PP-HGNetV2's stem: a MaxPool branch and a Conv branch concatenated on the channels, then a
    strided, padded 3x3 Conv (with bias) over the concatenation."""
    rng = np.random.default_rng(9)
    inits = [onnx.numpy_helper.from_array(v.astype(np.float32), n) for n, v in (
        ("wa", rng.normal(size=(5, 3, 1, 1))), ("wc", rng.normal(size=(4, 8 // groups, 3, 3))),
        ("bc", rng.normal(size=(4,))))]
    nodes = [
        helper.make_node("MaxPool", ["x"], ["pooled"], kernel_shape=[2, 2], strides=[1, 1], pads=[0, 0, 1, 1]),
        helper.make_node("Conv", ["x", "wa"], ["branch"]),
        helper.make_node("Concat", ["pooled", "branch"], ["both"], axis=1),
        helper.make_node("Conv", ["both", "wc", "bc"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4,
                         group=groups),
    ]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, None, None])]
    if second_user:
        outputs.append(helper.make_tensor_value_info("both", TensorProto.FLOAT, [1, 8, None, None]))
    graph = helper.make_graph(nodes, "stem", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 9, 11])],
                              outputs, initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12)], ir_version=8)


def _run_stem(model) -> np.ndarray:
    x = np.random.default_rng(10).normal(size=(1, 3, 9, 11)).astype(np.float32)
    return _session(model).run(["y"], {"x": x})[0]


def test_conv_over_a_concat_becomes_a_sum_of_convs_over_its_inputs() -> None:
    ref = _run_stem(_stem())
    model, counts = concat_conv_as_sum(_stem())
    assert counts == {"concat_conv": 1}
    assert [n.op_type for n in model.graph.node] == ["MaxPool", "Conv", "Conv", "Conv", "Add"]
    biased = [list(n.input) for n in model.graph.node if n.op_type == "Conv" and n.input[0] != "x"]
    assert [len(i) for i in biased] == [3, 2]  # the bias is added once
    out = _run_stem(model)
    assert out.shape == ref.shape == (1, 4, 5, 6)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("groups", "second_user"), [(2, False), (1, True)])
def test_concat_feeding_a_grouped_conv_or_another_user_is_left_as_it_is(groups: int, second_user: bool) -> None:
    before = _stem(groups, second_user).SerializeToString()
    model, counts = concat_conv_as_sum(_stem(groups, second_user))
    assert counts == {"concat_conv": 0} and model.SerializeToString() == before


# ----------------------------------------------------------------- residual_scale_as_multiply
def _rse(mul_first: bool = False, shared_product: bool = False, other_tensor: bool = False):
    """The DB neck's residual squeeze-excitation: s = HardSigmoid(Conv(GlobalAveragePool(x))), then
    x + x * s plus the level above (here a second input)."""
    rng = np.random.default_rng(11)
    inits = [onnx.numpy_helper.from_array(rng.normal(size=(4, 4, 1, 1)).astype(np.float32), "w")]
    nodes = [
        helper.make_node("GlobalAveragePool", ["x"], ["pooled"]),
        helper.make_node("Conv", ["pooled", "w"], ["squeezed"]),
        helper.make_node("HardSigmoid", ["squeezed"], ["s"]),
        helper.make_node("Mul", ["up" if other_tensor else "x", "s"], ["xs"]),
        helper.make_node("Add", ["xs", "x"] if mul_first else ["x", "xs"], ["r"]),
        helper.make_node("Add", ["r", "up"], ["y"]),
    ]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 5, 6])]
    if shared_product:
        outputs.append(helper.make_tensor_value_info("xs", TensorProto.FLOAT, [1, 4, 5, 6]))
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4, 5, 6]) for n in ("x", "up")]
    graph = helper.make_graph(nodes, "rse", inputs, outputs, initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12)], ir_version=8)


def _run_rse(model) -> np.ndarray:
    rng = np.random.default_rng(12)
    feed = {n: rng.normal(size=(1, 4, 5, 6)).astype(np.float32) for n in ("x", "up")}
    return _session(model).run(["y"], feed)[0]


@pytest.mark.parametrize("mul_first", [False, True])
def test_residual_scale_becomes_one_multiply_by_one_plus_the_scale(mul_first: bool) -> None:
    ref = _run_rse(_rse(mul_first))
    model, counts = residual_scale_as_multiply(_rse(mul_first))
    assert counts == {"residual_scale": 1}
    nodes = list(model.graph.node)
    assert [n.op_type for n in nodes] == ["GlobalAveragePool", "Conv", "HardSigmoid", "Add", "Mul", "Add"]
    one_plus, mul = nodes[3], nodes[4]
    assert one_plus.input[0] == "s" and list(mul.input) == ["x", one_plus.output[0]]
    assert mul.output[0] == "r"  # the replaced Add's output, so its users read the product unchanged
    one = next(i for i in model.graph.initializer if i.name == one_plus.input[1])
    assert onnx.numpy_helper.to_array(one) == 1.0
    np.testing.assert_allclose(_run_rse(model), ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(("shared_product", "other_tensor"), [(True, False), (False, True)])
def test_a_product_used_elsewhere_or_of_another_tensor_is_left_as_it_is(shared_product: bool,
                                                                        other_tensor: bool) -> None:
    before = _rse(shared_product=shared_product, other_tensor=other_tensor).SerializeToString()
    model, counts = residual_scale_as_multiply(_rse(shared_product=shared_product, other_tensor=other_tensor))
    assert counts == {"residual_scale": 0} and model.SerializeToString() == before
