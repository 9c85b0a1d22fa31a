"""FP32 fallback for FP16-sensitive layers (decomposed LayerNorm, Softmax, reductions).

PP-OCR rec graphs carry LayerNorm decomposed into ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div
(opset 11-14); in FP16 the variance can overflow. When the FP16 gate fails, those layers are pinned
to FP32 (with precision constraints obeyed) and the engine is rebuilt and re-checked.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["SENSITIVE_ONNX_OPS", "sensitive_onnx_nodes", "select_sensitive_nodes", "pin_fp32_layers"]

log = logging.getLogger(__name__)
_warned_no_onnx = False

SENSITIVE_ONNX_OPS = frozenset({"ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceL2", "ReduceMax", "Pow",
                                "Sqrt", "Softmax", "LogSoftmax", "LayerNormalization", "Exp", "Log", "Erf"})


def _node_name(node: Any) -> str:
    # onnx-tensorrt names a layer after its node, or after the first output when the node is unnamed
    return node.name or f"node_of_{node.output[0]}"


def select_sensitive_nodes(nodes: Iterable[Any]) -> list[str]:
    """Names of sensitive nodes plus the Sub/Add/Div that close a decomposed LayerNorm, in graph order.

    `nodes` are ONNX NodeProto-like objects (op_type, name, input, output).
    """
    nodes = list(nodes)
    producer = {out: n for n in nodes for out in n.output}
    chosen: set[int] = set()
    for i, n in enumerate(nodes):
        if n.op_type in SENSITIVE_ONNX_OPS:
            chosen.add(i)
    index = {id(n): i for i, n in enumerate(nodes)}
    for i, n in enumerate(nodes):
        srcs = [producer.get(t) for t in n.input]
        ops = {s.op_type for s in srcs if s is not None}
        if n.op_type in ("Div", "Mul") and "Sqrt" in ops:          # x_centered / sqrt(var + eps)
            chosen.add(i)
        if n.op_type == "Sqrt":                                      # var + eps
            chosen.update(index[id(s)] for s in srcs if s is not None and s.op_type == "Add")
        if n.op_type == "Pow":                                       # x - mean
            chosen.update(index[id(s)] for s in srcs if s is not None and s.op_type == "Sub")
    return [_node_name(nodes[i]) for i in sorted(chosen)]


def sensitive_onnx_nodes(onnx_path: Path) -> list[str]:
    """Sensitive node names of an ONNX file (needs the `onnx` package; [] with a warning without it)."""
    global _warned_no_onnx
    try:
        import onnx  # noqa: PLC0415
    except ImportError:
        if _warned_no_onnx:
            return []
        _warned_no_onnx = True
        log.warning("the onnx package is not installed: FP32 fallback pins layers by TensorRT layer type only "
                    "(pip install onnx to pin the LayerNorm Sub/Add/Div by name too)")
        return []
    model = onnx.load(str(onnx_path), load_external_data=False)
    return select_sensitive_nodes(model.graph.node)


def _is_sensitive_type(layer: Any, trt: Any) -> bool:
    types = {getattr(trt.LayerType, n, None) for n in ("REDUCE", "SOFTMAX", "NORMALIZATION", "UNARY")}
    types.discard(None)
    if layer.type in types:
        return True
    if layer.type == trt.LayerType.ELEMENTWISE:
        layer.__class__ = trt.IElementWiseLayer
        return layer.op == trt.ElementWiseOperation.POW
    return False


def pin_fp32_layers(network: Any, trt: Any, node_names: Iterable[str]) -> list[str]:
    """Set FP32 precision + FP32 float outputs on sensitive layers of a parsed TensorRT network.

    A layer is pinned when its name is one of `node_names` (or `<name>_<suffix>`, the helper layers
    the parser adds) or its type is a reduction/softmax/normalisation/unary/pow. Returns the names.
    """
    names = set(node_names)
    pinned = []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        by_name = layer.name in names or any(layer.name.startswith(n + "_") for n in names)
        float_outputs = [j for j in range(layer.num_outputs) if layer.get_output(j).dtype == trt.float32]
        if not float_outputs or not (by_name or _is_sensitive_type(layer, trt)):
            continue  # shape / index arithmetic stays as it is
        layer.precision = trt.float32
        for j in float_outputs:
            layer.set_output_type(j, trt.float32)
        pinned.append(layer.name)
    return pinned
