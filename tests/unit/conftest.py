"""Shared synthetic fixtures for the ppocr_steps unit tests.

Everything is generated in code (no binary blobs in the repository): images are drawn with
OpenCV and encoded with `cv2.imencode`; probability maps are numpy arrays with filled shapes.
"""
from __future__ import annotations

import struct
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from served import served_settings

from ppocr_steps.settings import PipelineSettings

REPO_ROOT = Path(__file__).resolve().parents[2]
# Test doubles (a fake `tensorrt` module) live beside the tests, not in the product package.
sys.path.insert(0, str(REPO_ROOT / "tests" / "fakes"))
MODELS_DIR = REPO_ROOT / "build" / "models"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture
def settings() -> PipelineSettings:
    return served_settings()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def noise_image(rng: np.random.Generator) -> np.ndarray:
    """60x80 BGR uint8 with a smooth gradient plus noise (compresses, but not to nothing)."""
    yy, xx = np.mgrid[0:60, 0:80]
    base = np.stack([xx * 3, yy * 4, (xx + yy) * 2], axis=-1).astype(np.int32)
    img = base + rng.integers(0, 20, size=base.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def encode() -> Callable[..., bytes]:
    """encode(img, ".png", *params) -> bytes via cv2.imencode."""

    def _encode(img: np.ndarray, ext: str, *params: int) -> bytes:
        ok, buf = cv2.imencode(ext, img, list(params))
        assert ok, f"cv2.imencode({ext}) failed"
        return buf.tobytes()

    return _encode


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


@pytest.fixture(scope="session")
def patch_png_size() -> Callable[[bytes, int, int], bytes]:
    """Rewrite the IHDR width/height of an encoded PNG and fix the chunk CRC (decompression-bomb header)."""

    def _patch(png: bytes, width: int, height: int) -> bytes:
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
        length = struct.unpack(">I", png[8:12])[0]
        ihdr = bytearray(png[16:16 + length])
        ihdr[0:8] = struct.pack(">II", width, height)
        return png[:8] + _png_chunk(b"IHDR", bytes(ihdr)) + png[8 + 12 + length:]

    return _patch


@pytest.fixture(scope="session")
def gif_bytes() -> bytes:
    """A tiny 2x2 GIF89a file (OpenCV cannot encode GIF; only the header matters to the tests)."""
    header = b"GIF89a" + struct.pack("<HHBBB", 2, 2, 0x80, 0, 0)
    palette = b"\x00\x00\x00\xff\xff\xff"
    image = b"\x2c" + struct.pack("<HHHHB", 0, 0, 2, 2, 0) + b"\x02\x02\x44\x01\x00"
    return header + palette + image + b"\x3b"


@pytest.fixture(scope="session")
def prob_map() -> Callable[..., np.ndarray]:
    """prob_map(h, w, rects=[(x0, y0, x1, y1, value)], quads=[(pts[4,2], value)]) -> float32 HxW.

    Rectangles are inclusive of x0/y0 and exclusive of x1/y1 (numpy slicing).
    """

    def _make(h: int, w: int, rects=(), quads=()) -> np.ndarray:
        m = np.zeros((h, w), dtype=np.float32)
        for x0, y0, x1, y1, v in rects:
            m[y0:y1, x0:x1] = v
        for pts, v in quads:
            cv2.fillPoly(m, [np.round(np.asarray(pts)).astype(np.int32)], (float(v),))
        return m

    return _make


@pytest.fixture(scope="session")
def render_lines() -> Callable[..., np.ndarray]:
    """render_lines(lines, size=(h, w), origin=(x, y), spacing=px, scale, thickness) -> white BGR image."""

    def _render(lines: list[str], size: tuple[int, int], origin: tuple[int, int] = (40, 150), spacing: int = 200,
                scale: float = 1.2, thickness: int = 2) -> np.ndarray:
        img = np.full((size[0], size[1], 3), 255, dtype=np.uint8)
        x, y = origin
        for i, text in enumerate(lines):
            cv2.putText(img, text, (x, y + i * spacing), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thickness,
                        cv2.LINE_AA)
        return img

    return _render


def levenshtein(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


@pytest.fixture(scope="session")
def ned() -> Callable[[str, str], float]:
    """Normalised edit distance in [0, 1] (0 = identical)."""

    def _ned(a: str, b: str) -> float:
        return levenshtein(a, b) / max(len(a), len(b), 1)

    return _ned


@pytest.fixture(scope="session")
def models_dir() -> Path:
    return MODELS_DIR
