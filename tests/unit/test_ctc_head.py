"""ppocr_steps.ctc_head: the greedy-CTC head computed on the host from f32 or bf16 logits."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from ppocr_steps.ctc_head import bf16_bits_to_f32, greedy_ctc_head


def _bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bf16 bit patterns, rounded to nearest even (as the runtime rounds)."""
    bits = x.astype(np.float32).view(np.uint32)
    rounded = bits + 0x7FFF + ((bits >> 16) & 1)
    return (rounded >> 16).astype(np.uint16)


def _reference(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ids, softmax max and the timesteps greedy CTC keeps, in float64."""
    x = logits.astype(np.float64)
    soft = np.exp(x - x.max(axis=2, keepdims=True))
    soft /= soft.sum(axis=2, keepdims=True)
    ids = x.argmax(axis=2)
    kept = ids != 0
    kept[:, 1:] &= ids[:, 1:] != ids[:, :-1]
    return ids, soft.max(axis=2), kept


def _logits(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(scale=3.0, size=(4, 9, 40)).astype(np.float32)
    x[0, :, 0] += 12  # a row of blanks
    x[1, 2:5, 7] += 15  # one character over three timesteps: kept once
    x[2] -= 60  # every logit negative: bf16 bits do not sort as int16 there
    x[3, 0] = 0.0
    x[3, 0, 5] = 1.5
    x[3, 1] = -1.0
    x[3, 1, [4, 9]] = 0.0  # largest value 0: equal maxima, the first one wins
    return x


def test_f32_ids_are_the_argmax_and_probs_the_softmax_where_kept() -> None:
    x = _logits()
    ids, probs = greedy_ctc_head(x)
    ref_ids, ref_max, kept = _reference(x)
    assert ids.dtype == np.int32 and probs.dtype == np.float32
    np.testing.assert_array_equal(ids, ref_ids)
    assert kept.any() and not kept.all()
    np.testing.assert_allclose(probs[kept], ref_max[kept], rtol=1e-5)
    assert (probs[~kept] == 0).all()
    assert ids[3, 1] == 4
    assert (ids[1, 2:5] == 7).all() and kept[1, 2] and not kept[1, 3:5].any()


def test_bf16_bits_give_the_same_head_as_their_values() -> None:
    bits = _bf16_bits(_logits(1))
    values = bf16_bits_to_f32(bits)
    ids, probs = greedy_ctc_head(bits)
    ref_ids, ref_max, kept = _reference(values)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_allclose(probs[kept], ref_max[kept], rtol=1e-5)
    assert (probs[~kept] == 0).all()
    assert (values[2] < 0).all() and ids[3, 1] == 4


def test_bf16_conversion_is_exact() -> None:
    x = np.asarray([1.0, -2.5, 0.0, -0.0, 3.140625, -1e-3], np.float32)
    assert np.array_equal(bf16_bits_to_f32(_bf16_bits(x))[:5], x[:5])
    assert bf16_bits_to_f32(_bf16_bits(x))[5] == pytest.approx(-1e-3, rel=1e-2)


def test_refuses_other_shapes_and_types() -> None:
    with pytest.raises(ValueError, match=r"\[N,T,C\]"):
        greedy_ctc_head(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="float32"):
        greedy_ctc_head(np.zeros((1, 2, 3), np.float64))


@pytest.mark.parametrize("bf16", [False, True])
def test_a_pool_computes_the_same_head_in_halves(bf16: bool) -> None:
    x = _logits(2)
    logits = _bf16_bits(x) if bf16 else x
    with ThreadPoolExecutor(1) as pool:
        ids, probs = greedy_ctc_head(logits, pool)
        one_row = greedy_ctc_head(logits[:1, :1], pool)
    alone = greedy_ctc_head(logits)
    np.testing.assert_array_equal(ids, alone[0])
    np.testing.assert_array_equal(probs, alone[1])
    np.testing.assert_array_equal(one_row[0], alone[0][:1, :1])
