"""onnxruntime session for the CPU target's det/cls/rec runtime models."""
from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

__all__ = ["OrtModel", "ORT_PARAMETERS"]

# config.pbtxt parameters of a CPU runtime model that OrtModel.from_parameters reads
ORT_PARAMETERS = {"onnx_file", "intra_op_threads", "allow_spinning", "cpu_mem_arena"}


class OrtModel:
    """One ONNX model with one input. Called on a batch it returns the output array, or a tuple of
    them in the graph's order when the graph has several (the recogniser's ids and probabilities).
    `intra_op_threads` 0 lets onnxruntime decide.

    `allow_spinning` False stops idle worker threads from busy-waiting: several sessions (det, cls,
    rec in separate stubs) share the cores, and spinning threads steal them from each other.
    `cpu_mem_arena` False gives each run's buffers back when it ends (the arena keeps the largest run's
    memory for the life of the process).
    """

    def __init__(self, path: str, intra_op_threads: int = 0, inter_op_threads: int = 1,
                 allow_spinning: bool = False, cpu_mem_arena: bool = True) -> None:
        import onnxruntime as ort  # imported lazily: only the CPU runtime models need it

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        opts.enable_cpu_mem_arena = cpu_mem_arena
        if intra_op_threads > 0:
            opts.intra_op_num_threads = intra_op_threads
        opts.inter_op_num_threads = inter_op_threads
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
        self.path = path
        self.session = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]

    @classmethod
    def from_parameters(cls, version_dir: str, params: Mapping[str, str]) -> "OrtModel":
        """The session a CPU runtime model's config.pbtxt `parameters` describe (all required, config.pbtxt
        being their one source): `onnx_file` (in the model's version directory), `intra_op_threads`,
        `allow_spinning` and `cpu_mem_arena`."""
        missing = sorted(ORT_PARAMETERS - set(params))
        if missing:
            raise ValueError(f"config parameter(s) {', '.join(missing)} missing in the runtime model's config.pbtxt")
        return cls(os.path.join(version_dir, params["onnx_file"]), int(params["intra_op_threads"]),
                   allow_spinning=params["allow_spinning"].lower() == "true",
                   cpu_mem_arena=params["cpu_mem_arena"].lower() == "true")

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        return self.session.run(self.output_names, {self.input_name: batch})

    def __call__(self, batch: np.ndarray) -> np.ndarray | tuple[np.ndarray, ...]:
        outs = self.run(batch)
        return outs[0] if len(outs) == 1 else tuple(outs)
