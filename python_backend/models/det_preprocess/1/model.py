"""Triton step `det_preprocess`: image bytes + optional parameters → detector input (see config.pbtxt)."""
from __future__ import annotations

import numpy as np

from ppocr_steps import metrics as m
from ppocr_steps.params import OcrParams, params_to_json
from ppocr_steps.pipeline import preprocess
from ppocr_steps.settings import PreprocessSettings, defaults_from_parameters, settings_from_parameters
from ppocr_steps import triton_adapter as ta

PARAM_INPUTS = [f for f in OcrParams.__dataclass_fields__]


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        params = ta.config_parameters(ta.model_config(args))
        self.settings = settings_from_parameters(params, PreprocessSettings)
        self.defaults = defaults_from_parameters(params)
        self.metrics = ta.create_metrics(specs=[m.IMAGES, m.STAGE_LATENCY, m.REJECTED_INPUTS],
                                         stages=["decode", "det_preprocess"])

    def _handle(self, request: object) -> dict[str, np.ndarray]:
        blobs = [bytes(b) for b in ta.input_array(request, "image_bytes").reshape(-1)]
        raw = {name: ta.optional_scalar(request, name) for name in PARAM_INPUTS}
        timings: dict[str, float] = {}
        out = preprocess(blobs, raw, self.defaults, self.settings, timings)
        self.metrics.images(len(blobs))
        self.metrics.stage_times(timings)
        return {"det_input": out.det_input, "images": out.images, "image_info": out.image_info,
                "ocr_params": np.array([params_to_json(out.params)], dtype=np.object_)}

    def execute(self, requests: list) -> list:
        return ta.execute_each(requests, self._handle, on_error=ta.count_rejections(self.metrics))
