"""Offline evaluation: replay a time-split history through the job's own functions.

The protocol (docs/EVALUATION.md says why):

- **Split by time.** The test window is the last ``test_days`` calendar days (UTC) of the history;
  everything before it is training. The validation split moves the window back by ``test_days``:
  it evaluates on the ``test_days`` before the test window and trains on what came before that, so
  parameters are chosen without ever looking at the test window.
- **Learn from training only.** The catalog (embeddings), popularity and co-occurrences come from
  the training events; products first seen later keep their title vector (when the data has
  titles) or are unknown (the job would send their events to the dead-letter topic).
- **Replay with the job's functions.** Every event, training and test, goes through
  :func:`streamrec.model.model.update_user` in time order; streamrec's recommendations come from
  :func:`streamrec.model.model.recommend_batch` with the state the job would hold. There is no second
  implementation of the model here.
- **Cases: the next item, as the job sees events.** The job updates a user's recommendations after
  every event; the next event shows whether they were right. So every target event in the window
  (UCI: every purchase line; OTTO: every click, cart and order) of a user with at least one earlier
  product event is one case: each model recommends ``max(ks)`` products from what it knows just
  before that event, i.e. after all earlier events, the earlier lines of the same UCI invoice
  included (the reader keeps an invoice's lines in the order they went into the cart). A hit at K
  when the event's product is in the first K; reciprocal rank 1/r when it is at rank r <= K.
- **All and novel.** ``all`` counts every case; ``novel`` only targets the user had not interacted
  with before. With the exclude-purchased filter on (the deployment default) no model can hit a
  repeat purchase, so ``novel`` is the ranking quality and ``all`` what a shop would see.
- **Same filters for everyone.** Every model gets the same exclusions (the user's earlier
  purchases, when ``exclude_purchased``) and only in-stock products.
- **Coverage**: distinct products in the ``max(ks)`` lists of all cases over the catalog size.
- **New visits** are also reported apart: cases more than 30 minutes after the user's previous
  event (UCI: the first line of an invoice), where there is no cart in progress to go on from.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Protocol, Sequence, Union

import numpy as np
import scipy.sparse as sp

from streamrec.datasets import History
from streamrec.embeddings import EmbeddingSettings, build_catalog
from streamrec.model.catalog import Catalog
from streamrec.model.events import Event
from streamrec.model.history import fold_vectors
from streamrec.model.model import (
    HistoryEntry,
    ModelParams,
    UserState,
    apply_event,
    excluded_ids,
    recommend_batch,
    recommend_users,
    remember_shown,
    select_top_rows,
)

DAY_MS = 86_400_000
KS = (10, 20)
# Which events are "the next item" to predict, per data format.
TARGET_TYPES = {"uci": ("purchase",), "otto": ("click", "add_to_cart", "purchase"), "movielens": ("purchase",)}
DEFAULT_TEST_DAYS = {"uci": 30, "otto": 7, "movielens": 30}
# How the baselines cut sessions: a UCI invoice is one timestamp; OTTO clicks are seconds apart, and
# so are the ratings of one MovieLens sitting.
SESSION_GAP_MS = {"uci": 0, "otto": 30 * 60 * 1000, "movielens": 30 * 60 * 1000}
MODEL_NAMES = ("streamrec", "pop", "item-knn", "session-knn", "sr", "v-sknn", "stan")
# How much of each user's recent history the replay keeps for the baselines' context.
RECENT_MAX = 50
BATCH = 1024
# A case more than this after the user's previous event starts a new visit (reported apart).
VISIT_GAP_MS = 30 * 60 * 1000


# ---------------------------------------------------------------------------------------------
# splitting

@dataclass(frozen=True)
class Split:
    train: list[Event]
    test: list[Event]
    start_ms: int  # first millisecond of the evaluation window
    end_ms: int  # first millisecond after it


def time_split(events: Sequence[Event], test_days: float, validation: bool = False) -> Split:
    """Training = before the window, window = the last ``test_days`` days (or the ones before them).

    The window ends at the midnight (UTC) after the last event, so it covers whole days.
    """
    if not events:
        raise ValueError("no events to split")
    if test_days <= 0:
        raise ValueError("test_days must be positive")
    last = max(e.ts for e in events)
    end = (last // DAY_MS + 1) * DAY_MS
    width = round(test_days * DAY_MS)
    if validation:
        end -= width
    start = end - width
    train = [e for e in events if e.ts < start]
    test = [e for e in events if start <= e.ts < end]
    return Split(train, test, start, end)


def sessions(events: Iterable[Event], gap_ms: int) -> list[list[Event]]:
    """A user's events cut into sessions wherever two consecutive events are more than ``gap_ms`` apart.

    ``gap_ms = 0`` makes one session per (user, timestamp): a UCI invoice is one basket.
    """
    by_user: dict[str, list[Event]] = {}
    for e in events:
        by_user.setdefault(e.user_id, []).append(e)
    out: list[list[Event]] = []
    for user in sorted(by_user):
        # stable by time: equal timestamps keep the data's order (a UCI invoice's lines as they went
        # into the cart), which the sequence-aware baselines read
        evs = sorted(by_user[user], key=lambda e: e.ts)
        current = [evs[0]]
        for prev, e in zip(evs, evs[1:]):
            if e.ts - prev.ts > gap_ms:
                out.append(current)
                current = []
            current.append(e)
        out.append(current)
    return out


# ---------------------------------------------------------------------------------------------
# the replay

@dataclass
class Queries:
    """A batch of cases: what each model may know about the user just before a test event."""

    # streamrec's user vector, folded from the user's remembered events as the job folds them
    vectors: list[Optional[np.ndarray]] = field(default_factory=list)
    histories: list[list[HistoryEntry]] = field(default_factory=list)
    excluded: list[tuple[str, ...]] = field(default_factory=list)  # the job's exclusion list (ids)
    recent: list[tuple[tuple[int, int], ...]] = field(default_factory=list)  # (catalog row, ts), oldest first
    targets: list[np.ndarray] = field(default_factory=list)  # catalog rows of the targets (-1: unknown)
    novel: list[np.ndarray] = field(default_factory=list)  # per target: never touched by the user
    ts: list[int] = field(default_factory=list)  # when the target event happened

    def __len__(self) -> int:
        return len(self.targets)


def replay(
    events: Sequence[Event],
    catalog: Catalog,
    params: ModelParams,
    start_ms: int,
    target_types: Sequence[str],
    on_batch: Callable[[Queries], None],
    progress: Optional[Callable[[int], None]] = None,
    batch: int = BATCH,
) -> dict[str, UserState]:
    """Feed ``events`` (in order) through apply_event, as the job does (no idle-user TTL: a history
    has gaps no live shop has); before each test target event, collect a case.

    Events of products the catalog does not know are skipped, as the job's parser does (they go
    to the dead-letter topic there); as targets they still count (as misses for every model).
    Returns the final user states.
    """
    states: dict[str, UserState] = {}
    recent: dict[str, deque[tuple[int, int]]] = {}
    touched: dict[str, set[str]] = {}
    targets_set = set(target_types)
    index = catalog.index
    pending = Queries()
    for n, e in enumerate(events, start=1):
        state = states.get(e.user_id)
        if state is None:
            state = states[e.user_id] = UserState()
            recent[e.user_id] = deque(maxlen=RECENT_MAX)
            touched[e.user_id] = set()
        history = recent[e.user_id]
        pid = e.product_id
        if e.ts >= start_ms and history and pid is not None and e.type in targets_set:
            pending.histories.append(list(state.history))
            pending.excluded.append(tuple(excluded_ids(state, params)))
            pending.recent.append(tuple(history))
            pending.targets.append(np.array([index.get(pid, -1)], dtype=np.int64))
            pending.novel.append(np.array([pid not in touched[e.user_id]], dtype=bool))
            pending.ts.append(e.ts)
            if len(pending) >= batch:
                on_batch(_folded(pending, catalog, params))
                pending = Queries()
        if pid is not None and pid not in index:
            continue  # the job's parser rejects it: UNKNOWN_PRODUCT
        state = states[e.user_id] = apply_event(state, e, catalog, params)
        if pid is not None:
            history.append((index[pid], e.ts))
            touched[e.user_id].add(pid)
        if progress is not None and n % 4096 == 0:
            progress(n)
    if len(pending):
        on_batch(_folded(pending, catalog, params))
    if progress is not None:
        progress(len(events))
    return states


def _folded(queries: Queries, catalog: Catalog, params: ModelParams) -> Queries:
    """The cases' user vectors from their histories, with the job's fold (fold_vectors)."""
    vectors, moves = fold_vectors(queries.histories, catalog, params)
    queries.vectors = [v if m else None for v, m in zip(vectors, moves)]
    return queries


def replay_recommendations(
    events: Iterable[Event], catalog: Catalog, params: ModelParams
) -> list[tuple[Event, tuple[str, ...], tuple[float, ...], str]]:
    """What the job computes for a history: after each valid event, that user's recommendations.

    One row per event the job accepts (events of unknown products are dropped, as the parser does):
    (event, product_ids, scores, source), in input order. The job's test compares against this.
    """
    states: dict[str, UserState] = {}
    out = []
    for e in events:
        if e.product_id is not None and e.product_id not in catalog.index:
            continue
        state = states[e.user_id] = apply_event(states.get(e.user_id, UserState()), e, catalog, params)
        rec = recommend_users([state], catalog, params)[0]
        remember_shown(state, rec, params)
        out.append((e, rec.product_ids, rec.scores, rec.source))
    return out


# ---------------------------------------------------------------------------------------------
# the models

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
    """streamrec itself: recommend_batch on the replayed user states (exactly what the job runs)."""

    name = "streamrec"

    def __init__(self, catalog: Catalog, params: ModelParams) -> None:
        self.catalog = catalog
        self.params = params

    def recommend(self, queries: Queries, k: int) -> np.ndarray:
        params = dataclasses.replace(self.params, top_k=k, candidates=0)
        recs = recommend_batch(queries.vectors, [list(x) for x in queries.excluded], self.catalog, params)
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


# ---------------------------------------------------------------------------------------------
# the sequential baselines of Ludewig & Jannach (2018) and Garg et al. (2019)

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


# ---------------------------------------------------------------------------------------------
# metrics

@dataclass
class _Tally:
    ks: tuple[int, ...]
    cases: int = 0
    hits: dict[int, int] = field(default_factory=dict)
    rr: dict[int, float] = field(default_factory=dict)

    def add(self, ranks: np.ndarray) -> None:
        """ranks: 1-based rank of each target in the list, 0 when absent."""
        self.cases += len(ranks)
        for k in self.ks:
            hit = (ranks > 0) & (ranks <= k)
            self.hits[k] = self.hits.get(k, 0) + int(hit.sum())
            self.rr[k] = self.rr.get(k, 0.0) + float((1.0 / ranks[hit]).sum())

    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for k in self.ks:
            out[f"hr@{k}"] = self.hits.get(k, 0) / self.cases if self.cases else 0.0
        for k in self.ks:
            out[f"mrr@{k}"] = self.rr.get(k, 0.0) / self.cases if self.cases else 0.0
        return out


def ranks_of(rows: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """1-based position of each target in ``rows`` (0 when it is not there, or unknown: -1)."""
    out = np.zeros(len(targets), dtype=np.int64)
    for j, t in enumerate(targets):
        if t < 0:
            continue
        pos = np.flatnonzero(rows == t)
        if len(pos):
            out[j] = int(pos[0]) + 1
    return out


@dataclass
class Scoreboard:
    ks: tuple[int, ...]
    n_products: int
    all: dict[str, _Tally] = field(default_factory=dict)
    novel: dict[str, _Tally] = field(default_factory=dict)
    new_visit: dict[str, _Tally] = field(default_factory=dict)  # first target of a visit (UCI: of an invoice)
    shown: dict[str, np.ndarray] = field(default_factory=dict)

    def add(self, name: str, rows: np.ndarray, queries: Queries) -> None:
        a = self.all.setdefault(name, _Tally(self.ks))
        nv = self.novel.setdefault(name, _Tally(self.ks))
        visit = self.new_visit.setdefault(name, _Tally(self.ks))
        shown = self.shown.setdefault(name, np.zeros(self.n_products, dtype=bool))
        shown[rows[rows >= 0]] = True
        sizes = np.array([len(t) for t in queries.targets], dtype=np.int64)
        owner = np.repeat(np.arange(len(queries)), sizes)
        targets = np.concatenate(queries.targets) if len(queries) else np.empty(0, dtype=np.int64)
        novel = np.concatenate(queries.novel) if len(queries) else np.empty(0, dtype=bool)
        match = (rows[owner] == targets[:, None]) & (targets[:, None] >= 0)
        ranks = np.where(match.any(axis=1), match.argmax(axis=1) + 1, 0)
        a.add(ranks)
        nv.add(ranks[novel])
        first = np.array([ts - last[-1][1] > VISIT_GAP_MS for ts, last in zip(queries.ts, queries.recent)], dtype=bool)
        visit.add(ranks[np.repeat(first, sizes)])

    def models(self, novel: bool = False, new_visit: bool = False) -> dict[str, dict[str, float]]:
        tallies = self.new_visit if new_visit else self.novel if novel else self.all
        out = {}
        for name, t in tallies.items():
            m = t.metrics()
            shown = self.shown.get(name)
            m["coverage"] = float(shown.sum()) / self.n_products if shown is not None and self.n_products else 0.0
            out[name] = {key: round(v, 4) for key, v in m.items()}
        return out


# ---------------------------------------------------------------------------------------------
# the whole evaluation

@dataclass(frozen=True)
class EvalSettings:
    test_days: float = 30.0
    validation: bool = False
    ks: tuple[int, ...] = KS
    target_types: tuple[str, ...] = ("purchase",)
    models: tuple[str, ...] = MODEL_NAMES
    # chosen on the UCI validation split (docs/EVALUATION.md): the last product only, as in the
    # session-based literature; sessions = baskets (one timestamp) for UCI
    item_knn: KnnSettings = KnnSettings(gap_ms=0, window=1, neighbors=100)
    session_knn: KnnSettings = KnnSettings(gap_ms=0, window=1, neighbors=500)
    # chosen on the UCI validation split from the papers' defaults (docs/EVALUATION.md): every rule
    # kept, the gaps up to 20; V-SKNN on the last 3 events (the invoice in progress alone is too
    # little); STAN on the last 10, its neighbours' time decay 100 days instead of 5 (with 5, an
    # order from a month before counts e^-6 and recency drowns similarity)
    sr: SrSettings = SrSettings(gap_ms=0, steps=20, pruning=0)
    vsknn: VsknnSettings = VsknnSettings(gap_ms=0, window=3)
    stan: StanSettings = StanSettings(gap_ms=0, window=10, neighbors=500, lambda_spw=0.5, lambda_snh=100.0)

    def with_tuned(self, tuned: dict[str, Any]) -> EvalSettings:
        """The baselines' parameters that :func:`tune` chose (its JSON), for those it holds."""
        changes: dict[str, Any] = {}
        for model, field_name in BASELINE_FIELDS.items():
            if model in tuned:
                cls = type(getattr(self, field_name))
                changes[field_name] = cls(**tuned[model]["params"])
        return dataclasses.replace(self, **changes)

    def with_session_gap(self, gap_ms: int) -> EvalSettings:
        """Every baseline cutting sessions at ``gap_ms`` (the data format's gap)."""
        return dataclasses.replace(
            self, **{f: dataclasses.replace(getattr(self, f), gap_ms=gap_ms) for f in BASELINE_FIELDS.values()})


