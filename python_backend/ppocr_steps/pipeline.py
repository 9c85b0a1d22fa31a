"""The three Python steps of the `ocr` ensemble as plain functions over numpy arrays.

  det_preprocess : image bytes + parameters → det_input, images, image_info, ocr_params
  det_postprocess: prob_map + image_info + ocr_params → boxes, box_image_index
  rec_pipeline   : images + boxes → crops → (cls) → rec → CTC → lines in original coordinates
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import numpy as np

from ppocr_steps.crops import crop_all
from ppocr_steps.db_postprocess import DBConfig, detect_boxes
from ppocr_steps.deadline import Deadline
from ppocr_steps.det_preprocess import (
    IMAGE_INFO_COLUMNS,
    ImageInfo,
    build_det_batch,
    det_input_size,
    prepare_source,
    source_size,
)
from ppocr_steps.errors import InvalidInputError
from ppocr_steps.image_io import decode_image
from ppocr_steps.orientation import to_upright
from ppocr_steps.params import OcrParams, parse_params
from ppocr_steps.pdf import PdfLimits, is_pdf, rasterize_pdf
from ppocr_steps.recognize import Infer, RecInfer, classify_and_flip, recognize_crops
from ppocr_steps.settings import InputLimits, PostprocessSettings, PreprocessSettings, RecognitionSettings
from ppocr_steps.validate import check_boxes, check_image_info, check_images, check_prob_map

__all__ = ["PreprocessOutput", "OcrLines", "preprocess", "postprocess_detection", "recognize"]

R = TypeVar("R")


@dataclass
class PreprocessOutput:
    det_input: np.ndarray   # UINT8 [N,H,W,3] resized images (the detector graph normalises)
    images: np.ndarray      # UINT8 [N,Hs,Ws,3] source images, zero-padded to the largest
    image_info: np.ndarray  # FP32 [N,9], see ImageInfo
    params: OcrParams
    source_index: np.ndarray  # INT32 [N]: the image_bytes element each image comes from
    page_index: np.ndarray    # INT32 [N]: 0-based page of a PDF element, -1 for an image element
    angle: np.ndarray         # INT32 [N]: how each image as sent is turned from upright (0/90/180/270)


@dataclass
class OcrLines:
    texts: list[str]
    scores: np.ndarray       # FP32 [L]
    polys: np.ndarray        # FP32 [L,4,2], original-image pixels
    image_index: np.ndarray  # INT32 [L]
    flipped: np.ndarray      # BOOL [L]

    @classmethod
    def empty(cls) -> OcrLines:
        return cls([], np.zeros(0, np.float32), np.zeros((0, 4, 2), np.float32), np.zeros(0, np.int32),
                   np.zeros(0, bool))


def _add_time(timings: dict[str, float] | None, stage: str, seconds: float) -> None:
    if timings is not None:
        timings[stage] = timings.get(stage, 0.0) + seconds


class _Timed:
    """A model call (and its `submit`, if any) that adds the time the caller is blocked in it to
    `timings[stage]`: the whole call, or for a submitted call the submission and the wait."""

    def __init__(self, infer: Callable[[np.ndarray], Any], timings: dict[str, float], stage: str) -> None:
        self.infer, self.timings, self.stage = infer, timings, stage
        if hasattr(infer, "submit"):
            self.submit = self._submit

    def _blocked(self, fn: Callable[[], R]) -> R:
        t0 = time.perf_counter()
        try:
            return fn()
        finally:
            _add_time(self.timings, self.stage, time.perf_counter() - t0)

    def __call__(self, batch: np.ndarray) -> Any:
        return self._blocked(lambda: self.infer(batch))

    def _submit(self, batch: np.ndarray) -> Callable[[], Any]:
        wait = self._blocked(lambda: self.infer.submit(batch))  # type: ignore[attr-defined]
        return lambda: self._blocked(wait)


def _timed(infer: Callable[[np.ndarray], Any], timings: dict[str, float] | None, stage: str) -> Any:
    """`infer` that adds the time spent blocked in it to `timings[stage]` (unchanged when not timing)."""
    return infer if timings is None else _Timed(infer, timings, stage)


def preprocess(blobs: Sequence[bytes], raw_params: Mapping[str, Any], defaults: OcrParams,
               s: PreprocessSettings, timings: dict[str, float] | None = None,
               classify_orientation: Callable[[list[np.ndarray]], list[int]] | None = None) -> PreprocessOutput:
    """Decode (PDFs: render), turn pages upright, prepare the detector batch.

    `classify_orientation` gives the angle of each image (ppocr_steps.orientation); it is used when
    the request's use_doc_orientation_classify holds (without it, images are taken as upright).
    `timings`, when given, receives the seconds spent in stages 'decode', 'doc_ori' and 'det_preprocess'.
    """
    if len(blobs) == 0:
        raise InvalidInputError("image_bytes holds no image; send at least one encoded image", "empty")
    if len(blobs) > s.max_images_per_request:
        raise InvalidInputError(f"image_bytes holds {len(blobs)} images; at most {s.max_images_per_request} "
                                "per request (split the batch)", "too_many_images")
    params = parse_params(raw_params, defaults)
    decoded: list[np.ndarray] = []
    source_index, page_index = [], []
    # every page is one image of the detector batch: pages and images together stay within
    # max_images_per_request (the GPU detector's batch limit), pages within pdf_max_pages
    num_pdfs = sum(1 for b in blobs if is_pdf(b))
    pages_left = min(s.pdf_max_pages, s.max_images_per_request - (len(blobs) - num_pdfs))
    for i, blob in enumerate(blobs):
        name = "image_bytes" if len(blobs) == 1 else f"image_bytes[{i}]"
        t0 = time.perf_counter()
        if is_pdf(blob):
            if len(blob) > s.max_image_bytes:
                raise InvalidInputError(f"{name} is a PDF of {len(blob)} bytes; the limit is {s.max_image_bytes} "
                                        "bytes: split the document", "too_large")
            if pages_left <= 0:
                raise InvalidInputError(f"{name} is a PDF, but the request's images and PDF pages before it "
                                        f"already reach the limit per request ({s.max_images_per_request} images, "
                                        f"{s.pdf_max_pages} PDF pages): send it in another request",
                                        "pdf_too_many_pages")
            pages = rasterize_pdf(blob, _pdf_limits(s, pages_left), name)
            pages_left -= len(pages)
            numbers = list(range(len(pages)))
        else:
            pages = [decode_image(blob, s.max_image_pixels, s.min_image_side, s.max_image_bytes, name)]
            numbers = [-1]
        _add_time(timings, "decode", time.perf_counter() - t0)
        decoded.extend(pages)
        source_index.extend([i] * len(pages))
        page_index.extend(numbers)
    angles = [0] * len(decoded)
    if params.use_doc_orientation_classify and classify_orientation is not None:
        t0 = time.perf_counter()
        angles = classify_orientation(decoded)
        _add_time(timings, "doc_ori", time.perf_counter() - t0)
    # before any source image is made: the padded batches of images of very different shapes are refused
    upright = [img.shape[:2] if angle in (0, 180) else img.shape[1::-1] for img, angle in zip(decoded, angles,
                                                                                             strict=True)]
    check_padded_batches([source_size(h, w, s) for h, w in upright], params, s)
    t0 = time.perf_counter()
    sources, infos = [], []
    for img, angle in zip(decoded, angles, strict=True):
        src, info = prepare_source(to_upright(img, angle), s)
        sources.append(src)
        infos.append(replace(info, angle=float(angle)))
    det_input, infos = build_det_batch(sources, infos, params.limit_side_len, params.limit_type, s)
    if len(sources) == 1:
        images = sources[0][None]
    else:
        hs, ws = max(x.shape[0] for x in sources), max(x.shape[1] for x in sources)
        images = np.zeros((len(sources), hs, ws, 3), dtype=np.uint8)
        for i, x in enumerate(sources):
            images[i, :x.shape[0], :x.shape[1]] = x
    info_arr = np.asarray([i.to_row() for i in infos], dtype=np.float32).reshape(-1, IMAGE_INFO_COLUMNS)
    _add_time(timings, "det_preprocess", time.perf_counter() - t0)
    return PreprocessOutput(det_input, images, info_arr, params, np.asarray(source_index, dtype=np.int32),
                            np.asarray(page_index, dtype=np.int32), np.asarray(angles, dtype=np.int32))


def _pdf_limits(s: PreprocessSettings, max_pages: int) -> PdfLimits:
    return PdfLimits(dpi=s.pdf_dpi, max_pages=max_pages, max_document_pages=s.pdf_max_document_pages,
                     max_page_pixels=s.pdf_max_page_pixels,
                     timeout_s=s.pdf_render_timeout_s, max_memory_mb=s.pdf_render_max_memory_mb)


def check_padded_batches(shapes: Sequence[tuple[int, int]], params: OcrParams, s: PreprocessSettings) -> None:
    """Images of one request travel as batches zero-padded to the largest height and width (the source
    images and the detector input): refuse a request whose padded batches would exceed max_batch_pixels,
    as images of very different shapes do (a thin strip beside a tall one pads both to a huge square)."""
    if len(shapes) < 2:
        return
    det = [det_input_size(h, w, params.limit_side_len, params.limit_type, s) for h, w in shapes]
    for what, sizes in (("source images", shapes), ("detector input", det)):
        padded = len(sizes) * max(h for h, _ in sizes) * max(w for _, w in sizes)
        if padded > s.max_batch_pixels:
            raise InvalidInputError(
                f"image_bytes: the {len(sizes)} images have very different shapes; padded to one batch their "
                f"{what} would hold {padded} pixels, the limit is {s.max_batch_pixels}: send them in separate "
                "requests (or fewer per request)", "too_large")


def db_config(params: OcrParams, s: PostprocessSettings) -> DBConfig:
    return DBConfig(thresh=params.thresh, box_thresh=params.box_thresh, unclip_ratio=params.unclip_ratio,
                    max_candidates=s.max_candidates, use_dilation=s.use_dilation, score_mode=s.score_mode,
                    min_size=s.min_box_size)


def postprocess_detection(prob_map: np.ndarray, image_info: np.ndarray, params: OcrParams,
                          s: PostprocessSettings, timings: dict[str, float] | None = None,
                          limits: InputLimits | None = None
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """prob_map [N,1,H,W] → boxes [K,4,2] (source pixels), box_scores [K], box_image_index [K].

    `timings`, when given, receives the seconds spent in stage 'det_postprocess'. `limits`, when given
    (the served step always gives them), checks the tensors as hostile first (ppocr_steps.validate).
    """
    if limits is not None:
        check_prob_map(prob_map, limits)
        check_image_info(image_info, prob_map.shape[0], limits, det_hw=(prob_map.shape[2], prob_map.shape[3]))
    t0 = time.perf_counter()
    cfg = db_config(params, s)
    all_boxes, all_scores, all_index = [], [], []
    for n in range(prob_map.shape[0]):
        info = ImageInfo.from_row(image_info[n])
        region = prob_map[n, 0, :int(info.det_h), :int(info.det_w)]
        boxes, scores = detect_boxes(region, int(info.src_h), int(info.src_w), cfg)
        all_boxes.append(boxes)
        all_scores.append(scores)
        all_index.append(np.full(len(boxes), n, dtype=np.int32))
    boxes = np.concatenate(all_boxes).astype(np.float32).reshape(-1, 4, 2)
    _add_time(timings, "det_postprocess", time.perf_counter() - t0)
    if len(boxes) > s.max_boxes_per_request:
        raise InvalidInputError(f"the request produced {len(boxes)} text boxes; the limit is "
                                f"{s.max_boxes_per_request} (send fewer images per request)", "too_many_boxes")
    return boxes, np.concatenate(all_scores).astype(np.float32), np.concatenate(all_index).astype(np.int32)


def recognize(images: np.ndarray, image_info: np.ndarray, boxes: np.ndarray, box_image_index: np.ndarray,
              params: OcrParams, s: RecognitionSettings, labels: Sequence[str], cls_infer: Infer | None,
              rec_infer: RecInfer, timings: dict[str, float] | None = None,
              limits: InputLimits | None = None) -> OcrLines:
    """Crops → optional 0/180 flip → recognition → filter by text_rec_score_thresh → original coordinates.

    `timings`, when given, receives the seconds spent in stages 'crop', 'cls' (classification
    including its resizing and the flips), 'rec' (the recogniser calls) and 'ctc' (the rest of
    recognition: resizing the crops for the recogniser and CTC decoding). With a pipelined
    recogniser (`submit`, see ppocr_steps.recognize) 'rec' is the time spent waiting for it.
    """
    if limits is not None:
        check_images(images, limits)
        check_image_info(image_info, images.shape[0], limits, src_hw=(images.shape[1], images.shape[2]))
        check_boxes(boxes, box_image_index, image_info, limits, s.max_crop_pixels)
    if len(boxes) == 0:
        return OcrLines.empty()
    deadline = Deadline(s.max_request_seconds, "rec_pipeline")
    t0 = time.perf_counter()
    crops = crop_all(list(images), boxes, box_image_index)
    flipped = np.zeros(len(crops), dtype=bool)
    t1 = time.perf_counter()
    _add_time(timings, "crop", t1 - t0)
    originals = crops
    if params.use_textline_orientation and cls_infer is not None:
        crops, flipped, _ = classify_and_flip(crops, cls_infer, s.cls_batch_size, s.cls_thresh, deadline)
        _add_time(timings, "cls", time.perf_counter() - t1)
    # flip verification: a turned crop is also read as it was, and the more confident reading wins
    # (the mobile 0/180 classifier turns some short upright words by mistake)
    recheck = np.flatnonzero(flipped) if s.cls_verify_flips else np.zeros(0, dtype=np.int64)
    rec_timings: dict[str, float] | None = {} if timings is not None else None
    t2 = time.perf_counter()
    results = recognize_crops(crops + [originals[i] for i in recheck], _timed(rec_infer, rec_timings, "rec"),
                              labels, s.rec_batch_size, s.rec_image_height, s.rec_min_width, s.rec_max_width,
                              s.rec_width_multiple, s.rec_batch_total_width, deadline)
    for j, i in enumerate(recheck):
        unturned = results[len(crops) + j]
        if unturned.score > results[i].score:
            results[i] = unturned
            flipped[i] = False
    results = results[:len(crops)]
    if rec_timings is not None:
        rec_seconds = rec_timings.get("rec", 0.0)
        _add_time(timings, "rec", rec_seconds)
        _add_time(timings, "ctc", max(0.0, time.perf_counter() - t2 - rec_seconds))
    keep = [i for i, r in enumerate(results) if r.score >= params.text_rec_score_thresh and r.text != ""]
    kept_boxes, kept_index = boxes[keep], box_image_index[keep].astype(np.int32)
    polys = np.zeros((len(keep), 4, 2), dtype=np.float32)
    for n in np.unique(kept_index):  # each image's boxes mapped in one go
        mine = kept_index == n
        polys[mine] = ImageInfo.from_row(image_info[n]).to_original(kept_boxes[mine])
    return OcrLines(texts=[results[i].text for i in keep],
                    scores=np.asarray([results[i].score for i in keep], dtype=np.float32),
                    polys=polys,
                    image_index=kept_index,
                    flipped=flipped[keep])
