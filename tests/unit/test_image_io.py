"""Image decoding and refusal (all images generated and encoded in the test)."""
from __future__ import annotations

import struct
from typing import Any

import cv2
import numpy as np
import pytest

from ppocr_steps import image_io
from ppocr_steps.errors import InvalidInputError
from ppocr_steps.image_io import decode_image, peek_size

MAX_PIXELS = 50_000_000
MIN_SIDE = 8
MAX_BYTES = 32 * 1024 * 1024


def decode(data: bytes, **kw) -> np.ndarray:
    args: dict[str, Any] = {"max_pixels": MAX_PIXELS, "min_side": MIN_SIDE, "max_bytes": MAX_BYTES}
    args.update(kw)
    return decode_image(data, **args)


def refused(data: bytes, reason: str, *needles: str, **kw) -> InvalidInputError:
    with pytest.raises(InvalidInputError) as info:
        decode(data, **kw)
    assert info.value.reason == reason, str(info.value)
    for needle in needles:
        assert needle in str(info.value)
    return info.value


LOSSLESS = [(".png", ()), (".bmp", ()), (".tiff", ()), (".webp", (cv2.IMWRITE_WEBP_QUALITY, 101))]


@pytest.mark.parametrize("ext,params", LOSSLESS, ids=[e for e, _ in LOSSLESS])
def test_lossless_formats_decode_exactly(noise_image, encode, ext, params) -> None:
    out = decode(encode(noise_image, ext, *params))
    assert out.dtype == np.uint8 and out.shape == (60, 80, 3)
    assert out.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(out, noise_image)


@pytest.mark.parametrize("ext,params", [(".jpg", (cv2.IMWRITE_JPEG_QUALITY, 95)),
                                        (".webp", (cv2.IMWRITE_WEBP_QUALITY, 90))], ids=["jpeg", "webp-lossy"])
def test_lossy_formats_decode_close(noise_image, encode, ext, params) -> None:
    out = decode(encode(noise_image, ext, *params))
    assert out.dtype == np.uint8 and out.shape == (60, 80, 3)
    assert np.abs(out.astype(int) - noise_image.astype(int)).mean() < 8


def test_channel_order_is_bgr(encode) -> None:
    img = np.zeros((20, 20, 3), np.uint8)
    img[:, :, 0] = 200  # blue
    out = decode(encode(img, ".png"))
    assert out[5, 5].tolist() == [200, 0, 0]


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".tiff"])
def test_grayscale_becomes_three_channels(encode, ext) -> None:
    gray = np.tile(np.arange(0, 240, 4, dtype=np.uint8), (30, 1))  # 30x60
    out = decode(encode(gray, ext))
    assert out.shape == (30, 60, 3)
    assert np.array_equal(out[:, :, 0], out[:, :, 1]) and np.array_equal(out[:, :, 1], out[:, :, 2])
    assert np.abs(out[:, :, 0].astype(int) - gray.astype(int)).max() <= (0 if ext != ".jpg" else 6)


@pytest.mark.parametrize("ext", [".png", ".webp", ".tiff"])
def test_rgba_composited_over_white(encode, ext) -> None:
    img = np.zeros((20, 30, 4), np.uint8)
    img[:, :10] = (0, 0, 0, 0)        # fully transparent black -> white paper
    img[:, 10:20] = (0, 0, 255, 255)  # opaque red stays red
    img[:, 20:] = (0, 0, 0, 128)      # half-transparent black -> mid grey
    params = (cv2.IMWRITE_WEBP_QUALITY, 101) if ext == ".webp" else ()
    out = decode(encode(img, ext, *params))
    assert out.shape == (20, 30, 3)
    assert out[5, 5].tolist() == [255, 255, 255]
    assert out[5, 15].tolist() == [0, 0, 255]
    assert out[5, 25].tolist() == [127, 127, 127]


def test_16bit_png_scaled_to_8bit(encode) -> None:
    img16 = np.zeros((16, 16, 3), np.uint16)
    img16[:, :8] = 65535
    img16[:, 8:] = 100 * 256 + 255
    out = decode(encode(img16, ".png"))
    assert out.dtype == np.uint8 and out.shape == (16, 16, 3)
    assert out[0, 0].tolist() == [255, 255, 255]
    assert out[0, 12].tolist() == [100, 100, 100]


