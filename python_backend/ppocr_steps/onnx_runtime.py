"""Network runtimes for the CPU target's det/cls/rec runtime models: onnxruntime or OpenVINO.

Both classes load one ONNX file with one input and have the same interface (`path`, `input_name`,
`output_names`, `run`, `__call__`), so the runtime stub and the in-process benchmark take either.
`load_runtime_model` builds the one a runtime model's config.pbtxt `parameters` name.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import numpy as np

from ppocr_steps.ctc_head import CTC_LOGITS, CTC_OUTPUTS, greedy_ctc_head

__all__ = ["OrtModel", "OvModel", "RuntimeModel", "RUNTIMES", "PRECISIONS", "PERFORMANCE_HINTS", "ORT_PARAMETERS",
           "OV_PARAMETERS", "load_runtime_model"]

# config.pbtxt parameters of a CPU runtime model that each runtime reads (load_runtime_model)
ORT_PARAMETERS = {"onnx_file", "intra_op_threads", "allow_spinning", "cpu_mem_arena"}
OV_PARAMETERS = {"openvino_file", "intra_op_threads", "inference_precision", "performance_hint", "num_streams",
                 "cpu_pinning"}

RUNTIMES = ("onnxruntime", "openvino")
#: OpenVINO inference precisions; set explicitly because its CPU plugin picks bf16 where the CPU has it.
PRECISIONS = ("f32", "bf16")
PERFORMANCE_HINTS = ("LATENCY", "THROUGHPUT")


class RuntimeModel(Protocol):
    path: str
    input_name: str
    output_names: list[str]

    def run(self, batch: np.ndarray) -> list[np.ndarray]: ...

    def __call__(self, batch: np.ndarray) -> np.ndarray | tuple[np.ndarray, ...]: ...


class _Callable:
    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        raise NotImplementedError

    def __call__(self, batch: np.ndarray) -> np.ndarray | tuple[np.ndarray, ...]:
        """The output array, or a tuple of them in the graph's order when the graph has several
        (the recogniser's ids and probabilities)."""
        outs = self.run(batch)
        return outs[0] if len(outs) == 1 else tuple(outs)


class OrtModel(_Callable):
    """One ONNX model run by onnxruntime. `intra_op_threads` 0 lets onnxruntime decide.

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

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        return self.session.run(self.output_names, {self.input_name: batch})


class OvModel(_Callable):
    """One ONNX model compiled by OpenVINO for the CPU, with its shapes left dynamic.

    `precision` is OpenVINO's INFERENCE_PRECISION_HINT ("f32" or "bf16"), `performance_hint` its
    PERFORMANCE_HINT, `num_streams` and `threads` (0: OpenVINO decides) its NUM_STREAMS and
    INFERENCE_NUM_THREADS. `cpu_pinning` False lets the OS move the threads: det, cls and rec run in
    separate stubs on the same cores, and threads pinned to a busy core wait for it. One infer request
    is reused: a Python-backend instance runs one batch at a time. A new input shape costs one shape
    inference on its first call (kernels are cached per shape by the CPU plugin's runtime cache).
    A recogniser whose graph ends at its logits (output `ctc_head.CTC_LOGITS`) gets its greedy-CTC
    head computed here (`ctc_head.greedy_ctc_head`, on two threads unless `threads` is 1), from bf16
    logits when it runs at bf16: OpenVINO spends more on the softmax and arg-max passes over all C
    classes than the host on one arg-max pass and the kept timesteps.
    """

    def __init__(self, path: str, precision: str, performance_hint: str = "LATENCY", num_streams: int = 1,
                 threads: int = 0, cpu_pinning: bool = False) -> None:
        import openvino as ov  # imported lazily: only the CPU runtime models with runtime=openvino need it

        if precision not in PRECISIONS:
            raise ValueError(f"inference_precision must be one of {PRECISIONS}, got {precision!r}")
        if performance_hint not in PERFORMANCE_HINTS:
            raise ValueError(f"performance_hint must be one of {PERFORMANCE_HINTS}, got {performance_hint!r}")
        config: dict[str, object] = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": performance_hint,
                                     "NUM_STREAMS": str(num_streams), "ENABLE_CPU_PINNING": cpu_pinning}
        if threads > 0:
            config["INFERENCE_NUM_THREADS"] = threads
        self.path = path
        core = ov.Core()
        model = core.read_model(path)
        # names as read (compiling may merge a tensor's names, e.g. a Cast's input and output)
        self.input_name = model.inputs[0].get_any_name()
        self.output_names = [o.get_any_name() for o in model.outputs]
        self.ctc_head = self.output_names == [CTC_LOGITS]
        self.bf16_logits = self.ctc_head and precision == "bf16"
        # the head's second thread, unless the runtime is held to one
        self.head_pool = ThreadPoolExecutor(1, "ctc-head") if self.ctc_head and threads != 1 else None
        if self.ctc_head:
            self.output_names = list(CTC_OUTPUTS)
            if self.bf16_logits:  # the logits as computed, without a conversion pass to f32
                from openvino.preprocess import PrePostProcessor

                ppp = PrePostProcessor(model)
                ppp.output(0).tensor().set_element_type(ov.Type.bf16)
                model = ppp.build()
        self.compiled = core.compile_model(model, "CPU", config)
        self.precision = self.compiled.get_property("INFERENCE_PRECISION_HINT").to_string()  # what it runs at
        self.request = self.compiled.create_infer_request()

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        if self.ctc_head:  # the head reads the output in place and returns new arrays
            self.request.infer({0: np.ascontiguousarray(batch)}, share_outputs=True)
            logits = self.request.get_output_tensor(0).data  # bf16 arrives as a float16 view of its bits
            return list(greedy_ctc_head(logits.view(np.uint16) if self.bf16_logits else logits, self.head_pool))
        result = self.request.infer({0: np.ascontiguousarray(batch)})
        return [np.array(result[i]) for i in range(len(self.output_names))]


_REQUIRED = {"onnxruntime": ORT_PARAMETERS, "openvino": OV_PARAMETERS}


def _flag(params: Mapping[str, str], key: str) -> bool:
    value = params[key].lower()
    if value not in ("true", "false"):
        raise ValueError(f"parameter {key} must be true or false, got {value!r}")
    return value == "true"


def load_runtime_model(version_dir: str, params: Mapping[str, str]) -> OrtModel | OvModel:
    """The network a CPU runtime model's config.pbtxt `parameters` describe (all required, config.pbtxt
    being their one source): `runtime` (onnxruntime | openvino), the graph of that runtime in the
    model's version directory (`onnx_file`, `openvino_file`: fetch_models.py writes a copy edited for
    each) and its settings: `intra_op_threads` (threads of either runtime; 0: the runtime decides),
    `allow_spinning` and `cpu_mem_arena` (onnxruntime), `inference_precision`, `performance_hint`, `num_streams` and
    `cpu_pinning` (OpenVINO)."""
    runtime = params.get("runtime", "")
    if runtime not in _REQUIRED:
        raise ValueError(f"parameter runtime must be one of {RUNTIMES}, got {runtime!r}")
    missing = sorted(set(_REQUIRED[runtime]) - set(params))
    if missing:
        raise ValueError(f"config parameter(s) {', '.join(missing)} missing in the runtime model's config.pbtxt")
    threads = int(params["intra_op_threads"])
    if runtime == "onnxruntime":
        return OrtModel(os.path.join(version_dir, params["onnx_file"]), threads,
                        allow_spinning=_flag(params, "allow_spinning"), cpu_mem_arena=_flag(params, "cpu_mem_arena"))
    return OvModel(os.path.join(version_dir, params["openvino_file"]), params["inference_precision"],
                   params["performance_hint"], int(params["num_streams"]), threads,
                   cpu_pinning=_flag(params, "cpu_pinning"))
