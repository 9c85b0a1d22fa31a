"""Triton statistics API (+ the runtime's own compute counter) -> per-stage time breakdown (pure functions, no I/O).

Input is the JSON of ``GET /v2/models/stats`` or of tritonclient's
``get_inference_statistics(as_json=True)`` (gRPC: int64 as strings, zero fields left out); both are
normalised to plain ints by :func:`normalize_statistics`.

Triton counts ``inference_stats`` **per request**: a model executing a dynamic batch of k requests adds the
batch's compute time k times, once per request, because each request waited that long. ``batch_stats``
counts **per execution**. The breakdown is additive over request time, so it uses the per-request figures;
the per-execution sums are kept as ``exec_*`` (the CPU actually spent) for reference.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["CATEGORIES", "FIELDS", "NETWORK_COMPUTE_METRIC", "breakdown", "network_compute_ns",
           "normalize_statistics", "stats_delta"]

#: Counter the CPU runtime models export: seconds inside onnxruntime's run(), label ``model``
#: (ppocr_steps.metrics.NETWORK_COMPUTE).
NETWORK_COMPUTE_METRIC = "ocr_network_compute_seconds_total"

#: Normalised counters per model (all ints; ``*_ns`` are nanoseconds summed over requests/executions).
FIELDS: tuple[str, ...] = (
    "inference_count", "execution_count",
    "success_count", "success_ns", "fail_count", "fail_ns",
    "queue_ns", "compute_input_ns", "compute_infer_ns", "compute_output_ns",
    "cache_hit_count", "cache_hit_ns", "cache_miss_count", "cache_miss_ns",
    "exec_count", "exec_compute_input_ns", "exec_compute_infer_ns", "exec_compute_output_ns",
)

#: Where request time goes, coarsely: the ``category`` of each breakdown row and its label.
#: model: time inside the network runtime (the runtime's own counter where it exports one, else compute_infer
#: of the runtime models); stub: the rest of a Python-backend runtime model's compute_infer (the round trip to
#: its stub and the few numpy lines around onnxruntime); python: compute_infer of the Python steps, BLS calls
#: taken out; data: compute_input + compute_output (tensor copies to/from the models); queue: model queues incl.
#: the dynamic-batching delay; triton: ensemble scheduling between steps and request handling outside those
#: phases; client: client latency minus the server's ensemble time.
CATEGORIES: dict[str, str] = {
    "model": "network compute",
    "stub": "runtime model stubs",
    "python": "Python steps",
    "data": "tensor copies in/out",
    "queue": "queues",
    "triton": "Triton overhead",
    "client": "client + network",
}


def _int(value: Any) -> int:
    if value is None or value == "":
        return 0
    return int(value)


def _stat(d: Mapping[str, Any], name: str) -> tuple[int, int]:
    s = d.get(name) or {}
    return _int(s.get("count")), _int(s.get("ns"))


def normalize_statistics(raw: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    """``{model: {field: int}}`` from a statistics JSON (HTTP or gRPC form); versions of a model are summed."""
    out: dict[str, dict[str, int]] = {}
    for entry in raw.get("model_stats") or []:
        name = str(entry["name"])
        m = out.setdefault(name, dict.fromkeys(FIELDS, 0))
        m["inference_count"] += _int(entry.get("inference_count"))
        m["execution_count"] += _int(entry.get("execution_count"))
        inf = entry.get("inference_stats") or {}
        for key in ("success", "fail", "cache_hit", "cache_miss"):
            c, ns = _stat(inf, key)
            m[f"{key}_count"] += c
            m[f"{key}_ns"] += ns
        for key in ("queue", "compute_input", "compute_infer", "compute_output"):
            m[f"{key}_ns"] += _stat(inf, key)[1]
        for b in entry.get("batch_stats") or []:
            c, ns = _stat(b, "compute_infer")
            m["exec_count"] += c
            m["exec_compute_infer_ns"] += ns
            m["exec_compute_input_ns"] += _stat(b, "compute_input")[1]
            m["exec_compute_output_ns"] += _stat(b, "compute_output")[1]
    return out


def stats_delta(before: Mapping[str, Mapping[str, int]],
                after: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, int]]:
    """``after - before`` per model and field (a model absent before counts from 0).

    Raises ValueError when a counter went backwards (the server restarted or the model was reloaded
    between the two snapshots), since the window's figures would then be meaningless.
    """
    out: dict[str, dict[str, int]] = {}
    for name, a in after.items():
        b = before.get(name) or {}
        d = {f: int(a.get(f, 0)) - int(b.get(f, 0)) for f in FIELDS}
        bad = [f for f, v in d.items() if v < 0]
        if bad:
            raise ValueError(f"statistics of '{name}' went backwards ({', '.join(bad)}): "
                             "was the server restarted or the model reloaded during the run?")
        out[name] = d
    return out


def network_compute_ns(metrics_text: str) -> dict[str, int]:
    """``{model: ns}`` from a Prometheus text scrape: the NETWORK_COMPUTE_METRIC counter per ``model`` label."""
    out: dict[str, int] = {}
    prefix = NETWORK_COMPUTE_METRIC + "{"
    for line in metrics_text.splitlines():
        if not line.startswith(prefix):
            continue
        labels, _, value = line[len(prefix):].partition("}")
        fields = dict(part.split("=", 1) for part in labels.split(",") if "=" in part)
        model = fields.get("model", "").strip('"')
        if model:
            out[model] = out.get(model, 0) + round(float(value.split()[0]) * 1e9)
    return out


def _row(stage: str, part: str, category: str, ns: int, images: int, base_ns: int | None,
         depth: int = 0) -> dict[str, Any]:
    return {"stage": stage, "part": part, "category": category, "depth": depth, "ns": int(ns),
            "ms_per_image": (ns / images / 1e6) if images else None,
            "share": (ns / base_ns) if base_ns else None}


def breakdown(delta: Mapping[str, Mapping[str, int]], *, images: int, client_request_ns: int | None,
              ensemble: str = "ocr", steps: Sequence[str] = (), runtime_models: Sequence[str] = (),
              bls_children: Mapping[str, Sequence[str]] | None = None,
              network_ns: Mapping[str, int] | None = None) -> dict[str, Any]:
    """Where the request time of one measurement window went.

    ``delta``: :func:`stats_delta` of the window. ``images``: images served in it (one per request).
    ``client_request_ns``: the sum of the client-side latencies (None: use the server's ensemble time).
    ``steps``: the ensemble's steps, in order; ``runtime_models``: the networks (det/cls/rec), whose
    ``compute_infer`` is the model compute; ``bls_children``: ``{step: [models it calls through BLS]}``;
    a parent's Python time is its ``compute_infer`` minus the time its children's requests spent
    outside their queues, clamped at 0. A child's queue row (category ``bls_queue``) is shown but
    not added: that wait is inside the parent's time, and with pipelined calls (two in flight) it
    overlaps the previous call's compute.

    ``network_ns``: ``{runtime model: ns inside the network runtime}`` over the same window (the delta of
    the NETWORK_COMPUTE_METRIC counter), or None. For a runtime model listed there, that is its network
    compute, and the rest of its ``compute_infer`` is a "stub" row: on the CPU target the runtime models
    are Python-backend stubs around onnxruntime, and their ``compute_infer`` also holds the round trip to
    the stub. A runtime model not listed there (TensorRT on the GPU
    target exports no such counter) counts its whole ``compute_infer``.

    Non-model time = request time - Σ network compute of the runtime models, everywhere they run.
    """
    bls_children = {k: list(v) for k, v in (bls_children or {}).items()}
    runtime = set(runtime_models)
    network_ns = {k: int(v) for k, v in (network_ns or {}).items() if k in runtime}
    zero = dict.fromkeys(FIELDS, 0)

    def stats(name: str) -> Mapping[str, int]:
        return delta.get(name) or zero

    ens = delta.get(ensemble)
    server_ns = ens["success_ns"] if ens else None
    base = client_request_ns if client_request_ns else server_ns
    rows: list[dict[str, Any]] = []
    if client_request_ns and server_ns is not None:
        rows.append(_row("client", "client + network", "client", client_request_ns - server_ns, images, base))
    if ens is not None and server_ns is not None:
        steps_ns = sum(stats(s)["success_ns"] for s in steps)
        rows.append(_row(ensemble, "ensemble scheduling", "triton", server_ns - steps_ns, images, base))
        if ens["queue_ns"]:
            rows.append(_row(ensemble, "queue", "queue", ens["queue_ns"], images, base))

    def model_rows(name: str, depth: int) -> None:
        s = stats(name)
        if s["success_count"] == 0 and s["fail_count"] == 0:
            return
        children = [c for c in bls_children.get(name, []) if c in delta]
        # a callee's queue wait lies inside its caller's compute_infer, and with pipelined calls it
        # overlaps the previous call: it is shown but not added (category "bls_queue")
        child_ns = sum(stats(c)["success_ns"] - stats(c)["queue_ns"] for c in children)
        parts = s["queue_ns"] + s["compute_input_ns"] + s["compute_infer_ns"] + s["compute_output_ns"]
        rows.append(_row(name, "queue", "bls_queue" if depth else "queue", s["queue_ns"], images, base, depth))
        rows.append(_row(name, "input + output copies", "data", s["compute_input_ns"] + s["compute_output_ns"],
                         images, base, depth))
        if name in runtime and name in network_ns:
            rows.append(_row(name, "compute (network)", "model", network_ns[name], images, base, depth))
            rows.append(_row(name, "stub round trip", "stub", s["compute_infer_ns"] - network_ns[name], images,
                             base, depth))
        elif name in runtime:
            rows.append(_row(name, "compute (network)", "model", s["compute_infer_ns"], images, base, depth))
        elif children:
            rows.append(_row(name, "Python (BLS calls taken out)", "python",
                             max(0, s["compute_infer_ns"] - child_ns), images, base, depth))
        else:
            rows.append(_row(name, "Python (execute)", "python", s["compute_infer_ns"], images, base, depth))
        rows.append(_row(name, "other (request handling)", "triton", s["success_ns"] - parts, images, base, depth))
        for c in children:
            model_rows(c, depth + 1)

    listed: set[str] = {ensemble}
    for step in steps:
        model_rows(step, 0)
        listed.add(step)
        listed.update(bls_children.get(step, []))
    for name in sorted(delta):  # models the ensemble map does not name (e.g. called directly)
        if name not in listed:
            model_rows(name, 0)

    categories = dict.fromkeys(CATEGORIES, 0)
    for r in rows:
        if r["category"] in categories:
            categories[r["category"]] += r["ns"]
    model_ns = sum(network_ns.get(m, stats(m)["compute_infer_ns"]) for m in runtime if m in delta)
    non_model_ns = (base - model_ns) if base else None
    server_non_model = (server_ns - model_ns) if server_ns else None
    per_model = {}
    for name, s in sorted(delta.items()):
        if s["success_count"] == 0 and s["fail_count"] == 0:
            continue
        per_model[name] = {
            "requests": s["success_count"], "failed": s["fail_count"], "inferences": s["inference_count"],
            "executions": s["execution_count"],
            "avg_batch": (s["inference_count"] / s["execution_count"]) if s["execution_count"] else None,
            **{f"{k}_ms_per_image": (s[f"{k}_ns"] / images / 1e6) if images else None
               for k in ("success", "queue", "compute_input", "compute_infer", "compute_output",
                         "exec_compute_infer")},
        }
    return {
        "images": images,
        "ensemble_requests": ens["success_count"] if ens else None,
        "client_request_ns": client_request_ns,
        "server_request_ns": server_ns,
        "base": "client" if client_request_ns else "server",
        "rows": rows,
        "categories": {k: {"ns": v, "ms_per_image": (v / images / 1e6) if images else None,
                           "share": (v / base) if base else None} for k, v in categories.items()},
        "model_compute_ns": model_ns,
        "model_compute_source": {m: (NETWORK_COMPUTE_METRIC if m in network_ns else "compute_infer")
                                 for m in sorted(runtime) if m in delta},
        "model_compute_ms_per_image": (model_ns / images / 1e6) if images else None,
        "non_model_ns": non_model_ns,
        "non_model_ms_per_image": (non_model_ns / images / 1e6) if (images and non_model_ns is not None) else None,
        "non_model_share": (non_model_ns / base) if (base and non_model_ns is not None) else None,
        "non_model_share_server": (server_non_model / server_ns)
        if (server_ns and server_non_model is not None) else None,
        "models": per_model,
    }
