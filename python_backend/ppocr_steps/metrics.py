"""OCR-level Prometheus metrics, exported next to Triton's `nv_*` metrics on the metrics port.

The names, kinds, labels and buckets are plain data here (importable and testable without Triton;
`docker/grafana/METRICS.md` and the dashboard use exactly these). `OcrMetrics` creates the
`pb_utils.MetricFamily` objects once per model instance from the `triton_python_backend_utils`
module it is given, keeps references to the families (a `Metric` whose family was garbage-collected
fails with "Invalid metric operation"), and never lets a metrics failure fail a request.

Every metric update through `pb_utils` is a round trip to tritonserver, which adds up over the
several updates of each request. With `deferred_s` > 0 the updates are queued and applied by a
background thread that many seconds after the first one queued, counters summed per series, so the
request's response does not wait for them; the exported values lag by that delay.

Several models create the same family (same name, kind and help: Triton merges them and counts
references per label set), each recording only what it sees:

  det_preprocess : ocr_images_total, stage decode / det_preprocess, rejected inputs
  det_postprocess: ocr_boxes_per_image, stage det_postprocess, rejected inputs
  rec_pipeline   : ocr_lines_total, ocr_characters_total, ocr_empty_results_total,
                   ocr_cls_flips_total, stage crop / cls / rec / ctc, rejected inputs
  det_model, cls_model, rec_model (CPU target, onnxruntime stubs): ocr_network_compute_seconds_total

The watchdog's probe requests carry the request parameter `ocr_probe` (PROBE_PARAMETER): the steps
handle them `with muted():`, so they never count in these metrics (Triton's own `nv_*` counters do
count them).
"""
from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["MetricSpec", "IMAGES", "LINES", "CHARACTERS", "BOXES_PER_IMAGE", "STAGE_LATENCY", "EMPTY_RESULTS",
           "CLS_FLIPS", "REJECTED_INPUTS", "NETWORK_COMPUTE", "ALL_METRICS", "METRIC_NAMES", "STAGES", "REJECT_REASONS",
           "BOXES_BUCKETS", "LATENCY_BUCKETS", "exported_series", "OcrMetrics", "PROBE_PARAMETER", "muted",
           "is_muted"]

log = logging.getLogger("ppocr_steps")


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: str                      # "counter" | "histogram"
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()


