"""The report as bar charts."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Union

import numpy as np


def plot(report: dict[str, Any], path: Union[str, Path], title: str = "") -> None:
    """Bar charts of HR@K and MRR@K per model: all next items, novel ones, first items of a visit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(report["models"])
    metrics = [f"hr@{k}" for k in report["k"]] + [f"mrr@{k}" for k in report["k"]]
    panels = [("all next items", report["models"]), ("novel next items", report.get("novel", {}).get("models", {})),
              ("first item of a new visit", report.get("new_visit", {}).get("models", {}))]
    panels = [p for p in panels if p[1]]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), sharey=True, squeeze=False)
    axes = axes[0]
    width = 0.8 / max(1, len(models))
    for ax, (label, table) in zip(axes, panels):
        for j, name in enumerate(models):
            vals = [table.get(name, {}).get(m, 0.0) for m in metrics]
            xs = np.arange(len(metrics)) + (j - (len(models) - 1) / 2) * width
            bars = ax.bar(xs, vals, width, label=name)
            ax.bar_label(bars, fmt="%.3f", fontsize=6, rotation=90, padding=2)
        ax.set_xticks(np.arange(len(metrics)), metrics)
        ax.set_title(label)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("score")
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
