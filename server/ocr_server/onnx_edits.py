"""Graph edits that move per-pixel and per-timestep work from the Python steps into the networks.

Applied by server/ocr_server/fetch_models.py to the wheels' graphs (after the input/output renaming), so that
onnxruntime (CPU) and TensorRT (GPU) run them as part of the model:

* detector: the input becomes the resized image itself, UINT8 [N, H, W, 3] in the image's channel
  order (BGR). The graph casts, transposes to NCHW and normalises, (x / 255 - mean[c]) / std[c], in the
  same float32 arithmetic the Python step used (x * (1 / (255 std)) - mean / std). The tensor that
  travels from det_preprocess to det_model is a quarter of the FP32 one, and no Python code touches
  every pixel. The Cast comes first: TensorRT accepts UINT8 only as a network input feeding a Cast.
* classifier and recogniser: the same edit for the line crops, UINT8 [N, 48, W, 3], normalised
  x / 127.5 - 1 (mean 0.5, std 0.5, as PaddleOCR's cls/rec pre-processing). rec_pipeline only
  resizes the crops and pads them (ppocr_steps.recognize.crop_batch), so no Python code normalises
  every pixel of a batch, and a call copies a quarter of the bytes.
* detector: the probability map output becomes UINT8 [N, 1, H, W], round(255 p), clipped to 0..255
  (`uint8_prob_map_output`). It is the largest tensor between two steps (~1 M values for a 960-px
  image); as bytes it is a quarter of the float map to write to shared memory and copy, and DB
  post-processing reads it as bytes (thresholds scaled by 255; a quantisation step of 1/255 is far
  below what thresh/box_thresh resolve).
* recogniser: the softmax [N, T, C] (C = 6625 for v4, 18385 for v5) is reduced in the graph to what
  greedy CTC decoding needs: the best class per timestep (INT32 [N, T]) and its probability
  (FP32 [N, T]). That is C times less data out of the model and no arg-max in Python. The OpenVINO
  copy instead ends at the logits (`ctc_logits_output`): its CPU plugin makes a pass over all C
  classes for each of the softmax, a conversion and the arg-max, and the runtime computes the head on
  the host (ppocr_steps.ctc_head) in one arg-max pass plus the timesteps greedy CTC keeps.

* all three networks (`fuse_affine_activations`): PaddlePaddle's exporter writes PP-LCNet's blocks
  as Conv -> Mul(scalar) -> Add(scalar) -> hardswish as Add(3) -> Clip(0, 6) -> Mul -> Div(6) ->
  Mul(scalar) -> Add(scalar). onnxruntime runs every one of those element-wise ops as a separate
  pass over the activations, a large share of the recogniser's time. The edit folds the scalar affine after
  a Conv into its weights and bias, the scalar affine before an unpadded Conv (1x1) into that Conv,
  and writes hardswish as x * HardSigmoid(x; 1/6, 1/2). The algebra is exact; only float rounding
  differs (the recogniser's arg-max is identical; docs/benchmarks.md). OpenVINO fuses the
  exporter's affines and hardswish into the Convs itself and runs the folded graph slower, so the copy
  of each graph served to OpenVINO is written without this edit.
* detector, OpenVINO copy (`convtranspose_as_depth_to_space`): the DB head upsamples with two
  ConvTranspose layers of kernel = stride = 2, the last one to a single channel. OpenVINO's CPU plugin
  runs those in f32, and the one-channel map and the element-wise ops after it (sigmoid, the UINT8
  output) in a 16-channel blocked layout, 16 times the work. A ConvTranspose whose kernel equals
  its stride writes each input pixel to its own k x k output block, so it is a 1x1 Conv to k*k*C
  channels followed by DepthToSpace(k); the element-wise ops after it run before the DepthToSpace
  (per-channel constants repeated per block), on a dense k*k-channel tensor. Exact algebra.
* detector, OpenVINO copy (`concat_conv_as_sum`): PP-HGNetV2's stem and the DB neck concatenate
  branches of 24 channels, which OpenVINO's CPU plugin cannot lay out in place in its 16-channel
  blocks, so it copies them with a reference kernel. When a channel Concat feeds only a Conv, that
  Conv is the sum of one Conv per branch over its slice of the input channels (the bias added once),
  and the Concat goes. Exact algebra; the Adds become the Convs' sum post-ops.
* detector, OpenVINO copy (`residual_scale_as_multiply`): the DB neck's residual squeeze-excitation
  blocks (RSE-FPN) compute x + x * s, s a per-channel scale. OpenVINO runs the Multiply as its own
  pass over x and then adds three full-size tensors (x, x * s and the upsampled level above). Written
  as x * (1 + s), with 1 + s computed on the [N, C, 1, 1] scale, the Multiply joins the Add in one
  element-wise pass. Exact algebra.

Each edit checks the graph it is given and refuses one that does not have the expected shape.
"""
from __future__ import annotations

