"""The in-process reference: the server's own pipeline code without the server.

The benchmark runs the `ppocr_steps` functions the Python steps call (preprocess, DB post-processing,
crops, 0/180 classification, recognition, CTC) with the served ONNX files and the served settings,
in this process, one image at a time, and times onnxruntime's `run()` apart from the rest. What is
left is the pipeline's own work (decoding, resizing, DB, crops, crop batches, CTC), with no Triton, no
stub processes, no tensor copies between steps and no client. Set beside the served non-model time at
concurrency 1 it splits that figure into this work and what serving adds.

The calls are serial here (the served rec_pipeline overlaps preparing a recognition batch with the
previous one's inference), so the work measured here is an upper bound of the served work.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ppocr_steps.onnx_runtime import RuntimeModel, load_runtime_model
from ppocr_steps.orientation import classify_angles
from ppocr_steps.pipeline import OcrLines, postprocess_detection, preprocess, recognize
from ppocr_steps.recognize import load_dictionary
from ppocr_steps.settings import PipelineSettings, defaults_from_parameters, pipeline_settings_from_parameters

__all__ = ["Pipeline", "parity", "run_inprocess", "served_settings"]

#: The Python steps whose config parameters hold the pipeline settings, and the runtime models.
STEPS = ("det_preprocess", "det_postprocess", "rec_pipeline")
RUNTIME = {"det": "det_model", "cls": "cls_model", "rec": "rec_model", "ori": "ori_model"}


def _parameters(model_configs: Mapping[str, Mapping[str, Any]], model: str) -> Mapping[str, str]:
    return (model_configs.get(model) or {}).get("parameters") or {}


def served_settings(model_configs: Mapping[str, Mapping[str, Any]]) -> tuple[PipelineSettings, Any]:
    """PipelineSettings and per-request defaults from the served configs' `parameters`."""
    merged: dict[str, str] = {}
    for step in STEPS:
        merged.update(_parameters(model_configs, step))
    settings = pipeline_settings_from_parameters(merged)
    return settings, defaults_from_parameters(_parameters(model_configs, "det_preprocess"))


class _TimedModel:
    """A runtime model whose run() time is added up per network."""

    def __init__(self, model: RuntimeModel) -> None:
        self.model, self.seconds, self.calls = model, 0.0, 0

    def __call__(self, batch: np.ndarray) -> Any:
        t0 = time.perf_counter()
        try:
            return self.model(batch)
        finally:
            self.seconds += time.perf_counter() - t0
            self.calls += 1


class Pipeline:
    """The served pipeline of an assembled CPU repository, in this process: `run(blob, timings)` reads
    one image as the server would; `nets` are the networks wrapped by `timer`, which times their calls."""

    def __init__(self, repository: Path, model_configs: Mapping[str, Mapping[str, Any]],
                 timer: Callable[[RuntimeModel], Any] = _TimedModel) -> None:
        self.settings, self.defaults = served_settings(model_configs)
        self.nets = {k: timer(load_runtime_model(str(repository / name / "1"), _parameters(model_configs, name)))
                     for k, name in RUNTIME.items()}
        dictionary = _parameters(model_configs, "rec_pipeline")["dictionary"]
        self.labels = load_dictionary(str(repository / "rec_pipeline" / "1" / dictionary))
        pre_params = _parameters(model_configs, "det_preprocess")
        self.angles = (repository / "det_preprocess" / "1" / pre_params["ori_labels"]).read_text().split()

    def _classify(self, images: list[np.ndarray]) -> list[int]:
        return classify_angles(images, self.nets["ori"], self.angles)

    def run(self, blob: bytes, timings: dict[str, float] | None = None) -> OcrLines:
        s, nets = self.settings, self.nets
        pre = preprocess([blob], {}, self.defaults, s, timings, self._classify)
        boxes, _, index = postprocess_detection(nets["det"](pre.det_input), pre.image_info, pre.params, s, timings)
        return recognize(pre.images, pre.image_info, boxes, index, pre.params, s, self.labels, nets["cls"],
                         nets["rec"], timings)

    def reset_timers(self) -> None:
        for net in self.nets.values():
            net.seconds, net.calls = 0.0, 0


def run_inprocess(repository: Path, model_configs: Mapping[str, Mapping[str, Any]], blobs: Sequence[bytes],
                  warmup: int = 2) -> dict[str, Any]:
    """Run the pipeline over `blobs` (one image per call) with the models of an assembled CPU repository.

    Returns ms per image: wall time, time inside onnxruntime (total and per network), the rest
    (`non_model_ms_per_image`, its share of the wall time) and that rest by stage (`work_ms_per_image`).
    Also the recognised texts per image, for a parity check against the server's output.
    """
    pipeline = Pipeline(repository, model_configs)
    nets = pipeline.nets

    def one(blob: bytes, timings: dict[str, float] | None) -> list[str]:
        return pipeline.run(blob, timings).texts

    for blob in blobs[:warmup]:
        one(blob, None)
    pipeline.reset_timers()
    timings: dict[str, float] = {}
    texts = []
    t0 = time.perf_counter()
    for blob in blobs:
        texts.append(one(blob, timings))
    wall = time.perf_counter() - t0
    n = max(len(blobs), 1)
    network = sum(net.seconds for net in nets.values())
    return {
        "images": len(blobs),
        "wall_ms_per_image": wall / n * 1e3,
        "network_ms_per_image": network / n * 1e3,
        "network_ms_per_image_by_model": {RUNTIME[k]: net.seconds / n * 1e3 for k, net in nets.items()},
        "network_calls": {RUNTIME[k]: net.calls for k, net in nets.items()},
        "non_model_ms_per_image": (wall - network) / n * 1e3,
        "non_model_share": (wall - network) / wall if wall > 0 else None,
        "work_ms_per_image": {k: v / n * 1e3 for k, v in _work(timings, nets).items()},
        "texts": texts,
    }


def _work(timings: Mapping[str, float], nets: Mapping[str, _TimedModel]) -> dict[str, float]:
    """The pipeline's stage timings with the networks taken out: 'cls' holds the classifier's calls
    (removed here) and 'rec' is the time in the recogniser's calls (dropped)."""
    work = {k: v for k, v in timings.items() if k != "rec"}
    if "cls" in work:
        work["cls"] = max(0.0, work["cls"] - nets["cls"].seconds)
    if "doc_ori" in work:
        work["doc_ori"] = max(0.0, work["doc_ori"] - nets["ori"].seconds)
    return work


def parity(texts: Sequence[Sequence[str]], keys: Sequence[str],
           served: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, Any]:
    """How many images got the same texts, in the same order, in process and from the server."""
    same = [k for k, t in zip(keys, texts, strict=True) if k in served and [ln["text"] for ln in served[k]] == list(t)]
    compared = sum(1 for k in keys if k in served)
    return {"images_compared": compared, "images_identical": len(same)}
