"""The recommendation model: how an event moves a user's embedding, and top-k over the catalog.

A user is a decayed, weighted sum of the vectors of the products they touched and the queries
they searched. Each such event multiplies the past by ``decay`` (per event, and per elapsed event
time when ``half_life_days`` is set) and adds ``weight(type) * v``, where ``v`` is the product's
vector or the query's (:mod:`streamrec.udfs.text`: from the words of product titles). The user's
direction (the sum normalised) is compared with every product by cosine similarity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

import numpy as np

from streamrec.config import DEFAULT_HALF_LIFE_DAYS, DEFAULT_HALF_LIFE_EVENTS, Config
from streamrec.udfs.catalog import Catalog
from streamrec.udfs.events import Event
from streamrec.udfs.text import embed_query

DAY_MS = 86_400_000

# Bound the per-user state: a wholesaler with thousands of purchases must not grow it forever.
MAX_REMEMBERED_PURCHASES = 1000


@dataclass(frozen=True)
class ModelParams:
    event_weights: Mapping[str, float]
    half_life_events: float = DEFAULT_HALF_LIFE_EVENTS
    top_k: int = 10
    exclude_purchased: bool = True
    half_life_days: float = DEFAULT_HALF_LIFE_DAYS  # 0: no decay by event time

    @classmethod
    def from_config(cls, config: Config) -> ModelParams:
        return cls(
            event_weights=dict(config.event_weights),
            half_life_events=config.half_life_events,
            top_k=config.top_k,
            exclude_purchased=config.exclude_purchased,
            half_life_days=config.half_life_days,
        )

    @property
    def decay(self) -> float:
        return 0.5 ** (1.0 / self.half_life_events) if self.half_life_events > 0 else 0.0

    def time_decay(self, elapsed_ms: int) -> float:
        """How much of the past is left after ``elapsed_ms`` of event time (1: no time decay)."""
        if self.half_life_days <= 0 or elapsed_ms <= 0:
            return 1.0
        return 0.5 ** (elapsed_ms / (self.half_life_days * DAY_MS))


@dataclass
class UserState:
    """What the job keeps per user in Flink keyed state (pickled as one value)."""

    vector: Optional[np.ndarray] = None  # (d,) float32 decayed sum; None until a product event
    purchased: list[str] = field(default_factory=list)  # most recent last, bounded
    seq: int = 0  # events seen for this user (every valid event counts)
    max_ts: int = 0  # newest event time seen, epoch ms
    vector_ts: int = 0  # newest event time that moved the vector (for time decay), epoch ms


def update_user(state: UserState, event: Event, catalog: Catalog, params: ModelParams) -> UserState:
    """Apply one event to a user's state, in place, and return it.

    Product events move the user toward the product's vector, searches toward the query's
    (nothing happens for a query with no word the catalog's titles know), each with the weight of
    its type; a negative weight (remove_from_cart) moves the user away. Only events that move the
    user decay the past.
    """
    state.seq += 1
    state.max_ts = max(state.max_ts, event.ts)
    weight = params.event_weights.get(event.type, 0.0)
    direction: Optional[np.ndarray] = None
    if weight != 0.0:
        if event.product_id is not None:
            row = catalog.index.get(event.product_id)
            direction = None if row is None else catalog.vectors[row]
        elif event.type == "search" and event.query:
            direction = embed_query(catalog, event.query)
    if direction is not None:
        contribution = np.float32(weight) * direction
        if state.vector is None:
            state.vector = contribution.astype(np.float32, copy=True)
        else:
            factor = np.float32(params.decay * params.time_decay(event.ts - state.vector_ts))
            state.vector = (factor * state.vector + contribution).astype(np.float32)
        state.vector_ts = max(state.vector_ts, event.ts)
    if event.product_id is None:
        return state
    if event.type == "purchase" and event.product_id not in state.purchased:
        state.purchased.append(event.product_id)
        if len(state.purchased) > MAX_REMEMBERED_PURCHASES:
            del state.purchased[: len(state.purchased) - MAX_REMEMBERED_PURCHASES]
    return state


def write_timestamp_us(state: UserState) -> int:
    """The Cassandra write timestamp of the row that reflects ``state``.

    Derived from event time, never the wall clock, so a replay writes identical cells and an older
    write never wins over a newer one. The per-user sequence breaks ties between events of the
    same millisecond (and an out-of-order late event still gets a newer timestamp than the row it
    replaces, because it is based on the newest event time seen).
    """
    return state.max_ts * 1000 + state.seq % 1000


def top_k_batch(
    user_vectors: np.ndarray,
    catalog: Catalog,
    k: int,
    exclude: Sequence[Sequence[int]] = (),
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k products for a batch of users with one matrix product.

    ``user_vectors`` is (b, d); rows need not be normalised (zero rows get no results).
    ``exclude[i]`` lists catalog rows user i must not be shown. Out-of-stock products are never
    returned. Returns (rows, scores), both (b, k'): k' = min(k, catalog size); rows are -1 and
    scores NaN where fewer than k' products are eligible. Scores are cosine similarities.
    """
    b = user_vectors.shape[0]
    n = len(catalog)
    kk = min(k, n)
    if b == 0 or kk == 0:
        return np.empty((b, kk), dtype=np.int64), np.empty((b, kk), dtype=np.float32)
    u = np.asarray(user_vectors, dtype=np.float32)
    norms = np.linalg.norm(u, axis=1, keepdims=True)
    u = np.divide(u, norms, out=np.zeros_like(u), where=norms > 0)
    scores = u @ catalog.vectors.T  # (b, n)
    scores[:, ~catalog.in_stock] = -np.inf
    for i, excluded in enumerate(exclude):
        if len(excluded):
            scores[i, np.asarray(excluded, dtype=np.int64)] = -np.inf
    scores[(norms[:, 0] == 0)] = -np.inf
    if kk < n:
        part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
    else:
        part = np.tile(np.arange(n), (b, 1))
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    rows = np.take_along_axis(part, order, axis=1)
    top = np.take_along_axis(part_scores, order, axis=1).astype(np.float32)
    missing = ~np.isfinite(top)
    rows[missing] = -1
    top[missing] = np.nan
    return rows, top


@dataclass(frozen=True)
class Recommendation:
    product_ids: tuple[str, ...]
    scores: tuple[float, ...]
    source: str  # "personal" or "none" (no product signal yet)


def recommend_batch(
    user_vectors: Sequence[Optional[np.ndarray]],
    excluded_ids: Sequence[Sequence[str]],
    catalog: Catalog,
    params: ModelParams,
) -> list[Recommendation]:
    """Recommendations for a batch of users: the function both the job and offline tools call."""
    b = len(user_vectors)
    if b == 0:
        return []
    mat = np.zeros((b, catalog.dim), dtype=np.float32)
    for i, v in enumerate(user_vectors):
        if v is not None and len(v):
            mat[i] = v
    exclude = [catalog.indices(ids) for ids in excluded_ids] if params.exclude_purchased else []
    rows, scores = top_k_batch(mat, catalog, params.top_k, exclude)
    out = []
    for i in range(b):
        keep = rows[i] >= 0
        ids = tuple(catalog.product_ids[r] for r in rows[i][keep])
        sc = tuple(float(s) for s in scores[i][keep] if math.isfinite(s))
        out.append(Recommendation(ids, sc, "personal" if ids else "none"))
    return out