from collections.abc import Sequence

__all__ = ["uint8_image_input", "uint8_prob_map_output", "greedy_ctc_outputs", "ctc_logits_output",
           "fuse_affine_activations", "convtranspose_as_depth_to_space", "concat_conv_as_sum",
           "residual_scale_as_multiply", "EDITS_VERSION"]

# Bump when an edit changes: fetch_models.py regenerates model sets stamped with another version.
EDITS_VERSION = 10


def _single_input(graph):  # noqa: ANN001, ANN202 - onnx protobuf types
    inits = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise ValueError(f"expected one graph input, got {[i.name for i in inputs]}")
    return inputs[0]


def _opset(model) -> int:  # noqa: ANN001
    """The graph's version of the default ONNX operator set (0 if it imports none)."""
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


def _single_output(graph):  # noqa: ANN001, ANN202
    if len(graph.output) != 1:
        raise ValueError(f"expected one graph output, got {[o.name for o in graph.output]}")
    return graph.output[0]


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
    _rename_uses(graph, name, inner)
    scale = np.asarray([1.0 / (255.0 * s) for s in std], dtype=np.float32).reshape(1, 3, 1, 1)
    bias = np.asarray([-m / s for m, s in zip(mean, std, strict=True)], dtype=np.float32).reshape(1, 3, 1, 1)
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


def uint8_prob_map_output(model):  # noqa: ANN001, ANN201
    """Make the FP32 [N,1,H,W] probability output (0..1) a UINT8 output of the same name: round(255 p).

    Mul 255, Add 0.5, Clip 0..255, Cast: the Clip keeps the Cast in range whatever the runtime's
    float-to-integer rounding (onnxruntime truncates, so this rounds half up)."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    out = _single_output(graph)
    dims = out.type.tensor_type.shape.dim
    if len(dims) != 4 or dims[1].dim_value not in (0, 1) or out.type.tensor_type.elem_type != TensorProto.FLOAT:
        raise ValueError(f"expected an FP32 [N,1,H,W] output, got {out.name}")  # (v5's graph leaves the 1 symbolic)
    name = out.name
    inner = f"{name}_f32"
    _rename_tensor(graph, name, inner)
    for const, value in (("scale", 255.0), ("half", 0.5), ("lo", 0.0), ("hi", 255.0)):
        graph.initializer.append(numpy_helper.from_array(np.asarray(value, dtype=np.float32), f"{name}_{const}"))
    graph.node.extend([
        helper.make_node("Mul", [inner, f"{name}_scale"], [f"{name}_x255"], name=f"{name}_mul"),
        helper.make_node("Add", [f"{name}_x255", f"{name}_half"], [f"{name}_rounded"], name=f"{name}_add"),
        helper.make_node("Clip", [f"{name}_rounded", f"{name}_lo", f"{name}_hi"], [f"{name}_clipped"],
                         name=f"{name}_clip"),
        helper.make_node("Cast", [f"{name}_clipped"], [name], to=TensorProto.UINT8, name=f"{name}_cast"),
    ])
    shape = [d.dim_param or d.dim_value for d in dims]
    graph.output.remove(out)
    graph.output.append(helper.make_tensor_value_info(name, TensorProto.UINT8, shape))
    return model


def greedy_ctc_outputs(model, ids_name: str, probs_name: str):  # noqa: ANN001, ANN201
    """Replace the [N,T,C] softmax output by its arg-max (INT32 [N,T]) and max (FP32 [N,T]) over C."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    out = _single_output(graph)
    dims = out.type.tensor_type.shape.dim
    if len(dims) != 3:
        raise ValueError(f"expected an [N,T,C] output, got {out.name} with {len(dims)} dims")
    softmax = out.name
    opset = _opset(model)
    if opset >= 18:  # Reduce* take their axes as an input from opset 18 on
        graph.initializer.append(numpy_helper.from_array(np.asarray([2], dtype=np.int64), f"{probs_name}_axes"))
        reduce_max = helper.make_node("ReduceMax", [softmax, f"{probs_name}_axes"], [probs_name], keepdims=0,
                                      name=probs_name)
    else:
        reduce_max = helper.make_node("ReduceMax", [softmax], [probs_name], axes=[2], keepdims=0, name=probs_name)
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


