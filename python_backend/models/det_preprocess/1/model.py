"""Triton step `det_preprocess`: image bytes + optional parameters → detector input (see config.pbtxt)."""
from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial
from typing import cast

import numpy as np

from ppocr_steps import metrics as m
from ppocr_steps import triton_adapter as ta
from ppocr_steps.image_io import decoder_limit_problem
from ppocr_steps.orientation import classify_angles
from ppocr_steps.params import OcrParams, params_to_json
from ppocr_steps.pipeline import preprocess
from ppocr_steps.settings import PreprocessSettings, defaults_from_parameters, settings_from_parameters

PARAM_INPUTS = [f for f in OcrParams.__dataclass_fields__]
OWN_KEYS = {"ori_model_name", "ori_labels"}


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        params = ta.config_parameters(ta.model_config(args))
        self.settings = settings_from_parameters(params, PreprocessSettings, ignore=OWN_KEYS)
        self.defaults = defaults_from_parameters(params)
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        with open(os.path.join(version_dir, params["ori_labels"]), encoding="utf-8") as fh:
            self.ori_labels = fh.read().split()
        self.ori = ta.BlsModel(params["ori_model_name"], "ori_input", ["ori_probs"], self.settings.ori_batch_size)
        problem = decoder_limit_problem(self.settings.max_image_pixels)
        if problem is not None:
            ta.log.warning("%s", problem)
        self.metrics = ta.create_metrics(specs=[m.IMAGES, m.STAGE_LATENCY, m.REJECTED_INPUTS],
                                         stages=["decode", "doc_ori", "det_preprocess"])

    def _handle(self, request: object) -> dict[str, np.ndarray]:
        blobs = [bytes(b) for b in ta.input_array(request, "image_bytes").reshape(-1)]
        raw = {name: ta.optional_scalar(request, name) for name in PARAM_INPUTS}
        timings: dict[str, float] = {}
        ori = cast(Callable[[np.ndarray], np.ndarray], self.ori.for_request(request))  # one output
        classify = partial(classify_angles, infer=ori, labels=self.ori_labels)
        out = preprocess(blobs, raw, self.defaults, self.settings, timings, classify)
        self.metrics.images(len(blobs))
        self.metrics.stage_times(timings)
        return {"det_input": out.det_input, "images": out.images, "image_info": out.image_info,
                "ocr_params": np.array([params_to_json(out.params)], dtype=np.object_),
                "source_index": out.source_index, "page_index": out.page_index, "angle": out.angle}

    def execute(self, requests: list) -> list:
        return ta.execute_each(requests, self._handle, on_error=ta.count_rejections(self.metrics))
