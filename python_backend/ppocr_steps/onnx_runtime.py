"""onnxruntime session for the CPU target's det/cls/rec runtime models."""
from __future__ import annotations

import numpy as np

__all__ = ["OrtModel"]


class OrtModel:
    """One ONNX model, one input → one output. `intra_op_threads` 0 lets onnxruntime decide.

    `allow_spinning` False stops idle worker threads from busy-waiting: several sessions (det, cls,
    rec in separate stubs) share the cores, and spinning threads steal them from each other.
    """

    def __init__(self, path: str, intra_op_threads: int = 0, inter_op_threads: int = 1,
                 allow_spinning: bool = False) -> None:
        import onnxruntime as ort  # imported lazily: only the CPU runtime models need it

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        if intra_op_threads > 0:
            opts.intra_op_num_threads = intra_op_threads
        opts.inter_op_num_threads = inter_op_threads
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
        self.session = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: batch})[0]