BOXES_BUCKETS = (0.0, 1.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# `stage` label values of ocr_stage_latency_seconds (wall time of one stage for one request):
STAGES = (
    "decode",           # decode + validate the encoded images (PDFs: render the pages)
    "doc_ori",          # page orientation: classifier input + BLS round trip to ori_model
    "det_preprocess",   # letterbox/resize/normalise into the detector batch
    "det_postprocess",  # DB post-processing (boxes from the probability map)
    "crop",             # perspective crops of the boxes
    "cls",              # 0/180 classification: resize + BLS round trips to cls_model + flips
    "rec",              # BLS round trips to rec_model
    "ctc",              # the rest of recognition: crop resize/normalise for rec + CTC decoding
)
# `reason` label values of ocr_rejected_inputs_total: ppocr_steps.errors.InvalidInputError.reason
REJECT_REASONS = ("bad_image", "unsupported_format", "bad_parameter", "empty", "missing_input", "too_large",
                  "too_small", "too_many_images", "too_many_boxes", "bad_tensor", "invalid", "pdf_encrypted",
                  "pdf_broken", "pdf_empty", "pdf_too_many_pages", "pdf_page_too_large", "pdf_too_slow",
                  "pdf_too_large", "time_limit")

IMAGES = MetricSpec("ocr_images_total", "counter", "Images decoded and accepted for OCR")
LINES = MetricSpec("ocr_lines_total", "counter", "Text lines returned (after text_rec_score_thresh)")
CHARACTERS = MetricSpec("ocr_characters_total", "counter", "Characters in the returned text lines")
BOXES_PER_IMAGE = MetricSpec("ocr_boxes_per_image", "histogram", "Text boxes detected per image, before recognition",
                             buckets=BOXES_BUCKETS)
STAGE_LATENCY = MetricSpec("ocr_stage_latency_seconds", "histogram",
                           "Wall time of one OCR pipeline stage for one request, in seconds", labels=("stage",),
                           buckets=LATENCY_BUCKETS)
EMPTY_RESULTS = MetricSpec("ocr_empty_results_total", "counter", "Images for which no text line is returned")
CLS_FLIPS = MetricSpec("ocr_cls_flips_total", "counter",
                       "Returned text lines that the 0/180 classifier turned by 180 degrees")
REJECTED_INPUTS = MetricSpec("ocr_rejected_inputs_total", "counter",
                             "Requests refused with INVALID_ARG, by reason", labels=("reason",))
# Time inside the network runtime's own call (onnxruntime's run()), per runtime model. Triton's
# compute_infer of a Python-backend model also holds the stub round trip, so this is the figure to
# compare request time against.
NETWORK_COMPUTE = MetricSpec("ocr_network_compute_seconds_total", "counter",
                             "Time inside the network runtime (onnxruntime run()), in seconds, per model",
                             labels=("model",))

ALL_METRICS = (IMAGES, LINES, CHARACTERS, BOXES_PER_IMAGE, STAGE_LATENCY, EMPTY_RESULTS, CLS_FLIPS, REJECTED_INPUTS,
               NETWORK_COMPUTE)
METRIC_NAMES = frozenset(m.name for m in ALL_METRICS)


# Request parameter of the watchdog's probe requests (forwarded by the ensemble to every step and by
# rec_pipeline to its BLS calls); its requests are left out of every ocr_* metric.
PROBE_PARAMETER = "ocr_probe"

_local = threading.local()


@contextlib.contextmanager
def muted() -> Iterator[None]:
    """Metric updates made by this thread inside the block are dropped (a probe request is served)."""
    previous = getattr(_local, "muted", False)
    _local.muted = True
    try:
        yield
    finally:
        _local.muted = previous


def is_muted() -> bool:
    return bool(getattr(_local, "muted", False))


def exported_series() -> frozenset[str]:
    """Every series name Prometheus sees for these families (histograms add _bucket/_sum/_count)."""
    names = set()
    for m in ALL_METRICS:
        if m.kind == "histogram":
            names.update({f"{m.name}_bucket", f"{m.name}_sum", f"{m.name}_count"})
        else:
            names.add(m.name)
    return frozenset(names)


class OcrMetrics:
    """The OCR metric families of one model instance.

    `pb_utils` is the `triton_python_backend_utils` module (or a fake in tests). `specs` limits the
    families this instance creates; `stages` / `reasons` pre-create those label sets so the series
    exist at 0 from the start (other label values are created on first use). `deferred_s` > 0: updates
    are applied by a background thread (see the module docstring); `flush()` applies them now.
    """

    def __init__(self, pb_utils: Any, specs: Iterable[MetricSpec] = ALL_METRICS, stages: Iterable[str] = (),
                 reasons: Iterable[str] = REJECT_REASONS, deferred_s: float = 0.0) -> None:
        self._pb = pb_utils
        self._deferred_s = deferred_s
        self._pending: list[tuple[str, MetricSpec, tuple[tuple[str, str], ...], float]] = []
        self._pending_lock = threading.Lock()
        self._queued = threading.Event()
        self._families: dict[str, Any] = {}   # keep the MetricFamily objects alive
        self._metrics: dict[tuple[str, tuple[tuple[str, str], ...]], Any] = {}
        self._specs = {s.name: s for s in specs}
        self._warned: set[str] = set()
        for spec in self._specs.values():
            try:
                kind = getattr(pb_utils.MetricFamily, spec.kind.upper())  # COUNTER / HISTOGRAM
                self._families[spec.name] = pb_utils.MetricFamily(name=spec.name, description=spec.help, kind=kind)
            except Exception as exc:  # noqa: BLE001 - e.g. a Triton without histogram families
                log.warning("metric %s disabled: %s", spec.name, exc)
        for stage in stages:
            self._metric(STAGE_LATENCY, (("stage", stage),))
        if REJECTED_INPUTS.name in self._specs:
            for reason in reasons:
                self._metric(REJECTED_INPUTS, (("reason", reason),))
        for spec in self._specs.values():
            if not spec.labels:
                self._metric(spec, ())
        if deferred_s > 0:
            threading.Thread(target=self._flush_loop, name="ocr-metrics", daemon=True).start()

    @property
    def families(self) -> Mapping[str, Any]:
        return self._families

    def _metric(self, spec: MetricSpec, labels: tuple[tuple[str, str], ...]) -> Any:
        """The series of `spec` with these (sorted) labels, created on first use; None if unavailable."""
        key = (spec.name, labels)
        metric = self._metrics.get(key)
        if metric is None:
            family = self._families.get(spec.name)
            if family is None:
                return None
            try:
                if spec.kind == "histogram":
                    metric = family.Metric(labels=dict(labels), buckets=list(spec.buckets))
                else:
                    metric = family.Metric(labels=dict(labels))
            except Exception as exc:  # noqa: BLE001
                self._warn(spec.name, exc)
                return None
            self._metrics[key] = metric
        return metric

    def _warn(self, name: str, exc: BaseException) -> None:
        if name not in self._warned:
            self._warned.add(name)
            log.warning("metric %s: %s", name, exc)

    def _add(self, spec: MetricSpec, value: float, labels: Mapping[str, str] | None = None) -> None:
        if value > 0:
            self._update("increment", spec, value, labels)

    def _observe(self, spec: MetricSpec, value: float, labels: Mapping[str, str] | None = None) -> None:
        self._update("observe", spec, value, labels)

    def _update(self, op: str, spec: MetricSpec, value: float, labels: Mapping[str, str] | None) -> None:
        if is_muted():
            return
        key = tuple(sorted((labels or {}).items()))
        if self._deferred_s <= 0:
            self._apply(op, spec, key, float(value))
            return
        with self._pending_lock:
            self._pending.append((op, spec, key, float(value)))
        self._queued.set()

    def _apply(self, op: str, spec: MetricSpec, key: tuple[tuple[str, str], ...], value: float) -> None:
        metric = self._metric(spec, key)
        if metric is not None:
            try:
                getattr(metric, op)(value)
            except Exception as exc:  # noqa: BLE001 - metrics never fail a request
                self._warn(spec.name, exc)

    def flush(self) -> None:
        """Apply the queued updates (one increment per counter series)."""
        with self._pending_lock:
            pending, self._pending = self._pending, []
        sums: dict[tuple[MetricSpec, tuple[tuple[str, str], ...]], float] = {}
        for op, spec, key, value in pending:
            if op == "increment":
                sums[(spec, key)] = sums.get((spec, key), 0.0) + value
            else:
                self._apply(op, spec, key, value)
        for (spec, key), total in sums.items():
            self._apply("increment", spec, key, total)

    def _flush_loop(self) -> None:
        while True:
            self._queued.wait()
            time.sleep(self._deferred_s)  # let the response go out first; gathers later updates too
            self._queued.clear()
            try:
                self.flush()
            except Exception as exc:  # noqa: BLE001 - the thread must outlive any failure
                self._warn("flush", exc)

    # ------------------------------------------------------------------ what the steps record
    def images(self, n: int) -> None:
        self._add(IMAGES, n)

    def boxes_per_image(self, counts: Iterable[int]) -> None:
        for n in counts:
            self._observe(BOXES_PER_IMAGE, n)

    def lines(self, texts: Iterable[str]) -> None:
        texts = list(texts)
        self._add(LINES, len(texts))
        self._add(CHARACTERS, sum(len(t) for t in texts))

    def empty_results(self, n: int) -> None:
        self._add(EMPTY_RESULTS, n)

    def cls_flips(self, n: int) -> None:
        self._add(CLS_FLIPS, n)

    def stage_times(self, timings: Mapping[str, float]) -> None:
        for stage, seconds in timings.items():
            self._observe(STAGE_LATENCY, seconds, {"stage": stage})

    def rejected(self, reason: str) -> None:
        self._add(REJECTED_INPUTS, 1, {"reason": reason})

    def network_compute(self, model: str, seconds: float) -> None:
        self._add(NETWORK_COMPUTE, seconds, {"model": model})
