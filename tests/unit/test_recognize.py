"""Classification / recognition batching and CTC decoding, with fake model calls."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from ppocr_steps.recognize import (
    CLS_SHAPE,
    CROP_PAD,
    RecResult,
    classify_and_flip,
    crop_batch,
    ctc_greedy_decode,
    load_dictionary,
    pipelined,
    rec_batch_plan,
    recognize_crops,
)

DIGITS = ["blank", *"0123456789", " "]


# ---------------------------------------------------------------- dictionary

def test_load_dictionary_blank_first_space_last(tmp_path) -> None:
    path = tmp_path / "dict.txt"
    path.write_text("a\nb\n中\n", encoding="utf-8")
    assert load_dictionary(str(path)) == ["blank", "a", "b", "中", " "]


def test_load_dictionary_without_trailing_newline(tmp_path) -> None:
    path = tmp_path / "dict.txt"
    path.write_text("x\ny", encoding="utf-8")
    assert load_dictionary(str(path)) == ["blank", "x", "y", " "]


def test_load_real_dictionary_matches_model_classes(models_dir) -> None:
    path = models_dir / "v4" / "dict.txt"
    if not path.exists():
        pytest.skip("build/models/v4 not fetched (server/ocr_server/fetch_models.py)")
    labels = load_dictionary(str(path))
    assert labels[0] == "blank" and labels[-1] == " "
    assert len(labels) == 6625  # PP-OCRv4 rec output classes
    assert all(len(c) >= 1 for c in labels[1:-1])


# ---------------------------------------------------------------- CTC

def probs_for(seq: list[int], maxp: list[float], classes: int) -> np.ndarray:
    """[T, C] rows whose argmax is seq[t] with probability maxp[t]; the rest spread evenly."""
    out = np.zeros((len(seq), classes), np.float32)
    for t, (k, p) in enumerate(zip(seq, maxp, strict=True)):
        out[t, :] = (1.0 - p) / (classes - 1)
        out[t, k] = p
    return out


LABELS = ["blank", "h", "e", "l", "o", " "]


def greedy(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What the recogniser graph outputs for softmax `probs` [N,T,C]: arg-max (INT32) and max per timestep."""
    return probs.argmax(axis=2).astype(np.int32), probs.max(axis=2)


def test_ctc_collapses_repeats_and_drops_blanks() -> None:
    seq = [1, 1, 2, 0, 3, 3, 0, 3, 4, 4, 0]
    maxp = [0.9, 0.5, 0.8, 0.99, 0.7, 0.1, 0.99, 0.6, 0.95, 0.2, 0.99]
    (res,) = ctc_greedy_decode(*greedy(probs_for(seq, maxp, 6)[None]), LABELS)
    assert res.text == "hello"
    # kept steps: first h (0.9), e (0.8), first l (0.7), second l (0.6), first o (0.95)
    assert res.score == pytest.approx(np.mean([0.9, 0.8, 0.7, 0.6, 0.95]), abs=1e-6)


def test_ctc_repeat_without_blank_is_one_letter() -> None:
    (res,) = ctc_greedy_decode(*greedy(probs_for([3, 3, 3], [0.9, 0.9, 0.9], 6)[None]), LABELS)
    assert res.text == "l"
    (res,) = ctc_greedy_decode(*greedy(probs_for([3, 0, 3], [0.9, 0.9, 0.9], 6)[None]), LABELS)
    assert res.text == "ll"


def test_ctc_space_label() -> None:
    (res,) = ctc_greedy_decode(*greedy(probs_for([1, 5, 2], [0.9, 0.9, 0.9], 6)[None]), LABELS)
    assert res.text == "h e"


def test_ctc_all_blank_is_empty_with_zero_score() -> None:
    (res,) = ctc_greedy_decode(*greedy(probs_for([0, 0, 0, 0], [0.99] * 4, 6)[None]), LABELS)
    assert res == RecResult("", 0.0)


def test_ctc_rows_are_independent() -> None:
    batch = np.stack([probs_for([1, 0, 2, 0], [0.8, 0.9, 0.6, 0.9], 6),
                      probs_for([0, 0, 0, 0], [0.9] * 4, 6),
                      probs_for([4, 4, 4, 4], [0.5, 0.9, 0.9, 0.9], 6)])
    res = ctc_greedy_decode(*greedy(batch), LABELS)
    assert [r.text for r in res] == ["he", "", "o"]
    assert [r.score for r in res] == pytest.approx([0.7, 0.0, 0.5], abs=1e-6)


def test_ctc_empty_batch() -> None:
    assert ctc_greedy_decode(*greedy(np.zeros((0, 10, 6), np.float32)), LABELS) == []


# ---------------------------------------------------------------- batch plan / resize