# the EvalSettings field of each baseline that has settings
BASELINE_FIELDS = {"item-knn": "item_knn", "session-knn": "session_knn", "sr": "sr", "v-sknn": "vsknn",
                   "stan": "stan"}
ModelFactory = Callable[[Catalog, Sequence[Event], np.ndarray], list["Recommender"]]


def build_models(names: Sequence[str], params: ModelParams, settings: EvalSettings) -> ModelFactory:
    """The models ``names`` for a catalog, training events and popularity."""

    def make(catalog: Catalog, train: Sequence[Event], popularity: np.ndarray) -> list[Recommender]:
        models: list[Recommender] = []
        for name in names:
            if name == "streamrec":
                models.append(StreamrecModel(catalog, params))
            elif name == "pop":
                models.append(PopModel(catalog, params, popularity))
            else:
                models.append(baseline(name, catalog, params, train, popularity,
                                       getattr(settings, BASELINE_FIELDS.get(name, ""), None)))
        return models

    return make


def baseline(name: str, catalog: Catalog, params: ModelParams, train: Sequence[Event], popularity: np.ndarray,
             settings: Any) -> Recommender:
    """One of the baselines with settings, by name."""
    classes: dict[str, Any] = {"item-knn": ItemKnnModel, "session-knn": SessionKnnModel, "sr": SequentialRulesModel,
                               "v-sknn": VsknnModel, "stan": StanModel}
    if name not in classes or settings is None:
        raise ValueError(f"unknown model {name!r}")
    model: Recommender = classes[name](catalog, params, train, popularity, settings)
    return model


