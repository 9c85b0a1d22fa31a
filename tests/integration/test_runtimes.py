"""Both CPU runtimes of det/cls/rec serve: a server whose runtime models run onnxruntime reads what the
session server (the repository's runtime, OpenVINO) reads, and reports which runtime it runs."""
from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from ocr_server.local_server import RunningServer, start_server, stop_server

RUNTIME_MODELS = ("det_model", "cls_model", "rec_model")
ONNXRUNTIME = {m: {"runtime": "onnxruntime"} for m in RUNTIME_MODELS}


def _parameters(server: RunningServer, model: str) -> dict[str, str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}/v2/models/{model}/config", timeout=30) as r:
        return {k: v["string_value"] for k, v in json.load(r)["parameters"].items()}


@pytest.fixture(scope="module")
def ort_server(tmp_path_factory: pytest.TempPathFactory):
    srv = start_server(tmp_path_factory.mktemp("ort"), overrides=ONNXRUNTIME, timeout=240)
    yield srv
    stop_server(srv)


def test_onnxruntime_server_reads_what_the_openvino_server_reads(server: RunningServer, client,
                                                                 ort_server: RunningServer, evaldata: Path) -> None:
    from ocr_client import OcrClient

    for model in RUNTIME_MODELS:
        assert _parameters(server, model)["runtime"] == "openvino"
        assert _parameters(ort_server, model)["runtime"] == "onnxruntime"
    precision = _parameters(server, "rec_model")["inference_precision"]
    images = sorted((evaldata / "sroie_receipts_en").glob("*.jpg"))[:2] + sorted(
        (evaldata / "icdar15_scene_en").glob("*.jpg"))[:2]
    same = total = 0
    with OcrClient(ort_server.grpc_url, timeout=120) as ort_client:
        for path in images:
            ov_lines = [ln.text for ln in client.ocr(path).lines]
            ort_lines = [ln.text for ln in ort_client.ocr(path).lines]
            assert ov_lines, f"{path.name}: no lines read"
            same += sum(a == b for a, b in zip(ov_lines, ort_lines, strict=False))
            total += max(len(ov_lines), len(ort_lines))
    # f32 runs the same arithmetic (outputs within float rounding); bf16 rounds activations to 8 bits of mantissa
    assert same / total >= (0.98 if precision == "f32" else 0.85), (precision, same, total)


def test_default_model_set_serves_with_its_own_defaults(tmp_path_factory: pytest.TempPathFactory,
                                                        evaldata: Path) -> None:
    """The manifest's default set (v6) end to end: its defaults and runtime precisions are the served
    config, and it reads a receipt."""
    from helpers import load_labels, norm, text_page
    from ocr_server.manifest import default_model_set, model_set

    from ocr_client import OcrClient

    name = default_model_set()
    spec = model_set(name)
    srv = start_server(tmp_path_factory.mktemp("default_set"), model_set=name, timeout=240)
    try:
        pre = _parameters(srv, "det_preprocess")
        for dotted, value in {**spec["config"], **spec.get("cpu_config", {})}.items():
            model, _, key = dotted.partition(".")
            if not dotted.startswith("_"):
                got = pre.get(key) if model == "det_preprocess" else _parameters(srv, model).get(key)
                assert got == value, (dotted, got, value)
        labels = load_labels(evaldata, "sroie_receipts_en")
        image = sorted(labels)[0]
        with OcrClient(srv.grpc_url, timeout=120) as c:
            result = c.ocr(evaldata / "sroie_receipts_en" / image)
            # its detector precision too: a request's result must not depend on the images sent with it
            page, _ = text_page(5, seed=7)
            other, _ = text_page(3, seed=9)
            batch = c.ocr_batch([page, np.full((200, 300, 3), 255, np.uint8), other])
            assert [norm(t) for t in batch[0].texts] == [norm(t) for t in c.ocr(page).texts]
            assert batch[1].lines == []
            assert [norm(t) for t in batch[2].texts] == [norm(t) for t in c.ocr(other).texts]
        gt = {norm(line["text"]) for line in labels[image]["lines"] if not line["ignore"]}
        found = {norm(line.text) for line in result.lines}
        assert len(gt & found) >= 0.5 * len(gt), (sorted(gt - found)[:10], sorted(found - gt)[:10])
    finally:
        stop_server(srv)
