"""ocr-client CLI: argument parsing, path expansion, output files, with a fake client."""
from __future__ import annotations

import importlib.util
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np
import pytest

import ocr_client.cli as cli
from ocr_client import OcrInvalidInputError, OcrParams, OcrResult, OcrUnavailableError, TextLine
from ocr_client._files import expand_paths, vis_names
from ocr_client._runner import Job, Outcome, Reorder, run_jobs
from ocr_client._vis import draw_result, label_for

OCR_EVAL = Path("/work/shared/tools/ocr_eval.py")


# --------------------------------------------------------------------------- fixtures
def _png(path: Path, value: int = 255, size: tuple[int, int] = (40, 60)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.full((*size, 3), value, dtype=np.uint8)
    ok, buf = cv2.imencode(path.suffix or ".png", img)
    assert ok
    path.write_bytes(buf.tobytes())
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """root/{b.PNG, a.jpg, notes.txt, sub/c.webp, sub/deeper/d.TIFF, sub/a.jpg, x.bmp.bak}"""
    root = tmp_path / "root"
    for rel in ["b.PNG", "a.jpg", "sub/c.png", "sub/deeper/d.TIFF", "sub/a.jpg"]:
        _png(root / rel) if not rel.endswith(".TIFF") else _png(root / rel.replace(".TIFF", ".tiff"))
    (root / "sub/deeper/d.tiff").rename(root / "sub/deeper/d.TIFF")
    (root / "notes.txt").write_text("not an image")
    (root / "x.bmp.bak").write_bytes(b"x")
    return root


class FakeClient:
    """OcrClient stand-in: one line whose text is the file's byte length; 'bad' files fail."""

    instances: ClassVar[list[FakeClient]] = []

    def __init__(self, fail_on: set[int] | None = None, jitter: float = 0.0,
                 unavailable: bool = False) -> None:
        self.fail_on = fail_on or set()
        self.jitter = jitter
        self.unavailable = unavailable
        self.kwargs: list[dict[str, Any]] = []
        self.closed = False
        FakeClient.instances.append(self)

    def ocr(self, image: Any, params: OcrParams | None = None, **kwargs: Any) -> OcrResult:
        self.kwargs.append(OcrParams.merged(params, kwargs).as_kwargs())
        if self.jitter:
            time.sleep(random.random() * self.jitter)
        if self.unavailable:
            raise OcrUnavailableError("cannot reach the server")
        if len(image) in self.fail_on:
            raise OcrInvalidInputError("image_bytes[0]: cannot decode image")
        poly = [(1.0, 2.0), (30.5, 2.0), (30.5, 12.0), (1.0, 12.0)]
        return OcrResult([TextLine(poly, f"len{len(image)}", 0.875),
                          TextLine(poly, "日本語", 0.5, flipped=True)])

    def ocr_batch(self, images: list[Any], params: OcrParams | None = None, **kwargs: Any) -> list[OcrResult]:
        return [self.ocr(images[0], params, **kwargs)]

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    FakeClient.instances = []
    opts: dict[str, Any] = {}
    monkeypatch.setattr(cli, "_make_client", lambda args: FakeClient(**opts))
    return opts


# --------------------------------------------------------------------------- parsing
def test_parser_defaults_and_knobs() -> None:
    p = cli.build_parser()
    a = p.parse_args(["infer", "x.png"])
    assert (a.url, a.protocol, a.model_name, a.timeout, a.retries, a.concurrency) == \
        (None, "grpc", "ocr", 30.0, 3, 1)
    assert cli._params_from_args(a).as_kwargs() == {}
    a = p.parse_args(["infer", "--url", "h:9", "--protocol", "http", "--limit-side-len", "736",
                      "--limit-type", "min", "--thresh", "0.2", "--box-thresh", "0.5",
                      "--unclip-ratio", "2", "--no-use-textline-orientation",
                      "--text-rec-score-thresh", "0.4", "--concurrency", "4", "a", "b"])
    assert a.paths == ["a", "b"] and a.url == "h:9" and a.protocol == "http"
    assert cli._params_from_args(a).as_kwargs() == {
        "limit_side_len": 736, "limit_type": "min", "thresh": 0.2, "box_thresh": 0.5,
        "unclip_ratio": 2.0, "use_textline_orientation": False, "text_rec_score_thresh": 0.4}
    a = p.parse_args(["infer", "--use-textline-orientation", "x"])
    assert a.use_textline_orientation is True


@pytest.mark.parametrize("argv", [
    [], ["infer"], ["infer", "--limit-type", "avg", "x"], ["infer", "--protocol", "tcp", "x"],
    ["infer", "--limit-side-len", "0", "x"], ["infer", "--concurrency", "0", "x"],
    ["infer", "--url", "http://h:8000", "x"], ["infer", "--timeout", "0", "x"],
    ["infer", "/definitely/not/here.png"], ["bogus"],
])
def test_usage_errors_exit_2(argv: list[str], tmp_path: Path, fake: dict[str, Any],
                             capsys: pytest.CaptureFixture[str]) -> None:
    if argv[-1:] == ["x"]:
        argv = [*argv[:-1], str(_png(tmp_path / "x.png"))]
    assert cli.main(argv) == 2
    assert "usage:" in capsys.readouterr().err
    assert FakeClient.instances == []


def test_folder_without_images_is_a_usage_error(tmp_path: Path, fake: dict[str, Any]) -> None:
    (tmp_path / "a.txt").write_text("x")
    assert cli.main(["infer", str(tmp_path)]) == 2


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["infer", "--help"]) == 0
    assert "--jsonl" in capsys.readouterr().out


