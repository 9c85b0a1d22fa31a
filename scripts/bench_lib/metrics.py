"""Latency percentiles, throughput and ours/peer ratios (pure functions, no I/O)."""
from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["FAMILY_TARGETS", "LATENCY_KEYS", "TARGETS", "family_summary", "latency_summary", "level_summary",
           "percentile", "ratio", "ratio_dict", "round_slice", "rounds_medians", "summarize_targets", "contenders",
           "best_layouts"]

#: Latency figures reported per side and level, in milliseconds.
LATENCY_KEYS: tuple[str, ...] = ("p50_ms", "p90_ms", "p99_ms")

#: The issue's targets (what "met" means in the summary); figures are ours/peer unless said otherwise.
TARGETS: dict[str, dict[str, Any]] = {
    "throughput_best_ratio": {"op": ">=", "value": 1.5,
                              "what": "images/s at each side's best concurrency, ours/peer"},
    "latency_c1_p50_ratio": {"op": "<=", "value": 1.0, "what": "median latency at concurrency 1, ours/peer"},
    "non_model_share_c1": {"op": "<=", "value": 0.05,
                           "what": "non-model time / client request time at concurrency 1 (ours)"},
}


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) with linear interpolation between closest ranks (numpy's default).

    ``nan`` for an empty sequence. With few samples the high percentiles approach the maximum.
    """
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile q must be in [0, 100], got {q!r}")
    data = sorted(float(v) for v in values)
    if not data:
        return math.nan
    pos = (len(data) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(data) - 1)
    frac = pos - lo
    return data[lo] + (data[hi] - data[lo]) * frac


def latency_summary(latencies_s: Sequence[float]) -> dict[str, float]:
    """Per-request latencies in seconds -> count, mean, min, max and p50/p90/p99 in milliseconds."""
    ms = [float(v) * 1000.0 for v in latencies_s]
    if not ms:
        return {"n": 0, "mean_ms": math.nan, "min_ms": math.nan, "max_ms": math.nan,
                "p50_ms": math.nan, "p90_ms": math.nan, "p99_ms": math.nan}
    return {"n": len(ms), "mean_ms": sum(ms) / len(ms), "min_ms": min(ms), "max_ms": max(ms),
            "p50_ms": percentile(ms, 50), "p90_ms": percentile(ms, 90), "p99_ms": percentile(ms, 99)}


def level_summary(latencies_s: Sequence[float], wall_s: float, errors: int = 0) -> dict[str, Any]:
    """One side at one concurrency level: images/s (successful images / wall time) and latency figures."""
    n = len(latencies_s)
    out: dict[str, Any] = {"images": n, "errors": int(errors), "wall_s": float(wall_s),
                           "images_per_s": (n / wall_s) if wall_s > 0 else math.nan}
    out.update(latency_summary(latencies_s))
    return out


def ratio(ours: float | None, peer: float | None) -> float | None:
    """ours / peer, or None when either is missing, not finite, or the peer figure is 0."""
    if ours is None or peer is None:
        return None
    ours, peer = float(ours), float(peer)
    if not (math.isfinite(ours) and math.isfinite(peer)) or peer == 0.0:
        return None
    return ours / peer


def ratio_dict(ours: Mapping[str, Any] | None, peer: Mapping[str, Any] | None,
               keys: Sequence[str]) -> dict[str, float | None]:
    """``{key: ours[key] / peer[key]}`` for each key (None where a ratio cannot be formed)."""
    ours, peer = ours or {}, peer or {}
    return {k: ratio(ours.get(k), peer.get(k)) for k in keys}


def _best(levels: Sequence[Mapping[str, Any]], side: str) -> tuple[int | None, float | None]:
    best_c, best_v = None, None
    for lvl in levels:
        s = lvl.get(side)
        if not s:
            continue
        v = s.get("images_per_s")
        if v is not None and math.isfinite(v) and (best_v is None or v > best_v):
            best_c, best_v = int(lvl["concurrency"]), float(v)
    return best_c, best_v


def _met(name: str, value: float | None) -> bool | None:
    if value is None or not math.isfinite(value):
        return None
    t = TARGETS[name]
    return value >= t["value"] if t["op"] == ">=" else value <= t["value"]


def summarize_targets(levels: Sequence[Mapping[str, Any]], non_model_share_c1: float | None) -> dict[str, Any]:
    """The three headline figures and whether each meets its target (None = not measured).

    ``levels``: ``[{"concurrency": c, "ours": level_summary, "peer": level_summary | None}, ...]``.
    Throughput compares each side at its own best concurrency.
    """
    oc, ov = _best(levels, "ours")
    pc, pv = _best(levels, "peer")
    c1 = next((lvl for lvl in levels if int(lvl["concurrency"]) == 1), None)
    lat_ours = (c1 or {}).get("ours") or {}
    lat_peer = (c1 or {}).get("peer") or {}
    thr = ratio(ov, pv)
    lat = ratio(lat_ours.get("p50_ms"), lat_peer.get("p50_ms"))
    return {
        "throughput_best": {"ours_images_per_s": ov, "ours_concurrency": oc, "peer_images_per_s": pv,
                            "peer_concurrency": pc, "ratio": thr, "target": TARGETS["throughput_best_ratio"],
                            "met": _met("throughput_best_ratio", thr)},
        "latency_c1_p50": {"ours_ms": lat_ours.get("p50_ms"), "peer_ms": lat_peer.get("p50_ms"), "ratio": lat,
                           "target": TARGETS["latency_c1_p50_ratio"], "met": _met("latency_c1_p50_ratio", lat)},
        "non_model_share_c1": {"share": non_model_share_c1, "target": TARGETS["non_model_share_c1"],
                               "met": _met("non_model_share_c1", non_model_share_c1)},
    }


#: The fair comparison's targets against the fastest peer of the same family (issue 15).
FAMILY_TARGETS: dict[str, dict[str, Any]] = {
    "throughput_ratio": {"op": ">=", "value": 1.5, "what": "ours at best concurrency / fastest peer's best layout"},
    "latency_c1_ratio": {"op": "<=", "value": 0.7,
                         "what": "ours p50 at concurrency 1 / that peer's p50 with one image in flight"},
}


def round_slice(items: Sequence[T], k: int, size: int) -> list[T]:
    """Round `k`'s share of `items`: the k-th run of `size` consecutive items, wrapping around (all of
    them when `size` is 0 or covers them)."""
    if size <= 0 or size >= len(items):
        return list(items)
    start = (k * size) % len(items)
    return [items[(start + i) % len(items)] for i in range(size)]


def rounds_medians(rounds: Sequence[Mapping[str, Any]]) -> dict[str, float | None]:
    """The median over the interleaved rounds of each round's throughput and p50 ratio (None if none)."""
    def median(key: str) -> float | None:
        values = [float(r[key]) for r in rounds if r.get(key) is not None]
        return statistics.median(values) if values else None

    return {"throughput_ratio": median("throughput_ratio"), "latency_c1_ratio": median("latency_c1_ratio")}


