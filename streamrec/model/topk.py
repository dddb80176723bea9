"""Exact top-k over the catalog: the cosine of each user's direction with every product, filters
and the transition boost applied, the best k in a fixed order (equal scores by position, so a
product's rank never depends on how the search was batched). The model (:mod:`streamrec.model.model`),
the fast path, ``similar`` and the evaluation all rank through these functions.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np

from streamrec.model.catalog import Catalog

if TYPE_CHECKING:
    import scipy.sparse as sp


def select_top(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` highest of ``scores`` (1-d), best first; equal scores in position
    order, so that a product's rank never depends on how the search was batched.

    Exact: the k-th largest maximum of blocks of consecutive positions is a lower bound of the k-th
    largest score (k blocks each hold a score at least that high), so only the scores at or above
    it, a few more than k on real catalogs, are sorted. At 10k products and k = 30 that took ~17 us
    against ~107 us for ``np.argpartition`` (docs/benchmark-history.md, session 9). -inf (filtered out) and NaN
    sort last; callers mark them missing.
    """
    n = len(scores)
    k = min(k, n)
    block = n // (4 * k) if k > 0 else 0
    if block >= 8:
        blocks = n // block
        maxima = scores[: blocks * block].reshape(blocks, block).max(axis=1)
        threshold = np.partition(maxima, blocks - k)[blocks - k]
        candidates = np.flatnonzero(scores >= threshold)
    if block < 8 or len(candidates) < k:  # a small catalog (or NaN scores, which compare false): sort it all
        candidates = np.arange(n)
    order = np.argsort(-scores[candidates], kind="stable")[:k]
    return candidates[order]


