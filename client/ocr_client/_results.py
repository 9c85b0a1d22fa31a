"""Typed OCR results and the conversion from the ensemble's output tensors."""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._errors import OcrInvalidInputError, OcrServerError

__all__ = ["OPTIONAL_OUTPUT_NAMES", "OUTPUT_NAMES", "OcrResult", "TextLine", "results_from_outputs",
           "single_result"]

#: Outputs of the ``ocr`` ensemble read by the client (docs/architecture.md).
OUTPUT_NAMES: tuple[str, ...] = ("texts", "scores", "polys", "image_index", "flipped", "source_index",
                                 "page_index", "angle")
#: Per-image outputs a server without PDF and orientation support lacks: then each input is one upright image.
OPTIONAL_OUTPUT_NAMES: frozenset[str] = frozenset({"source_index", "page_index", "angle"})


@dataclass(frozen=True)
class TextLine:
    """One recognised text line: quad (clockwise from top-left), text, confidence."""

    poly: list[tuple[float, float]]
    text: str
    score: float
    flipped: bool = False

    @property
    def box(self) -> tuple[float, float, float, float]:
        """Axis-aligned bounding box ``(x_min, y_min, x_max, y_max)``."""
        xs = [p[0] for p in self.poly]
        ys = [p[1] for p in self.poly]
        return (min(xs), min(ys), max(xs), max(ys))

    def to_dict(self) -> dict[str, Any]:
        """``{"poly": [[x, y], ...], "text": ..., "score": ...}``."""
        return {"poly": [[x, y] for x, y in self.poly], "text": self.text, "score": self.score}


@dataclass(frozen=True)
class OcrResult:
    """The text lines of one image (or one page of a PDF), in reading order.

    ``source`` is the index of the input it comes from; ``page`` its 0-based page when that input
    is a PDF (None for an image); ``angle`` how the image as sent is turned from upright (0, 90,
    180 or 270 degrees clockwise; polygons are in the image as sent, lines in upright reading order).
    """

    lines: list[TextLine] = field(default_factory=list)
    source: int = 0
    page: int | None = None
    angle: int = 0

    def __len__(self) -> int:
        return len(self.lines)

    def __iter__(self) -> Iterator[TextLine]:
        return iter(self.lines)

    @property
    def texts(self) -> list[str]:
        return [ln.text for ln in self.lines]

    @property
    def scores(self) -> list[float]:
        return [ln.score for ln in self.lines]

    def to_dict(self) -> dict[str, Any]:
        """The predictions format of ``ocr_eval.py`` (without the ``image`` key)."""
        return {"lines": [ln.to_dict() for ln in self.lines]}

    def to_paddlex(self) -> dict[str, Any]:
        """PaddleX-style dict; polygons and boxes rounded to int pixels as PaddleX does."""
        polys = [[[round(x), round(y)] for x, y in ln.poly] for ln in self.lines]
        boxes = [
            [min(p[0] for p in q), min(p[1] for p in q), max(p[0] for p in q), max(p[1] for p in q)]
            for q in polys
        ]
        return {
            "rec_texts": self.texts,
            "rec_scores": self.scores,
            "rec_polys": polys,
            "rec_boxes": boxes,
            "textline_orientation_angles": [180 if ln.flipped else 0 for ln in self.lines],
        }


def _f32_list(values: NDArray[Any]) -> list[float]:
    """float32 values as the shortest Python floats that round-trip (12.3, not 12.300000190734863)."""
    return [float(str(v)) for v in np.asarray(values, dtype=np.float32).ravel()]


