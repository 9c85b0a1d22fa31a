"""Helpers of ``scripts/bench.py`` (see docs/benchmarks.md).

Pure, unit-tested parts: :mod:`bench_lib.metrics` (percentiles, latency summaries, ours/peer ratios),
:mod:`bench_lib.tritonstats` (Triton statistics deltas and the per-stage time breakdown) and
:mod:`bench_lib.report` (the stdout tables). The parts with side effects: :mod:`bench_lib.data` (images,
ground truth, predictions, the scorer), :mod:`bench_lib.peer` (RapidOCR workers), :mod:`bench_lib.load`
(running one concurrency level), :mod:`bench_lib.server` (starting a tritonserver on free ports) and
:mod:`bench_lib.inprocess` (the server's pipeline code run in this process, no server).
"""