def evaluate(
    history: History,
    params: ModelParams,
    settings: EvalSettings,
    embedding: Optional[EmbeddingSettings] = None,
    progress: bool = False,
    log: Callable[[str], None] = lambda _msg: None,
    models_factory: Optional[ModelFactory] = None,
) -> dict[str, Any]:
    """Split, learn from training, replay everything, score every model; the JSON report.

    ``models_factory`` replaces the models of ``settings.models`` (tuning scores many settings of a
    baseline in one replay)."""
    t0 = time.monotonic()
    embedding = embedding or EmbeddingSettings()

    def build(h: History) -> Catalog:
        return build_catalog(h, settings=embedding)

    split = time_split(history.events, settings.test_days, settings.validation)
    if not split.train:
        raise ValueError("the training window is empty: use fewer --test-days")
    train_history = dataclasses.replace(history, events=split.train)
    catalog = build(train_history)
    t_build = time.monotonic() - t0
    log(f"catalog: {len(catalog)} products x {catalog.dim} dims from {len(split.train)} training events "
        f"({t_build:.1f}s)")
    popularity = _popularity(split.train, catalog, settings.target_types)
    make = models_factory or build_models(settings.models, params, settings)
    models = make(catalog, split.train, popularity)
    kmax = max(settings.ks)
    board = Scoreboard(settings.ks, len(catalog))
    timings = {m.name: 0.0 for m in models}

    def on_batch(q: Queries) -> None:
        for m in models:
            t = time.monotonic()
            board.add(m.name, m.recommend(q, kmax), q)
            timings[m.name] += time.monotonic() - t

    events = [e for e in history.events if e.ts < split.end_ms]
    with _progress(progress, len(events), "replaying") as tick:
        replay(events, catalog, params, split.start_ms, settings.target_types, on_batch, tick)
    report: dict[str, Any] = {
        "k": list(settings.ks),
        "models": board.models(),
        "novel": {"models": board.models(novel=True)},
        "new_visit": {"models": board.models(new_visit=True)},
        "protocol": {
            "split": "validation" if settings.validation else "test",
            "train_until": _iso(split.start_ms),
            "window": [_iso(split.start_ms), _iso(split.end_ms)],
            "targets": list(settings.target_types),
            "cases": next(iter(board.all.values())).cases if board.all else 0,
            "novel_cases": next(iter(board.novel.values())).cases if board.novel else 0,
            "new_visit_cases": next(iter(board.new_visit.values())).cases if board.new_visit else 0,
            "exclude_purchased": params.exclude_purchased,
            "products": len(catalog),
            "dim": catalog.dim,
        },
        "params": {
            "half_life_events": params.half_life_events, "half_life_days": params.half_life_days,
            "event_weights": dict(params.event_weights),
            "embedding": {k: v for k, v in dataclasses.asdict(embedding).items()
                          if k in ("dim", "window", "title_weight", "popularity", "min_count")},
            **{f: dataclasses.asdict(getattr(settings, f)) for f in BASELINE_FIELDS.values()},
        },
        "seconds": {"catalog": round(t_build, 1), "total": round(time.monotonic() - t0, 1),
                    **{f"recommend:{k}": round(v, 1) for k, v in timings.items()}},
    }
    return report