def _text(value: Any) -> str:
    if isinstance(value, (bytes, bytearray, np.bytes_)):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def _image_map(arrays: Mapping[str, NDArray[Any] | None], num_inputs: int) -> list[tuple[int, int | None]]:
    """(source, page) of each result image; one per input when the server sends no mapping."""
    sources, pages = arrays.get("source_index"), arrays.get("page_index")
    if sources is None or pages is None:
        return [(i, None) for i in range(num_inputs)]
    src = np.asarray(sources).reshape(-1)
    pg = np.asarray(pages).reshape(-1)
    if src.shape != pg.shape:
        raise OcrServerError(f"outputs 'source_index' ({src.shape[0]}) and 'page_index' ({pg.shape[0]}) "
                             "differ in length")
    if src.size and (int(src.min()) < 0 or int(src.max()) >= num_inputs):
        raise OcrServerError(f"output 'source_index' holds {sorted(set(src.tolist()))}, "
                             f"outside [0, {num_inputs}) for {num_inputs} input(s)")
    return [(int(s), None if int(p) < 0 else int(p)) for s, p in zip(src.tolist(), pg.tolist(), strict=True)]


def results_from_outputs(outputs: Mapping[str, NDArray[Any] | None], num_images: int) -> list[OcrResult]:
    """Split the concatenated outputs into one :class:`OcrResult` per result image.

    ``num_images`` is the number of inputs sent. Each image input gives one result and
    each PDF input one result per page, in input order (``OcrResult.source``/``page``).
    ``outputs`` maps each name of :data:`OUTPUT_NAMES` to its array (those of
    :data:`OPTIONAL_OUTPUT_NAMES` may be None). Lines keep their order within an image;
    images without lines get an empty result. Inconsistent tensors raise :class:`OcrServerError`.
    """
    arrays: dict[str, NDArray[Any]] = {}
    for name in OUTPUT_NAMES:
        arr = outputs.get(name)
        if arr is None:
            if name in OPTIONAL_OUTPUT_NAMES:
                continue
            raise OcrServerError(f"the response has no output '{name}'")
        arrays[name] = np.asarray(arr)
    image_map = _image_map(arrays, num_images)
    num_results = len(image_map)

    texts = arrays["texts"].reshape(-1)
    scores = arrays["scores"].reshape(-1)
    index = arrays["image_index"].reshape(-1)
    flipped = arrays["flipped"].reshape(-1)
    polys = arrays["polys"]
    n = texts.shape[0]
    if polys.size != n * 8:
        raise OcrServerError(f"output 'polys' has shape {polys.shape}, expected [{n}, 4, 2]")
    polys = polys.reshape(n, 4, 2)
    for name, arr in (("scores", scores), ("image_index", index), ("flipped", flipped)):
        if arr.shape[0] != n:
            raise OcrServerError(f"output '{name}' has {arr.shape[0]} elements, 'texts' has {n}")
    if n and (int(index.min()) < 0 or int(index.max()) >= num_results):
        raise OcrServerError(f"output 'image_index' holds {sorted(set(index.tolist()))}, "
                             f"outside [0, {num_results}) for {num_results} image(s)")

    coords = _f32_list(polys)
    score_list = _f32_list(scores)
    per_image: list[list[TextLine]] = [[] for _ in range(num_results)]
    for i in range(n):
        c = coords[i * 8:(i + 1) * 8]
        poly = [(c[0], c[1]), (c[2], c[3]), (c[4], c[5]), (c[6], c[7])]
        line = TextLine(poly=poly, text=_text(texts[i]), score=score_list[i], flipped=bool(flipped[i]))
        per_image[int(index[i])].append(line)
    angles = _angles(outputs.get("angle"), num_results)
    return [OcrResult(lines, source=src, page=page, angle=angle)
            for lines, (src, page), angle in zip(per_image, image_map, angles, strict=True)]


def _angles(arr: NDArray[Any] | None, num_results: int) -> list[int]:
    if arr is None:
        return [0] * num_results
    angles = [int(a) for a in np.asarray(arr).reshape(-1)]
    if len(angles) != num_results or any(a not in (0, 90, 180, 270) for a in angles):
        raise OcrServerError(f"output 'angle' holds {angles}, expected {num_results} of 0/90/180/270")
    return angles


def single_result(results: list[OcrResult]) -> OcrResult:
    """The one result of a one-image call; a PDF of several pages is refused with what to call instead."""
    if len(results) != 1:
        raise OcrInvalidInputError(f"the input is a PDF of {len(results)} pages; use ocr_document() or "
                                   "ocr_batch() to get one result per page")
    return results[0]
