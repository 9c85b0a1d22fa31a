"""Plain-text tables for stdout (pure functions over the result dicts; no I/O)."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from .metrics import LATENCY_KEYS, ratio_dict
from .tritonstats import CATEGORIES

__all__ = ["ACCURACY_KEYS", "LEVEL_KEYS", "accuracy_table", "breakdown_table", "fmt", "level_table", "rounds_table",
           "family_table", "inprocess_lines", "non_model_lines", "summary_lines", "sweep_table"]

#: Figures compared per concurrency level (the ratio is ours/peer for each).
LEVEL_KEYS: tuple[str, ...] = ("images_per_s", *LATENCY_KEYS)
#: ocr_eval.py "overall" figures reported by the benchmark.
ACCURACY_KEYS: tuple[str, ...] = ("det_hmean", "e2e_hmean", "one_minus_ned")


def fmt(value: Any, spec: str = ".2f", width: int = 0) -> str:
    """``value`` formatted with ``spec``; '-' for None / NaN."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        text = "-"
    else:
        text = format(value, spec)
    return text.rjust(width) if width else text


def level_table(levels: Sequence[Mapping[str, Any]]) -> str:
    """One block per concurrency level: ours, peer and ours/peer for images/s and p50/p90/p99 latency."""
    head = f"{'conc':>4}  {'side':<10} {'images/s':>9} {'p50 ms':>9} {'p90 ms':>9} {'p99 ms':>9} {'n':>5} {'err':>4}"
    out = [head, "-" * len(head)]
    for lvl in levels:
        c = lvl["concurrency"]
        ours, peer = lvl.get("ours"), lvl.get("peer")
        for side, s in (("ours", ours), ("peer", peer)):
            if not s:
                continue
            out.append(f"{c:>4}  {side:<10} {fmt(s.get('images_per_s'), '.3f', 9)} "
                       f"{fmt(s.get('p50_ms'), '.1f', 9)} {fmt(s.get('p90_ms'), '.1f', 9)} "
                       f"{fmt(s.get('p99_ms'), '.1f', 9)} {s.get('images', 0):>5} {s.get('errors', 0):>4}")
        if ours and peer:
            r = lvl.get("ratio") or ratio_dict(ours, peer, LEVEL_KEYS)
            out.append(f"{c:>4}  {'ours/peer':<10} {fmt(r.get('images_per_s'), '.3f', 9)} "
                       f"{fmt(r.get('p50_ms'), '.3f', 9)} {fmt(r.get('p90_ms'), '.3f', 9)} "
                       f"{fmt(r.get('p99_ms'), '.3f', 9)}")
    return "\n".join(out)


def accuracy_table(accuracy: Mapping[str, Any]) -> str:
    """det H-mean, end-to-end H-mean and 1-NED for ours, the peer and ours/peer."""
    head = f"{'side':<10} {'images':>6} {'det_hmean':>10} {'e2e_hmean':>10} {'1-NED':>8}"
    out = [head, "-" * len(head)]
    for side in ("ours", "peer"):
        m = accuracy.get(side)
        if m:
            out.append(f"{side:<10} {m.get('images', 0):>6} {fmt(m.get('det_hmean'), '.4f', 10)} "
                       f"{fmt(m.get('e2e_hmean'), '.4f', 10)} {fmt(m.get('one_minus_ned'), '.4f', 8)}")
    r = accuracy.get("ratio")
    if r:
        out.append(f"{'ours/peer':<10} {'':>6} {fmt(r.get('det_hmean'), '.4f', 10)} "
                   f"{fmt(r.get('e2e_hmean'), '.4f', 10)} {fmt(r.get('one_minus_ned'), '.4f', 8)}")
    return "\n".join(out)


def breakdown_table(bd: Mapping[str, Any]) -> str:
    """Per-stage rows (ms per image, share of request time), then the per-category totals."""
    base = "client request time" if bd.get("base") == "client" else "server request time"
    head = f"{'stage':<22} {'part':<31} {'ms/image':>9} {'share':>7}"
    out = [f"(share = of the {base})", head, "-" * len(head)]
    last_stage = None
    for r in bd["rows"]:
        stage = ("  " * r.get("depth", 0) + r["stage"]) if r["stage"] != last_stage else ""
        last_stage = r["stage"]
        share = fmt(r["share"] * 100, ".1f") + "%" if r.get("share") is not None else "-"
        out.append(f"{stage:<22} {r['part']:<31} {fmt(r['ms_per_image'], '.2f', 9)} {share:>7}")
    out.append("-" * len(head))
    label = "by category"
    for cat, v in bd["categories"].items():
        if v["ns"] == 0 and cat != "model":
            continue
        share = fmt(v["share"] * 100, ".1f") + "%" if v.get("share") is not None else "-"
        out.append(f"{label:<22} {CATEGORIES[cat]:<31} {fmt(v['ms_per_image'], '.2f', 9)} {share:>7}")
        label = ""
    return "\n".join(out)


