"""Response tensors -> typed results (ocr_client._results), no server."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ocr_client import OcrResult, OcrServerError, TextLine
from ocr_client._results import OPTIONAL_OUTPUT_NAMES, OUTPUT_NAMES, results_from_outputs, single_result


def _outputs(texts: list[str], index: list[int], flipped: list[bool] | None = None,
             scores: list[float] | None = None) -> dict[str, np.ndarray]:
    n = len(texts)
    polys = np.array([[[10 * i, 1], [10 * i + 8, 1], [10 * i + 8, 5.5], [10 * i, 5.5]]
                      for i in range(n)], dtype=np.float32).reshape(n, 4, 2)
    return {
        "texts": np.array([t.encode("utf-8") for t in texts], dtype=np.object_),
        "scores": np.array(scores if scores is not None else [0.5 + 0.1 * i for i in range(n)],
                           dtype=np.float32),
        "polys": polys,
        "image_index": np.array(index, dtype=np.int32),
        "flipped": np.array(flipped if flipped is not None else [False] * n, dtype=np.bool_),
    }


def test_split_by_image_index_keeps_order_and_empty_images() -> None:
    out = _outputs(["a", "b", "c", "中文"], [0, 0, 2, 2], flipped=[False, True, False, False])
    results = results_from_outputs(out, num_images=4)
    assert len(results) == 4
    assert results[0].texts == ["a", "b"]
    assert results[1].lines == []
    assert results[2].texts == ["c", "中文"]
    assert results[3].lines == []
    assert results[0].lines[1].flipped is True
    assert results[0].lines[0].flipped is False
    assert results[2].lines[0].poly == [(20.0, 1.0), (28.0, 1.0), (28.0, 5.5), (20.0, 5.5)]


def test_unsorted_index_is_grouped_stably() -> None:
    out = _outputs(["x0", "y0", "x1", "y1"], [1, 0, 1, 0])
    results = results_from_outputs(out, num_images=2)
    assert results[0].texts == ["y0", "y1"]
    assert results[1].texts == ["x0", "x1"]


def test_float32_values_become_short_python_floats() -> None:
    out = _outputs(["a"], [0], scores=[0.9])
    line = results_from_outputs(out, 1)[0].lines[0]
    assert isinstance(line.score, float) and line.score == 0.9  # not 0.8999999761581421
    assert all(isinstance(v, float) for p in line.poly for v in p)


@pytest.mark.parametrize("poly_shape", [(0, 4, 2), (0,)])
def test_no_lines(poly_shape: tuple[int, ...]) -> None:
    out = _outputs([], [])
    out["polys"] = np.zeros(poly_shape, dtype=np.float32)
    assert [r.lines for r in results_from_outputs(out, 3)] == [[], [], []]


def test_invalid_utf8_is_replaced_not_raised() -> None:
    out = _outputs(["a"], [0])
    out["texts"] = np.array([b"ok\xff"], dtype=np.object_)
    assert results_from_outputs(out, 1)[0].texts == ["ok\ufffd"]


@pytest.mark.parametrize("missing", sorted(set(OUTPUT_NAMES) - OPTIONAL_OUTPUT_NAMES))
def test_missing_output_raises(missing: str) -> None:
    out: dict[str, np.ndarray | None] = dict(_outputs(["a"], [0]))
    out[missing] = None
    with pytest.raises(OcrServerError, match=missing):
        results_from_outputs(out, 1)


def test_inconsistent_lengths_raise() -> None:
    out = _outputs(["a", "b"], [0, 0])
    out["scores"] = out["scores"][:1]
    with pytest.raises(OcrServerError, match="scores"):
        results_from_outputs(out, 1)
    out = _outputs(["a", "b"], [0, 0])
    out["polys"] = out["polys"][:1]
    with pytest.raises(OcrServerError, match="polys"):
        results_from_outputs(out, 1)


@pytest.mark.parametrize("bad", [-1, 2])
def test_image_index_out_of_range_raises(bad: int) -> None:
    with pytest.raises(OcrServerError, match="image_index"):
        results_from_outputs(_outputs(["a"], [bad]), 2)


def test_textline_box_and_result_helpers() -> None:
    line = TextLine(poly=[(3.0, 2.0), (9.5, 1.0), (10.0, 7.0), (2.0, 8.0)], text="hi", score=0.75,
                    flipped=True)
    other = TextLine(poly=[(0.0, 0.0), (4.0, 0.0), (4.0, 2.0), (0.0, 2.0)], text="yo", score=0.5)
    assert line.box == (2.0, 1.0, 10.0, 8.0)
    res = OcrResult([line, other])
    assert len(res) == 2 and list(res) == [line, other]
    assert res.texts == ["hi", "yo"]
    assert res.scores == [0.75, 0.5]
    d = res.to_dict()
    assert d == {"lines": [
        {"poly": [[3.0, 2.0], [9.5, 1.0], [10.0, 7.0], [2.0, 8.0]], "text": "hi", "score": 0.75},
        {"poly": [[0.0, 0.0], [4.0, 0.0], [4.0, 2.0], [0.0, 2.0]], "text": "yo", "score": 0.5},
    ]}
    assert json.loads(json.dumps(d)) == d


def test_to_paddlex() -> None:
    line = TextLine(poly=[(3.2, 2.0), (9.6, 1.0), (10.0, 7.4), (2.0, 8.0)], text="hi", score=0.75,
                    flipped=True)
    px = OcrResult([line, TextLine([(0, 0), (1, 0), (1, 1), (0, 1)], "a", 0.5)]).to_paddlex()
    assert px["rec_texts"] == ["hi", "a"]
    assert px["rec_scores"] == [0.75, 0.5]
    assert px["rec_polys"][0] == [[3, 2], [10, 1], [10, 7], [2, 8]]
    assert px["rec_boxes"][0] == [2, 1, 10, 8]
    assert px["textline_orientation_angles"] == [180, 0]
    assert set(px) == {"rec_texts", "rec_scores", "rec_polys", "rec_boxes",
                       "textline_orientation_angles"}


def test_results_are_frozen() -> None:
    line = TextLine([(0.0, 0.0)] * 4, "a", 1.0)
    with pytest.raises(AttributeError):
        line.text = "b"  # type: ignore[misc]


def test_pdf_pages_map_back_to_their_input_and_page() -> None:
    # inputs: [image, 3-page PDF]; result images: image, page 0, page 1, page 2
    out = _outputs(["img", "p0", "p2a", "p2b"], [0, 1, 3, 3])
    out["source_index"] = np.array([0, 1, 1, 1], dtype=np.int32)
    out["page_index"] = np.array([-1, 0, 1, 2], dtype=np.int32)
    results = results_from_outputs(out, num_images=2)
    assert [(r.source, r.page, r.texts) for r in results] == [
        (0, None, ["img"]), (1, 0, ["p0"]), (1, 1, []), (1, 2, ["p2a", "p2b"])]
    with pytest.raises(Exception, match="3 pages"):
        single_result(results[1:])
    assert single_result(results[:1]).texts == ["img"]


def test_old_server_without_page_outputs_gives_one_result_per_input() -> None:
    out: dict[str, np.ndarray | None] = dict(_outputs(["a"], [1]))
    out["source_index"] = out["page_index"] = None
    assert [(r.source, r.page) for r in results_from_outputs(out, 2)] == [(0, None), (1, None)]


@pytest.mark.parametrize("bad", [-1, 2])
def test_source_index_out_of_range_raises(bad: int) -> None:
    out = _outputs(["a"], [0])
    out["source_index"] = np.array([bad], dtype=np.int32)
    out["page_index"] = np.array([0], dtype=np.int32)
    with pytest.raises(OcrServerError, match="source_index"):
        results_from_outputs(out, 2)
