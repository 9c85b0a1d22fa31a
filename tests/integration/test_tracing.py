"""Triton tracing covers a whole OCR request, the calls rec_pipeline makes through BLS included."""
from __future__ import annotations

import json
import time
from pathlib import Path

from helpers import text_page


def _read_traces(trace_file: Path, timeout: float = 10.0) -> list[dict]:
    """The entries of the trace files written so far (Triton writes `<file>.<n>` with log_frequency)."""
    deadline = time.monotonic() + timeout
    while True:
        files = sorted(trace_file.parent.glob(trace_file.name + ".*"))
        try:
            entries = [e for f in files for e in json.loads(f.read_text())]
        except json.JSONDecodeError:  # a file still being written
            entries = []
        if any(e.get("model_name") == "rec_model" for e in entries) or time.monotonic() > deadline:
            return entries
        time.sleep(0.2)


def test_bls_calls_are_traced_as_children_of_the_request(server, client, trace_file):
    import tritonclient.grpc as grpcclient

    img, texts = text_page(3)
    with grpcclient.InferenceServerClient(server.grpc_url) as tc:
        tc.update_trace_settings(settings={"trace_level": ["TIMESTAMPS"], "trace_rate": "1", "trace_count": "-1",
                                           "log_frequency": "1"})
        try:
            assert len(client.ocr(img).lines) == len(texts)
        finally:
            tc.update_trace_settings(settings={"trace_level": ["OFF"]})
    entries = _read_traces(trace_file)
    models = {e["id"]: (e["model_name"], e.get("parent_id")) for e in entries if "model_name" in e}
    top = [i for i, (name, parent) in models.items() if name == "ocr"]
    assert len(top) == 1, models
    steps = {name: i for i, (name, parent) in models.items() if parent == top[0]}
    assert set(steps) == {"det_preprocess", "det_model", "det_postprocess", "rec_pipeline"}
    children = sorted(name for name, parent in models.values() if parent == steps["rec_pipeline"])
    assert "cls_model" in children and "rec_model" in children, children
    # every traced call has its timestamps (what latency analysis reads)
    stamps: dict[int, set[str]] = {}
    for e in entries:  # Triton writes an id's timestamps in several entries
        stamps.setdefault(e["id"], set()).update(t["name"] for t in e.get("timestamps", []))
    for i, (name, _) in models.items():
        if name in ("cls_model", "rec_model"):
            assert {"COMPUTE_INPUT_END", "COMPUTE_OUTPUT_START"} <= stamps.get(i, set()), (name, stamps.get(i))
