"""The recommenders compared: streamrec itself (the job's recommend_batch), POP, Item-KNN and
session-KNN, with the top-k and filters they all share."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np
import scipy.sparse as sp

from streamrec.evaluate.protocol import (
    Queries,
    sessions,
)
from streamrec.model.catalog import Catalog
from streamrec.model.events import Event
from streamrec.model.history import fold_vectors
from streamrec.model.model import (
    ModelParams,
    recommend_batch,
    transition_scores,
)
from streamrec.model.topk import select_top_rows


class Recommender(Protocol):
    name: str

    def recommend(self, queries: Queries, k: int) -> np.ndarray:
        """(b, k) catalog rows, best first; -1 where there is nothing to recommend."""
        ...


def _excluded_rows(catalog: Catalog, queries: Queries, params: ModelParams) -> list[list[int]]:
    if not params.exclude_purchased:
        return [[] for _ in range(len(queries))]
    return [catalog.indices(ids) for ids in queries.excluded]


def top_rows(scores: np.ndarray, excluded: Sequence[Sequence[int]], in_stock: np.ndarray, k: int) -> np.ndarray:
    """The baselines' ranking step: the k best scores per row, excluded and out-of-stock rows never.

    Rows whose score is -inf are not recommendable (-1 in the result).
    """
    scores = np.array(scores, dtype=np.float64, copy=True)
    b, n = scores.shape
    kk = min(k, n)
    scores[:, ~in_stock] = -np.inf
    for i, ex in enumerate(excluded):
        if len(ex):
            scores[i, np.asarray(ex, dtype=np.int64)] = -np.inf
    rows = select_top_rows(scores, kk)  # best score first, ties by row: the job's selection
    rows[~np.isfinite(np.take_along_axis(scores, rows, axis=1))] = -1
    if kk < k:
        rows = np.hstack([rows, np.full((b, k - kk), -1, dtype=rows.dtype)])
    return rows


class StreamrecModel:
    """streamrec itself: recommend_batch on the replayed user states (exactly what the job runs).

    ``refold``: fold the cases' histories again with these params (their decay) instead of taking
    the replay's vectors, each history cut to what the job keeps for them (``history_size``): one
    replay then scores many settings of the update rule (tuning)."""

    name = "streamrec"

    def __init__(self, catalog: Catalog, params: ModelParams, refold: bool = False) -> None:
        self.catalog = catalog
        self.params = params
        self.refold = refold

    def recommend(self, queries: Queries, k: int) -> np.ndarray:
        params = dataclasses.replace(self.params, top_k=k, candidates=0)
        histories = queries.histories
        vectors = queries.vectors
        if self.refold:
            keep = params.history_size
            moving = params.moving_types
            histories = [[h for h in hist if h[0] in moving][-keep:] for hist in histories]
            folded, moves = fold_vectors(histories, self.catalog, params)
            vectors = [v if m else None for v, m in zip(folded, moves)]
        recs = recommend_batch(vectors, [list(x) for x in queries.excluded], self.catalog, params,
                               boost=transition_scores(histories, self.catalog, params))
        rows = np.full((len(recs), k), -1, dtype=np.int64)
        for i, r in enumerate(recs):
            got = self.catalog.indices(r.product_ids)
            rows[i, : len(got)] = got
        return rows


def _popularity(train: Sequence[Event], catalog: Catalog, target_types: Sequence[str]) -> np.ndarray:
    wanted = set(target_types)
    pop = np.zeros(len(catalog))
    rows = [catalog.index.get(e.product_id) for e in train if e.type in wanted and e.product_id is not None]
    np.add.at(pop, np.array([r for r in rows if r is not None], dtype=np.int64), 1.0)
    return pop


class PopModel:
    """POP: the products with the most target events in training, the same for everyone."""

    name = "pop"

    def __init__(self, catalog: Catalog, params: ModelParams, popularity: np.ndarray) -> None:
        self.catalog, self.params, self.popularity = catalog, params, popularity

    def recommend(self, queries: Queries, k: int) -> np.ndarray:
        scores = np.tile(self.popularity, (len(queries), 1))
        return top_rows(scores, _excluded_rows(self.catalog, queries, self.params), self.catalog.in_stock, k)


def _context_matrix(groups: Sequence[Sequence[Event]], catalog: Catalog) -> sp.csr_matrix:
    """Binary (context x product) matrix: did the context (basket, session, user) hold the product."""
    rows: list[int] = []
    cols: list[int] = []
    for i, g in enumerate(groups):
        for r in {catalog.index[e.product_id] for e in g if e.product_id in catalog.index}:
            rows.append(i)
            cols.append(r)
    x = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(groups), len(catalog)))
    x.sum_duplicates()
    x.data[:] = 1.0
    return x


def _window(queries: Queries, i: int, window: int, gap_ms: int) -> np.ndarray:
    """The rows of the user's current context: the last session (window=0) or last ``window`` distinct."""
    pairs = np.array(queries.recent[i], dtype=np.int64).reshape(-1, 2)
    rows, ts = pairs[:, 0], pairs[:, 1]
    if window <= 0:
        cut = len(ts) - 1
        while cut > 0 and ts[cut] - ts[cut - 1] <= gap_ms:
            cut -= 1
        return np.unique(rows[cut:])
    distinct = list(dict.fromkeys(rows[::-1].tolist()))[:window]
    return np.array(distinct, dtype=np.int64)


