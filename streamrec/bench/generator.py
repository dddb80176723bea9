"""Synthetic catalogs and a realistic stream of shop events for the benchmarks.

The event mix follows what shop logs look like (e.g. OTTO: ~90% clicks, ~8% carts, ~2% orders):
views far outnumber clicks, clicks outnumber cart actions, purchases are rare. Product popularity
and user activity are Zipf-distributed (a few best-sellers and a few very active users), and the
funnel is coherent: a click, cart add or purchase is usually of a product the user looked at
recently, and a removal is of something in the user's cart.

Everything is deterministic for a given seed, so the job and the baseline see the same events.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterator, Mapping, Optional, Sequence

import numpy as np
import scipy.sparse as sp

from streamrec.model.catalog import Catalog
from streamrec.model.events import Event
from streamrec.model.model import ModelParams, UserState, update_user
from streamrec.model.transitions import prune_and_scale

# Share of each event type in the stream (sums to 1).
DEFAULT_MIX: Mapping[str, float] = {
    "view": 0.75,
    "click": 0.15,
    "search": 0.03,
    "add_to_cart": 0.045,
    "remove_from_cart": 0.01,
    "purchase": 0.015,
}

SEARCH_WORDS = ("lamp", "mug", "candle", "bag", "heart", "vintage", "christmas", "garden", "cushion", "clock")


def product_id(i: int) -> str:
    return f"p{i:07d}"


def synthetic_catalog(n: int, dim: int = 64, seed: int = 0, clusters: int = 0, spread: float = 0.6) -> Catalog:
    """``n`` unit vectors in ``dim`` dimensions with ids ``p0000000``...

    ``clusters == 0``: uniform on the sphere (the hardest case for approximate search: no structure).
    ``clusters > 0``: a mixture around that many random centres, each product = centre + ``spread`` x
    noise of the same expected norm, normalised (closer to what learned embeddings look like).
    """
    rng = np.random.default_rng(seed)
    if clusters > 0:
        centres = rng.standard_normal((clusters, dim), dtype=np.float32)
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        noise = rng.standard_normal((n, dim), dtype=np.float32) / np.float32(np.sqrt(dim))
        vectors = centres[rng.integers(0, clusters, n)] + np.float32(spread) * noise
    else:
        vectors = rng.standard_normal((n, dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return Catalog(product_ids=tuple(product_id(i) for i in range(n)), vectors=vectors.astype(np.float32))


def synthetic_transitions(n: int, keep: int = 100, seed: int = 0) -> sp.csr_matrix:
    """(n, n) item-to-item strengths as ``catalog build`` shapes them (``keep`` successors per
    product, the best 1; streamrec.model.transitions), the successors drawn at random: what the
    job's transition term costs depends on their number, not on which they are."""
    rng = np.random.default_rng(seed)
    keep = min(keep, n)
    rows = np.repeat(np.arange(n), keep)
    cols = rng.integers(0, n, n * keep)
    t = sp.csr_matrix((rng.random(n * keep), (rows, cols)), shape=(n, n))
    t.sum_duplicates()
    return prune_and_scale(t, keep)


def zipf_weights(n: int, s: float) -> np.ndarray:
    """Probabilities proportional to 1 / rank**s for ranks 1..n."""
    w = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** s
    return w / w.sum()


@dataclass(frozen=True)
class GenEvent:
    """One generated event; ``ts`` may be replaced when it is sent (paced runs use the wall clock)."""

    event_id: str
    user_id: str
    ts: int
    type: str
    product_id: Optional[str] = None
    query: Optional[str] = None

    def to_json(self, ts: Optional[int] = None) -> str:
        d: dict[str, object] = {"event_id": self.event_id, "user_id": self.user_id,
                                "ts": self.ts if ts is None else ts, "type": self.type}
        if self.product_id is not None:
            d["product_id"] = self.product_id
        if self.query is not None:
            d["query"] = self.query
        return json.dumps(d, separators=(",", ":"))


