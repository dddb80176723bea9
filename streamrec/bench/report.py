"""Markdown tables from ``bench/results.jsonl`` and ``bench/topk.jsonl`` (for BENCHMARKS.md)."""

from __future__ import annotations

import statistics
from typing import Any, Optional, Sequence

from streamrec.bench.plot import SYSTEM_ORDER


def _med(values: Sequence[Optional[float]]) -> Optional[float]:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def _fmt(x: Optional[float], digits: int = 0) -> str:
    if x is None:
        return "-"
    return f"{x:,.{digits}f}"


def _key(r: dict[str, Any]) -> tuple[Any, ...]:
    return (r.get("note", ""), r.get("catalog", "synthetic"), r["catalog_size"], r["events"], r.get("users"),
            r.get("blas_threads"))


def e2e_table(records: Sequence[dict[str, Any]]) -> list[str]:
    """One row per (settings, system): medians over the runs with those settings (profiled runs left out)."""
    groups: dict[tuple[Any, ...], dict[str, list[dict[str, Any]]]] = {}
    for r in records:
        if r.get("name") in SYSTEM_ORDER and not r.get("profiled"):
            groups.setdefault(_key(r), {}).setdefault(r["name"], []).append(r)
    lines = [
        "| run | system | runs | events/s | cores used | events/s per core | per core incl. Kafka+Cassandra | "
        "vs baseline per core | freshness p50 / p95 / p99 ms (at ~80% max) | at 100 events/s p50 / p99 ms | "
        "kept up | CPU by process |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | --- | --- |",
    ]
    for key, by_name in groups.items():
        note, catalog, size, events, users, _blas = key
        base = _med([r["events_per_s_per_core"] for r in by_name.get("baseline", [])])
        label = f"{note or '-'}: {catalog} {size:,} products, {events:,} events, {users:,} users"
        for name in SYSTEM_ORDER:
            runs = by_name.get(name)
            if not runs:
                continue
            per_core = _med([r["events_per_s_per_core"] for r in runs])
            ratio = f"{per_core / base:.2f}x" if base and per_core else "-"
            fr = [_fmt(_med([r["freshness_ms"].get(p) for r in runs])) for p in ("p50", "p95", "p99")]
            low = [_fmt(_med([(r.get("freshness_low_ms") or {}).get(p) for r in runs])) for p in ("p50", "p99")]
            kept = sum(1 for r in runs if r.get("kept_up"))
            procs: dict[str, list[float]] = {}
            for r in runs:
                for k, v in (r.get("cores_by_process") or {}).items():
                    procs.setdefault(k, []).append(v)
            by_proc = ", ".join(f"{k} {statistics.median(v):.2f}" for k, v in sorted(procs.items())
                                if statistics.median(v) >= 0.01)
            lines.append(
                f"| {label} | {name} | {len(runs)} | {_fmt(_med([r['events_per_s'] for r in runs]))} | "
                f"{_fmt(_med([r['cores_used'] for r in runs]), 2)} | {_fmt(per_core)} | "
                f"{_fmt(_med([r.get('events_per_s_per_core_with_stores') for r in runs]))} | "
                f"{ratio if name != 'baseline' else '1.00x'} | {' / '.join(fr)} | {' / '.join(low)} | "
                f"{kept}/{len(runs)} | {by_proc or '-'} |"
            )
    return lines


def machine_line(records: Sequence[dict[str, Any]]) -> str:
    m = next((r.get("machine") for r in reversed(records) if r.get("machine")), None) or {}
    others = [r["cores"].get("others") for r in records if isinstance(r.get("cores"), dict)]
    load = f"; other users' processes took a median {statistics.median(others):.2f} cores during the " \
           "measured windows" if others else ""
    return (f"{m.get('cores', '?')} cores ({m.get('cpu', '?')}), {m.get('mem_gib', '?')} GiB, "
            f"Python {m.get('python', '?')}, commit {m.get('commit', '?')}{load}")