def _iso(ms: int) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class _progress:
    """A rich progress bar on stderr (or nothing), as a context manager yielding an update callback."""

    def __init__(self, enabled: bool, total: int, what: str) -> None:
        self.enabled, self.total, self.what = enabled, total, what
        self._bar: Any = None

    def __enter__(self) -> Optional[Callable[[int], None]]:
        if not self.enabled:
            return None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TimeElapsedColumn(), console=Console(file=sys.stderr), transient=True)
        self._bar.__enter__()
        task = self._bar.add_task(self.what, total=self.total)
        last = [0.0]

        def tick(done: int) -> None:
            now = time.monotonic()
            if now - last[0] > 0.2 or done >= self.total:
                last[0] = now
                self._bar.update(task, completed=done)

        return tick

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)


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


# ---------------------------------------------------------------------------------------------
# tuning on the validation split

# Candidate values, searched one parameter at a time (coordinate ascent) from the defaults.
STREAMREC_GRID: dict[str, tuple[Any, ...]] = {
    "half_life_events": (0.25, 0.5, 1.0, 2.0, 5.0, 20.0),
    "dim": (64, 128, 256),
    "window": (1, 2, 3, 0),
    "title_weight": (0.0, 0.15, 0.3, 0.5),
    "popularity": (0.0, 0.25, 0.5, 0.75),
    "min_count": (1, 2, 3, 5),
    "half_life_days": (0.0, 1.0, 7.0),
}
KNN_GRID: dict[str, tuple[Any, ...]] = {"window": (0, 1, 2, 3, 5), "neighbors": (50, 100, 500)}
# The sequential baselines: around the papers' defaults (session-rec's), one parameter at a time.
SEQUENTIAL_GRIDS: dict[str, dict[str, tuple[Any, ...]]] = {
    "sr": {"steps": (10, 3, 5, 20), "pruning": (20, 10, 0), "weighting": ("div", "linear", "quadratic")},
    "v-sknn": {"neighbors": (100, 50, 500), "sample": (1000, 500, 5000), "window": (0, 3, 10),
               "weighting_score": ("div", "linear", "same")},
    "stan": {"neighbors": (100, 500, 1500), "lambda_spw": (1.02, 0.5, 4.0), "lambda_snh": (5.0, 1.0, 100.0),
             "lambda_inh": (2.05, 1.0, 8.0), "window": (0, 10)},
}
_MODEL_FIELDS = ("half_life_events", "half_life_days")