@dataclass(frozen=True)
class KnnSettings:
    gap_ms: int = 0  # sessions: events no more than this apart (0: one basket per timestamp)
    window: int = 0  # the user's context: 0 = the last session, N = the last N distinct products
    neighbors: int = 100  # item-knn: neighbors kept per product; session-knn: neighbor sessions


class ItemKnnModel:
    """Item-KNN: score(j) = sum over the user's context items i of cosine(i, j), where
    cosine(i, j) = sessions with both / sqrt(sessions with i * sessions with j) in training."""

    name = "item-knn"

    def __init__(
        self, catalog: Catalog, params: ModelParams, train: Sequence[Event], popularity: np.ndarray,
        settings: KnnSettings = KnnSettings(),
    ) -> None:
        self.catalog, self.params, self.settings = catalog, params, settings
        x = _context_matrix(sessions(train, settings.gap_ms), catalog)
        co = (x.T @ x).tocsr().astype(np.float64)
        count = co.diagonal().copy()
        inv = np.divide(1.0, np.sqrt(count), out=np.zeros_like(count), where=count > 0)
        sim = (sp.diags(inv) @ co @ sp.diags(inv)).tolil()
        sim.setdiag(0.0)
        self.sim = _keep_top_per_row(sim.tocsr(), settings.neighbors)
        self.tiebreak = 1e-9 * popularity / max(1.0, float(popularity.max()))

    def recommend(self, queries: Queries, k: int) -> np.ndarray:
        q = _query_matrix(queries, len(self.catalog), self.settings)
        scores = np.asarray((q @ self.sim).todense()) + self.tiebreak
        return top_rows(scores, _excluded_rows(self.catalog, queries, self.params), self.catalog.in_stock, k)


def _keep_top_per_row(m: sp.csr_matrix, keep: int) -> sp.csr_matrix:
    """The ``keep`` largest entries of each row (all of them when ``keep`` <= 0)."""
    m = m.tocsr()
    if keep <= 0:
        return m
    m.eliminate_zeros()
    indptr, data = m.indptr, m.data
    mask = np.zeros(len(data), dtype=bool)
    for i in range(m.shape[0]):
        lo, hi = indptr[i], indptr[i + 1]
        if hi - lo <= keep:
            mask[lo:hi] = True
        else:
            best = np.argpartition(-data[lo:hi], keep - 1)[:keep]
            mask[lo + best] = True
    out = m.copy()
    out.data = np.where(mask, out.data, 0.0)
    out.eliminate_zeros()
    return out


class SessionKnnModel:
    """Session-KNN (Jannach & Ludewig 2017): the training sessions most similar (cosine of item sets)
    to the user's current context vote for their products, each with its similarity."""

    name = "session-knn"

    def __init__(
        self, catalog: Catalog, params: ModelParams, train: Sequence[Event], popularity: np.ndarray,
        settings: KnnSettings = KnnSettings(),
    ) -> None:
        self.catalog, self.params, self.settings = catalog, params, settings
        x = _context_matrix(sessions(train, settings.gap_ms), catalog)
        size = np.asarray(x.sum(axis=1)).ravel()
        inv = np.divide(1.0, np.sqrt(size), out=np.zeros_like(size), where=size > 0)
        self.sessions = x  # binary
        self.sessions_norm_t = (sp.diags(inv) @ x).T.tocsr()  # (n, sessions)
        self.tiebreak = 1e-9 * popularity / max(1.0, float(popularity.max()))

    def recommend(self, queries: Queries, k: int) -> np.ndarray:
        q = _query_matrix(queries, len(self.catalog), self.settings)
        size = np.asarray(q.sum(axis=1)).ravel()
        q = sp.diags(np.divide(1.0, np.sqrt(size), out=np.zeros_like(size), where=size > 0)) @ q
        sims = (q @ self.sessions_norm_t).tocsr()  # (b, sessions): cosine of the item sets
        sims.sort_indices()
        keep = _keep_top_per_row(sims, self.settings.neighbors)
        scores = np.asarray((keep @ self.sessions).todense()) + self.tiebreak
        return top_rows(scores, _excluded_rows(self.catalog, queries, self.params), self.catalog.in_stock, k)


def _query_matrix(queries: Queries, n: int, settings: KnnSettings) -> sp.csr_matrix:
    """Binary (case x product) matrix of each user's current context (see :func:`_window`)."""
    rows: list[int] = []
    cols: list[int] = []
    for i in range(len(queries)):
        ctx = _window(queries, i, settings.window, settings.gap_ms)
        rows.extend([i] * len(ctx))
        cols.extend(ctx.tolist())
    return sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(queries), n))
