"""The sequential baselines of Ludewig & Jannach (2018) and Garg et al. (2019): SR, V-SKNN, STAN."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Optional, Sequence

import numpy as np
import scipy.sparse as sp

from streamrec.evaluate.models import (
    _excluded_rows,
    _keep_top_per_row,
    top_rows,
)
from streamrec.evaluate.protocol import (
    DAY_MS,
    Queries,
    sessions,
)
from streamrec.model.catalog import Catalog
from streamrec.model.events import Event
from streamrec.model.model import (
    ModelParams,
)


def _sequences(events: Iterable[Event], gap_ms: int, catalog: Catalog) -> tuple[list[np.ndarray], np.ndarray]:
    """Training sessions as catalog rows in event order, oldest session first, and each one's last time.

    Order matters to these baselines, so sessions keep the data's order of equal timestamps (a UCI
    invoice's lines as they went into the cart); products the catalog lacks are left out.
    """
    index = catalog.index
    seqs: list[tuple[int, np.ndarray]] = []
    for s in sessions(events, gap_ms):
        rows = [index[e.product_id] for e in s if e.product_id in index]
        if rows:
            seqs.append((max(e.ts for e in s), np.array(rows, dtype=np.int64)))
    order = sorted(range(len(seqs)), key=lambda i: seqs[i][0])  # stable: "most recent" = last column
    return [seqs[i][1] for i in order], np.array([seqs[i][0] for i in order], dtype=np.int64)


def _context(queries: Queries, i: int, window: int, gap_ms: int) -> np.ndarray:
    """The rows of the user's current context in event order, repeats kept: the last session
    (window=0), or the last ``window`` events."""
    pairs = np.array(queries.recent[i], dtype=np.int64).reshape(-1, 2)
    rows, ts = pairs[:, 0], pairs[:, 1]
    if window > 0:
        return rows[-window:]
    cut = len(ts) - 1
    while cut > 0 and ts[cut] - ts[cut - 1] <= gap_ms:
        cut -= 1
    return rows[cut:]


def _positions(ctx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of a context and the 1-based position of each one's last occurrence in it."""
    last: dict[int, int] = {}
    for p, r in enumerate(ctx.tolist(), start=1):
        last[r] = p
    return np.fromiter(last.keys(), np.int64, len(last)), np.fromiter(last.values(), np.float64, len(last))


def _rank_first_positive(scores: np.ndarray, popularity: np.ndarray) -> np.ndarray:
    """Scores whose order is: every product the model scored, best first, then the rest by popularity.

    Scores are divided by each row's maximum first: STAN's time decay makes scores far below any
    fixed tie-breaking epsilon, and a product the neighbours support must still outrank one they do not.
    """
    top = scores.max(axis=1, keepdims=True)
    norm = np.divide(scores, top, out=np.zeros_like(scores), where=top > 0)
    return np.where(norm > 0, 1.0 + norm, 0.0) + 1e-12 * popularity / max(1.0, float(popularity.max()))


RULE_WEIGHTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    # how much a rule a -> b counts when b comes ``gap`` events after a (session-rec's names)
    "div": lambda gap: 1.0 / gap,
    "linear": lambda gap: np.maximum(1.0 - 0.1 * gap, 0.0),
    "quadratic": lambda gap: 1.0 / gap**2,
    "same": lambda gap: np.ones_like(gap, dtype=np.float64),
}


@dataclass(frozen=True)
class SrSettings:
    gap_ms: int = 0  # sessions: events no more than this apart (0: one basket per timestamp)
    steps: int = 10  # a rule a -> b when b follows a at most this many events later in a session
    pruning: int = 20  # rules kept per antecedent, the strongest (0: all)
    weighting: str = "div"  # the weight of a rule by the gap between a and b (RULE_WEIGHTS)