def test_rec_batch_plan_sorted_and_chunked() -> None:
    ratios = [1.0, 10.0, 3.0, 7.0, 2.0]
    plan = rec_batch_plan(ratios, batch_size=2, height=48, min_width=320, max_width=3200, width_multiple=1)
    assert [idx.tolist() for idx, _ in plan] == [[0, 4], [2, 3], [1]]
    assert [w for _, w in plan] == [320, int(48 * 7.0), int(48 * 10.0)]


def test_rec_batch_plan_width_rule() -> None:
    for ratios, expected in [([2.5], 320), ([6.7], int(48 * 6.7)), ([100.0], 3200), ([66.0], 3168)]:
        ((_, width),) = rec_batch_plan(ratios, 6, 48, 320, 3200, 1)
        assert width == min(max(320, int(48 * max(ratios))), 3200), ratios
        assert width == expected


def test_rec_batch_plan_width_multiple() -> None:
    ((_, width),) = rec_batch_plan([7.1], 6, 48, 320, 3200, 32)
    assert width == 352  # int(48 * 7.1) = 340 -> next multiple of 32
    ((_, width),) = rec_batch_plan([1.0], 6, 48, 320, 3200, 32)
    assert width == 320


def test_rec_batch_plan_every_index_once() -> None:
    rng = np.random.default_rng(5)
    ratios = list(rng.uniform(0.2, 40, 101))
    for bs in (1, 6, 64, 200):
        plan = rec_batch_plan(ratios, bs, 48, 320, 3200, 1)
        assert len(plan) == math.ceil(101 / bs)
        assert all(len(idx) <= bs for idx, _ in plan)
        flat = np.concatenate([idx for idx, _ in plan])
        assert sorted(flat.tolist()) == list(range(101))
        assert np.all(np.diff(np.asarray(ratios)[flat]) >= 0)
        widths = [w for _, w in plan]
        assert widths == sorted(widths)


def test_rec_batch_plan_total_width() -> None:
    # widths 48*ratio: 96, 96, 144, 480, 960, 1920; chunks keep crops x padded width <= 1000
    ratios = [2.0, 40.0, 3.0, 10.0, 2.0, 20.0]
    plan = rec_batch_plan(ratios, 16, 48, 0, 3200, 1, total_width=1000)
    assert [(idx.tolist(), w) for idx, w in plan] == [([0, 4, 2], 144), ([3], 480), ([5], 960), ([1], 1920)]
    assert rec_batch_plan(ratios, 2, 48, 0, 3200, 1, total_width=10_000)[0][0].tolist() == [0, 4]  # batch_size holds


def test_rec_batch_plan_total_width_random() -> None:
    rng = np.random.default_rng(7)
    ratios = list(rng.uniform(0.2, 60, 203))
    for bs, total in ((64, 2000), (4, 2000), (32, 500), (8, 100_000)):
        plan = rec_batch_plan(ratios, bs, 48, 0, 3200, 1, total_width=total)
        flat = np.concatenate([idx for idx, _ in plan])
        assert sorted(flat.tolist()) == list(range(203))
        assert np.all(np.diff(np.asarray(ratios)[flat]) >= 0)
        for (idx, width), nxt in zip(plan, plan[1:] + [None], strict=True):
            assert len(idx) <= bs
            assert width == max(8, min(int(48 * max(ratios[i] for i in idx)), 3200))
            assert len(idx) == 1 or len(idx) * width <= total
            if nxt is not None and len(idx) < bs:  # closed only because the next crop would not fit
                first_width = max(8, min(int(48 * ratios[nxt[0][0]]), 3200))
                assert (len(idx) + 1) * first_width > total


def test_rec_batch_plan_empty() -> None:
    assert rec_batch_plan([], 6, 48, 320, 3200, 1) == []


def test_crop_batch_pads_with_grey() -> None:
    img = np.full((32, 64, 3), 255, np.uint8)
    img[:, :32] = 0
    (out,) = crop_batch([img], 48, 320)
    assert out.shape == (48, 320, 3) and out.dtype == np.uint8
    # ratio 2 -> 96 px of content, the rest CROP_PAD (the grey that normalises to ~0)
    assert (out[:, :40] == 0).all() and (out[:, 56:96] == 255).all()
    assert (out[:, 96:] == CROP_PAD).all() and CROP_PAD == 128


def test_crop_batch_squashes_wide_crops() -> None:
    img = np.full((10, 1000, 3), 255, np.uint8)
    (out,) = crop_batch([img], 48, 320)
    assert out.shape == (48, 320, 3)
    assert (out == 255).all()


def test_crop_batch_channel_order_kept() -> None:
    img = np.zeros((48, 48, 3), np.uint8)
    img[..., 2] = 255
    (out,) = crop_batch([img], 48, 100)
    assert out[10, 10].tolist() == [0, 0, 255]


