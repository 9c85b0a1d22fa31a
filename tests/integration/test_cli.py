"""The `ocr-client` console script against the real server."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import cv2
from helpers import SHARED, norm, text_page

CLI = str(Path(sys.executable).parent / "ocr-client")


def test_cli_jsonl_keeps_going_past_a_bad_file(server, tmp_path):
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    img1, texts1 = text_page(3, seed=21)
    img2, texts2 = text_page(2, seed=22)
    cv2.imwrite(str(folder / "a.png"), img1)
    cv2.imwrite(str(folder / "sub" / "b.jpg"), img2, [cv2.IMWRITE_JPEG_QUALITY, 100])
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    out = tmp_path / "preds.jsonl"
    vis = tmp_path / "vis"
    proc = subprocess.run([CLI, "infer", "--url", server.grpc_url, "--jsonl", str(out), "--vis-dir", str(vis),
                           "--concurrency", "2", str(folder)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr  # one file failed
    assert "broken.png" in proc.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    by_name = {Path(r["image"]).name: r for r in records}
    assert [norm(x["text"]) for x in by_name["a.png"]["lines"]] == [norm(t) for t in texts1]
    assert [norm(x["text"]) for x in by_name["b.jpg"]["lines"]] == [norm(t) for t in texts2]
    assert all(len(x["poly"]) == 4 and isinstance(x["score"], float) for x in by_name["a.png"]["lines"])
    assert len(list(vis.glob("*"))) == 2

    scorer = SHARED / "tools" / "ocr_eval.py"
    if scorer.exists():  # the predictions format is the scorer's
        spec = importlib.util.spec_from_file_location("ocr_eval", scorer)
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules["ocr_eval"] = mod  # its dataclasses look their module up
        spec.loader.exec_module(mod)
        preds = mod.load_predictions(str(out), ["imgs/a.png", "sub/b.jpg"], None, [])
        assert len(preds) == 2


def test_cli_health(server):
    ok = subprocess.run([CLI, "health", "--url", server.grpc_url], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    down = subprocess.run([CLI, "health", "--url", "127.0.0.1:9"], capture_output=True, text=True, timeout=60)
    assert down.returncode != 0