def _objective(metrics: dict[str, float]) -> tuple[float, float]:
    """What tuning maximises: MRR@20, then HR@20."""
    return (metrics.get("mrr@20", 0.0), metrics.get("hr@20", 0.0))


def tune(
    history: History,
    params: ModelParams,
    settings: EvalSettings,
    embedding: Optional[EmbeddingSettings] = None,
    rounds: int = 2,
    log: Callable[[str], None] = lambda _msg: None,
) -> dict[str, Any]:
    """Choose the parameters of the models in ``settings.models`` on the validation split (never the test).

    Maximising MRR@20 (then HR@20) of the validation window: streamrec and the sequential baselines
    by coordinate ascent over :data:`STREAMREC_GRID` / :data:`SEQUENTIAL_GRIDS` from their current
    values, the two KNN baselines over the whole :data:`KNN_GRID`. Returns the chosen values, their
    validation metrics and every trial.
    """
    embedding = embedding or EmbeddingSettings()
    trials: list[dict[str, Any]] = []
    out: dict[str, Any] = {}
    if "streamrec" in settings.models:
        out["streamrec"] = _tune_streamrec(history, params, settings, embedding, rounds, trials, log)
    baselines = [m for m in settings.models if m in BASELINE_FIELDS]
    if baselines:
        cases = _validation_cases(history, params, settings, embedding)
        for model in baselines:
            out[model] = _tune_baseline(cases, params, settings, model, rounds, trials, log)
    out["trials"] = trials
    return out