def _pct(share: float | None) -> str:
    return fmt(share * 100 if share is not None else None, ".1f") + "%"


def non_model_lines(levels: Sequence[Mapping[str, Any]]) -> list[str]:
    """One line per level: model compute vs non-model time (ms per image and share)."""
    out = []
    for lvl in levels:
        bd = lvl.get("breakdown")
        if not bd:
            continue
        out.append(f"  concurrency {lvl['concurrency']:>2}: model compute "
                   f"{fmt(bd.get('model_compute_ms_per_image'), '.1f')} ms/image, non-model "
                   f"{fmt(bd.get('non_model_ms_per_image'), '.1f')} ms/image = {_pct(bd.get('non_model_share'))} "
                   f"of request time ({_pct(bd.get('non_model_share_server'))} of the server-side time)")
    return out


def inprocess_lines(ref: Mapping[str, Any], c1: Mapping[str, Any] | None) -> list[str]:
    """The in-process reference (bench_lib.inprocess) and, beside the served figure at concurrency 1,
    how much of the served non-model time serving adds."""
    work = ", ".join(f"{k} {fmt(v, '.1f')}" for k, v in (ref.get("work_ms_per_image") or {}).items())
    par = ref.get("parity") or {}
    out = [f"  in process, no server (same code, ONNX files and settings, concurrency 1): "
           f"{fmt(ref.get('wall_ms_per_image'), '.1f')} ms/image, of which onnxruntime "
           f"{fmt(ref.get('network_ms_per_image'), '.1f')}, the rest {fmt(ref.get('non_model_ms_per_image'), '.1f')} "
           f"ms/image = {_pct(ref.get('non_model_share'))}",
           f"    the rest by stage, ms/image: {work}",
           f"    same texts as the server for {par.get('images_identical', '-')} of "
           f"{par.get('images_compared', '-')} images"]
    served = (c1 or {}).get("non_model_ms_per_image")
    if served is not None and ref.get("non_model_ms_per_image") is not None:
        out.append(f"  so serving (Triton, the steps' stubs and tensor copies, the client) adds about "
                   f"{fmt(served - ref['non_model_ms_per_image'], '.1f')} ms/image at concurrency 1")
    return out


def summary_lines(summary: Mapping[str, Any]) -> list[str]:
    """The headline figures against the issue's targets."""

    def verdict(met: bool | None) -> str:
        return "not measured" if met is None else ("met" if met else "NOT met")

    t = summary["throughput_best"]
    lat = summary["latency_c1_p50"]
    nm = summary["non_model_share_c1"]
    return [
        f"  throughput at best concurrency: ours {fmt(t['ours_images_per_s'], '.3f')} img/s "
        f"(c={t['ours_concurrency']}), peer {fmt(t['peer_images_per_s'], '.3f')} img/s "
        f"(c={t['peer_concurrency']}), ratio {fmt(t['ratio'], '.2f')}  "
        f"[target >= {t['target']['value']}: {verdict(t['met'])}]",
        f"  median latency at concurrency 1: ours {fmt(lat['ours_ms'], '.1f')} ms, "
        f"peer {fmt(lat['peer_ms'], '.1f')} ms, ratio {fmt(lat['ratio'], '.2f')}  "
        f"[target <= {lat['target']['value']}: {verdict(lat['met'])}]",
        f"  non-model time at concurrency 1: {_pct(nm.get('share'))} of request time  "
        f"[target <= {nm['target']['value'] * 100:.0f}%: {verdict(nm['met'])}]",
    ]


def sweep_table(peers: Mapping[str, Mapping[str, Any]]) -> str:
    """Each peer's layouts: images/s and latency, the best layout marked."""
    head = f"{'peer':<24} {'layout':>6} {'images/s':>9} {'p50 ms':>9} {'p90 ms':>9} {'err':>4}  info"
    out = [head, "-" * len(head)]
    for name, p in peers.items():
        for r in p.get("sweep") or []:
            mark = "*" if r.get("layout") == p.get("best_layout") else " "
            info = ", ".join(f"{k}={v}" for k, v in (r.get("info") or {}).items())
            out.append(f"{name:<24} {r.get('layout', ''):>6}{mark}{fmt(r.get('images_per_s'), '.3f', 9)} "
                       f"{fmt(r.get('p50_ms'), '.1f', 9)} {fmt(r.get('p90_ms'), '.1f', 9)} "
                       f"{r.get('errors', 0):>4}  {info}")
    return "\n".join(out)