def ctc_logits_output(model, logits_name: str):  # noqa: ANN001, ANN201
    """Drop the recogniser's final softmax: the graph outputs its input, the logits [N,T,C], as
    `logits_name` (the OpenVINO runtime computes the greedy-CTC head from them on the host)."""
    from onnx import helper

    graph = model.graph
    out = _single_output(graph)
    dims = out.type.tensor_type.shape.dim
    producers = [n for n in graph.node if out.name in n.output]
    if len(dims) != 3 or len(producers) != 1 or producers[0].op_type != "Softmax":
        raise ValueError(f"expected an [N,T,C] output {out.name} computed by a Softmax")
    softmax = producers[0]
    opset = _opset(model)
    axis = next((a.i for a in softmax.attribute if a.name == "axis"), -1 if opset >= 13 else 1)  # ONNX defaults
    if axis not in (2, -1):
        raise ValueError(f"expected the softmax over the last axis, got axis={axis}")
    logits = softmax.input[0]
    graph.node.remove(softmax)
    _rename_tensor(graph, logits, logits_name)
    shape = [d.dim_param or d.dim_value or "?" for d in dims]
    graph.output.remove(out)
    graph.output.append(helper.make_tensor_value_info(logits_name, out.type.tensor_type.elem_type, shape))
    return model


# ----------------------------------------------------------------------------- fuse_affine_activations
def _constants(graph) -> dict:  # noqa: ANN001
    """name -> numpy value of every initializer and Constant node output."""
    from onnx import numpy_helper

    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


class _Graph:
    """Producer/consumer index of a graph, rebuilt after each rewrite (the graphs are small)."""

    def __init__(self, graph) -> None:  # noqa: ANN001
        self.graph = graph
        self.consts = _constants(graph)
        self.outputs = {o.name for o in graph.output}
        self.producer = {o: n for n in graph.node for o in n.output}
        self.users: dict[str, list] = {}
        for n in graph.node:
            for i in n.input:
                self.users.setdefault(i, []).append(n)

    def convs(self) -> list:
        """The Conv nodes with constant weights, the only ones a fold can rewrite."""
        return [n for n in self.graph.node if n.op_type == "Conv" and n.input[1] in self.consts]

    def scalar(self, name: str) -> float | None:
        value = self.consts.get(name)
        return float(value.reshape(-1)[0]) if value is not None and value.size == 1 else None

    def only_user(self, name: str):  # noqa: ANN201
        users = self.users.get(name, [])
        return users[0] if len(users) == 1 and name not in self.outputs else None

    def scalar_op(self, node) -> tuple[str, float] | None:  # noqa: ANN001
        """(variable input, constant) of a Mul/Add of a tensor by a scalar constant."""
        if node is None or node.op_type not in ("Mul", "Add") or len(node.input) != 2:
            return None
        a, b = node.input
        kb, ka = self.scalar(b), self.scalar(a)
        if kb is not None and a not in self.consts:
            return a, kb
        if ka is not None and b not in self.consts:
            return b, ka
        return None


