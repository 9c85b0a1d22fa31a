"""CPU runtime model: one ONNX network run by onnxruntime or OpenVINO, as the config parameter `runtime`
says (installed as <model>/1/model.py).

Requests that arrive together (dynamic batching) and share a shape are run as one batch. The
config's input/output names are the graph's (checked at load). The time inside the runtime is
exported as ocr_network_compute_seconds_total{model=...}: Triton's compute_infer of this model also
counts the stub round trip, which is not network compute (scripts/bench.py uses this counter). The
rows of the watchdog's probe requests are left out of it (a batch's time is split by rows).

Every request is checked as hostile before it is batched (ppocr_steps.runtime_inputs: the limits of the
`ocr` path, from config.pbtxt), and one onnxruntime run holds at most `max_run_pixels` rows x H x W;
the detector runs each image of a zero-padded batch at its own extent.
"""
from __future__ import annotations

import os
import time
from typing import cast

import numpy as np

from ppocr_steps import metrics as m
from ppocr_steps import triton_adapter as ta
from ppocr_steps.batching import run_grouped
from ppocr_steps.onnx_runtime import load_runtime_model
from ppocr_steps.runtime_inputs import check_runtime_input, run_chunks, run_det_batch
from ppocr_steps.settings import limits_from_parameters


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = ta.model_config(args)
        params = ta.config_parameters(config)
        self.input_name = config["input"][0]["name"]
        self.output_names = [o["name"] for o in config["output"]]
        self.model = load_runtime_model(os.path.join(args["model_repository"], args["model_version"]), params)
        graph = ([self.model.input_name], self.model.output_names)
        if graph != ([self.input_name], self.output_names):
            raise ValueError(f"{self.model.path}: graph inputs/outputs {graph} differ from config.pbtxt "
                             f"{([self.input_name], self.output_names)} (re-run server/ocr_server/fetch_models.py)")
        self.model_name = args["model_name"]
        self.limits = limits_from_parameters(params)
        self.max_run_pixels = int(params["max_run_pixels"])
        self.metrics = ta.create_metrics(specs=[m.NETWORK_COMPUTE])

    def execute(self, requests: list) -> list:
        arrays: list[np.ndarray | BaseException] = []
        probes = [ta.is_probe(request) for request in requests]
        for request in requests:
            try:
                arrays.append(self._input(request))
            except Exception as exc:  # noqa: BLE001
                arrays.append(exc)

        def run(batch: np.ndarray, members: list[int]) -> list[np.ndarray]:
            # members are the requests whose input was read (an array, never an exception)
            share = sum(len(cast(np.ndarray, arrays[i])) for i in members if not probes[i]) / len(batch)

            def run_piece(piece: np.ndarray) -> list[np.ndarray]:
                return self._run(piece, share)

            if self.input_name == "det_input":
                return [run_det_batch(run_piece, batch, self.max_run_pixels)]
            return run_chunks(run_piece, batch, self.max_run_pixels)

        outcomes = run_grouped(arrays, run)
        return [ta.error_response(out) if isinstance(out, BaseException)
                else ta.make_response(dict(zip(self.output_names, out, strict=True))) for out in outcomes]

    def _input(self, request: object) -> np.ndarray:
        arr = ta.input_array(request, self.input_name)
        check_runtime_input(self.input_name, arr, self.limits)
        return arr

    def _run(self, batch: np.ndarray, counted_share: float) -> list[np.ndarray]:
        """Run one batch; only the share of rows of non-probe requests counts as network compute."""
        t0 = time.perf_counter()
        results = self.model.run(batch)
        if counted_share:
            self.metrics.network_compute(self.model_name, (time.perf_counter() - t0) * counted_share)
        return results
