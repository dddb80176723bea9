"""The recommendation model: how an event moves a user's embedding, and what it recommends.

A user is a decayed, weighted sum of the vectors of the products they touched and the queries
they searched. Each such event multiplies the past by ``decay`` (per event, and per elapsed event
time when ``half_life_days`` is set) and adds ``weight(type) * v``, where ``v`` is the product's
vector or the query's (:mod:`streamrec.model.text`: from the words of product titles). The user's
direction (the sum normalised) is compared with every product by cosine similarity
(:mod:`streamrec.model.topk`).
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Container, Mapping, Optional, Sequence

import numpy as np

from streamrec.config import (
    DEFAULT_HALF_LIFE_DAYS,
    DEFAULT_HALF_LIFE_EVENTS,
    DEFAULT_TRANSITION_CONTEXT,
    DEFAULT_TRANSITION_WEIGHT,
    ModelConfig,
)
from streamrec.model.catalog import Catalog
from streamrec.model.events import Event
from streamrec.model.text import embed_query
from streamrec.model.topk import top_k_batch

if TYPE_CHECKING:
    import scipy.sparse as sp

    from streamrec.model.ranking import Ranker

DAY_MS = 86_400_000

# Bound the per-user state: a wholesaler with thousands of purchases must not grow it forever.
MAX_REMEMBERED_PURCHASES = 1000
MAX_CART = 200

# An event of these types naming a product of the list shown before it counts as a hit.
HIT_TYPES = frozenset({"view", "click", "add_to_cart", "purchase"})

# The fast path keeps a user's most recent moving events (see :func:`remember`) instead of the
# vector, and folds them into the vector when it ranks (:mod:`streamrec.model.history`). An event
# n moving events back weighs decay**n = 0.5**(n / half_life_events): 24 half-lives leave 6e-8,
# below float32's resolution against the newest event's weight, so the fold over that many equals
# the running sum. Bounds keep the state small for tiny half-lives and finite for huge ones.
MIN_HISTORY = 12
MAX_HISTORY = 512
HISTORY_HALF_LIVES = 24

# One remembered event: (type, ts, product_id, query); query only for a search without a product.
HistoryEntry = tuple[str, int, Optional[str], Optional[str]]


@dataclass(frozen=True)
class ModelParams:
    event_weights: Mapping[str, float]
    half_life_events: float = DEFAULT_HALF_LIFE_EVENTS
    top_k: int = 10
    exclude_purchased: bool = True
    half_life_days: float = DEFAULT_HALF_LIFE_DAYS  # 0: no decay by event time
    exclude_cart: bool = True
    include_categories: frozenset[str] = frozenset()  # empty: every category
    exclude_categories: frozenset[str] = frozenset()
    cold_start_events: int = 1  # fewer events that moved the user: trending instead of personal
    candidates: int = 0  # how many products a recommendation holds (0: top_k)
    # the item-to-item transition term (streamrec.model.transitions): its weight beside the cosine,
    # and how many of the user's last products gather their successors; nothing without transitions
    transition_weight: float = DEFAULT_TRANSITION_WEIGHT
    transition_context: int = DEFAULT_TRANSITION_CONTEXT

    @classmethod
    def from_config(cls, config: ModelConfig, **overrides: Any) -> ModelParams:
        """The model settings of ``config``; ``overrides`` (an A/B variant's) replace single settings."""
        values: dict[str, Any] = dict(
            event_weights=dict(config.event_weights),
            half_life_events=config.half_life_events,
            top_k=config.top_k,
            exclude_purchased=config.exclude_purchased,
            half_life_days=config.half_life_days,
            exclude_cart=config.exclude_cart,
            include_categories=config.include_categories,
            exclude_categories=config.exclude_categories,
            cold_start_events=config.cold_start_events,
            transition_weight=config.transition_weight,
            transition_context=config.transition_context,
        )
        values.update(overrides)
        for name in ("include_categories", "exclude_categories"):
            values[name] = _category_set(values[name])
        values["event_weights"] = {str(k): float(v) for k, v in dict(values["event_weights"]).items()}
        values["candidates"] = int(values["top_k"]) * max(1, config.query_overfetch)
        return cls(**values)

    @property
    def stored_k(self) -> int:
        return self.candidates or self.top_k

    @property
    def history_size(self) -> int:
        """How many moving events a user's history keeps for these settings (see MIN_HISTORY)."""
        wanted = HISTORY_HALF_LIVES * max(0.0, self.half_life_events)
        return MAX_HISTORY if not math.isfinite(wanted) else min(MAX_HISTORY, max(MIN_HISTORY, math.ceil(wanted)))

    @property
    def moving_types(self) -> frozenset[str]:
        """Event types that move a user's vector (a non-zero weight)."""
        return frozenset(t for t, w in self.event_weights.items() if w != 0.0)

    @property
    def decay(self) -> float:
        return 0.5 ** (1.0 / self.half_life_events) if self.half_life_events > 0 else 0.0

    def time_decay(self, elapsed_ms: int) -> float:
        """How much of the past is left after ``elapsed_ms`` of event time (1: no time decay)."""
        if self.half_life_days <= 0 or elapsed_ms <= 0:
            return 1.0
        return 0.5 ** (elapsed_ms / (self.half_life_days * DAY_MS))


def _category_set(value: Any) -> frozenset[str]:
    if isinstance(value, str):
        return frozenset(c.strip() for c in value.split(",") if c.strip())
    return frozenset(str(c) for c in value)


@dataclass
class UserState:
    """What the job keeps per user in Flink keyed state (pickled as one value)."""

    vector: Optional[np.ndarray] = None  # (d,) float32 decayed sum; None until a product event
    purchased: list[str] = field(default_factory=list)  # most recent last, bounded
    seq: int = 0  # events seen for this user (every valid event counts)
    max_ts: int = 0  # newest event time seen, epoch ms
    vector_ts: int = 0  # newest event time that moved the vector (for time decay), epoch ms
    cart: list[str] = field(default_factory=list)  # added and neither removed nor bought, oldest first
    moves: int = 0  # events that moved the vector
    last_shown: tuple[str, ...] = ()  # the personal top_k shown after the previous event
    impressions: int = 0  # events that followed a shown personal list
    hits: int = 0  # of those, views/clicks/carts/purchases of a product of that list
    # Cassandra write timestamp (us) of the row written after the newest event; -1: none yet, or
    # restored from a release that did not keep it (see write_timestamp_us)
    write_us: int = -1
    # the newest moving events, oldest first, at most params.history_size (see remember)
    history: list[HistoryEntry] = field(default_factory=list)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # state pickled by an older version (a savepoint) lacks the newer fields: give them defaults
        self.__dict__.update(UserState().__dict__)
        self.__dict__.update(state)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # The job unpickles and pickles this once per event. The default form (a dict, with the
        # ndarray pickled through numpy's reducer) cost ~37 us a round trip; raw float32 bytes and
        # the other fields in declaration order cost ~10 us.
        vector = None if self.vector is None else np.asarray(self.vector, dtype=np.float32).tobytes()
        return _restore_user, (vector, *_user_fields(self))


def _restore_user(vector: Optional[bytes], *values: Any) -> UserState:
    """The inverse of :meth:`UserState.__reduce__`. Fields a newer version appends are missing
    from an older pickle and keep their defaults."""
    state = UserState(None, *values)
    if vector is not None:
        state.vector = np.frombuffer(vector, dtype=np.float32).copy()
    return state


_USER_FIELDS = tuple(f.name for f in fields(UserState))
assert _USER_FIELDS[0] == "vector"
_user_fields = operator.attrgetter(*_USER_FIELDS[1:])


def update_user(state: UserState, event: Event, catalog: Catalog, params: ModelParams) -> UserState:
    """Apply one event to a user's state, in place, and return it.

    Product events move the user toward the product's vector, searches toward the query's
    (nothing happens for a query with no word the catalog's titles know), each with the weight of
    its type; a negative weight (remove_from_cart) moves the user away. Only events that move the
    user decay the past.
    """
    if state.write_us < 0 and state.seq > 0:
        # restored from a release that stamped max_ts * 1000 + seq % 1000: start above all of those
        state.write_us = state.max_ts * 1000 + 999
    state.seq += 1
    state.max_ts = max(state.max_ts, event.ts)
    state.write_us = max(state.max_ts * 1000, state.write_us + 1)
    weight = params.event_weights.get(event.type, 0.0)
    direction: Optional[np.ndarray] = None
    if weight != 0.0:
        if event.product_id is not None:
            row = catalog.index.get(event.product_id)
            direction = None if row is None else catalog.vectors[row]
        elif event.type == "search" and event.query:
            direction = embed_query(catalog, event.query)
    remember(state.history, event, params.moving_types, params.history_size)
    if direction is not None:
        state.moves += 1
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
    if event.type == "add_to_cart" and event.product_id not in state.cart:
        state.cart.append(event.product_id)
        if len(state.cart) > MAX_CART:
            del state.cart[: len(state.cart) - MAX_CART]
    elif event.type in ("remove_from_cart", "purchase") and event.product_id in state.cart:
        state.cart.remove(event.product_id)
    return state


def remember(history: list[HistoryEntry], event: Event, moving_types: Container[str], size: int) -> None:
    """Append ``event`` to a user's history (in place) if it can move the vector: a moving type that
    names a product, or a search with a query. Whether it does move it (a known product, a query
    with a word the titles know) is the fold's business, at ranking time, with the catalog then."""
    if event.type not in moving_types:
        return
    if event.product_id is not None:
        history.append((event.type, event.ts, event.product_id, None))
    elif event.type == "search" and event.query:
        history.append((event.type, event.ts, None, event.query))
    else:
        return
    if len(history) > size:
        del history[: len(history) - size]


def apply_event(state: UserState, event: Event, catalog: Catalog, params: ModelParams,
                user_ttl_ms: int = 0) -> UserState:
    """What the job does with each event of a user: the idle-user TTL, the online hit count, then
    :func:`update_user`. Returns the new state (a fresh one when the user was idle too long).

    The TTL is measured in event time, so a replay resets the same users; Flink's own state TTL
    (processing time, same length) is what frees the memory of users who never come back.
    """
    if user_ttl_ms > 0 and state.seq > 0 and event.ts - state.max_ts > user_ttl_ms:
        # a fresh user, except for the write timestamp: the rows written before must stay older
        state = UserState(write_us=state.write_us)
    if state.last_shown:
        state.impressions += 1
        if event.type in HIT_TYPES and event.product_id in state.last_shown:
            state.hits += 1
    return update_user(state, event, catalog, params)


def excluded_ids(state: UserState, params: ModelParams) -> list[str]:
    """The products this user must not be shown: bought ones, and what is in the cart."""
    out: list[str] = list(state.purchased) if params.exclude_purchased else []
    if params.exclude_cart:
        out.extend(state.cart)
    return out


def eligible_mask(catalog: Catalog, params: ModelParams) -> np.ndarray:
    """(n,) bool: products that may be recommended at all: in stock, with an embedding, and in
    the allowed categories."""
    mask = catalog.in_stock & (np.abs(catalog.vectors).sum(axis=1) > 0)
    if params.include_categories:
        mask &= np.isin(np.asarray(catalog.categories, dtype=object), list(params.include_categories))
    if params.exclude_categories:
        mask &= ~np.isin(np.asarray(catalog.categories, dtype=object), list(params.exclude_categories))
    return mask


def write_timestamp_us(state: UserState) -> int:
    """The Cassandra write timestamp of the row that reflects ``state`` (after :func:`update_user`).

    Derived from event time, never the wall clock, so a replay writes identical cells and an older
    write never wins over a newer one: it is the newest event time seen (in microseconds), or one
    microsecond after the user's previous write when that is later. So it grows with every event
    of the user, also for events of the same millisecond and for late events with an older time
    (an earlier form, ``max_ts * 1000 + seq % 1000``, went back by 999 us when the sequence
    wrapped while the newest event time stood still, as it does inside a large invoice).
    """
    return state.write_us if state.write_us >= 0 else state.max_ts * 1000


@dataclass(frozen=True)
class Recommendation:
    product_ids: tuple[str, ...]
    scores: tuple[float, ...]
    source: str  # "personal", "trending" (cold start) or "none" (nothing to show yet)


NO_RECOMMENDATION = Recommendation((), (), "none")


def recommend_batch(
    user_vectors: Sequence[Optional[np.ndarray]],
    excluded: Sequence[Sequence[str]],
    catalog: Catalog,
    params: ModelParams,
    eligible: Optional[np.ndarray] = None,
    ranker: Optional[Ranker] = None,
    boost: Optional[sp.spmatrix] = None,
) -> list[Recommendation]:
    """Personal recommendations for a batch of users (``params.stored_k`` each), with one matrix
    product. ``excluded[i]``: product ids user i must not get (see :func:`excluded_ids`);
    ``eligible``: :func:`eligible_mask` (computed here when not given); ``ranker``: the search
    to use for a large catalog (:class:`streamrec.model.ranking.Ranker`; default exact);
    ``boost``: (b, n) sparse scores added to the cosines (:func:`transition_scores`)."""
    b = len(user_vectors)
    if b == 0:
        return []
    mat = np.zeros((b, catalog.dim), dtype=np.float32)
    for i, v in enumerate(user_vectors):
        if v is not None and len(v):
            mat[i] = v
    exclude = [catalog.indices(ids) for ids in excluded]
    mask = eligible_mask(catalog, params) if eligible is None else eligible
    if ranker is None:
        rows, scores = top_k_batch(mat, catalog, params.stored_k, exclude, mask, boost)
    else:
        rows, scores = ranker.top_k(mat, params.stored_k, exclude, mask, boost)
    out = []
    product_ids = catalog.product_ids
    found = (rows >= 0).sum(axis=1).tolist()  # rows are -1 (scores NaN) only at the end of a row
    all_rows = rows.tolist()
    all_scores = scores.tolist()
    for i in range(b):
        n = found[i]
        if n:
            out.append(Recommendation(tuple([product_ids[r] for r in all_rows[i][:n]]), tuple(all_scores[i][:n]),
                                      "personal"))
        else:
            out.append(NO_RECOMMENDATION)
    return out


def transition_scores(histories: Sequence[Sequence[HistoryEntry]], catalog: Catalog,
                      params: ModelParams) -> Optional[sp.csr_matrix]:
    """The transition term of these users (rows in order), weighted: ``params.transition_weight``
    x the successors of each user's last ``params.transition_context`` products in their history
    (:mod:`streamrec.model.transitions`). None when the catalog has no transitions or the weight
    is 0: the ranking is the cosine alone."""
    if catalog.transitions is None or params.transition_weight == 0.0:
        return None
    from streamrec.model.transitions import history_boost

    index = catalog.index
    weights = params.event_weights
    # the products the user moved toward (a removal from the cart is no step of their sequence)
    rows = [[index.get(pid, -1) for etype, _, pid, _ in h if pid is not None and weights.get(etype, 0.0) > 0]
            for h in histories]
    boost = history_boost(catalog.transitions, rows, params.transition_context)
    if boost is not None:
        boost.data *= params.transition_weight
    return boost


def trending_recommendation(trending: Sequence[tuple[str, float]], excluded: Sequence[str], catalog: Catalog,
                            params: ModelParams, eligible: Optional[np.ndarray] = None) -> Recommendation:
    """The cold-start list: the most popular eligible products right now, best first."""
    mask = eligible_mask(catalog, params) if eligible is None else eligible
    skip = set(excluded)
    ids: list[str] = []
    scores: list[float] = []
    for pid, score in trending:
        row = catalog.index.get(pid)
        if row is None or not mask[row] or pid in skip:
            continue
        ids.append(pid)
        scores.append(float(score))
        if len(ids) == params.stored_k:
            break
    return Recommendation(tuple(ids), tuple(scores), "trending") if ids else NO_RECOMMENDATION


def is_cold(state: UserState, params: ModelParams) -> bool:
    return state.vector is None or state.moves < params.cold_start_events


def recommend_users(states: Sequence[UserState], catalog: Catalog, params: ModelParams,
                    trending: Sequence[tuple[str, float]] = (),
                    eligible: Optional[np.ndarray] = None, ranker: Optional[Ranker] = None) -> list[Recommendation]:
    """What the job stores for each of these users: personal top-k, or trending for a cold user."""
    mask = eligible_mask(catalog, params) if eligible is None else eligible
    warm = [i for i, s in enumerate(states) if not is_cold(s, params)]
    personal = recommend_batch([states[i].vector for i in warm], [excluded_ids(states[i], params) for i in warm],
                               catalog, params, mask, ranker,
                               transition_scores([states[i].history for i in warm], catalog, params))
    out: list[Recommendation] = [NO_RECOMMENDATION] * len(states)
    for i, rec in zip(warm, personal):
        out[i] = rec
    for i, s in enumerate(states):
        if is_cold(s, params):
            out[i] = trending_recommendation(trending, excluded_ids(s, params), catalog, params, mask)
    return out


def remember_shown(state: UserState, rec: Recommendation, params: ModelParams) -> None:
    """Keep what the user was shown (the first top_k of a personal list) to count the next hit."""
    state.last_shown = rec.product_ids[: params.top_k] if rec.source == "personal" else ()