def _conv_params(g: _Graph, conv):  # noqa: ANN001, ANN202
    import numpy as np

    w = g.consts[conv.input[1]].astype(np.float64)
    b = (g.consts[conv.input[2]].astype(np.float64) if len(conv.input) > 2 and conv.input[2]
         else np.zeros(w.shape[0]))
    return w, b


def _set_conv_params(g: _Graph, conv, x: str, w, b, tag: str) -> None:  # noqa: ANN001
    import numpy as np
    from onnx import numpy_helper

    taken = {i.name for i in g.graph.initializer}
    n = 0
    while f"{conv.output[0]}_{tag}{n}_w" in taken or f"{conv.output[0]}_{tag}{n}_b" in taken:
        n += 1
    names = (f"{conv.output[0]}_{tag}{n}_w", f"{conv.output[0]}_{tag}{n}_b")
    g.graph.initializer.extend([numpy_helper.from_array(w.astype(np.float32), names[0]),
                                numpy_helper.from_array(b.astype(np.float32), names[1])])
    del conv.input[:]
    conv.input.extend([x, *names])


def _rename_uses(graph, old: str, new: str) -> None:  # noqa: ANN001
    for node in graph.node:
        node.input[:] = [new if i == old else i for i in node.input]


def _rename_tensor(graph, old: str, new: str) -> None:  # noqa: ANN001
    """Rename a tensor where a node computes it and where nodes read it."""
    for node in graph.node:
        node.output[:] = [new if o == old else o for o in node.output]
    _rename_uses(graph, old, new)


def _fold_affine_after_conv(graph) -> bool:  # noqa: ANN001
    """Conv -> Mul/Add by a scalar (the Conv's only user): fold the scalar into the Conv."""
    g = _Graph(graph)
    for conv in g.convs():
        user = g.only_user(conv.output[0])
        op = g.scalar_op(user)
        if op is None or user.output[0] in g.outputs:
            continue
        w, b = _conv_params(g, conv)
        k = op[1]
        w, b = (w * k, b * k) if user.op_type == "Mul" else (w, b + k)
        _set_conv_params(g, conv, conv.input[0], w, b, "post")
        _rename_uses(graph, user.output[0], conv.output[0])
        graph.node.remove(user)
        return True
    return False


def _fold_affine_before_conv(graph) -> bool:  # noqa: ANN001
    """[Mul by s ->] Add b (or a lone Mul) feeding only an unpadded Conv: conv(s x + b) = conv'(x)."""
    g = _Graph(graph)
    for conv in g.convs():
        attrs = {a.name: a for a in conv.attribute}
        if any(attrs["pads"].ints) if "pads" in attrs else False:
            continue
        if "auto_pad" in attrs and attrs["auto_pad"].s not in (b"NOTSET", b"VALID"):
            continue
        last = g.producer.get(conv.input[0])
        op = g.scalar_op(last) if last is not None and g.only_user(conv.input[0]) is conv else None
        if op is None or last is None:
            continue
        chain, (x, k) = [last], op
        scale, shift = (k, 0.0) if last.op_type == "Mul" else (1.0, k)
        first = g.producer.get(x)
        first_op = g.scalar_op(first) if last.op_type == "Add" and g.only_user(x) is last else None
        if first_op is not None and first is not None and first.op_type == "Mul":
            chain.insert(0, first)
            x, scale = first_op[0], first_op[1]
        w, b = _conv_params(g, conv)
        b = b + shift * w.sum(axis=(1, 2, 3))
        _set_conv_params(g, conv, x, w * scale, b, "pre")
        for node in chain:
            graph.node.remove(node)
        return True
    return False


