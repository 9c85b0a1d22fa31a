"""Triton step `rec_pipeline`: boxes → rectified crops → cls_model (BLS) → rec_model (BLS) → CTC → lines."""
from __future__ import annotations

import os
from typing import cast

import numpy as np

from ppocr_steps import metrics as m
from ppocr_steps import triton_adapter as ta
from ppocr_steps.params import params_from_json
from ppocr_steps.pipeline import recognize
from ppocr_steps.recognize import Infer, RecInfer, load_dictionary
from ppocr_steps.settings import INPUT_LIMIT_KEYS, RecognitionSettings, limits_from_parameters, settings_from_parameters

OWN_KEYS = {"dictionary", "cls_model_name", "rec_model_name"}


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        params = ta.config_parameters(ta.model_config(args))
        self.settings = settings_from_parameters(params, RecognitionSettings, ignore=OWN_KEYS | INPUT_LIMIT_KEYS)
        self.limits = limits_from_parameters(params)
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        self.labels = load_dictionary(os.path.join(version_dir, params["dictionary"]))
        s = self.settings
        self.cls = ta.BlsModel(params["cls_model_name"], "cls_input", ["cls_probs"], s.cls_batch_size)
        self.rec = ta.BlsModel(params["rec_model_name"], "rec_input", ["rec_char_ids", "rec_char_probs"],
                               s.rec_batch_size)
        self.metrics = ta.create_metrics(specs=[m.LINES, m.CHARACTERS, m.EMPTY_RESULTS, m.CLS_FLIPS,
                                                m.STAGE_LATENCY, m.REJECTED_INPUTS],
                                         stages=["crop", "cls", "rec", "ctc"])

    def _handle(self, request: object) -> dict[str, np.ndarray]:
        params = params_from_json(bytes(ta.input_array(request, "ocr_params").reshape(-1)[0]))
        info = ta.input_array(request, "image_info")
        timings: dict[str, float] = {}
        lines = recognize(ta.input_array(request, "images"), info, ta.input_array(request, "boxes"),
                          ta.input_array(request, "box_image_index"), params, self.settings, self.labels,
                          cast(Infer, self.cls.for_request(request)), cast(RecInfer, self.rec.for_request(request)),
                          timings,
                          limits=self.limits)
        self.metrics.stage_times(timings)
        self.metrics.lines(lines.texts)
        self.metrics.cls_flips(int(lines.flipped.sum()))
        self.metrics.empty_results(len(info) - len(np.unique(lines.image_index)))
        return {"texts": np.array([t.encode("utf-8") for t in lines.texts], dtype=np.object_),
                "scores": lines.scores, "polys": lines.polys, "image_index": lines.image_index,
                "flipped": lines.flipped}

    def execute(self, requests: list) -> list:
        return ta.execute_each(requests, self._handle, on_error=ta.count_rejections(self.metrics))