def _tune_streamrec(
    history: History, params: ModelParams, settings: EvalSettings, embedding: EmbeddingSettings, rounds: int,
    trials: list[dict[str, Any]], log: Callable[[str], None],
) -> dict[str, Any]:
    val = dataclasses.replace(settings, validation=True)
    cache: dict[str, dict[str, float]] = {}

    def score_streamrec(point: dict[str, Any]) -> dict[str, float]:
        key = repr(sorted(point.items()))
        if key not in cache:
            p = dataclasses.replace(params, **{k: v for k, v in point.items() if k in _MODEL_FIELDS})
            e = dataclasses.replace(embedding, categories=0,
                                    **{k: v for k, v in point.items() if k not in _MODEL_FIELDS})
            r = evaluate(history, p, dataclasses.replace(val, models=("streamrec",)), e)
            cache[key] = r["models"]["streamrec"]
            trials.append({"model": "streamrec", **point, **cache[key]})
            log(f"streamrec {point}: {cache[key]}")
        return cache[key]

    point: dict[str, Any] = {k: getattr(params, k) if k in _MODEL_FIELDS else getattr(embedding, k)
                             for k in STREAMREC_GRID}
    best = score_streamrec(point)
    for _ in range(rounds):
        improved = False
        for name, values in STREAMREC_GRID.items():
            for v in values:
                cand = {**point, name: v}
                m = score_streamrec(cand)
                if _objective(m) > _objective(best):
                    point, best, improved = cand, m, True
        if not improved:
            break
    return {"params": point, "validation": best}