def _hardswish_as_hardsigmoid(graph) -> bool:  # noqa: ANN001
    """Add(x, 3) -> Clip(0, 6) -> Mul(x, .) -> Div(6)  =>  Mul(x, HardSigmoid(x; 1/6, 1/2))."""
    from onnx import helper

    g = _Graph(graph)
    for add in graph.node:
        if add.op_type != "Add" or len(add.input) != 2 or g.scalar(add.input[1]) != 3.0:
            continue
        x = add.input[0]
        clip = g.only_user(add.output[0])
        if clip is None or clip.op_type != "Clip" or len(clip.input) != 3 \
                or (g.scalar(clip.input[1]), g.scalar(clip.input[2])) != (0.0, 6.0):
            continue
        mul = g.only_user(clip.output[0])
        if mul is None or mul.op_type != "Mul" or sorted(mul.input) != sorted([x, clip.output[0]]):
            continue
        div = g.only_user(mul.output[0])
        if div is None or div.op_type != "Div" or div.input[0] != mul.output[0] or g.scalar(div.input[1]) != 6.0:
            continue
        at = list(graph.node).index(add)
        for node in (add, clip, mul, div):
            graph.node.remove(node)
        gate = f"{div.output[0]}_hsig"
        graph.node.insert(at, helper.make_node("HardSigmoid", [x], [gate], alpha=1.0 / 6.0, beta=0.5,
                                               name=f"{div.output[0]}_hardsigmoid"))
        graph.node.insert(at + 1, helper.make_node("Mul", [x, gate], [div.output[0]], name=f"{div.output[0]}_hswish"))
        return True
    return False


def _drop_unused_constants(graph) -> None:  # noqa: ANN001
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)
    for node in [n for n in graph.node if n.op_type == "Constant" and n.output[0] not in used]:
        graph.node.remove(node)


def fuse_affine_activations(model):  # noqa: ANN001, ANN201
    """Fold scalar affines into neighbouring Convs and rewrite hardswish (see the module docstring).

    Returns (model, counts): how many of each rewrite were made (all 0 for a graph without the
    patterns, which is left as it was)."""
    graph = model.graph
    counts = {}
    rewrites = (("affine_after_conv", _fold_affine_after_conv),
                ("hardswish", _hardswish_as_hardsigmoid),
                ("affine_before_conv", _fold_affine_before_conv))
    for name, rewrite in rewrites:
        n = 0
        while rewrite(graph):
            n += 1
        counts[name] = n
    _drop_unused_constants(graph)
    return model, counts


# --------------------------------------------------------------------- convtranspose_as_depth_to_space
#: Element-wise ops a DepthToSpace can be moved behind: unary, or with constant (scalar/per-channel) operands.
_UNARY = ("Relu", "Sigmoid", "HardSigmoid", "Tanh", "Clip", "Cast")
_BINARY = ("Add", "Mul", "Sub", "Div")


def _attrs(node) -> dict:  # noqa: ANN001
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _convtranspose_as_conv(graph) -> bool:  # noqa: ANN001
    """ConvTranspose, kernel = stride = k, no padding/groups/dilation => Conv1x1 to k*k*C + DepthToSpace(k)."""
    import numpy as np
    from onnx import helper, numpy_helper

    g = _Graph(graph)
    for node in graph.node:
        if node.op_type != "ConvTranspose" or node.input[1] not in g.consts:
            continue
        w = g.consts[node.input[1]]  # [C_in, C_out, k, k]
        a = _attrs(node)
        k = list(a.get("kernel_shape", w.shape[2:]))
        if w.ndim != 4 or len(k) != 2 or k[0] != k[1] or list(a.get("strides", [1, 1])) != k \
                or a.get("group", 1) != 1 or any(a.get("pads", [])) or any(a.get("output_padding", [])) \
                or any(d != 1 for d in a.get("dilations", [])) or "output_shape" in a \
                or a.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID") or len(node.input) > 2 and node.input[2] \
                and node.input[2] not in g.consts:
            continue
        block, (c_in, c_out) = k[0], w.shape[:2]
        # DepthToSpace "DCR": input channel (a * k + b) * C_out + c is output pixel (a, b) of channel c
        weight = w.transpose(2, 3, 1, 0).reshape(block * block * c_out, c_in, 1, 1)
        bias = g.consts[node.input[2]] if len(node.input) > 2 and node.input[2] else np.zeros(c_out, w.dtype)
        out = node.output[0]
        names = (f"{out}_as_conv_w", f"{out}_as_conv_b", f"{out}_blocks")
        graph.initializer.extend([numpy_helper.from_array(weight.astype(np.float32), names[0]),
                                  numpy_helper.from_array(np.tile(bias, block * block).astype(np.float32), names[1])])
        at = list(graph.node).index(node)
        graph.node.remove(node)
        graph.node.insert(at, helper.make_node("Conv", [node.input[0], names[0], names[1]], [names[2]],
                                               kernel_shape=[1, 1], name=f"{out}_as_conv"))
        graph.node.insert(at + 1, helper.make_node("DepthToSpace", [names[2]], [out], blocksize=block, mode="DCR",
                                                   name=f"{out}_depth_to_space"))
        return True
    return False