class SequentialRulesModel:
    """SR (Ludewig & Jannach 2018): rule(a -> b) = sum over training sessions where b follows a
    within ``steps`` events of weight(gap); the user's last product's rules rank the products."""

    name = "sr"

    def __init__(
        self, catalog: Catalog, params: ModelParams, train: Sequence[Event], popularity: np.ndarray,
        settings: SrSettings = SrSettings(),
    ) -> None:
        self.catalog, self.params, self.settings, self.popularity = catalog, params, settings, popularity
        seqs, _ = _sequences(train, settings.gap_ms, catalog)
        n = len(catalog)
        rows = np.concatenate(seqs) if seqs else np.empty(0, dtype=np.int64)
        sid = np.repeat(np.arange(len(seqs)), [len(s) for s in seqs])
        weight = RULE_WEIGHTS[settings.weighting]
        src, dst, w = [], [], []
        for gap in range(1, settings.steps + 1):
            same = sid[:-gap] == sid[gap:]
            src.append(rows[:-gap][same])
            dst.append(rows[gap:][same])
            w.append(np.broadcast_to(weight(np.array(float(gap))), (int(same.sum()),)))
        rules = sp.csr_matrix((np.concatenate(w), (np.concatenate(src), np.concatenate(dst))), shape=(n, n))
        rules.sum_duplicates()
        self.rules = _keep_top_per_row(rules, settings.pruning)

    def scores(self, queries: Queries) -> np.ndarray:
        last = np.array([r[-1][0] for r in queries.recent], dtype=np.int64)
        return np.asarray(self.rules[last].toarray())

    def recommend(self, queries: Queries, k: int) -> np.ndarray:
        scores = _rank_first_positive(self.scores(queries), self.popularity)
        return top_rows(scores, _excluded_rows(self.catalog, queries, self.params), self.catalog.in_stock, k)


class _SessionIndex:
    """Training sessions for the neighbourhood models, oldest first: item sets, each item's last
    position (1-based) in its session, and each session's last time."""

    def __init__(self, train: Sequence[Event], gap_ms: int, catalog: Catalog) -> None:
        seqs, self.last_ts = _sequences(train, gap_ms, catalog)
        rows, cols, pos = [], [], []
        for i, s in enumerate(seqs):
            distinct, last = _positions(s)
            rows.append(np.full(len(distinct), i))
            cols.append(distinct)
            pos.append(last)
        shape = (len(seqs), len(catalog))
        r = np.concatenate(rows) if rows else np.empty(0, dtype=np.int64)
        c = np.concatenate(cols) if cols else np.empty(0, dtype=np.int64)
        self.positions = sp.csr_matrix((np.concatenate(pos) if pos else np.empty(0), (r, c)), shape=shape)
        self.items = self.positions.copy()
        self.items.data[:] = 1.0
        self.size = np.asarray(self.items.sum(axis=1)).ravel()  # distinct items per session


def _neighbours(
    sims: sp.csr_matrix, sample: int, k: int,
    reweigh: Optional[Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]] = None,
) -> sp.coo_matrix:
    """Per row: of the candidate sessions (nonzero columns), the ``sample`` most recent (highest
    column: sessions are in time order), of those the ``k`` most similar (equal: the more recent).

    ``reweigh(rows, cols, sims)`` changes the similarities of the sampled candidates before the
    choice (STAN's time decay: computed for the sample only, not for every candidate)."""
    sims = sims.tocsr()
    sims.eliminate_zeros()
    sims.sort_indices()
    b = sims.shape[0]
    counts = np.diff(sims.indptr)
    row = np.repeat(np.arange(b), counts)
    idx = np.arange(len(sims.data))
    if sample > 0:
        idx = idx[(sims.indptr[row + 1] - 1 - idx) < sample]
    # newest first, so that the stable sort puts the more recent of equal similarities first
    idx = idx[::-1]
    row, cols, data = row[idx], sims.indices[idx], sims.data[idx]
    if reweigh is not None:
        data = reweigh(row, cols, data)
    order = np.lexsort((-data, row))
    r = row[order]
    rank = np.arange(len(order)) - np.searchsorted(r, r, side="left")
    keep = order[rank < k] if k > 0 else order
    return sp.coo_matrix((data[keep], (row[keep], cols[keep])), shape=sims.shape)