@dataclass
class _Cases:
    """The validation split's cases, replayed once, and what the baselines learn from."""

    catalog: Catalog
    train: Sequence[Event]
    popularity: np.ndarray
    batches: list[Queries]
    ks: tuple[int, ...]


class _Recorder:
    """A stand-in model that keeps the batches of cases it is shown and recommends nothing."""

    name = "cases"

    def __init__(self) -> None:
        self.batches: list[Queries] = []

    def recommend(self, queries: Queries, k: int) -> np.ndarray:
        self.batches.append(queries)
        return np.full((len(queries), k), -1, dtype=np.int64)


def _validation_cases(
    history: History, params: ModelParams, settings: EvalSettings, embedding: EmbeddingSettings,
) -> _Cases:
    """Replay the validation split once: the baselines' settings change their lists, never the
    cases, and the replay is what costs."""
    got: dict[str, Any] = {}
    recorder = _Recorder()

    def make(catalog: Catalog, train: Sequence[Event], popularity: np.ndarray) -> list[Recommender]:
        got.update(catalog=catalog, train=train, popularity=popularity)
        return [recorder]

    # the baselines never read the product vectors: the smallest catalog will do
    evaluate(history, params, dataclasses.replace(settings, validation=True),
             dataclasses.replace(embedding, dim=8, categories=0), models_factory=make)
    return _Cases(got["catalog"], got["train"], got["popularity"], recorder.batches, settings.ks)


def _score_candidates(
    cases: _Cases, params: ModelParams, model: str, candidates: Sequence[Any],
) -> list[dict[str, float]]:
    """Validation metrics of each settings of one baseline."""
    board = Scoreboard(cases.ks, len(cases.catalog))
    kmax = max(cases.ks)
    for i, cand in enumerate(candidates):
        m = baseline(model, cases.catalog, params, cases.train, cases.popularity, cand)
        for q in cases.batches:
            board.add(str(i), m.recommend(q, kmax), q)
    metrics = board.models()
    return [metrics[str(i)] for i in range(len(candidates))]


def _tune_baseline(
    cases: _Cases, params: ModelParams, settings: EvalSettings, model: str, rounds: int,
    trials: list[dict[str, Any]], log: Callable[[str], None],
) -> dict[str, Any]:
    start = getattr(settings, BASELINE_FIELDS[model])
    scored: dict[Any, dict[str, float]] = {}

    def score(cands: list[Any]) -> None:
        todo = [c for c in dict.fromkeys(cands) if c not in scored]
        if not todo:
            return
        for c, m in zip(todo, _score_candidates(cases, params, model, todo)):
            scored[c] = m
            changed = {k: v for k, v in dataclasses.asdict(c).items() if k != "gap_ms"}
            trials.append({"model": model, **changed, **m})
            log(f"{model} {changed}: {m}")

    if model in ("item-knn", "session-knn"):
        # the whole grid at once
        score([dataclasses.replace(start, window=w, neighbors=k)
               for w in KNN_GRID["window"] for k in KNN_GRID["neighbors"]])
        best = max(scored, key=lambda c: _objective(scored[c]))
    else:
        best = start
        score([best])
        for _ in range(rounds):
            improved = False
            for name, values in SEQUENTIAL_GRIDS[model].items():
                cands = [dataclasses.replace(best, **{name: v}) for v in values]
                score(cands)
                top = max(cands, key=lambda c: _objective(scored[c]))
                if _objective(scored[top]) > _objective(scored[best]):
                    best, improved = top, True
            if not improved:
                break
    return {"params": dataclasses.asdict(best), "validation": scored[best]}