def _constants_before_depth_to_space(g: _Graph, op, block: int) -> list[str] | None:  # noqa: ANN001
    """The constant inputs (after the first) that `op`, the only user of a DCR DepthToSpace's output,
    takes when it runs on the DepthToSpace's input instead; None if it is not element-wise in a way
    that allows it."""
    import numpy as np
    from onnx import numpy_helper

    constants = list(op.input[1:])
    if op.op_type in _UNARY:
        return constants if all(i in g.consts or not i for i in constants) else None
    if op.op_type not in _BINARY or len(constants) != 1 or constants[0] not in g.consts:
        return None
    value = g.consts[constants[0]]
    if value.size == 1:
        return constants
    if value.ndim == 4 and value.shape[0] == value.shape[2] == value.shape[3] == 1:  # per channel
        tiled = f"{constants[0]}_per_block{block}"
        if tiled not in g.consts:
            g.graph.initializer.append(numpy_helper.from_array(np.tile(value, (1, block * block, 1, 1)), tiled))
        return [tiled]
    return None


def _sink_depth_to_space(graph) -> bool:  # noqa: ANN001
    """DepthToSpace -> element-wise op (its only user) => the op, then the DepthToSpace."""
    g = _Graph(graph)
    for d2s in graph.node:
        if d2s.op_type != "DepthToSpace":
            continue
        a = _attrs(d2s)
        op = g.only_user(d2s.output[0])
        if a.get("mode", b"DCR") != b"DCR" or op is None or op.input[0] != d2s.output[0]:
            continue
        constants = _constants_before_depth_to_space(g, op, a["blocksize"])
        if constants is None:
            continue
        out, moved = op.output[0], f"{op.output[0]}_blocks"
        op.input[:] = [d2s.input[0], *constants]
        op.output[:] = [moved]
        d2s.input[:] = [moved]
        d2s.output[:] = [out]
        graph.node.remove(d2s)
        graph.node.insert(list(graph.node).index(op) + 1, d2s)
        return True
    return False


def convtranspose_as_depth_to_space(model):  # noqa: ANN001, ANN201
    """Write each ConvTranspose whose kernel equals its stride as a 1x1 Conv + DepthToSpace and run the
    element-wise ops after it before the DepthToSpace (see the module docstring).

    Returns (model, counts): the ConvTransposes rewritten and the ops moved (0 and 0 for a graph
    without the pattern, which is left as it was)."""
    graph = model.graph
    counts = {"convtranspose": 0, "elementwise_before_depth_to_space": 0}
    while _convtranspose_as_conv(graph):
        counts["convtranspose"] += 1
    while _sink_depth_to_space(graph):
        counts["elementwise_before_depth_to_space"] += 1
    _drop_unused_constants(graph)
    return model, counts


# ----------------------------------------------------------------------------- concat_conv_as_sum
def _channel_counts(model) -> dict[str, int]:  # noqa: ANN001
    """Tensor name -> channel count (dim 1) of every 4-D tensor whose count shape inference knows."""
    from onnx import shape_inference

    graph = shape_inference.infer_shapes(model).graph
    counts = {}
    for info in [*graph.input, *graph.value_info, *graph.output]:
        dims = info.type.tensor_type.shape.dim
        if len(dims) == 4 and dims[1].dim_value > 0:
            counts[info.name] = dims[1].dim_value
    return counts


