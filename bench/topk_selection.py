"""The top-k selection before and after session 9, in one process (a diagnostic).

Before: ``np.argpartition`` of all scores, then a sort of the k chosen. Now: ``select_top`` (block
maxima bound a threshold; only the scores above it are sorted). Both on the same score matrix of
256 user-like queries against a synthetic catalog, one BLAS thread; medians of rounds.

    .venv/bin/python bench/topk_selection.py
"""
import statistics
import time

import numpy as np
from threadpoolctl import threadpool_limits

from streamrec.bench.generator import synthetic_catalog
from streamrec.model.model import select_top_rows, top_k_batch
from streamrec.model.ranking import user_like_queries


def argpartition_rows(scores: np.ndarray, k: int) -> np.ndarray:
    """The selection top_k_batch used up to session 8."""
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def main() -> None:
    threadpool_limits(1)
    k = 10
    for n in (10_000, 100_000, 1_000_000):
        catalog = synthetic_catalog(n, 64)
        queries = user_like_queries(catalog, 256, seed=1)
        scores = queries @ catalog.vectors.T
        timings: dict[str, list[float]] = {"argpartition": [], "select_top": [], "top_k_batch": []}
        for _ in range(5 if n < 1_000_000 else 3):
            t = time.perf_counter()
            old = argpartition_rows(scores, k)
            timings["argpartition"].append(time.perf_counter() - t)
            t = time.perf_counter()
            new = select_top_rows(scores, k)
            timings["select_top"].append(time.perf_counter() - t)
            t = time.perf_counter()
            top_k_batch(queries, catalog, k)
            timings["top_k_batch"].append(time.perf_counter() - t)
        same = float((old == new).mean())
        parts = ", ".join(f"{name} {statistics.median(v) / len(queries) * 1e6:7.1f} us/user"
                          for name, v in timings.items())
        print(f"{n:>9,} products: {parts}; same rows {same:.4f}")


if __name__ == "__main__":
    main()