def test_16bit_gray_png(encode) -> None:
    gray16 = np.full((12, 12), 200 * 256, np.uint16)
    out = decode(encode(gray16, ".png"))
    assert out.shape == (12, 12, 3) and out.dtype == np.uint8
    assert (out == 200).all()


def test_jpeg_exif_orientation_is_applied(encode) -> None:
    """A JPEG tagged Orientation=6 (rotate 90 CW) comes out rotated, as the camera meant it."""
    img = np.full((40, 80, 3), 255, np.uint8)
    img[:, :20] = 0  # black band on the left
    jpg = encode(img, ".jpg", cv2.IMWRITE_JPEG_QUALITY, 95)
    # APP1 Exif segment: TIFF header (little endian), IFD0 with one entry 0x0112 = 6
    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1) + struct.pack("<HHIHH", 0x0112, 3, 1, 6, 0)
    tiff += struct.pack("<I", 0)
    payload = b"Exif\x00\x00" + tiff
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    tagged = jpg[:2] + app1 + jpg[2:]
    out = decode(tagged)
    assert out.shape == (80, 40, 3)
    assert out[:20].mean() < 60 and out[30:].mean() > 200  # the left band is now at the top


# ---------------------------------------------------------------- refusals

def test_empty_bytes_refused() -> None:
    refused(b"", "empty", "empty")


def test_random_bytes_refused_unknown_signature(rng) -> None:
    data = rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()
    if data[:2] in (b"\xff\xd8", b"BM"):  # vanishingly unlikely with this seed; keep the test honest
        data = b"\x00" + data
    refused(data, "bad_image", "unknown file signature", "JPEG, PNG")


def test_text_is_not_an_image() -> None:
    refused(b"hello, this is not an image" * 10, "bad_image")


