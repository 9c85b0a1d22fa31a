"""OCR metrics scraped by a real Prometheus server and answered through PromQL.

Starts Debian's `/usr/bin/prometheus` on a free loopback port with a temporary configuration that
scrapes the test server's metrics port every second, sends requests, and queries `/api/v1/query`.
Also evaluates every query of the Grafana dashboard against the live data.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from helpers import png, raw_infer, text_page
from ocr_server.local_server import free_port
from tritonclient.utils import InferenceServerException

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = shutil.which("prometheus") or ("/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None)
DASHBOARD = ROOT / "docker" / "grafana" / "dashboards" / "ocr.json"

pytestmark = pytest.mark.skipif(
    PROMETHEUS is None,
    reason="prometheus is not installed (scripts/setup_env.sh test installs the Debian 'prometheus' package "
           "when run as root; or: apt-get install --no-install-recommends prometheus)")


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return r.read().decode()


def sample(text: str, series: str) -> float:
    """Sum of the samples of `series` (name plus optional {label="value"} subset) in an exposition."""
    name, _, labels = series.partition("{")
    want = dict(re.findall(r'(\w+)="([^"]*)"', labels))
    total = 0.0
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)", line)
        if m and m.group(1) == name:
            have = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
            if all(have.get(k) == v for k, v in want.items()):
                total += float(m.group(3))
    return total


class Prometheus:
    def __init__(self, tmp: Path, target_port: int) -> None:
        assert PROMETHEUS is not None, "the module is skipped without prometheus"
        self.port = free_port()
        config = tmp / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: triton\n    scrape_interval: 1s\n"
            f"    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n")
        self.log_path = tmp / "prometheus.log"
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self.log_path.open("w"), stderr=subprocess.STDOUT)

    def get(self, path: str, **params: str) -> dict:
        url = f"http://127.0.0.1:{self.port}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.loads(r.read())

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited: {self.log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError("prometheus not ready")

    def query(self, expr: str) -> list[dict]:
        body = self.get("/api/v1/query", query=expr)
        assert body["status"] == "success", body
        return body["data"]["result"]

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def wait_value(self, expr: str, at_least: float, timeout: float = 30) -> float:
        deadline = time.monotonic() + timeout
        v = None
        while time.monotonic() < deadline:
            v = self.value(expr)
            if v is not None and v >= at_least:
                return v
            time.sleep(0.5)
        raise AssertionError(f"{expr} = {v}, expected >= {at_least} within {timeout} s")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def prometheus(server, tmp_path_factory):
    prom = Prometheus(tmp_path_factory.mktemp("prometheus"), server.metrics_port)
    try:
        prom.wait_ready()
        yield prom
    finally:
        prom.stop()


def test_ocr_metrics_in_prometheus(server, prometheus):
    before = scrape(server.metrics_port)
    pages = [text_page(3, width=500, seed=s) for s in (41, 42, 43)]
    lines = 0
    for img, _texts in pages:
        r = raw_infer(server.grpc_url, [png(img)])
        lines += len(r.as_numpy("texts"))
    raw_infer(server.grpc_url, [png(np.full((120, 160, 3), 255, np.uint8))])  # no text: an empty result
    for bad in (b"not an image", b""):
        with pytest.raises(InferenceServerException):
            raw_infer(server.grpc_url, [bad])
    assert lines >= 8
    images = sample(before, "ocr_images_total") + 4
    p = prometheus
    assert p.wait_value("ocr_images_total", images) >= images
    assert p.wait_value("sum(ocr_lines_total)", sample(before, "ocr_lines_total") + lines) >= lines
    assert p.wait_value("sum(ocr_characters_total)", sample(before, "ocr_characters_total") + 5 * lines)
    assert p.wait_value("sum(ocr_empty_results_total)", sample(before, "ocr_empty_results_total") + 1)
    assert p.wait_value('sum(ocr_rejected_inputs_total{reason="bad_image"})',
                        sample(before, 'ocr_rejected_inputs_total{reason="bad_image"}') + 1)
    assert p.wait_value('sum(ocr_rejected_inputs_total{reason="empty"})',
                        sample(before, 'ocr_rejected_inputs_total{reason="empty"}') + 1)
    # histograms: buckets, counts and a quantile per stage
    assert p.wait_value('sum(ocr_boxes_per_image_bucket{le="+Inf"})', sample(before, "ocr_boxes_per_image_count") + 4)
    assert p.wait_value('ocr_boxes_per_image_bucket{le="0"}', sample(before, 'ocr_boxes_per_image_bucket{le="0"}') + 1)
    stages = {r["metric"]["stage"] for r in p.query("ocr_stage_latency_seconds_count > 0")}
    assert stages >= {"decode", "det_preprocess", "det_postprocess", "crop", "cls", "rec", "ctc"}, stages
    p50 = p.query('histogram_quantile(0.5, sum by (le) (ocr_stage_latency_seconds_bucket{stage="rec"}))')
    assert p50 and 0 < float(p50[0]["value"][1]) < 10
    # the runtime models' time inside onnxruntime: counted per model, and part of Triton's compute_infer
    for model in ("det_model", "cls_model", "rec_model"):
        series = f'ocr_network_compute_seconds_total{{model="{model}"}}'
        net = p.wait_value(series, sample(before, series) + 1e-6)
        infer_s = p.value(f'sum(nv_inference_compute_infer_duration_us{{model="{model}"}})') / 1e6
        assert 0 < net <= infer_s, (model, net, infer_s)
    # Triton's own metrics from the same target
    assert p.wait_value('nv_inference_count{model="ocr"}', sample(before, 'nv_inference_count{model="ocr"}') + 4)
    assert p.value('sum(nv_inference_request_failure{model="ocr"})') >= 2
    assert p.query('nv_inference_request_summary_us{model="ocr",quantile="0.5"}')
    up = p.query('up{job="triton"}')
    assert up and up[0]["value"][1] == "1"


def test_every_dashboard_query_evaluates(server, prometheus):
    if not DASHBOARD.exists():
        pytest.skip("docker/grafana/dashboards/ocr.json not written yet")
    import sys

    sys.path.append(str(ROOT / "tests" / "unit"))
    from test_dashboard import metric_names, walk_exprs

    img, _ = text_page(2, width=500, seed=44)
    for _ in range(2):
        raw_infer(server.grpc_url, [png(img)])
    prometheus.wait_value("ocr_images_total", 1)
    time.sleep(2)  # a few scrapes, so rate() has two samples
    from ocr_server.watchdog_metrics import WATCHDOG_METRICS

    known = set(prometheus.get("/api/v1/label/__name__/values")["data"]) | WATCHDOG_METRICS  # the launcher's
    exprs = list(walk_exprs(json.loads(DASHBOARD.read_text())))
    assert any('instance=~"$instance:.*"' in e for e in exprs)
    missing = set()
    for expr in exprs:
        expr = re.sub(r"label_values\(([^,()]+),\s*\w+\)", r"\1", expr)  # the instance variable's query
        names = metric_names(expr)
        if any(n.startswith("nv_gpu_") for n in names):
            continue  # GPU panels: no GPU here
        missing |= names - known
        result = prometheus.query(expr.replace("$__rate_interval", "1m").replace("$__interval", "15s")
                                  .replace("$instance", ".*"))
        assert isinstance(result, list)
        if names & {"nv_inference_request_success", "ocr_images_total"}:
            assert result, f"no data for {expr} with every instance selected"
    assert not missing, f"dashboard metrics not exported by the server: {sorted(missing)}"