def contenders(rows: Sequence[Any], speed: Callable[[Any], float], share: float) -> list[Any]:
    """The rows whose speed is at least `share` of the fastest row's, in their order (none if empty)."""
    best = max((speed(r) for r in rows), default=0.0)
    return [r for r in rows if best > 0 and speed(r) >= share * best]


def best_layouts(sweep: Sequence[Mapping[str, Any]]) -> tuple[Mapping[str, Any] | None, Mapping[str, Any] | None]:
    """A peer's sweep rows with the most images/s: overall, and among its one-process layouts (the one
    whose p50 is the peer's latency with one image in flight)."""
    def fastest(rows: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
        return max(rows, key=lambda r: r.get("images_per_s") or 0.0, default=None)

    return fastest(sweep), fastest([r for r in sweep if r.get("processes") == 1])


def family_summary(levels: Sequence[Mapping[str, Any]], accuracy: Mapping[str, Any],
                   peers: Mapping[str, Mapping[str, Any]], rounds: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Ours against every swept peer, each at its best: throughput, latency with one image in flight, accuracy.

    ``peers``: ``{name: {"sweep": [level_summary + "layout", "processes"], "accuracy": {...}}}``.
    ``rounds`` (bench.py's interleaved rounds against the fastest peer): when given, the verdicts use the
    median of its rounds' ratios; the sweep's own ratios stay in ``*_sweep``.
    """
    oc, ov = _best(levels, "ours")
    c1 = next((lvl for lvl in levels if int(lvl["concurrency"]) == 1), None)
    ours_p50 = ((c1 or {}).get("ours") or {}).get("p50_ms")
    ours_acc = accuracy.get("ours") or {}
    rows: list[dict[str, Any]] = []
    for name, p in peers.items():
        sweep = p.get("sweep") or []
        best, fastest_single = best_layouts(sweep)
        acc = p.get("accuracy") or {}
        rows.append({"peer": name, "best_layout": (best or {}).get("layout"),
                     "images_per_s": (best or {}).get("images_per_s"),
                     "c1_layout": (fastest_single or {}).get("layout"),
                     "p50_ms_c1": (fastest_single or {}).get("p50_ms"),
                     "e2e_hmean": acc.get("e2e_hmean"), "one_minus_ned": acc.get("one_minus_ned"),
                     "det_hmean": acc.get("det_hmean")})
    fastest = max(rows, key=lambda r: r["images_per_s"] or 0.0, default=None)
    thr_sweep = ratio(ov, (fastest or {}).get("images_per_s"))
    lat_sweep = ratio(ours_p50, (fastest or {}).get("p50_ms_c1"))
    thr, lat = ((rounds.get("throughput_ratio"), rounds.get("latency_c1_ratio")) if rounds
                else (thr_sweep, lat_sweep))

    def at_least_every_peer(key: str) -> bool | None:
        mine = ours_acc.get(key)
        theirs = [r[key] for r in rows if r[key] is not None]
        if mine is None or not theirs:
            return None
        return bool(mine >= max(theirs))

    def met(name: str, value: float | None) -> bool | None:
        if value is None or not math.isfinite(value):
            return None
        t = FAMILY_TARGETS[name]
        return value >= t["value"] if t["op"] == ">=" else value <= t["value"]

    return {"ours": {"images_per_s": ov, "concurrency": oc, "p50_ms_c1": ours_p50,
                     "e2e_hmean": ours_acc.get("e2e_hmean"), "one_minus_ned": ours_acc.get("one_minus_ned"),
                     "det_hmean": ours_acc.get("det_hmean")},
            "peers": rows, "fastest_peer": (fastest or {}).get("peer"),
            "throughput_ratio": thr, "throughput_met": met("throughput_ratio", thr),
            "latency_c1_ratio": lat, "latency_met": met("latency_c1_ratio", lat),
            "ratios_from": f"median of {len(rounds['rounds'])} interleaved rounds" if rounds else "the sweep",
            "throughput_ratio_sweep": thr_sweep, "latency_c1_ratio_sweep": lat_sweep,
            "e2e_at_least_every_peer": at_least_every_peer("e2e_hmean"),
            "ned_at_least_every_peer": at_least_every_peer("one_minus_ned"),
            "targets": FAMILY_TARGETS}
