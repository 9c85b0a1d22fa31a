"""Small helpers shared by the integration tests: synthetic images and raw Triton requests."""
from __future__ import annotations

import json
import os
import unicodedata
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("OCR_SHARED_DIR", ROOT.parent / "shared"))
EVALDATA = SHARED / "evaldata"

WORDS = ["TOTAL", "CASH", "CHANGE", "INVOICE", "ROUNDING", "QTY", "PRICE", "ITEM", "DATE", "TAX"]


def text_page(lines: int, width: int = 900, line_h: int = 34, scale: float = 0.8, seed: int = 0
              ) -> tuple[np.ndarray, list[str]]:
    """White page with `lines` lines of printed text; returns the BGR image and the texts."""
    rng = np.random.default_rng(seed)
    img = np.full((line_h * lines + 40, width, 3), 255, np.uint8)
    texts = []
    for i in range(lines):
        text = f"{WORDS[rng.integers(len(WORDS))]} {rng.integers(10, 9999)}.{rng.integers(10, 99)}"
        cv2.putText(img, text, (30, 30 + i * line_h), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 2, cv2.LINE_AA)
        texts.append(text)
    return img, texts


def png(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return buf.tobytes()


def norm(text: str) -> str:
    return "".join(unicodedata.normalize("NFKC", text).casefold().split())


def raw_infer(url: str, blobs: list[bytes], **params):
    """Call the ensemble with tritonclient directly (bypasses the client library's checks)."""
    import tritonclient.grpc as grpcclient

    types = {"limit_side_len": ("INT32", np.int32), "limit_type": ("BYTES", np.object_),
             "thresh": ("FP32", np.float32), "box_thresh": ("FP32", np.float32),
             "unclip_ratio": ("FP32", np.float32), "use_textline_orientation": ("BOOL", np.bool_),
             "text_rec_score_thresh": ("FP32", np.float32)}
    x = grpcclient.InferInput("image_bytes", [len(blobs)], "BYTES")
    x.set_data_from_numpy(np.array(blobs, dtype=np.object_))
    inputs = [x]
    for name, value in params.items():
        dtype, np_type = types[name]
        t = grpcclient.InferInput(name, [1], dtype)
        t.set_data_from_numpy(np.array([value], dtype=np_type))
        inputs.append(t)
    with grpcclient.InferenceServerClient(url) as c:
        return c.infer("ocr", inputs, client_timeout=120)


def load_labels(evaldata: Path, subset: str) -> dict[str, dict]:
    with open(evaldata / subset / "labels.jsonl", encoding="utf-8") as f:
        return {d["image"]: d for d in map(json.loads, f)}
