"""Graph edits that move per-pixel and per-timestep work from the Python steps into the networks.

Applied by scripts/fetch_models.py to the wheels' graphs (after the input/output renaming), so that
onnxruntime (CPU) and TensorRT (GPU) run them as part of the model:

* detector: the input becomes the resized image itself, UINT8 [N, H, W, 3] in the image's channel
  order (BGR). The graph casts, transposes to NCHW and normalises, (x / 255 - mean[c]) / std[c], in the
  same float32 arithmetic the Python step used (x * (1 / (255 std)) - mean / std). The tensor that
  travels from det_preprocess to det_model is a quarter of the FP32 one, and no Python code touches
  every pixel. The Cast comes first: TensorRT accepts UINT8 only as a network input feeding a Cast.
* recogniser: the softmax [N, T, C] (C = 6625 for v4, 18385 for v5) is reduced in the graph to what
  greedy CTC decoding needs: the best class per timestep (INT32 [N, T]) and its probability
  (FP32 [N, T]). That is C times less data out of the model and no arg-max in Python.

Each edit checks the graph it is given and refuses one that does not have the expected shape.
"""
from __future__ import annotations

from typing import Sequence

__all__ = ["uint8_image_input", "greedy_ctc_outputs", "EDITS_VERSION"]

# Bump when an edit changes: fetch_models.py regenerates model sets stamped with another version.
EDITS_VERSION = 1


def _single_input(graph):  # noqa: ANN001, ANN202 - onnx protobuf types
    inits = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise ValueError(f"expected one graph input, got {[i.name for i in inputs]}")
    return inputs[0]


def uint8_image_input(model, mean: Sequence[float], std: Sequence[float]):  # noqa: ANN001, ANN201
    """Make the [N,3,H,W] float input a UINT8 [N,H,W,3] image input of the same name, normalised inside."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    inp = _single_input(graph)
    dims = inp.type.tensor_type.shape.dim
    if len(dims) != 4 or dims[1].dim_value != 3:
        raise ValueError(f"expected an [N,3,H,W] input, got {inp.name} with {len(dims)} dims")
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise ValueError(f"mean/std must be 3 values each (std > 0), got {mean} / {std}")
    name = inp.name
    inner = f"{name}_normalized"
    for node in graph.node:
        node.input[:] = [inner if n == name else n for n in node.input]
    scale = np.asarray([1.0 / (255.0 * s) for s in std], dtype=np.float32).reshape(1, 3, 1, 1)
    bias = np.asarray([-m / s for m, s in zip(mean, std)], dtype=np.float32).reshape(1, 3, 1, 1)
    graph.initializer.extend([numpy_helper.from_array(scale, f"{name}_scale"),
                              numpy_helper.from_array(bias, f"{name}_bias")])
    nodes = [
        helper.make_node("Cast", [name], [f"{name}_f32"], to=TensorProto.FLOAT, name=f"{name}_cast"),
        helper.make_node("Transpose", [f"{name}_f32"], [f"{name}_nchw"], perm=[0, 3, 1, 2],
                         name=f"{name}_to_nchw"),
        helper.make_node("Mul", [f"{name}_nchw", f"{name}_scale"], [f"{name}_scaled"], name=f"{name}_mul"),
        helper.make_node("Add", [f"{name}_scaled", f"{name}_bias"], [inner], name=f"{name}_add"),
    ]
    old = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + old)
    batch, height, width = (d.dim_param or d.dim_value for d in (dims[0], dims[2], dims[3]))
    new_input = helper.make_tensor_value_info(name, TensorProto.UINT8, [batch or "N", height or "H",
                                                                         width or "W", 3])
    graph.input.remove(inp)
    graph.input.insert(0, new_input)
    return model


def greedy_ctc_outputs(model, ids_name: str, probs_name: str):  # noqa: ANN001, ANN201
    """Replace the [N,T,C] softmax output by its arg-max (INT32 [N,T]) and max (FP32 [N,T]) over C."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    if len(graph.output) != 1:
        raise ValueError(f"expected one graph output, got {[o.name for o in graph.output]}")
    out = graph.output[0]
    dims = out.type.tensor_type.shape.dim
    if len(dims) != 3:
        raise ValueError(f"expected an [N,T,C] output, got {out.name} with {len(dims)} dims")
    softmax = out.name
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset >= 18:  # ReduceMax takes its axes as an input from opset 18 on
        graph.initializer.append(numpy_helper.from_array(np.asarray([2], dtype=np.int64), f"{probs_name}_axes"))
        reduce_max = helper.make_node("ReduceMax", [softmax, f"{probs_name}_axes"], [probs_name], keepdims=0,
                                      name=f"{probs_name}_max")
    else:
        reduce_max = helper.make_node("ReduceMax", [softmax], [probs_name], axes=[2], keepdims=0,
                                      name=f"{probs_name}_max")
    graph.node.extend([
        helper.make_node("ArgMax", [softmax], [f"{ids_name}_i64"], axis=2, keepdims=0, name=f"{ids_name}_argmax"),
        helper.make_node("Cast", [f"{ids_name}_i64"], [ids_name], to=TensorProto.INT32, name=f"{ids_name}_cast"),
        reduce_max,
    ])
    n, t = (d.dim_param or d.dim_value or "?" for d in dims[:2])
    graph.output.remove(out)
    graph.output.extend([helper.make_tensor_value_info(ids_name, TensorProto.INT32, [n, t]),
                         helper.make_tensor_value_info(probs_name, TensorProto.FLOAT, [n, t])])
    return model
