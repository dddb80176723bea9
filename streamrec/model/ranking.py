"""Top-k search over the catalog: exact in numpy for small catalogs, faiss IVF for large ones.

Exact search costs O(catalog) per user, one at a time: ~65 us at 10k products, ~0.9 ms at 100k,
~12 ms at 1M (docs/benchmark-history.md, session 9). Above ``ann_min_products`` the job builds an IVF index
instead and calibrates its ``nprobe`` on the catalog's own vectors at build time: the smallest
nprobe whose recall@k against the exact answer reaches ``recall_floor`` on queries shaped like
users (a product's vector plus noise). Filters stay exact: the index is asked for more candidates
than the user excludes, the filters are applied to them, and a user left with fewer than k falls
back to the exact search. faiss is imported only when an index is built.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from streamrec.model.catalog import Catalog

log = logging.getLogger(__name__)

NPROBES = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def exact_top_k(user_vectors: np.ndarray, catalog: Catalog, k: int, exclude: Sequence[Sequence[int]] = (),
                eligible: Optional[np.ndarray] = None, boost: Any = None) -> tuple[np.ndarray, np.ndarray]:
    from streamrec.model.topk import top_k_batch

    return top_k_batch(user_vectors, catalog, k, exclude, eligible, boost)


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    hits = sum(len(set(f[f >= 0]) & set(t[t >= 0])) for f, t in zip(found, truth))
    total = sum(int((t >= 0).sum()) for t in truth)
    return hits / total if total else 1.0


def user_like_queries(catalog: Catalog, n: int, seed: int = 0) -> np.ndarray:
    """Unit vectors near real products (a product's vector plus noise half its length): what user
    vectors look like, since a user is a decayed sum of a few products' vectors."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(catalog), size=min(n, len(catalog)), replace=False)
    q = catalog.vectors[rows] + 0.5 * rng.normal(size=(len(rows), catalog.dim)).astype(np.float32) / math.sqrt(
        catalog.dim)
    q /= np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    return q.astype(np.float32)


@dataclass
class AnnIndex:
    index: Any  # faiss.IndexIVFFlat over the catalog's vectors (inner product = cosine)
    nprobe: int
    recall: float  # measured at build time, recall@k of user-like queries

    @classmethod
    def build(cls, catalog: Catalog, k: int = 10, recall_floor: float = 0.95, seed: int = 0,
              queries: int = 256) -> AnnIndex:
        import faiss

        n, d = catalog.vectors.shape
        nlist = max(1, min(int(4 * math.sqrt(n)), n // 39))  # faiss wants >= 39 training points per list
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        index.train(catalog.vectors)
        index.add(catalog.vectors)
        q = user_like_queries(catalog, queries, seed)
        truth, _ = exact_top_k(q, catalog, k, eligible=np.ones(n, dtype=bool))
        recall = 0.0
        for nprobe in NPROBES:
            index.nprobe = min(nprobe, nlist)
            _, found = index.search(q, k)
            recall = recall_at_k(found, truth)
            if recall >= recall_floor or nprobe >= nlist:
                break
        log.info("IVF index over %d products: nlist %d, nprobe %d, recall@%d %.3f (floor %.2f)", n, nlist,
                 index.nprobe, k, recall, recall_floor)
        return cls(index, int(index.nprobe), recall)


class Ranker:
    """Top-k for users: exact below ``ann_min_products`` (or without faiss), IVF above."""

    def __init__(self, catalog: Catalog, ann_min_products: int = 50_000, recall_floor: float = 0.95,
                 k: int = 10) -> None:
        self.catalog = catalog
        self.ann: Optional[AnnIndex] = None
        if 0 < ann_min_products <= len(catalog):
            try:
                self.ann = AnnIndex.build(catalog, k, recall_floor)
            except ImportError:
                log.warning("faiss is not installed: exact top-k over %d products (slow)", len(catalog))

    def top_k(self, user_vectors: np.ndarray, k: int, exclude: Sequence[Sequence[int]],
              eligible: np.ndarray, boost: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Like :func:`streamrec.model.topk.top_k_batch`: (rows, scores), -1/NaN where fewer.
        ``boost`` (the transition term, (b, n) sparse): with the index, the candidates are the
        index's plus the products the boost names, each scored exactly (cosine + boost)."""
        if self.ann is None:
            return exact_top_k(user_vectors, self.catalog, k, exclude, eligible, boost)
        b = user_vectors.shape[0]
        u = np.asarray(user_vectors, dtype=np.float32)
        norms = np.linalg.norm(u, axis=1, keepdims=True)
        u = np.divide(u, norms, out=np.zeros_like(u), where=norms > 0)
        widest = max((len(e) for e in exclude), default=0)
        # ask for room for the excluded and ineligible ones; a user who still ends short goes exact
        fetch = min(len(self.catalog), 2 * (k + widest) + 16)
        scores, rows = self.ann.index.search(u, fetch)
        if boost is not None and boost.nnz:
            rows, scores = self._with_boost(u, rows, boost.tocsr())
        out_rows = np.full((b, k), -1, dtype=np.int64)
        out_scores = np.full((b, k), np.nan, dtype=np.float32)
        short = []
        for i in range(b):
            banned = set(exclude[i]) if i < len(exclude) else set()
            keep = [(r, s) for r, s in zip(rows[i], scores[i]) if r >= 0 and eligible[r] and r not in banned][:k]
            if norms[i, 0] == 0:
                continue
            if len(keep) < k:
                short.append(i)
                continue
            out_rows[i] = [r for r, _ in keep]
            out_scores[i] = [s for _, s in keep]
        if short:
            ex_rows, ex_scores = exact_top_k(u[short], self.catalog, k,
                                             [exclude[i] if i < len(exclude) else [] for i in short], eligible,
                                             None if boost is None else boost.tocsr()[short])
            out_rows[short], out_scores[short] = ex_rows, ex_scores
        return out_rows, out_scores

    def _with_boost(self, u: np.ndarray, rows: np.ndarray, boost: Any) -> tuple[np.ndarray, np.ndarray]:
        """The index's candidates of each user plus the products their boost names, rescored exactly
        (cosine + boost) and sorted best first (-1 / -inf padding at the end)."""
        vectors = self.catalog.vectors
        width = rows.shape[1] + int(np.diff(boost.indptr).max(initial=0))
        out_rows = np.full((len(rows), width), -1, dtype=np.int64)
        out_scores = np.full((len(rows), width), -np.inf, dtype=np.float32)
        for i in range(len(rows)):
            extra = boost.indices[boost.indptr[i]:boost.indptr[i + 1]]
            cand = np.unique(np.concatenate((rows[i][rows[i] >= 0], extra)))  # sorted, holds every extra
            s = vectors[cand] @ u[i]
            added = boost.data[boost.indptr[i]:boost.indptr[i + 1]].astype(np.float32)
            np.add.at(s, np.searchsorted(cand, extra), added)
            order = np.lexsort((cand, -s))
            out_rows[i, :len(cand)] = cand[order]
            out_scores[i, :len(cand)] = s[order]
        return out_rows, out_scores