def _split_concat_conv(graph, channels: dict[str, int]) -> bool:  # noqa: ANN001
    """Concat(axis 1) whose only user is a Conv (group 1, constant weights) => one Conv per input."""
    from onnx import helper, numpy_helper

    g = _Graph(graph)
    for cat in graph.node:
        conv = g.only_user(cat.output[0]) if cat.op_type == "Concat" and _attrs(cat).get("axis") == 1 else None
        if conv is None or conv.op_type != "Conv" or conv.input[0] != cat.output[0] \
                or conv.input[1] not in g.consts or _attrs(conv).get("group", 1) != 1 \
                or len(conv.input) > 2 and conv.input[2] and conv.input[2] not in g.consts:
            continue
        w = g.consts[conv.input[1]]
        sizes = [channels.get(x, 0) for x in cat.input]
        if len(sizes) < 2 or 0 in sizes or sum(sizes) != w.shape[1]:
            continue
        out, attrs, bias = conv.output[0], _attrs(conv), conv.input[2:]
        nodes, start, total = [], 0, ""
        for k, (x, size) in enumerate(zip(cat.input, sizes, strict=True)):
            weight, part = f"{out}_part{k}_w", f"{out}_part{k}"
            graph.initializer.append(numpy_helper.from_array(w[:, start:start + size].copy(), weight))
            start += size
            nodes.append(helper.make_node("Conv", [x, weight, *(bias if k == 0 else [])], [part], name=part, **attrs))
            if k:
                summed = out if k == len(sizes) - 1 else f"{out}_sum{k}"
                nodes.append(helper.make_node("Add", [total, part], [summed], name=f"{out}_sum{k}"))
                part = summed
            total = part
        at = list(graph.node).index(cat)
        graph.node.remove(cat)
        graph.node.remove(conv)
        for offset, node in enumerate(nodes):
            graph.node.insert(at + offset, node)
        return True
    return False


def concat_conv_as_sum(model):  # noqa: ANN001, ANN201
    """Write each Conv over a channel Concat as a sum of Convs over the Concat's inputs (see the module
    docstring). Returns (model, counts); a graph without the pattern is left as it was."""
    channels = _channel_counts(model)
    counts = {"concat_conv": 0}
    while _split_concat_conv(model.graph, channels):
        counts["concat_conv"] += 1
    _drop_unused_constants(model.graph)
    return model, counts


# ----------------------------------------------------------------------------- residual_scale_as_multiply
def _one_residual_scale(graph) -> bool:  # noqa: ANN001
    """Add(x, Mul(x, s)), the Mul's output used only there => Mul(x, Add(s, 1))."""
    import numpy as np
    from onnx import helper, numpy_helper

    g = _Graph(graph)
    for add in graph.node:
        if add.op_type != "Add" or len(add.input) != 2:
            continue
        for x, product in (add.input, reversed(add.input)):
            mul = g.producer.get(product)
            if mul is None or mul.op_type != "Mul" or x not in mul.input or mul.input[0] == mul.input[1] \
                    or g.only_user(mul.output[0]) is not add:
                continue
            scale = mul.input[1] if mul.input[0] == x else mul.input[0]
            one, one_plus = f"{product}_one", f"{product}_one_plus_scale"  # tensor names are unique
            graph.initializer.append(numpy_helper.from_array(np.ones((), np.float32), one))
            graph.node.insert(list(graph.node).index(mul), helper.make_node("Add", [scale, one], [one_plus],
                                                                             name=one_plus))
            mul.input[:] = [x, one_plus]
            mul.output[0] = add.output[0]
            graph.node.remove(add)
            return True
    return False


def residual_scale_as_multiply(model):  # noqa: ANN001, ANN201
    """Write each x + x * s as x * (1 + s) (see the module docstring). Returns (model, counts); a
    graph without the pattern is left as it was."""
    counts = {"residual_scale": 0}
    while _one_residual_scale(model.graph):
        counts["residual_scale"] += 1
    return model, counts
