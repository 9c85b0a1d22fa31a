"""Metrics of the launcher process itself (the watchdog), exported with prometheus-client.

tritonserver's metrics port (`nv_*`, and the steps' `ocr_*`) cannot carry what happens around the
server: heals, restarts, failed probes, and whether it is up at all while it restarts. The launcher
serves these on a port of its own (`--watchdog-metrics-port`, default 8003; docker/prometheus.yml
scrapes it as job `ocr-watchdog`), together with the CPU time and resident memory of tritonserver
and of each model's stub processes read from /proc, so that dashboards show what the embedded
server costs (Triton's `nv_cpu_*` are host-wide).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["WATCHDOG_METRICS", "WatchdogMetrics", "process_usage"]

# Every family exported here (tests/unit/test_dashboard.py accepts them in dashboards and alerts).
WATCHDOG_METRICS = frozenset({
    "ocr_watchdog_heals_total", "ocr_server_restarts_total", "ocr_watchdog_probe_failures_total",
    "ocr_server_ready", "ocr_server_process_cpu_seconds_total", "ocr_server_process_resident_memory_bytes",
})

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def process_usage(pid: int) -> tuple[float, int] | None:
    """(CPU seconds, user + system, and resident bytes) of a live process; None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        statm = Path(f"/proc/{pid}/statm").read_text().split()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS, int(statm[1]) * _PAGE_SIZE


class _ProcessCollector(Collector):
    """CPU and memory of the server's processes, read at scrape time. `processes()` gives
    (pid, name) pairs; the name is "tritonserver" or the model a stub serves (instances summed)."""

    def __init__(self, processes: Callable[[], Iterable[tuple[int, str]]]) -> None:
        self._processes = processes

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        cpu = CounterMetricFamily("ocr_server_process_cpu_seconds", "CPU time (user + system) of the embedded "
                                  "server's processes, by process (tritonserver or the model of a stub)",
                                  labels=["process"])
        rss = GaugeMetricFamily("ocr_server_process_resident_memory_bytes", "Resident memory of the embedded "
                                "server's processes, by process (tritonserver or the model of a stub)",
                                labels=["process"])
        seconds: dict[str, float] = {}
        resident: dict[str, int] = {}
        for pid, name in self._processes():
            usage = process_usage(pid)
            if usage is not None:
                seconds[name] = seconds.get(name, 0.0) + usage[0]
                resident[name] = resident.get(name, 0) + usage[1]
        for name in sorted(seconds):
            cpu.add_metric([name], seconds[name])
            rss.add_metric([name], resident[name])
        yield cpu
        yield rss


class WatchdogMetrics:
    """The launcher's own metrics. `ready()` and `processes()` are evaluated at each scrape."""

    def __init__(self, ready: Callable[[], bool], processes: Callable[[], Iterable[tuple[int, str]]]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.heals = Counter("ocr_watchdog_heals", "Models reloaded by the watchdog (dead or unhealthy stub)",
                             ["model"], registry=self.registry)
        self.restarts = Counter("ocr_server_restarts", "tritonserver restarts by the watchdog", registry=self.registry)
        self.probe_failures = Counter("ocr_watchdog_probe_failures", "Watchdog probe requests that failed or "
                                      "timed out", registry=self.registry)
        self.ready = Gauge("ocr_server_ready", "1 while tritonserver is running and ready, 0 while it starts, "
                           "heals, restarts or is stuck", registry=self.registry)
        self.ready.set_function(lambda: 1.0 if ready() else 0.0)
        self.registry.register(_ProcessCollector(processes))

    def serve(self, port: int, host: str) -> None:
        """Export on http://host:port/metrics from a daemon thread."""
        start_http_server(port, addr=host, registry=self.registry)