class EventGenerator:
    """An endless, deterministic stream of events for ``users`` users over ``catalog_ids``.

    ``product_skew`` / ``user_skew`` are the Zipf exponents of product popularity and user activity
    (which products and which users are popular is a random permutation, not the id order).
    ``recall`` is the probability that a click, cart add or purchase names one of the user's
    recently viewed products rather than a fresh popular one.
    """

    def __init__(
        self,
        catalog_ids: Sequence[str],
        users: int,
        seed: int = 0,
        mix: Mapping[str, float] = DEFAULT_MIX,
        product_skew: float = 1.0,
        user_skew: float = 0.8,
        recall: float = 0.7,
        start_ts: int = 1_700_000_000_000,
        ts_step_ms: int = 1,
        id_prefix: str = "e",
        user_prefix: str = "u",
    ) -> None:
        if users <= 0 or not catalog_ids:
            raise ValueError("need at least one user and one product")
        total = sum(mix.values())
        if total <= 0 or any(v < 0 for v in mix.values()):
            raise ValueError("the mix needs non-negative shares with a positive sum")
        self._ids = list(catalog_ids)
        self._rng = np.random.default_rng(seed)
        self._types = list(mix)
        self._type_p = np.array([mix[t] for t in self._types], dtype=np.float64) / total
        self._product_p = zipf_weights(len(self._ids), product_skew)
        self._product_perm = self._rng.permutation(len(self._ids))
        self._user_p = zipf_weights(users, user_skew)
        self._user_perm = self._rng.permutation(users)
        self._recall = recall
        self._recent: dict[int, list[int]] = {}  # user -> recently viewed products (last 8)
        self._cart: dict[int, list[int]] = {}  # user -> products in the cart
        self._next = 0
        self._ts = start_ts
        self._ts_step = ts_step_ms
        self._id_prefix = id_prefix
        self._user_prefix = user_prefix

    def _popular(self, n: int) -> np.ndarray:
        return self._product_perm[self._rng.choice(len(self._ids), size=n, p=self._product_p)]

    def batch(self, n: int) -> list[GenEvent]:
        """The next ``n`` events (time-ordered, one millisecond apart by default)."""
        rng = self._rng
        users = self._user_perm[rng.choice(len(self._user_p), size=n, p=self._user_p)]
        types = rng.choice(len(self._types), size=n, p=self._type_p)
        fresh = self._popular(n)
        coins = rng.random(n)
        picks = rng.integers(0, 1 << 30, n)
        out: list[GenEvent] = []
        for i in range(n):
            u = int(users[i])
            etype = self._types[int(types[i])]
            recent = self._recent.setdefault(u, [])
            cart = self._cart.setdefault(u, [])
            prod: Optional[int] = None
            query: Optional[str] = None
            if etype == "search":
                query = SEARCH_WORDS[int(picks[i]) % len(SEARCH_WORDS)]
            elif etype == "remove_from_cart":
                if cart:
                    prod = cart.pop(int(picks[i]) % len(cart))
                else:  # nothing to remove: the user looks at something instead
                    etype, prod = "view", int(fresh[i])
            elif etype != "view" and recent and coins[i] < self._recall:
                prod = recent[int(picks[i]) % len(recent)]
            else:
                prod = int(fresh[i])
            if prod is not None:
                if etype == "view":
                    recent.append(prod)
                    if len(recent) > 8:
                        del recent[0]
                elif etype == "add_to_cart":
                    cart.append(prod)
                elif etype == "purchase" and prod in cart:
                    cart.remove(prod)
            out.append(
                GenEvent(
                    event_id=f"{self._id_prefix}{self._next}",
                    user_id=f"{self._user_prefix}{u}",
                    ts=self._ts,
                    type=etype,
                    product_id=None if prod is None else self._ids[prod],
                    query=query,
                )
            )
            self._next += 1
            self._ts += self._ts_step
        return out

    def __iter__(self) -> Iterator[GenEvent]:
        while True:
            yield from self.batch(1024)

    def popular_products(self, n: int) -> list[str]:
        """``n`` product ids drawn by popularity (for probes)."""
        return [self._ids[int(i)] for i in self._popular(n)]


def to_event(e: GenEvent) -> Event:
    return Event(e.event_id, e.user_id, e.ts, e.type, e.product_id, e.query)


def final_recommendation_events(events: Sequence[GenEvent], catalog: Catalog, params: ModelParams) -> dict[str, str]:
    """user_id -> event_id of the event the user's `recommendations` row names once all are stored.

    The job (and the baseline) writes a recommendations row for every event after which the user's
    embedding is non-zero; the model's own update rule decides which events those are.
    """
    states: dict[str, UserState] = {}
    final: dict[str, str] = {}
    for e in events:
        state = states.get(e.user_id)
        if state is None:
            state = states[e.user_id] = UserState()
        update_user(state, to_event(e), catalog, params)
        if state.vector is not None and float(np.dot(state.vector, state.vector)) > 0.0:
            final[e.user_id] = e.event_id
    return final


def mix_of(events: Sequence[GenEvent]) -> dict[str, float]:
    """Observed share of each event type."""
    counts: dict[str, int] = {}
    for e in events:
        counts[e.type] = counts.get(e.type, 0) + 1
    return {t: c / len(events) for t, c in sorted(counts.items())} if events else {}
