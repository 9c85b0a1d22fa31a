"""Image loading: path / bytes / ndarray -> encoded bytes, no server."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from ocr_client import OcrInvalidInputError
from ocr_client._images import load_image_bytes


def _decode(data: bytes) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert img is not None
    return img


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def test_path_and_pathlike_send_the_file_bytes(tmp_path: Path) -> None:
    p = tmp_path / "x.jpg"
    p.write_bytes(b"\xff\xd8not-really-a-jpeg")
    assert load_image_bytes(p) == p.read_bytes()
    assert load_image_bytes(str(p)) == p.read_bytes()


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_bytes_like(kind: Any) -> None:
    assert load_image_bytes(kind(b"\x89PNG...")) == b"\x89PNG..."


@pytest.mark.parametrize("shape", [(17, 23), (17, 23, 3), (17, 23, 4)])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_ndarray_is_png_lossless(rng: np.random.Generator, shape: tuple[int, ...], dtype: Any) -> None:
    img = rng.integers(0, np.iinfo(dtype).max, size=shape, endpoint=True).astype(dtype)
    data = load_image_bytes(img)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    back = _decode(data)
    assert back.dtype == dtype
    np.testing.assert_array_equal(back, img)


def test_single_channel_and_non_contiguous(rng: np.random.Generator) -> None:
    img = rng.integers(0, 255, size=(9, 11, 1), dtype=np.uint8)
    np.testing.assert_array_equal(_decode(load_image_bytes(img)), img[:, :, 0])
    bgr = rng.integers(0, 255, size=(10, 12, 3), dtype=np.uint8)
    view = bgr[::2, ::-1]  # strided, negative step
    np.testing.assert_array_equal(_decode(load_image_bytes(view)), view)


@pytest.mark.parametrize(("array", "match"), [
    (np.zeros((4, 4), np.float32), "uint8 or uint16"),
    (np.zeros((4, 4), np.bool_), "uint8 or uint16"),
    (np.zeros((4, 4, 2), np.uint8), "shape"),
    (np.zeros((4,), np.uint8), "shape"),
    (np.zeros((0, 4, 3), np.uint8), "empty"),
])
def test_bad_arrays(array: np.ndarray, match: str) -> None:
    with pytest.raises(OcrInvalidInputError, match=match):
        load_image_bytes(array)


def test_local_errors(tmp_path: Path) -> None:
    with pytest.raises(OcrInvalidInputError, match="no such file"):
        load_image_bytes(tmp_path / "nope.png")
    with pytest.raises(OcrInvalidInputError, match="directory"):
        load_image_bytes(tmp_path)
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(OcrInvalidInputError, match="empty"):
        load_image_bytes(tmp_path / "empty.png")
    with pytest.raises(OcrInvalidInputError, match="empty"):
        load_image_bytes(b"")
    with pytest.raises(OcrInvalidInputError, match="unsupported image type"):
        load_image_bytes(42)  # type: ignore[arg-type]