def test_crop_batch_is_paddleocr_resize_per_crop() -> None:
    """Every slot holds PaddleOCR's resize of that crop alone (height 48 keeping the ratio, ceil),
    whatever its neighbours; normalised as the graph does, it is resize_norm_img's (x / 255 - 0.5) / 0.5,
    with the padding at 1 / 127.5 instead of 0."""
    rng = np.random.default_rng(5)
    crops = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(20, 90), (37, 41), (16, 400)]]
    batch = crop_batch(crops, 48, 320)
    assert batch.shape == (3, 48, 320, 3) and batch.flags["C_CONTIGUOUS"]
    for crop, out in zip(crops, batch, strict=True):
        rw = min(320, int(np.ceil(48 * crop.shape[1] / crop.shape[0])))
        np.testing.assert_array_equal(out[:, :rw], cv2.resize(crop, (rw, 48)))
        assert (out[:, rw:] == CROP_PAD).all()
        paddle = np.zeros((3, 48, 320), np.float32)
        paddle[:, :, :rw] = (cv2.resize(crop, (rw, 48)).astype(np.float32).transpose(2, 0, 1) / 255 - 0.5) / 0.5
        graph = out.astype(np.float32).transpose(2, 0, 1) / np.float32(127.5) - np.float32(1.0)
        np.testing.assert_allclose(graph, paddle, atol=1.01 / 127.5)
        np.testing.assert_allclose(graph[:, :, :rw], paddle[:, :, :rw], atol=1e-6)


# ---------------------------------------------------------------- fakes

def id_crop(i: int, width: int, height: int = 32) -> np.ndarray:
    """Crop whose B/G channels encode `i` uniformly (survives resizing); R has a left-right ramp."""
    crop = np.empty((height, width, 3), np.uint8)
    crop[..., 0] = i % 256
    crop[..., 1] = i // 256
    crop[..., 2] = np.linspace(0, 255, width, dtype=np.uint8)[None, :]
    return crop


def decode_id(crop: np.ndarray) -> int:
    """The id of an `id_crop` from its batch slot [H,W,3]."""
    return int(crop[0, 0, 1]) * 256 + int(crop[0, 0, 0])


class FakeRec:
    """Spells each crop's id in digits, separated by blanks; records batch shapes."""

    def __init__(self) -> None:
        self.shapes: list[tuple[int, ...]] = []

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.shapes.append(batch.shape)
        assert batch.dtype == np.uint8 and batch.ndim == 4 and batch.shape[3] == 3
        out = np.zeros((len(batch), 8, len(DIGITS)), np.float32)
        out[:, :, 0] = 1.0
        for n in range(len(batch)):
            for t, ch in enumerate(str(decode_id(batch[n]))):
                out[n, 2 * t, 0] = 0.0
                out[n, 2 * t, 1 + int(ch)] = 1.0
        return greedy(out)


class FakeCls:
    def __init__(self, probs_by_id: dict[int, tuple[float, float]]) -> None:
        self.probs_by_id = probs_by_id
        self.shapes: list[tuple[int, ...]] = []

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.shapes.append(batch.shape)
        return np.array([self.probs_by_id[decode_id(x)] for x in batch], np.float32)


# ---------------------------------------------------------------- classify_and_flip

def test_classify_flips_only_confident_180() -> None:
    probs = {0: (0.05, 0.95), 1: (0.15, 0.85), 2: (0.95, 0.05), 3: (0.1, 0.9), 4: (0.0, 1.0)}
    crops = [id_crop(i, 40 + 30 * i) for i in range(5)]
    fake = FakeCls(probs)
    out, flipped, scores = classify_and_flip(crops, fake, batch_size=2, thresh=0.9)
    assert flipped.tolist() == [True, False, False, False, True]  # 0.9 is not above thresh 0.9
    np.testing.assert_allclose(scores, [0.95, 0.85, 0.95, 0.9, 1.0], atol=1e-6)
    for i in range(5):
        expected = cv2.rotate(crops[i], cv2.ROTATE_180) if flipped[i] else crops[i]
        np.testing.assert_array_equal(out[i], expected)
    assert np.array_equal(crops[0], id_crop(0, 40))  # the caller's crops are not modified in place
    assert len(fake.shapes) == 3
    assert all(s[0] <= 2 and s[1:] == CLS_SHAPE for s in fake.shapes)


def test_classify_zero_crops_no_calls() -> None:
    fake = FakeCls({})
    out, flipped, scores = classify_and_flip([], fake, batch_size=6, thresh=0.9)
    assert out == [] and flipped.shape == (0,) and scores.shape == (0,)
    assert fake.shapes == []


def test_classify_batches_never_exceed_batch_size() -> None:
    crops = [id_crop(i, 20 + i) for i in range(23)]
    fake = FakeCls({i: (0.3, 0.7) for i in range(23)})
    _, flipped, _ = classify_and_flip(crops, fake, batch_size=6, thresh=0.5)
    assert [s[0] for s in fake.shapes] == [6, 6, 6, 5]
    assert flipped.all()