def family_table(family: Mapping[str, Any]) -> str:
    """Ours against each peer of the family, each at its best layout, with the targets' verdicts."""
    head = (f"{'side':<24} {'best':>6} {'images/s':>9} {'p50 ms c1':>10} {'det_hmean':>10} {'e2e_hmean':>10} "
            f"{'1-NED':>8}")
    out = [head, "-" * len(head)]
    o = family["ours"]
    out.append(f"{'ours':<24} {'c=' + str(o.get('concurrency')):>6} {fmt(o.get('images_per_s'), '.3f', 9)} "
               f"{fmt(o.get('p50_ms_c1'), '.1f', 10)} {fmt(o.get('det_hmean'), '.4f', 10)} "
               f"{fmt(o.get('e2e_hmean'), '.4f', 10)} {fmt(o.get('one_minus_ned'), '.4f', 8)}")
    for r in family["peers"]:
        out.append(f"{r['peer']:<24} {r.get('best_layout') or '-':>6} {fmt(r.get('images_per_s'), '.3f', 9)} "
                   f"{fmt(r.get('p50_ms_c1'), '.1f', 10)} {fmt(r.get('det_hmean'), '.4f', 10)} "
                   f"{fmt(r.get('e2e_hmean'), '.4f', 10)} {fmt(r.get('one_minus_ned'), '.4f', 8)}")

    def verdict(met: bool | None) -> str:
        return "not measured" if met is None else ("met" if met else "NOT met")

    t = family["targets"]
    source = family.get("ratios_from", "the sweep")
    sweep_note = ("" if source == "the sweep" else
                  f"; the sweep alone: {fmt(family.get('throughput_ratio_sweep'), '.2f')} and "
                  f"{fmt(family.get('latency_c1_ratio_sweep'), '.2f')}")
    out += ["",
            f"  ratios from {source}{sweep_note}",
            f"  throughput vs the fastest peer ({family.get('fastest_peer')}): ratio "
            f"{fmt(family.get('throughput_ratio'), '.2f')} [target >= {t['throughput_ratio']['value']}: "
            f"{verdict(family.get('throughput_met'))}]",
            f"  p50 at concurrency 1 vs that peer with one image in flight: ratio "
            f"{fmt(family.get('latency_c1_ratio'), '.2f')} [target <= {t['latency_c1_ratio']['value']}: "
            f"{verdict(family.get('latency_met'))}]",
            f"  E2E H-mean >= every peer: {verdict(family.get('e2e_at_least_every_peer'))}; "
            f"1-NED >= every peer: {verdict(family.get('ned_at_least_every_peer'))}"]
    return "\n".join(out)


def rounds_table(rounds: Mapping[str, Any]) -> str:
    """The interleaved rounds: per round, each side's best throughput (and where: our concurrency, the
    peer's layout), the p50s with one image in flight and the two ratios."""
    single = rounds["peer_single_layout"]
    head = (f"{'round':>5} {'ours best':>16} {'peer best':>16} {'ratio':>6} "
            f"{'ours c=1 p50':>13} {'peer ' + single + ' p50':>14} {'ratio':>6}")
    out = [head, "-" * len(head)]
    for k, r in enumerate(rounds["rounds"], 1):
        ours = f"{fmt(r['ours_best']['images_per_s'], '.3f')} c={r['ours_best']['concurrency']}"
        peer = f"{fmt(r['peer_best']['images_per_s'], '.3f')} {r['peer_best']['layout']}"
        out.append(f"{k:>5} {ours:>16} {peer:>16} {fmt(r['throughput_ratio'], '.2f', 6)} "
                   f"{fmt(r['ours_c1']['p50_ms'], '.1f', 13)} {fmt(r['peer_single']['p50_ms'], '.1f', 14)} "
                   f"{fmt(r['latency_c1_ratio'], '.2f', 6)}")
    out.append(f"{'median':>5} {'':>16} {'':>16} {fmt(rounds['throughput_ratio'], '.2f', 6)} {'':>13} {'':>14} "
               f"{fmt(rounds['latency_c1_ratio'], '.2f', 6)}")
    return "\n".join(out)