# --------------------------------------------------------------------------- paths
def test_expand_paths_recursive_sorted_images_only(tree: Path) -> None:
    got = expand_paths([str(tree)])
    rel = [os.path.relpath(p, tree) for p in got]
    assert rel == ["a.jpg", "b.PNG", os.path.join("sub", "a.jpg"), os.path.join("sub", "c.png"),
                   os.path.join("sub", "deeper", "d.TIFF")]
    assert all(p.startswith(str(tree)) for p in got)  # the folder prefix as given


def test_expand_paths_keeps_explicit_files_and_dedupes(tree: Path) -> None:
    txt = str(tree / "notes.txt")
    got = expand_paths([txt, str(tree / "sub"), str(tree / "sub" / "c.png")])
    assert got[0] == txt  # named explicitly: kept whatever the extension
    assert [os.path.basename(p) for p in got] == ["notes.txt", "a.jpg", "c.png", "d.TIFF"]
    with pytest.raises(FileNotFoundError):
        expand_paths([str(tree / "missing")])


def test_vis_names_avoid_collisions() -> None:
    names = vis_names(["a/img.png", "b/img.png", "c/img.jpg", "d/IMG.png", "img-1.png", "x.tif"])
    assert names == ["img.vis.jpg", "img-1.vis.jpg", "img-2.vis.jpg", "IMG-3.vis.jpg",
                     "img-1-1.vis.jpg", "x.vis.jpg"]
    assert len({n.lower() for n in names}) == len(names)


# --------------------------------------------------------------------------- runs
def _sizes(paths: list[str]) -> list[int]:
    return [os.path.getsize(p) for p in paths]


