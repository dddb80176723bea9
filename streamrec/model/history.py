"""A user's vector from their remembered events, for a whole batch of users at once.

The fast path keeps no vector in user state: the JVM keeps each user's newest moving events
(:func:`streamrec.model.model.remember`), and ranking folds them into the vector here, with the same
rule as :func:`streamrec.model.model.update_user`: each moving event multiplies the past by
``decay * time_decay(elapsed)`` and adds ``weight(type) * direction``. In closed form the entry j of
a user weighs ``w_j * prod_{i > j} f_i``, so one pass of numpy over all entries of the batch gives
every coefficient (segmented by user), and one gather + reduce gives every vector: no per-user
loop over the arithmetic.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

from streamrec.model.catalog import Catalog
from streamrec.model.model import DAY_MS, HistoryEntry, ModelParams
from streamrec.model.text import embed_query

# ts < 2**45 ms (the parser rejects anything after the year 3000, 3.25e13 < 3.5e13), so user index
# * 2**46 + ts orders entries by user, then time, within an int64: a segmented running max in one call.
_USER_SHIFT = 1 << 46
# exp(-745) is 0 in float64: a decay of 0 (half_life_events <= 0) keeps only the newest entry.
_LOG_ZERO = -745.0


class QueryVectors:
    """Search queries embedded once per catalog (a user's searches are folded again at each batch)."""

    def __init__(self, catalog: Catalog, max_size: int = 100_000) -> None:
        self.catalog = catalog
        self._rows: dict[str, int] = {}
        self._vectors: list[np.ndarray] = []
        self._max_size = max_size

    def row(self, query: str) -> Optional[int]:
        """The query's row in :attr:`matrix`, or None when no word of it is known."""
        row = self._rows.get(query)
        if row is not None:
            return row if row >= 0 else None
        v = embed_query(self.catalog, query)
        if v is None:
            self._rows[query] = -1
            return None
        self._rows[query] = len(self._vectors)
        self._vectors.append(np.asarray(v, dtype=np.float32))
        return len(self._vectors) - 1

    def start_batch(self) -> None:
        """Bound the cache (an endless stream of distinct queries) between batches, never inside one:
        rows handed out for a batch stay valid until its fold."""
        if len(self._rows) >= self._max_size:
            self._rows.clear()
            self._vectors.clear()

    def matrix(self) -> np.ndarray:
        return np.stack(self._vectors) if self._vectors else np.zeros((0, self.catalog.dim), dtype=np.float32)


def fold_vectors(histories: Sequence[Sequence[HistoryEntry]], catalog: Catalog, params: ModelParams,
                 queries: Optional[QueryVectors] = None) -> tuple[np.ndarray, np.ndarray]:
    """Each history (oldest first) folded into a vector: ((b, d) float32, (b,) moves).

    A user without a moving entry gets a zero row and 0 moves. Equal to the running sum of
    :func:`update_user` over the same events to float32 rounding (computed in float64 here)."""
    b = len(histories)
    if queries is None or queries.catalog is not catalog:
        queries = QueryVectors(catalog)
    queries.start_batch()
    index = catalog.index
    weights = params.event_weights
    users: list[int] = []
    stamps: list[int] = []
    coefs: list[float] = []
    rows: list[int] = []  # catalog row, or -1 - query row
    for i, history in enumerate(histories):
        for etype, ts, product_id, query in history:
            w = weights.get(etype, 0.0)
            if w == 0.0:
                continue
            if product_id is not None:
                row = index.get(product_id)
                if row is None:
                    continue
            elif query:
                q = queries.row(query)
                if q is None:
                    continue
                row = -1 - q
            else:
                continue
            users.append(i)
            stamps.append(ts)
            coefs.append(w)
            rows.append(row)
    return fold_flat(np.asarray(users, dtype=np.int64), np.asarray(stamps, dtype=np.int64),
                     np.asarray(coefs, dtype=np.float64), np.asarray(rows, dtype=np.int64), b, catalog, params,
                     queries.matrix())


def fold_flat(u: np.ndarray, ts: np.ndarray, weights: np.ndarray, rows: np.ndarray, b: int, catalog: Catalog,
              params: ModelParams, query_vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`fold_vectors` of the moving entries only, as flat arrays grouped by user (``u``
    non-decreasing): each entry's user, time, weight and direction (a catalog row, or ``-1 - j``
    for row j of ``query_vectors``). Returns ((b, d) float32 vectors, (b,) moves)."""
    vectors = np.zeros((b, catalog.dim), dtype=np.float32)
    moves = np.bincount(u, minlength=b)
    m = len(u)
    if m == 0:
        return vectors, moves
    first = np.ones(m, dtype=bool)
    first[1:] = u[1:] != u[:-1]
    # log f_i of every entry but a user's first: the decay per event and by the event time elapsed
    # since the newest earlier entry of the same user
    log_f = np.full(m, _LOG_ZERO if params.decay <= 0 else math.log(params.decay))
    if params.half_life_days > 0:
        running = np.maximum.accumulate(u * _USER_SHIFT + ts) - u * _USER_SHIFT
        elapsed = np.zeros(m, dtype=np.float64)
        elapsed[1:] = np.maximum(ts[1:] - running[:-1], 0)
        log_f -= elapsed / (params.half_life_days * DAY_MS) * math.log(2.0)
    log_f[first] = 0.0
    # sum of log f over the later entries of the same user: suffix sums, cut at the user's last entry
    suffix = np.zeros(m + 1)
    suffix[:m] = np.cumsum(log_f[::-1])[::-1]
    starts = np.flatnonzero(first)
    ends = np.append(starts[1:], m)  # one past each user's last entry
    end_of = np.repeat(ends, np.diff(np.append(starts, m)))
    coef = weights * np.exp(suffix[np.arange(1, m + 1)] - suffix[end_of])
    directions = np.empty((m, catalog.dim), dtype=np.float64)
    is_product = rows >= 0
    directions[is_product] = catalog.vectors[rows[is_product]]
    if not is_product.all():
        directions[~is_product] = query_vectors[-1 - rows[~is_product]]
    sums = np.add.reduceat(directions * coef[:, None], starts, axis=0)
    vectors[u[starts]] = sums.astype(np.float32)
    return vectors, moves