def select_top_rows(scores: np.ndarray, k: int) -> np.ndarray:
    """:func:`select_top` of each row of ``scores`` (b, n): (b, min(k, n)) positions, the same ones
    in the same order. The bound, the candidates and their sort are done for all rows at once (a
    loop of :func:`select_top` over the rows cost ~30 us per row at 10k products, twice the matrix
    product that made the scores); rows left with fewer than k candidates go through select_top."""
    b, n = scores.shape
    k = min(k, n)
    rows = np.empty((b, k), dtype=np.int64)
    block = n // (4 * k) if k > 0 else 0
    if b == 0 or k == 0:
        return rows
    if block < 8:
        for i, row in enumerate(scores):
            rows[i] = select_top(row, k)
        return rows
    blocks = n // block
    # the last block also takes the tail: still k blocks that each hold a score >= the bound
    maxima = np.maximum.reduceat(scores, np.arange(0, blocks * block, block), axis=1)
    threshold = np.partition(maxima, blocks - k, axis=1)[:, blocks - k]
    flat = np.flatnonzero(scores >= threshold[:, None])  # NaN scores (or a NaN bound) compare false
    r, c = np.divmod(flat, n)  # by row, then position
    counts = np.bincount(r, minlength=b)
    short = counts < k
    # best first with equal scores in position order (stable, and flat is in position order), then
    # by row (stable again): two sorts of a few dozen candidates per row, exact for any float
    by_score = np.argsort(-scores.ravel()[flat], kind="stable")
    order = by_score[np.argsort(r[by_score], kind="stable")]
    starts = np.zeros(b, dtype=np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    ok = np.flatnonzero(~short)
    rows[ok] = c[order][starts[ok, None] + np.arange(k)]
    for i in np.flatnonzero(short):
        rows[i] = select_top(scores[i], k)
    return rows


def top_k_batch(
    user_vectors: np.ndarray,
    catalog: Catalog,
    k: int,
    exclude: Sequence[Sequence[int]] = (),
    eligible: Optional[np.ndarray] = None,
    boost: Optional[sp.spmatrix] = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k products for a batch of users with one matrix product.

    ``user_vectors`` is (b, d); rows need not be normalised (zero rows get no results).
    ``exclude[i]`` lists catalog rows user i must not be shown. Only ``eligible`` products are
    returned (default: those in stock). Returns (rows, scores), both (b, k'): k' = min(k, catalog size); rows are -1 and
    scores NaN where fewer than k' products are eligible. Scores are cosine similarities.
    """
    b = user_vectors.shape[0]
    n = len(catalog)
    kk = min(k, n)
    if b == 0 or kk == 0:
        return np.empty((b, kk), dtype=np.int64), np.empty((b, kk), dtype=np.float32)
    if b == 1 and boost is None:
        return _top_k_one(np.asarray(user_vectors[0], dtype=np.float32), catalog, kk,
                          exclude[0] if len(exclude) else (), eligible)
    sizes = [len(x) for x in exclude]
    x_rows = np.fromiter(itertools.chain.from_iterable(exclude), dtype=np.int64, count=sum(sizes))
    return top_k_flat(user_vectors, catalog, kk, np.repeat(np.arange(len(sizes)), sizes), x_rows, eligible, boost)


def top_k_flat(user_vectors: np.ndarray, catalog: Catalog, k: int, x_user: np.ndarray, x_rows: np.ndarray,
               eligible: Optional[np.ndarray] = None, boost: Optional[sp.spmatrix] = None,
               ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`top_k_batch` with the exclusions as two flat arrays: user ``x_user[j]`` must not be
    shown catalog row ``x_rows[j]`` (one scatter for the whole batch, not one per user).
    ``boost``: (b, n) sparse scores added to the cosines (the transition term, already weighted)."""
    b = user_vectors.shape[0]
    kk = min(k, len(catalog))
    if b == 0 or kk == 0:
        return np.empty((b, kk), dtype=np.int64), np.empty((b, kk), dtype=np.float32)
    u = np.asarray(user_vectors, dtype=np.float32)
    norms = np.linalg.norm(u, axis=1, keepdims=True)
    u = np.divide(u, norms, out=np.zeros_like(u), where=norms > 0)
    scores = u @ catalog.vectors.T  # (b, n)
    if boost is not None and boost.nnz:
        # one scatter into the flat scores: a third of the 2-d (row, col) form's cost, and like it
        # sums a coordinate named twice (the boost needs no sum_duplicates, which sorts)
        csr = boost.tocsr()
        at = np.repeat(np.arange(b, dtype=np.int64) * scores.shape[1], np.diff(csr.indptr)) + csr.indices
        np.add.at(scores.reshape(-1), at, csr.data.astype(np.float32))
    scores[:, ~(catalog.in_stock if eligible is None else eligible)] = -np.inf
    if len(x_rows):
        scores[x_user, x_rows] = -np.inf
    scores[(norms[:, 0] == 0)] = -np.inf
    rows = select_top_rows(scores, kk)
    top = np.take_along_axis(scores, rows, axis=1).astype(np.float32)
    missing = ~np.isfinite(top)
    rows[missing] = -1
    top[missing] = np.nan
    return rows, top


def _top_k_one(v: np.ndarray, catalog: Catalog, kk: int, excluded: Sequence[int],
               eligible: Optional[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """:func:`top_k_batch` for one user, the job's case (one event at a time): the same steps on 1-d
    arrays, so the same products in the same order (ties included), at about half the cost of the
    2-d bookkeeping (take_along_axis, boolean masks built per call)."""
    norm = float(np.sqrt(np.dot(v, v)))
    if norm == 0.0:
        return np.full((1, kk), -1, dtype=np.int64), np.full((1, kk), np.nan, dtype=np.float32)
    scores = catalog.vectors @ (v / np.float32(norm))
    np.putmask(scores, ~(catalog.in_stock if eligible is None else eligible), np.float32(-np.inf))
    if len(excluded):
        scores[np.asarray(excluded, dtype=np.int64)] = -np.inf
    rows = select_top(scores, kk)
    top = scores[rows]
    missing = ~np.isfinite(top)
    rows[missing] = -1
    top[missing] = np.nan
    return rows[None, :], top[None, :]
