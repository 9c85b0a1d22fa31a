"""The Grafana dashboard parses and queries only metrics the server exports."""
from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ocr_server.watchdog_metrics import WATCHDOG_METRICS

from ppocr_steps import metrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "docker" / "grafana" / "dashboards" / "ocr.json"

# Triton 2.51 metric families (https://github.com/triton-inference-server/server/blob/r24.10/docs/user_guide/metrics.md).
# Summaries need `--metrics-config summary_latencies=true`; nv_gpu_* need a GPU.
TRITON_METRICS = frozenset({
    "nv_inference_request_success", "nv_inference_request_failure", "nv_inference_count", "nv_inference_exec_count",
    "nv_inference_pending_request_count", "nv_inference_request_duration_us", "nv_inference_queue_duration_us",
    "nv_inference_compute_input_duration_us", "nv_inference_compute_infer_duration_us",
    "nv_inference_compute_output_duration_us", "nv_inference_first_response_histogram_ms",
    "nv_inference_request_summary_us", "nv_inference_queue_summary_us", "nv_inference_compute_input_summary_us",
    "nv_inference_compute_infer_summary_us", "nv_inference_compute_output_summary_us",
    "nv_cache_num_hits_per_model", "nv_cache_num_misses_per_model", "nv_cache_hit_duration_per_model",
    "nv_cache_miss_duration_per_model", "nv_cache_num_entries", "nv_cache_num_evictions", "nv_cache_num_lookups",
    "nv_cache_num_hits", "nv_cache_num_misses", "nv_cache_util",
    "nv_gpu_utilization", "nv_gpu_memory_total_bytes", "nv_gpu_memory_used_bytes", "nv_gpu_power_usage",
    "nv_gpu_power_limit", "nv_energy_consumption",
    "nv_cpu_utilization", "nv_cpu_memory_total_bytes", "nv_cpu_memory_used_bytes",
    "nv_pinned_memory_pool_total_bytes", "nv_pinned_memory_pool_used_bytes",
})
SUFFIXES = ("_bucket", "_sum", "_count")

PROMQL_WORDS = frozenset({
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset",
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk", "quantile",
    "inf", "nan", "e",
})


def walk_exprs(node: Any) -> Iterator[str]:
    """Every PromQL `expr` in panels, nested rows and templating queries."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield value
            elif key == "query" and isinstance(value, str) and "(" in value:
                yield value
            else:
                yield from walk_exprs(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk_exprs(item)


def metric_names(expr: str) -> set[str]:
    """Metric names referenced by a PromQL expression (labels, functions, keywords removed)."""
    s = re.sub(r"label_values\(([^,()]+),\s*\w+\)", r"\1", expr)  # Grafana's label_values(metric, label)
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', s)                  # strings
    s = re.sub(r"\{[^}]*\}", " ", s)                              # label matchers
    s = re.sub(r"\[[^\]]*\]", " ", s)                             # range selectors ([$__rate_interval], [5m])
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    s = re.sub(r"\$\{?\w+\}?", " ", s)                            # Grafana variables
    s = re.sub(r"\b\d+(\.\d+)?([eE][+-]?\d+)?\b", " ", s)         # numbers (1e6, 0.99)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", s):
        rest = s[m.end():].lstrip()
        if rest.startswith("("):                                  # function or aggregation
            continue
        if m.group(0).lower() in PROMQL_WORDS:
            continue
        names.add(m.group(0))
    return names


def known(name: str) -> bool:
    if name in TRITON_METRICS or name in metrics.exported_series() or name in WATCHDOG_METRICS:
        return True
    return name.endswith(SUFFIXES) and name.rsplit("_", 1)[0] in TRITON_METRICS


def test_metric_name_extraction() -> None:
    expr = ('histogram_quantile(0.99, sum by (le, stage) (rate(ocr_stage_latency_seconds_bucket{stage=~"rec|cls"}'
            '[$__rate_interval]))) / clamp_min(sum(rate(nv_inference_count{model="ocr"}[5m])), 1e-9) * 100')
    assert metric_names(expr) == {"ocr_stage_latency_seconds_bucket", "nv_inference_count"}
    assert metric_names('max(nv_inference_request_summary_us{quantile="0.5"}) / 1e6') == {
        "nv_inference_request_summary_us"}


@pytest.fixture(scope="module")
def dashboard() -> dict:
    if not DASHBOARD.exists():
        pytest.skip(f"{DASHBOARD.relative_to(ROOT)} not written yet")
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def test_dashboard_is_json_with_panels(dashboard: dict) -> None:
    assert dashboard.get("title")
    assert dashboard.get("panels"), "no panels"
    assert list(walk_exprs(dashboard)), "no PromQL queries"


def test_every_query_names_an_exported_metric(dashboard: dict) -> None:
    unknown = {}
    for expr in walk_exprs(dashboard):
        names = metric_names(expr)
        assert names, f"query names no metric: {expr}"
        bad = {n for n in names if not known(n)}
        if bad:
            unknown[expr] = sorted(bad)
    assert not unknown, f"queries use metrics the server does not export: {unknown}"


def test_dashboard_covers_the_issue_panels(dashboard: dict) -> None:
    used = set().union(*(metric_names(e) for e in walk_exprs(dashboard)))
    assert "nv_inference_request_success" in used                  # throughput
    assert "nv_inference_request_summary_us" in used or "nv_inference_request_duration_us" in used  # latency
    assert "nv_inference_queue_duration_us" in used                # queue time
    assert "ocr_stage_latency_seconds_bucket" in used              # per-stage time
    assert "ocr_lines_total" in used                               # lines/s
    assert "nv_inference_request_failure" in used                  # errors


def test_datasource_and_instance_are_variables(dashboard: dict) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert variables["instance"]["type"] == "query"

    def datasources(node: Any) -> Iterator[Any]:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "datasource":
                    yield value
                yield from datasources(value)
        elif isinstance(node, list):
            for item in node:
                yield from datasources(item)

    uids = {d.get("uid") if isinstance(d, dict) else d for d in datasources(dashboard)}
    assert uids == {"${datasource}"}, f"hard-coded datasource: {uids}"
    unscoped = [e for e in walk_exprs(dashboard["panels"]) if 'instance=~"$instance:.*"' not in e]
    assert not unscoped, f"queries not limited to the selected instance: {unscoped}"


def test_dashboard_shows_the_server_and_the_watchdog(dashboard: dict) -> None:
    used = set().union(*(metric_names(e) for e in walk_exprs(dashboard)))
    assert {"ocr_server_process_cpu_seconds_total", "ocr_server_process_resident_memory_bytes"} <= used
    assert {"ocr_watchdog_heals_total", "ocr_server_restarts_total", "ocr_watchdog_probe_failures_total",
            "ocr_server_ready"} <= used