def _row_max_of_shared(sessions_m: sp.csr_matrix, context: sp.csr_matrix, pairs: sp.coo_matrix) -> np.ndarray:
    """For each (case, session) pair: the largest value of ``sessions_m`` (session row) times
    ``context`` (case row) over the items both hold."""
    shared = sessions_m[pairs.col].multiply(context[pairs.row]).tocsr()
    return np.asarray(shared.max(axis=1).toarray()).ravel() if pairs.nnz else np.empty(0)


POSITION_WEIGHTS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    # V-SKNN: the weight of the context's item at position p (1-based) of l (session-rec's names)
    "div": lambda p, length: p / length,
    "linear": lambda p, length: np.maximum(1.0 - 0.1 * (length - p), 0.0),
    "same": lambda p, length: np.ones_like(p),
    "quadratic": lambda p, length: (p / length) ** 2,
}
STEP_WEIGHTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    # V-SKNN: a neighbour's votes by how far back (1 = the last event) its latest shared item is
    "div": lambda step: 1.0 / step,
    "linear": lambda step: np.maximum(1.0 - 0.1 * step, 0.0),
    "same": lambda step: np.ones_like(step),
    "quadratic": lambda step: 1.0 / step**2,
}


@dataclass(frozen=True)
class VsknnSettings:
    gap_ms: int = 0  # sessions: events no more than this apart (0: one basket per timestamp)
    window: int = 0  # the user's context: 0 = the current session, N = the last N events
    neighbors: int = 100  # k
    sample: int = 1000  # candidates: the most recent training sessions sharing a product with the context
    weighting: str = "div"  # the context item's weight by position (POSITION_WEIGHTS)
    weighting_score: str = "div"  # a neighbour's vote by its most recent shared item (STEP_WEIGHTS)


class VsknnModel:
    """V-SKNN (Ludewig & Jannach 2018): similarity = the position-weighted context vector (the last
    event weighs 1) dotted with a training session's item set, over the context's distinct items;
    the k most similar of the ``sample`` most recent sessions sharing an item vote for their items
    with similarity x the step weight of the most recent context item they hold."""

    name = "v-sknn"

    def __init__(
        self, catalog: Catalog, params: ModelParams, train: Sequence[Event], popularity: np.ndarray,
        settings: VsknnSettings = VsknnSettings(),
    ) -> None:
        self.catalog, self.params, self.settings, self.popularity = catalog, params, settings, popularity
        self.index = _SessionIndex(train, settings.gap_ms, catalog)
        self.items_t = self.index.items.T.tocsr()

    def scores(self, queries: Queries) -> np.ndarray:
        s = self.settings
        n = len(self.catalog)
        rows, cols, weight, step_w = [], [], [], []
        for i in range(len(queries)):
            ctx = _context(queries, i, s.window, s.gap_ms)
            distinct, last = _positions(ctx)
            rows.append(np.full(len(distinct), i))
            cols.append(distinct)
            # div: last position / length, over the distinct items (session-rec's vec similarity)
            weight.append(POSITION_WEIGHTS[s.weighting](last, len(ctx)) / len(distinct))
            step_w.append(STEP_WEIGHTS[s.weighting_score](len(ctx) + 1 - last))
        r, c = np.concatenate(rows), np.concatenate(cols)
        w = sp.csr_matrix((np.concatenate(weight), (r, c)), shape=(len(queries), n))
        steps = sp.csr_matrix((np.concatenate(step_w), (r, c)), shape=(len(queries), n))
        sims = (w @ self.items_t).tocsr()  # (b, sessions)
        pairs = _neighbours(sims, s.sample, s.neighbors)
        decay = _row_max_of_shared(self.index.items, steps, pairs)
        votes = sp.csr_matrix((pairs.data * decay, (pairs.row, pairs.col)), shape=pairs.shape)
        return np.asarray((votes @ self.index.items).toarray())

    def recommend(self, queries: Queries, k: int) -> np.ndarray:
        scores = _rank_first_positive(self.scores(queries), self.popularity)
        return top_rows(scores, _excluded_rows(self.catalog, queries, self.params), self.catalog.in_stock, k)


