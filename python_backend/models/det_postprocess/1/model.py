"""Triton step `det_postprocess`: prob_map → text boxes per image (DB post-processing, see config.pbtxt)."""
from __future__ import annotations

import numpy as np

from ppocr_steps import metrics as m
from ppocr_steps import triton_adapter as ta
from ppocr_steps.params import params_from_json
from ppocr_steps.pipeline import postprocess_detection
from ppocr_steps.settings import INPUT_LIMIT_KEYS, PostprocessSettings, limits_from_parameters, settings_from_parameters


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        params = ta.config_parameters(ta.model_config(args))
        self.settings = settings_from_parameters(params, PostprocessSettings, ignore=set(INPUT_LIMIT_KEYS))
        self.limits = limits_from_parameters(params)
        self.metrics = ta.create_metrics(specs=[m.BOXES_PER_IMAGE, m.STAGE_LATENCY, m.REJECTED_INPUTS],
                                         stages=["det_postprocess"])

    def _handle(self, request: object) -> dict[str, np.ndarray]:
        params = params_from_json(bytes(ta.input_array(request, "ocr_params").reshape(-1)[0]))
        info = ta.input_array(request, "image_info")
        timings: dict[str, float] = {}
        boxes, scores, index = postprocess_detection(ta.input_array(request, "prob_map"), info, params,
                                                     self.settings, timings, limits=self.limits)
        self.metrics.stage_times(timings)
        self.metrics.boxes_per_image(np.bincount(index, minlength=len(info)).tolist())
        return {"boxes": boxes, "box_scores": scores, "box_image_index": index}

    def execute(self, requests: list) -> list:
        return ta.execute_each(requests, self._handle, on_error=ta.count_rejections(self.metrics))
