"""End-to-end behaviour of the `ocr` ensemble on a real tritonserver, through the client library."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from helpers import load_labels, norm, png, raw_infer, text_page
from tritonclient.utils import InferenceServerException

from ocr_client import AsyncOcrClient, OcrClient, OcrInvalidInputError


def test_receipt_reads_most_lines(client, evaldata):
    labels = load_labels(evaldata, "sroie_receipts_en")
    name = sorted(labels)[0]
    result = client.ocr(evaldata / "sroie_receipts_en" / name)
    gt = {norm(line["text"]) for line in labels[name]["lines"] if not line["ignore"]}
    found = {norm(line.text) for line in result.lines}
    assert len(result.lines) >= 0.7 * len(gt)
    assert len(gt & found) >= 0.5 * len(gt), (sorted(gt - found)[:10], sorted(found - gt)[:10])
    for line in result.lines:
        xs, ys = [p[0] for p in line.poly], [p[1] for p in line.poly]
        assert 0 <= min(xs) and max(xs) <= labels[name]["width"]
        assert 0 <= min(ys) and max(ys) <= labels[name]["height"]
        assert 0.5 <= line.score <= 1.0


def test_synthetic_page_text_exact(client):
    img, texts = text_page(6)
    result = client.ocr(img)
    assert [norm(t) for t in result.texts] == [norm(t) for t in texts]


def test_zero_text_image_gives_no_lines(client):
    blank = np.full((480, 640, 3), 255, np.uint8)
    assert client.ocr(blank).lines == []


def test_hundreds_of_lines_are_batched(client):
    img, texts = text_page(160, line_h=30, scale=0.7, seed=3)
    result = client.ocr(img, timeout=300)
    assert len(result.lines) >= 150  # far above the runtime models' max_batch_size (64)
    hits = len({norm(t) for t in texts} & {norm(t) for t in result.texts})
    assert hits >= 140


def test_multi_image_request_matches_single_requests(client):
    page, _ = text_page(5, seed=7)
    blank = np.full((200, 300, 3), 255, np.uint8)
    other, _ = text_page(3, seed=9)
    batch = client.ocr_batch([page, blank, other])
    assert len(batch) == 3
    assert batch[1].lines == []
    # padded rec batches mix crops of both images, which may move a space: compare like the scorer
    assert [norm(t) for t in batch[0].texts] == [norm(t) for t in client.ocr(page).texts]
    assert [norm(t) for t in batch[2].texts] == [norm(t) for t in client.ocr(other).texts]


def test_upside_down_text_is_flipped_by_the_classifier(client):
    img, texts = text_page(4, seed=11)
    flipped_img = cv2.rotate(img, cv2.ROTATE_180)
    on = client.ocr(flipped_img, use_textline_orientation=True)
    off = client.ocr(flipped_img, use_textline_orientation=False)
    assert all(line.flipped for line in on.lines) and len(on.lines) == 4
    assert not any(line.flipped for line in off.lines)
    assert sorted(norm(t) for t in on.texts) == sorted(norm(t) for t in texts)


def test_parameters_change_results(client):
    img, _ = text_page(8, seed=5)
    base = client.ocr(img)
    assert len(client.ocr(img, text_rec_score_thresh=1.0).lines) == 0
    assert len(client.ocr(img, box_thresh=1.0).lines) == 0
    small = client.ocr(img, limit_type="max", limit_side_len=64)
    assert len(small.lines) < len(base.lines)

    def area(res):
        return sum(cv2.contourArea(np.array(line.poly, np.float32)) for line in res.lines)

    assert area(client.ocr(img, unclip_ratio=2.5)) > area(client.ocr(img, unclip_ratio=1.2))
    assert len(client.ocr(img, thresh=0.9).lines) <= len(base.lines)


def test_http_protocol_gives_the_same_result(server, client):
    img, _ = text_page(3, seed=2)
    with OcrClient(server.http_url, protocol="http", timeout=60) as http:
        assert http.ocr(img).texts == client.ocr(img).texts


def test_async_client(server):
    import asyncio

    img, texts = text_page(2, seed=4)

    async def run():
        async with AsyncOcrClient(server.grpc_url, timeout=60) as c:
            return await asyncio.gather(*(c.ocr(img) for _ in range(3)))

    results = asyncio.run(run())
    assert [[norm(t) for t in r.texts] for r in results] == [[norm(t) for t in texts]] * 3


BAD_INPUTS = {
    "empty": b"",
    "not_an_image": b"hello, this is text",
    "truncated_png": png(text_page(2)[0])[:200],
    "one_pixel": png(np.zeros((1, 1, 3), np.uint8)),
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_images_are_invalid_argument(server, name):
    with pytest.raises(InferenceServerException) as info:
        raw_infer(server.grpc_url, [BAD_INPUTS[name]])
    assert "INVALID_ARGUMENT" in str(info.value.status()) or "InvalidArg" in str(info.value), str(info.value)
    assert "image_bytes" in str(info.value)


@pytest.mark.parametrize("param,value,needle", [
    ("thresh", 1.5, "thresh"), ("box_thresh", -0.1, "box_thresh"), ("unclip_ratio", 0.0, "unclip_ratio"),
    ("limit_side_len", 10, "limit_side_len"), ("limit_side_len", 100000, "limit_side_len"),
    ("limit_type", "middle", "limit_type"), ("text_rec_score_thresh", 2.0, "text_rec_score_thresh"),
])
def test_out_of_range_parameters_are_invalid_argument(server, param, value, needle):
    img = png(text_page(1)[0])
    with pytest.raises(InferenceServerException) as info:
        raw_infer(server.grpc_url, [img], **{param: value})
    message = str(info.value)
    assert "INVALID_ARGUMENT" in str(info.value.status()), message
    assert needle in message and ("allowed" in message or "use 'min' or 'max'" in message), message


def test_client_raises_typed_error_and_server_stays_healthy(client):
    with pytest.raises(OcrInvalidInputError, match="image_bytes"):
        client.ocr(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(OcrInvalidInputError, match="at most"):
        client.ocr_batch([png(text_page(1)[0])] * 11)  # max_images_per_request is 10
    assert client.is_ready()
    img, texts = text_page(2, seed=8)
    assert [norm(t) for t in client.ocr(img).texts] == [norm(t) for t in texts]
