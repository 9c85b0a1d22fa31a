"""CPU runtime model: one ONNX network run by onnxruntime (installed as <model>/1/model.py).

Requests that arrive together (dynamic batching) and share a shape are run as one batch. The
config's input/output names are the graph's (checked at load). The time inside onnxruntime is
exported as ocr_network_compute_seconds_total{model=...}: Triton's compute_infer of this model also
counts the stub round trip, which is not network compute (scripts/bench.py uses this counter).
"""
from __future__ import annotations

import os
import time

import numpy as np

from ppocr_steps import metrics as m
from ppocr_steps.onnx_runtime import OrtModel
from ppocr_steps import triton_adapter as ta


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = ta.model_config(args)
        params = ta.config_parameters(config)
        self.input_name = config["input"][0]["name"]
        self.output_names = [o["name"] for o in config["output"]]
        self.model = OrtModel.from_parameters(os.path.join(args["model_repository"], args["model_version"]), params)
        graph = ([self.model.input_name], self.model.output_names)
        if graph != ([self.input_name], self.output_names):
            raise ValueError(f"{self.model.path}: graph inputs/outputs {graph} differ from config.pbtxt "
                             f"{([self.input_name], self.output_names)} (re-run server/ocr_server/fetch_models.py)")
        self.model_name = args["model_name"]
        self.metrics = ta.create_metrics(specs=[m.NETWORK_COMPUTE])

    def execute(self, requests: list) -> list:
        arrays = []
        for request in requests:
            try:
                arrays.append(ta.input_array(request, self.input_name))
            except Exception as exc:  # noqa: BLE001
                arrays.append(exc)
        groups: dict[tuple, list[int]] = {}
        for i, a in enumerate(arrays):
            if isinstance(a, np.ndarray):
                groups.setdefault((a.shape[1:], a.dtype.str), []).append(i)
        outputs: dict[int, list[np.ndarray] | BaseException] = {}
        for members in groups.values():
            try:
                batch = np.concatenate([arrays[i] for i in members]) if len(members) > 1 else arrays[members[0]]
                t0 = time.perf_counter()
                results = self.model.run(batch)
                self.metrics.network_compute(self.model_name, time.perf_counter() - t0)
                start = 0
                for i in members:
                    n = len(arrays[i])
                    outputs[i] = [r[start:start + n] for r in results]
                    start += n
            except Exception as exc:  # noqa: BLE001
                for i in members:
                    outputs[i] = exc
        responses = []
        for i, a in enumerate(arrays):
            out = a if isinstance(a, BaseException) else outputs[i]
            if isinstance(out, BaseException):
                responses.append(ta.error_response(out))
            else:
                responses.append(ta.make_response(dict(zip(self.output_names, out))))
        return responses
