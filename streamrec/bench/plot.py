"""PNGs from the benchmark results: ``bench/e2e.png`` (results.jsonl) and ``bench/topk.png`` (topk.jsonl)."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any, Optional, Sequence

from streamrec.bench import results

SYSTEM_ORDER = ("streamrec", "baseline", "baseline-batched")
DATASET_TITLES = {
    "random": "uniform random 64-d unit vectors (no structure), model user vectors as queries",
    "uci": "UCI Online Retail catalog (real at its size, + jittered copies above), real users as queries",
}
COLORS = {"streamrec": "#1f77b4", "baseline": "#d62728", "baseline-batched": "#ff7f0e"}


def _config_key(r: dict[str, Any]) -> str:
    """Runs with the same settings are one group (their median is plotted)."""
    label = f"{r.get('catalog', 'synthetic')} {r['catalog_size']:,} products\n{r['events']:,} events"
    if r.get("note"):
        label += f"\n{r['note']}"
    return label


def group_e2e(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """config label -> system name -> runs (in file order)."""
    out: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for r in records:
        if r.get("name") not in SYSTEM_ORDER or r.get("profiled"):
            continue
        out.setdefault(_config_key(r), {}).setdefault(r["name"], []).append(r)
    return out


def _median(values: Sequence[Optional[float]]) -> Optional[float]:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def _bars(ax: Any, groups: list[str], series: dict[str, list[Optional[float]]], fmt: str = "{:,.0f}",
          rotation: int = 0) -> None:
    """Grouped bars: one group per label, one bar per series (system) present."""
    names = [n for n in SYSTEM_ORDER if n in series]
    width = 0.8 / max(1, len(names))
    for j, name in enumerate(names):
        xs = [i + (j - (len(names) - 1) / 2) * width for i in range(len(groups))]
        ys = [v if v is not None else 0.0 for v in series[name]]
        ax.bar(xs, ys, width, label=name, color=COLORS[name])
        for x, y, v in zip(xs, ys, series[name]):
            if v is not None:
                ax.text(x, y, fmt.format(v), ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(groups)), groups, fontsize=7, rotation=rotation, ha="right" if rotation else "center")
    ax.legend(fontsize=7)


def plot_e2e(records: Sequence[dict[str, Any]], out: Path) -> Optional[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = group_e2e(records)
    if not groups:
        return None
    labels = list(groups)
    names = [n for n in SYSTEM_ORDER if any(n in g for g in groups.values())]
    fig, axes = plt.subplots(1, 3, figsize=(16, 7))

    per_core = {n: [_median([r["events_per_s_per_core"] for r in groups[lb].get(n, [])]) for lb in labels]
                for n in names}
    # the run's note (the label's third line) names the design step; the catalog and event counts
    # are in the report's table
    notes = [(lb.split("\n")[2:] or ["default"])[0][:40] for lb in labels]
    _bars(axes[0], notes, per_core, rotation=60)
    axes[0].set_ylabel("events/s per core used by the service (median of runs)")
    axes[0].set_title("Throughput per core (job: client+JVM+workers; baseline: its process)", fontsize=9)

    # freshness of the newest design measured (the last group run, in file order)
    newest = [key for key in (_config_key(r) for r in records if r.get("name") in SYSTEM_ORDER) if key in groups]
    main = newest[-1] if newest else labels[-1]
    pct = ["p50", "p95", "p99"]
    for ax, key, title in ((axes[1], "freshness_ms", "at ~80% of each one's measured rate"),
                           (axes[2], "freshness_low_ms", "at a fixed 100 events/s")):
        series = {n: [_median([(r.get(key) or {}).get(p) for r in groups[main].get(n, [])]) for p in pct]
                  for n in names if groups[main].get(n)}
        _bars(ax, pct, series)
        ax.set_yscale("log")
        ax.axhline(1000, color="grey", ls="--", lw=0.8)
        ax.set_ylabel("produce -> recommendation readable in Cassandra (ms)")
        ax.set_title(f"Freshness {title}\n({main.replace(chr(10), ', ')})", fontsize=9)
    fig.suptitle("streamrec job vs naive baseline, same events, same Kafka + Cassandra "
                 "(2 shared cores: absolute numbers are noisy, compare within a group)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_topk(records: Sequence[dict[str, Any]], out: Path, floor: float = 0.95) -> Optional[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not records:
        return None
    datasets = sorted({r["dataset"] for r in records})
    fig, axes = plt.subplots(1, len(datasets), figsize=(6.5 * len(datasets), 4.8), squeeze=False)
    markers = {"numpy": "s", "faiss-flat": "D", "faiss-ivf": "o", "faiss-hnsw": "^"}
    sizes = sorted({r["catalog_size"] for r in records})
    cmap = plt.get_cmap("viridis")
    for ax, dataset in zip(axes[0], datasets):
        rs = [r for r in records if r["dataset"] == dataset]
        for size in sorted({r["catalog_size"] for r in rs}):
            color = cmap(sizes.index(size) / max(1, len(sizes) - 1))
            for method, marker in markers.items():
                pts = [r for r in rs if r["catalog_size"] == size and r["method"] == method]
                if not pts:
                    continue
                pts.sort(key=lambda r: r["recall"])
                ax.plot([p["recall"] for p in pts], [p["events_per_s_per_core"] for p in pts], marker=marker,
                        color=color, ls="-" if len(pts) > 1 else "", ms=5,
                        label=f"{method} {size:,}")
        ax.axvline(floor, color="grey", ls="--", lw=0.8)
        ax.set_yscale("log")
        ax.set_xlabel("recall@10 against exact")
        ax.set_ylabel("top-k queries (events) per second, 1 thread")
        ax.set_title(f"{dataset}: {DATASET_TITLES.get(dataset, dataset)}", fontsize=9)
        ax.legend(fontsize=6, ncol=2)
    fig.suptitle("Top-10 per core: numpy exact vs faiss flat / IVF (nprobe sweep) / HNSW (efSearch sweep)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_all(bench: Optional[Path] = None) -> list[Path]:
    bench = bench or results.bench_dir()
    written = []
    e2e = plot_e2e(results.read(bench / "results.jsonl"), bench / "e2e.png")
    if e2e:
        written.append(e2e)
    topk = plot_topk(results.read(bench / "topk.jsonl"), bench / "topk.png")
    if topk:
        written.append(topk)
    return written
