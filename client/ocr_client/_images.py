"""Turn the accepted image kinds (path, bytes, ndarray) into encoded bytes."""
from __future__ import annotations

import os
from typing import Any, Union

import numpy as np
from numpy.typing import NDArray

from ._errors import OcrInvalidInputError

__all__ = ["ImageInput", "load_image_bytes"]

#: What ``ocr()`` accepts: a file path, encoded bytes, or an OpenCV-style array.
ImageInput = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, NDArray[Any]]


def _encode_array(image: NDArray[Any]) -> bytes:
    """PNG-encode (lossless) an HxW, HxWx1, HxWx3 (BGR) or HxWx4 (BGRA) uint8/uint16 array."""
    if image.dtype not in (np.uint8, np.uint16):
        raise OcrInvalidInputError(
            f"ndarray images must be uint8 or uint16, got {image.dtype} "
            "(convert with e.g. (img * 255).clip(0, 255).astype(np.uint8))")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))):
        raise OcrInvalidInputError(
            f"ndarray images must be HxW (gray), HxWx3 (BGR) or HxWx4 (BGRA), got shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise OcrInvalidInputError(f"ndarray image is empty (shape {image.shape})")
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(image))
    if not ok:
        raise OcrInvalidInputError(f"cv2.imencode could not PNG-encode an array of shape {image.shape}")
    return buf.tobytes()


def load_image_bytes(image: ImageInput) -> bytes:
    """Encoded image bytes for ``image``; raises :class:`OcrInvalidInputError` locally."""
    if isinstance(image, np.ndarray):
        return _encode_array(image)
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
        if not data:
            raise OcrInvalidInputError("image bytes are empty")
        return data
    if isinstance(image, (str, os.PathLike)):
        path = os.fspath(image)
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            raise OcrInvalidInputError(f"{path}: no such file") from None
        except IsADirectoryError:
            raise OcrInvalidInputError(f"{path}: is a directory, not an image file") from None
        except OSError as exc:
            raise OcrInvalidInputError(f"{path}: cannot read: {exc.strerror or exc}") from None
        if not data:
            raise OcrInvalidInputError(f"{path}: file is empty")
        return data
    raise OcrInvalidInputError(
        f"unsupported image type {type(image).__name__}: pass a path, encoded bytes or a numpy array")
