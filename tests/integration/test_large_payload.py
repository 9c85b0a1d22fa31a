"""Images far above gRPC's 4 MB default message size go through both protocols; the byte limit holds.

Triton's gRPC server accepts messages up to 2 GiB and the client library sets 256 MiB (8 images x
32 MiB, the repository's limits) on its channel; over HTTP the binary tensor extension carries the
bytes. What limits a request is `det_preprocess` `max_image_bytes` / `max_images_per_request`.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from helpers import norm, png

from ocr_client import OcrClient, OcrInvalidInputError


@pytest.fixture(scope="module")
def large_page() -> tuple[bytes, list[str]]:
    """3000x3000 PNG of about 20 MB (noisy paper) with six printed lines."""
    rng = np.random.default_rng(0)
    img = rng.integers(215, 256, (3000, 3000, 3), dtype=np.uint8)
    texts = []
    for i in range(6):
        text = f"LARGE PAGE LINE {i} TOTAL {1000 + i * 37}.50"
        cv2.putText(img, text, (150, 400 + i * 400), cv2.FONT_HERSHEY_SIMPLEX, 3.0, (0, 0, 0), 8, cv2.LINE_AA)
        texts.append(text)
    blob = png(img)
    assert len(blob) > 16 * 2 ** 20
    return blob, texts


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_20mb_image(server, large_page, protocol):
    blob, texts = large_page
    url = server.grpc_url if protocol == "grpc" else server.http_url
    with OcrClient(url, protocol=protocol, timeout=180) as client:
        result = client.ocr(blob)
    found = [norm(t) for t in result.texts]
    hits = sum(1 for t in texts if norm(t) in found)
    assert hits >= 5, result.texts
    for line in result.lines:  # polygons in the original 3000x3000 pixels
        assert max(p[0] for p in line.poly) <= 3000 and max(p[1] for p in line.poly) <= 3000


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_over_the_byte_limit_is_invalid_argument(server, protocol):
    oversize = b"\x89PNG\r\n\x1a\n" + b"\x00" * (32 * 2 ** 20)  # 32 MiB + 8 bytes
    url = server.grpc_url if protocol == "grpc" else server.http_url
    with OcrClient(url, protocol=protocol, timeout=120) as client:
        with pytest.raises(OcrInvalidInputError, match=r"image_bytes is \d+ bytes; the limit is 33554432 bytes"):
            client.ocr(oversize)
        assert client.is_ready()
