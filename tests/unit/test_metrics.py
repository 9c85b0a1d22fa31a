"""ppocr_steps.metrics against a fake `triton_python_backend_utils` (no Triton needed)."""
from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest

from ppocr_steps import metrics as m
from ppocr_steps.errors import InvalidInputError

ROOT = Path(__file__).resolve().parents[2]


class FakeMetric:
    def __init__(self, family: FakeFamily, labels: dict, buckets: list | None) -> None:
        self.family, self.labels, self.buckets = family, labels, buckets
        self.value = 0.0
        self.observed: list[float] = []

    def increment(self, value: float) -> None:
        assert self.family.kind == FakePb.MetricFamily.COUNTER
        assert value >= 0
        self.value += value

    def observe(self, value: float) -> None:
        assert self.family.kind == FakePb.MetricFamily.HISTOGRAM
        self.observed.append(value)


class FakeFamily:
    COUNTER, GAUGE, HISTOGRAM = "counter", "gauge", "histogram"
    created: list[FakeFamily] = []

    def __init__(self, name: str, description: str, kind: str) -> None:
        self.name, self.description, self.kind = name, description, kind
        self.metrics: list[FakeMetric] = []
        FakeFamily.created.append(self)

    def Metric(self, labels: dict | None = None, buckets: list | None = None) -> FakeMetric:  # noqa: N802
        if self.kind == self.HISTOGRAM and not buckets:
            raise ValueError("Failed to create metric. Missing required buckets.")
        if self.kind != self.HISTOGRAM and buckets:
            raise ValueError("Failed to create metric. Unexpected buckets found.")
        metric = FakeMetric(self, labels or {}, buckets)
        self.metrics.append(metric)
        return metric


class FakePb:
    MetricFamily = FakeFamily


def series(metrics: m.OcrMetrics, name: str, **labels: str) -> FakeMetric:
    family = metrics.families[name]
    found = [x for x in family.metrics if x.labels == labels]
    assert len(found) == 1, (name, labels, [x.labels for x in family.metrics])
    return found[0]


def test_names_follow_prometheus_conventions() -> None:
    for spec in m.ALL_METRICS:
        assert re.fullmatch(r"ocr_[a-z_]+", spec.name)
        assert spec.kind in ("counter", "histogram")
        assert spec.name.endswith("_total") == (spec.kind == "counter")
        if spec.kind == "histogram":
            assert list(spec.buckets) == sorted(spec.buckets) and spec.buckets
    assert m.METRIC_NAMES == {"ocr_images_total", "ocr_lines_total", "ocr_characters_total", "ocr_boxes_per_image",
                              "ocr_stage_latency_seconds", "ocr_empty_results_total", "ocr_cls_flips_total",
                              "ocr_rejected_inputs_total", "ocr_network_compute_seconds_total"}
    assert "ocr_boxes_per_image_bucket" in m.exported_series()
    assert "ocr_stage_latency_seconds_count" in m.exported_series()


def test_reasons_cover_every_reason_the_steps_raise() -> None:
    # every reason literal that closes an InvalidInputError(...) call is a known label value
    calls = set()
    for path in (ROOT / "python_backend" / "ppocr_steps").glob("*.py"):
        calls |= set(re.findall(r'InvalidInputError\((?:[^()]|\([^()]*\))*?,\s*"([a-z_]+)"\)', path.read_text(),
                                re.S))
    assert calls, "no InvalidInputError reasons found"
    assert calls <= set(m.REJECT_REASONS), calls - set(m.REJECT_REASONS)
    assert InvalidInputError("x").reason in m.REJECT_REASONS


def test_metric_names_match_the_dashboard_contract() -> None:
    doc = ROOT / "docker" / "grafana" / "METRICS.md"
    if not doc.exists():
        pytest.skip("docker/grafana/METRICS.md not written yet")
    documented = set(re.findall(r"`(ocr_[a-z_]+)`", doc.read_text()))
    documented = {n for n in documented if not n.endswith(("_bucket", "_sum", "_count"))} - {m.PROBE_PARAMETER}
    from ocr_server.watchdog_metrics import WATCHDOG_METRICS

    assert documented == set(m.METRIC_NAMES) | WATCHDOG_METRICS


def test_families_are_created_once_and_kept() -> None:
    FakeFamily.created.clear()
    metrics = m.OcrMetrics(FakePb, stages=["decode"])
    assert {f.name for f in FakeFamily.created} == set(m.METRIC_NAMES)
    assert len(FakeFamily.created) == len(m.ALL_METRICS)
    assert set(metrics.families) == set(m.METRIC_NAMES)  # references held
    # label sets that exist from the start (rate() needs the zero)
    assert series(metrics, "ocr_rejected_inputs_total", reason="bad_image").value == 0
    assert series(metrics, "ocr_stage_latency_seconds", stage="decode").buckets == list(m.LATENCY_BUCKETS)
    assert series(metrics, "ocr_images_total").value == 0