@pytest.mark.parametrize("concurrency", [1, 4])
def test_jsonl_in_input_order_and_failures(tree: Path, tmp_path: Path, fake: dict[str, Any],
                                           concurrency: int,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    bad = _png(tree / "zz_bad.png", value=7, size=(5, 5))
    fake.update(fail_on={bad.stat().st_size}, jitter=0.02)
    out = tmp_path / "preds.jsonl"
    rc = cli.main(["infer", "--jsonl", str(out), "--concurrency", str(concurrency),
                   "--limit-side-len", "960", str(tree)])
    assert rc == 1
    expected = [p for p in expand_paths([str(tree)]) if p != str(bad)]
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert records[-1] == {"image": str(bad), "error": "image_bytes[0]: cannot decode image"}
    records = records[:-1]
    assert [r["image"] for r in records] == expected
    assert [r["lines"][0]["text"] for r in records] == [f"len{s}" for s in _sizes(expected)]
    assert records[0]["lines"][0] == {"poly": [[1.0, 2.0], [30.5, 2.0], [30.5, 12.0], [1.0, 12.0]],
                                      "text": f"len{_sizes(expected)[0]}", "score": 0.875}
    assert records[0]["lines"][1]["text"] == "日本語"
    assert set(records[0]) == {"image", "lines"}
    err = capsys.readouterr().err
    assert f"error: {bad}: image_bytes[0]: cannot decode image" in err
    assert "1 of 6 image(s) failed" in err
    assert "[1/6]" in err  # progress
    used = [c for c in FakeClient.instances if c.kwargs]
    assert 1 <= len(used) <= concurrency
    assert all(kw == {"limit_side_len": 960} for c in used for kw in c.kwargs)
    assert all(c.closed for c in FakeClient.instances)


def test_summary_on_stdout_and_exit_0(tree: Path, fake: dict[str, Any],
                                      capsys: pytest.CaptureFixture[str]) -> None:
    one = str(tree / "a.jpg")
    assert cli.main(["infer", one]) == 0
    out, err = capsys.readouterr()
    size = os.path.getsize(one)
    assert out.splitlines() == [f"{one} (2 lines)", f"  0.875  len{size}", "  0.500  日本語"]
    assert err == ""  # no progress for a single file


def test_unavailable_server_stops_the_run(tree: Path, fake: dict[str, Any], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    fake.update(unavailable=True)
    rc = cli.main(["infer", "-q", "--jsonl", str(tmp_path / "p.jsonl"), str(tree)])
    assert rc == 1
    err = capsys.readouterr().err
    assert "cannot reach the server" in err and "not processed" in err
    assert sum(len(c.kwargs) for c in FakeClient.instances) == 1


def test_vis_dir(tmp_path: Path, fake: dict[str, Any]) -> None:
    a = _png(tmp_path / "in1" / "page.png", value=255, size=(50, 80))
    b = _png(tmp_path / "in2" / "page.png", value=255, size=(50, 80))
    vis = tmp_path / "vis"
    assert cli.main(["infer", "-q", "--vis-dir", str(vis), str(a), str(b)]) == 0
    assert sorted(os.listdir(vis)) == ["page-1.vis.jpg", "page.vis.jpg"]
    img = cv2.imread(str(vis / "page.vis.jpg"))
    assert img.shape == (50, 160, 3)  # the page | the texts
    assert (np.abs(img.astype(int) - 255).sum(axis=2) > 100).any()  # something was drawn


def test_jsonl_is_accepted_by_ocr_eval(tree: Path, tmp_path: Path, fake: dict[str, Any],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    if not OCR_EVAL.exists():
        pytest.skip(f"{OCR_EVAL} not present")
    pytest.importorskip("shapely")
    spec = importlib.util.spec_from_file_location("ocr_eval_under_test", OCR_EVAL)
    assert spec is not None and spec.loader is not None
    ocr_eval = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, ocr_eval)  # its dataclasses look themselves up
    spec.loader.exec_module(ocr_eval)

    out = tmp_path / "preds.jsonl"
    assert cli.main(["infer", "-q", "--jsonl", str(out), str(tree / "sub")]) == 0
    warnings: list[str] = []
    preds = ocr_eval.load_predictions(str(out), ["sub/a.jpg", "sub/c.png", "other/a.jpg"],
                                      None, warnings)
    assert set(preds) == {"sub/a.jpg", "sub/c.png"}
    assert [ln.text for ln in preds["sub/c.png"]][1] == "日本語"
    assert preds["sub/c.png"][0].poly.area == pytest.approx(29.5 * 10)


# --------------------------------------------------------------------------- helpers
def test_reorder() -> None:
    r = Reorder()
    o = [Outcome(i, f"p{i}") for i in range(4)]
    assert r.push(o[2]) == []
    assert r.push(o[0]) == [o[0]]
    assert r.push(o[1]) == [o[1], o[2]]
    assert r.drain() == []
    assert r.push(o[3]) == [o[3]]


def test_run_jobs_yields_every_job_once(tmp_path: Path) -> None:
    paths = [str(_png(tmp_path / f"{i}.png", value=i)) for i in range(10)]
    jobs = [Job(i, p) for i, p in enumerate(paths)]
    clients: list[FakeClient] = []

    def make() -> FakeClient:
        clients.append(FakeClient(jitter=0.01))
        return clients[-1]

    got = list(run_jobs(jobs, make, OcrParams(), concurrency=3))  # type: ignore[arg-type]
    assert sorted(o.index for o in got) == list(range(10))
    assert all(o.ok and o.result is not None for o in got)
    assert len(clients) == 3 and all(c.closed for c in clients)


def test_label_and_side_by_side_drawing() -> None:
    assert label_for(3, "Hello", 0.912) == "3 0.91 Hello"
    img = np.zeros((40, 60), np.uint8)
    res = OcrResult([TextLine([(5.0, 5.0), (50.0, 5.0), (50.0, 30.0), (5.0, 30.0)], "中文", 0.9)])
    drawn = draw_result(img, res)
    assert drawn.shape == (40, 120, 3) and img.max() == 0
    assert drawn[15, 20].max() > 0  # the box is filled (translucent) on the left
    assert tuple(drawn[38, 110]) == (255, 255, 255)  # the right half is a white canvas
    right = drawn[6:29, 66:110]
    assert (right.max(axis=2) < 128).sum() > 20  # the text is written inside the box


def test_the_cjk_font_is_pinned_and_draws_chinese() -> None:
    from ocr_client._vis import font_path

    path = font_path()
    if path is None:
        pytest.skip("cvttf-NotoSansCJK-Regular is not installed")
    from PIL import ImageFont

    font = ImageFont.truetype(path, 32)
    # a glyph Pillow's fallback lacks: the CJK font draws it as ink, not as an empty box
    assert font.getmask("发").getbbox() is not None


def test_several_urls(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = cli.build_parser()
    assert p.parse_args(["infer", "--url", "a:1", "--url", "b:2,c:3", "x"]).url == "a:1,b:2,c:3"
    assert p.parse_args(["health", "--url", "dns:///ocr:8001"]).url == "dns:///ocr:8001"
    client = cli._make_client(p.parse_args(["health", "--url", "127.0.0.1:1", "--url", "127.0.0.1:2"]))
    assert client.endpoints.addresses == ("127.0.0.1:1", "127.0.0.1:2")
    client.close()
    img = str(_png(tmp_path / "x.png"))
    for bad in (["--url", "a:1", "--url", "dns:///b:2"], ["--protocol", "http", "--url", "dns:///b:2"]):
        assert cli.main(["infer", *bad, img]) == 2
        assert "--url" in capsys.readouterr().err