# ---------------------------------------------------------------- recognize_crops

def run_rec(n: int, batch_size: int, **kw) -> tuple[list[RecResult], FakeRec]:
    crops = [id_crop(i, 10 + (i * 37) % 300) for i in range(n)]
    fake = FakeRec()
    res = recognize_crops(crops, fake, DIGITS, batch_size, 48, kw.get("min_width", 320), kw.get("max_width", 3200),
                          kw.get("width_multiple", 1))
    return res, fake


@pytest.mark.parametrize("n,batch_size", [(1, 6), (6, 6), (7, 6), (13, 4), (64, 64), (65, 64)])
def test_recognize_calls_and_order(n: int, batch_size: int) -> None:
    res, fake = run_rec(n, batch_size)
    assert len(fake.shapes) == math.ceil(n / batch_size)
    assert all(s[0] <= batch_size for s in fake.shapes)
    assert sum(s[0] for s in fake.shapes) == n
    assert [r.text for r in res] == [str(i) for i in range(n)]  # input order, not sorted order
    assert all(r.score == pytest.approx(1.0) for r in res)


def test_recognize_batch_shapes_follow_the_plan() -> None:
    res, fake = run_rec(20, 6, width_multiple=8)
    ratios = [(10 + (i * 37) % 300) / 32 for i in range(20)]
    plan = rec_batch_plan(ratios, 6, 48, 320, 3200, 8)
    assert [s for s in fake.shapes] == [(len(idx), 48, w, 3) for idx, w in plan]


def test_recognize_zero_crops_no_calls() -> None:
    res, fake = run_rec(0, 6)
    assert res == [] and fake.shapes == []


def test_recognize_500_crops() -> None:
    res, fake = run_rec(500, 64)
    assert len(fake.shapes) == 8
    assert max(s[0] for s in fake.shapes) == 64
    assert [r.text for r in res] == [str(i) for i in range(500)]


# ---------------------------------------------------------------- pipelining (models with submit)

class Submitting:
    """A model with `submit` that logs when batches are submitted and waited for."""

    def __init__(self, model, log: list[str]) -> None:
        self.model, self.log = model, log

    def __call__(self, batch):
        raise AssertionError("a model with submit is only called through submit")

    def submit(self, batch):
        k = sum(e.startswith("submit") for e in self.log)
        self.log.append(f"submit {k}")
        result = self.model(batch)

        def wait():
            self.log.append(f"wait {k}")
            return result
        return wait


def _logged_batches(n: int, log: list[str]):
    for k in range(n):
        log.append(f"build {k}")
        yield k, np.full((1, 1), k, np.float32)


def test_pipelined_builds_the_next_batch_while_one_is_in_flight() -> None:
    log: list[str] = []
    out = []
    for key, result in pipelined(Submitting(lambda b: b * 10, log), _logged_batches(3, log)):
        log.append(f"use {key}")
        out.append((key, float(result[0, 0])))
    assert out == [(0, 0.0), (1, 10.0), (2, 20.0)]
    assert log == ["build 0", "submit 0", "build 1", "submit 1", "wait 0", "use 0",
                   "build 2", "submit 2", "wait 1", "use 1", "wait 2", "use 2"]


def test_pipelined_without_submit_runs_one_batch_at_a_time() -> None:
    log: list[str] = []

    def model(b):
        log.append(f"run {int(b[0, 0])}")
        return b

    assert [k for k, _ in pipelined(model, _logged_batches(2, log))] == [0, 1]
    assert log == ["build 0", "run 0", "build 1", "run 1"]


def test_pipelined_recogniser_and_classifier_give_the_same_results() -> None:
    crops = [id_crop(i, 10 + (i * 37) % 300) for i in range(29)]
    plain = recognize_crops(crops, FakeRec(), DIGITS, 4, 48, 0, 3200)
    log: list[str] = []
    piped = recognize_crops(crops, Submitting(FakeRec(), log), DIGITS, 4, 48, 0, 3200)
    assert piped == plain and [r.text for r in piped] == [str(i) for i in range(29)]
    assert max(int(e.split()[1]) for e in log if e.startswith("submit")) == math.ceil(29 / 4) - 1
    probs = {i: (0.2, 0.8) if i % 3 == 0 else (0.9, 0.1) for i in range(29)}
    ref = classify_and_flip(crops, FakeCls(probs), 6, 0.5)
    got = classify_and_flip(crops, Submitting(FakeCls(probs), []), 6, 0.5)
    np.testing.assert_array_equal(got[1], ref[1])
    np.testing.assert_array_equal(got[2], ref[2])
    assert all(np.array_equal(a, b) for a, b in zip(got[0], ref[0], strict=True))