@pytest.mark.parametrize("ext", [".png", ".jpg", ".webp", ".bmp", ".tiff"])
def test_truncated_half_is_refused_or_partial_never_crashes(noise_image, encode, ext) -> None:
    data = encode(noise_image, ext)
    for cut in (len(data) // 2, 24, 40, 100):
        try:
            out = decode(data[:cut])
        except InvalidInputError as exc:  # any other exception type fails the test
            assert exc.reason in ("bad_image", "too_small"), exc.reason
        else:
            assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_truncated_half_png_jpeg_refused_as_bad_image(noise_image, encode, ext) -> None:
    data = encode(noise_image, ext)
    refused(data[:len(data) // 2], "bad_image", "could not be decoded")


def test_signature_only_refused() -> None:
    refused(b"\x89PNG\r\n\x1a\n", "bad_image")
    refused(b"\xff\xd8\xff", "bad_image")


def test_gif_refused_as_unsupported(gif_bytes) -> None:
    err = refused(gif_bytes, "unsupported_format", "GIF", "PNG")
    assert "JPEG" in str(err)


def test_png_bomb_refused_without_decoding(encode, patch_png_size, monkeypatch) -> None:
    bomb = patch_png_size(encode(np.zeros((10, 10, 3), np.uint8), ".png"), 100_000, 100_000)
    assert peek_size(bomb) == ("png", 100_000, 100_000)

    def must_not_decode(*_a, **_k):
        raise AssertionError("cv2.imdecode called on a decompression bomb")

    monkeypatch.setattr(image_io.cv2, "imdecode", must_not_decode)
    refused(bomb, "too_large", "100000x100000", str(MAX_PIXELS))


def test_patched_png_is_still_a_valid_png(encode, patch_png_size) -> None:
    """The patch helper keeps the CRC right: patching to the true size decodes normally."""
    img = np.full((10, 12, 3), 77, np.uint8)
    same = patch_png_size(encode(img, ".png"), 12, 10)
    np.testing.assert_array_equal(decode(same), img)


def test_jpeg_bomb_refused_without_decoding(encode, monkeypatch) -> None:
    jpg = bytearray(encode(np.zeros((16, 16, 3), np.uint8), ".jpg"))
    sof = jpg.find(b"\xff\xc0")
    assert sof > 0
    jpg[sof + 5:sof + 9] = struct.pack(">HH", 60000, 60000)  # height, width
    monkeypatch.setattr(image_io.cv2, "imdecode", lambda *a, **k: pytest.fail("decoded a bomb"))
    refused(bytes(jpg), "too_large", "60000x60000")


def test_pixel_limit_applies_after_decoding_when_header_has_no_size(noise_image, encode) -> None:
    tiff = encode(noise_image, ".tiff")  # peek_size cannot read TIFF dimensions
    refused(tiff, "too_large", "80x60", max_pixels=80 * 60 - 1)
    assert decode(tiff, max_pixels=80 * 60).shape == (60, 80, 3)


def test_pixel_limit_edge(noise_image, encode) -> None:
    png = encode(noise_image, ".png")
    assert decode(png, max_pixels=80 * 60).shape == (60, 80, 3)
    refused(png, "too_large", max_pixels=80 * 60 - 1)


def test_too_many_bytes_refused(noise_image, encode, monkeypatch) -> None:
    png = encode(noise_image, ".png")
    assert decode(png, max_bytes=len(png)).shape == (60, 80, 3)
    monkeypatch.setattr(image_io, "peek_size", lambda *_: pytest.fail("byte limit must be checked first"))
    refused(png, "too_large", f"{len(png)} bytes", f"{len(png) - 1} bytes", max_bytes=len(png) - 1)


@pytest.mark.parametrize("shape", [(1, 1), (7, 100), (100, 7)])
def test_too_small_refused(encode, shape) -> None:
    img = np.full((*shape, 3), 255, np.uint8)
    refused(encode(img, ".png"), "too_small", f"{shape[1]}x{shape[0]}", "at least 8")


def test_min_side_edge(encode) -> None:
    assert decode(encode(np.full((8, 8, 3), 9, np.uint8), ".png")).shape == (8, 8, 3)


def test_name_appears_in_messages() -> None:
    with pytest.raises(InvalidInputError, match=r"image_bytes\[3\]"):
        decode_image(b"", MAX_PIXELS, MIN_SIDE, MAX_BYTES, name="image_bytes[3]")


# ---------------------------------------------------------------- peek_size

@pytest.mark.parametrize("ext,params,fmt", [
    (".png", (), "png"),
    (".jpg", (), "jpeg"),
    (".jpg", (cv2.IMWRITE_JPEG_PROGRESSIVE, 1), "jpeg"),
    (".bmp", (), "bmp"),
    (".webp", (cv2.IMWRITE_WEBP_QUALITY, 101), "webp"),  # VP8L (lossless)
    (".webp", (cv2.IMWRITE_WEBP_QUALITY, 80), "webp"),   # VP8 (lossy)
], ids=["png", "jpeg", "jpeg-progressive", "bmp", "webp-vp8l", "webp-vp8"])
def test_peek_size_reads_header(encode, ext, params, fmt) -> None:
    img = np.full((37, 91, 3), 128, np.uint8)
    assert peek_size(encode(img, ext, *params)) == (fmt, 91, 37)


def test_peek_size_webp_extended_with_alpha(encode) -> None:
    img = np.full((37, 91, 4), 128, np.uint8)
    img[..., 3] = 100
    data = encode(img, ".webp", cv2.IMWRITE_WEBP_QUALITY, 80)
    assert data[12:16] == b"VP8X"
    assert peek_size(data) == ("webp", 91, 37)


def test_peek_size_bmp_top_down(encode) -> None:
    bmp = bytearray(encode(np.zeros((37, 91, 3), np.uint8), ".bmp"))
    bmp[22:26] = struct.pack("<i", -37)  # negative height = top-down rows
    assert peek_size(bytes(bmp)) == ("bmp", 91, 37)


def test_peek_size_tiff_has_unknown_size(encode) -> None:
    data = encode(np.zeros((37, 91, 3), np.uint8), ".tiff")
    assert peek_size(data) == ("tiff", -1, -1)


def test_peek_size_gif(gif_bytes) -> None:
    assert peek_size(gif_bytes) == ("gif", 2, 2)


@pytest.mark.parametrize("data", [b"", b"\x00" * 64, b"RIFF\x00\x00\x00\x00WAVE" + b"\x00" * 32, b"\x89PNG\r\n\x1a\n"])
def test_peek_size_unknown(data) -> None:
    assert peek_size(data) is None