@dataclass(frozen=True)
class StanSettings:
    gap_ms: int = 0  # sessions: events no more than this apart (0: one basket per timestamp)
    window: int = 0  # the user's context: 0 = the current session, N = the last N events
    neighbors: int = 100  # k
    sample: int = 5000  # candidates: the most recent training sessions sharing a product with the context
    lambda_spw: float = 1.02  # lambda1: a context item at p of l weighs exp((p - l) / lambda1)
    lambda_snh: float = 5.0  # lambda2, days: a neighbour ending dt before the context weighs exp(-dt / lambda2)
    lambda_inh: float = 2.05  # lambda3: a neighbour's item d positions from its latest shared one, exp(-d / lambda3)


class StanModel:
    """STAN (Garg et al. 2019): session-KNN with three decays: the context's items by recency
    (lambda1) in a cosine similarity, neighbours by how long before the context they ended
    (lambda2), and a neighbour's items by their distance in it from the latest item it shares
    with the context (lambda3)."""

    name = "stan"

    def __init__(
        self, catalog: Catalog, params: ModelParams, train: Sequence[Event], popularity: np.ndarray,
        settings: StanSettings = StanSettings(),
    ) -> None:
        self.catalog, self.params, self.settings, self.popularity = catalog, params, settings, popularity
        self.index = _SessionIndex(train, settings.gap_ms, catalog)
        inv = 1.0 / np.sqrt(np.maximum(self.index.size, 1.0))
        self.items_norm_t = (sp.diags(inv) @ self.index.items).T.tocsr()  # cosine's |n| side

    def scores(self, queries: Queries) -> np.ndarray:
        s = self.settings
        n = len(self.catalog)
        rows, cols, weight = [], [], []
        now = np.empty(len(queries))
        for i in range(len(queries)):
            ctx = _context(queries, i, s.window, s.gap_ms)
            distinct, last = _positions(ctx)
            w = np.exp((last - len(ctx)) / s.lambda_spw)
            rows.append(np.full(len(distinct), i))
            cols.append(distinct)
            weight.append(w / np.sqrt((w * w).sum()))
            now[i] = queries.recent[i][-1][1]  # what the model knows: the time of the user's last event
        r, c = np.concatenate(rows), np.concatenate(cols)
        w_ctx = sp.csr_matrix((np.concatenate(weight), (r, c)), shape=(len(queries), n))
        sims = (w_ctx @ self.items_norm_t).tocsr()  # cosine

        def time_decay(rows: np.ndarray, cols: np.ndarray, cosine: np.ndarray) -> np.ndarray:
            age_days = (now[rows] - self.index.last_ts[cols]) / DAY_MS
            return cosine * np.exp(-age_days / s.lambda_snh)

        pairs = _neighbours(sims, s.sample, s.neighbors, time_decay)
        ctx_items = sp.csr_matrix((np.ones(len(r)), (r, c)), shape=(len(queries), n))
        latest = _row_max_of_shared(self.index.positions, ctx_items, pairs)
        items = self.index.positions[pairs.col].tocsr()  # (pairs, n): each item's position in the neighbour
        owner = np.repeat(np.arange(pairs.nnz), np.diff(items.indptr))
        items.data = pairs.data[owner] * np.exp(-np.abs(items.data - latest[owner]) / s.lambda_inh)
        by_case = sp.csr_matrix((np.ones(pairs.nnz), (pairs.row, np.arange(pairs.nnz))),
                                shape=(len(queries), pairs.nnz))
        return np.asarray((by_case @ items).toarray())

    def recommend(self, queries: Queries, k: int) -> np.ndarray:
        scores = _rank_first_positive(self.scores(queries), self.popularity)
        return top_rows(scores, _excluded_rows(self.catalog, queries, self.params), self.catalog.in_stock, k)