def test_recording() -> None:
    metrics = m.OcrMetrics(FakePb, stages=["decode", "rec"])
    metrics.images(3)
    metrics.lines(["ab", "cde"])
    metrics.boxes_per_image([0, 4])
    metrics.stage_times({"decode": 0.01, "rec": 0.2, "ctc": 0.003})
    metrics.empty_results(1)
    metrics.cls_flips(0)
    metrics.rejected("too_large")
    metrics.rejected("some_new_reason")
    assert series(metrics, "ocr_images_total").value == 3
    assert series(metrics, "ocr_lines_total").value == 2
    assert series(metrics, "ocr_characters_total").value == 5
    assert series(metrics, "ocr_boxes_per_image").observed == [0, 4]
    assert series(metrics, "ocr_boxes_per_image").buckets == list(m.BOXES_BUCKETS)
    assert series(metrics, "ocr_stage_latency_seconds", stage="ctc").observed == [0.003]
    assert series(metrics, "ocr_empty_results_total").value == 1
    assert series(metrics, "ocr_cls_flips_total").value == 0
    assert series(metrics, "ocr_rejected_inputs_total", reason="too_large").value == 1
    assert series(metrics, "ocr_rejected_inputs_total", reason="some_new_reason").value == 1


def test_subset_of_families() -> None:
    FakeFamily.created.clear()
    metrics = m.OcrMetrics(FakePb, specs=[m.IMAGES, m.STAGE_LATENCY], stages=["decode"])
    assert {f.name for f in FakeFamily.created} == {"ocr_images_total", "ocr_stage_latency_seconds"}
    metrics.lines(["x"])      # not created here: silently ignored
    metrics.rejected("empty")
    metrics.images(1)
    assert series(metrics, "ocr_images_total").value == 1


def test_metrics_never_fail_the_request() -> None:
    class Broken(FakeFamily):
        def Metric(self, labels=None, buckets=None):  # noqa: N802
            metric = super().Metric(labels, buckets)

            def boom(value):
                raise RuntimeError("Invalid metric operation as the corresponding 'MetricFamily' has been deleted")

            metric.increment = boom  # type: ignore[method-assign]
            metric.observe = boom  # type: ignore[method-assign]
            return metric

    class NoHistograms:
        class MetricFamily(Broken):
            def __init__(self, name, description, kind):
                if kind == "histogram":
                    raise AttributeError("HISTOGRAM")
                super().__init__(name, description, kind)

    metrics = m.OcrMetrics(NoHistograms, stages=["decode"])
    assert "ocr_boxes_per_image" not in metrics.families
    metrics.images(1)
    metrics.stage_times({"decode": 0.1})
    metrics.boxes_per_image([3])
    metrics.rejected("empty")


def test_deferred_updates_wait_for_flush_and_sum_counters() -> None:
    metrics = m.OcrMetrics(FakePb, specs=[m.LINES, m.CHARACTERS, m.STAGE_LATENCY], stages=["rec"], deferred_s=60)
    metrics.lines(["ab", "cde"])
    metrics.lines(["f"])
    metrics.stage_times({"rec": 0.5})
    metrics.stage_times({"rec": 0.25})
    assert series(metrics, "ocr_lines_total").value == 0  # nothing applied before the flush
    assert series(metrics, "ocr_stage_latency_seconds", stage="rec").observed == []
    increments = []
    lines = series(metrics, "ocr_lines_total")
    original = lines.increment
    def counted(v: float) -> None:
        increments.append(v)
        original(v)

    lines.increment = counted  # type: ignore[method-assign, assignment]
    metrics.flush()
    assert increments == [3.0]  # one update per counter series
    assert series(metrics, "ocr_characters_total").value == 6
    assert series(metrics, "ocr_stage_latency_seconds", stage="rec").observed == [0.5, 0.25]
    metrics.flush()
    assert series(metrics, "ocr_lines_total").value == 3


def test_deferred_updates_are_applied_by_the_background_thread() -> None:
    import time

    metrics = m.OcrMetrics(FakePb, specs=[m.IMAGES], deferred_s=0.01)
    metrics.images(2)
    deadline = time.monotonic() + 5
    while series(metrics, "ocr_images_total").value < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert series(metrics, "ocr_images_total").value == 2


def test_updates_inside_muted_are_dropped_on_that_thread_only() -> None:
    """The steps serve the watchdog's probe requests `with muted()`: they never count."""
    metrics = m.OcrMetrics(FakePb, stages=["decode"])
    other = threading.Thread(target=lambda: metrics.images(5))
    with m.muted():
        metrics.images(3)
        metrics.rejected("too_large")
        other.start()
        other.join()
        assert m.is_muted()
    assert not m.is_muted()
    metrics.images(1)
    assert series(metrics, "ocr_images_total").value == 6
    assert series(metrics, "ocr_rejected_inputs_total", reason="too_large").value == 0
