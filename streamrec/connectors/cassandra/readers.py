"""Reads: the catalog table as a Catalog, and what the job wrote (QueryClient: the CLI's and the
HTTP service's queries)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable, Iterator, Optional, Sequence

import numpy as np

from streamrec.config import CassandraConfig
from streamrec.connectors.cassandra import connection
from streamrec.connectors.cassandra.connection import datetime_to_ms, qualified
from streamrec.connectors.cassandra.schema import table_columns
from streamrec.model.catalog import Catalog
from streamrec.model.transitions import transitions_from_lists
from streamrec.query import ProductInfo

log = logging.getLogger(__name__)


CATALOG = "SELECT product_id, title, category, price, in_stock, embedding FROM products"
CATALOG_WITH_TRANSITIONS = ("SELECT product_id, title, category, price, in_stock, embedding, transition_ids, "
                            "transition_weights FROM products")


def load_catalog(config: CassandraConfig) -> Catalog:
    session = connection.connect(config, config.keyspace)
    try:
        # a keyspace made before the transitions were stored lacks their columns until `streamrec
        # init`: the job then starts without the term rather than not at all
        with_transitions = {"transition_ids", "transition_weights"} <= table_columns(session, config.keyspace,
                                                                                    "products")
        if not with_transitions:
            log.warning("%s.products has no transition columns (run `streamrec init`, then `streamrec catalog "
                        "load`): ranking without the transition term", config.keyspace)
        rows = list(session.execute(CATALOG_WITH_TRANSITIONS if with_transitions else CATALOG))
    finally:
        session.cluster.shutdown()
    if not rows:
        raise RuntimeError(
            f"the Cassandra table {config.keyspace}.products is empty: load a catalog first "
            "(streamrec catalog load FILE)"
        )
    rows.sort(key=lambda r: r.product_id)  # a stable order, whatever the token order
    dim = max(len(r.embedding or []) for r in rows)
    vectors = np.zeros((len(rows), dim), dtype=np.float32)
    for i, r in enumerate(rows):
        if r.embedding:
            vectors[i, : len(r.embedding)] = r.embedding
    product_ids = tuple(r.product_id for r in rows)
    return Catalog(
        product_ids=product_ids,
        vectors=vectors,
        titles=tuple(r.title or "" for r in rows),
        categories=tuple(r.category or "" for r in rows),
        prices=np.array([np.nan if r.price is None else r.price for r in rows], dtype=np.float64),
        in_stock=np.array([r.in_stock is not False for r in rows], dtype=bool),
        transitions=transitions_from_lists(product_ids, [(r.transition_ids, r.transition_weights) for r in rows])
        if with_transitions else None,
    )


# ---------------------------------------------------------------------------------------------
# query side

@dataclass(frozen=True)
class StoredRecommendations:
    user_id: str
    source: str
    product_ids: list[str]
    scores: list[float]
    event_id: Optional[str]
    event_ts: Optional[datetime]
    updated_at: Optional[datetime]
    variant: Optional[str] = None


# The service's reads go without the driver's timer. The driver keeps a request's timer in its
# timer heap until the deadline (10 s) even when the answer came in a millisecond, and the timer
# holds the request future in a reference cycle with the answer's rows and the waiters: under 1,000
# requests/s ~10 s of those reached CPython's oldest generation, and its full collections (every
# ~5 s, 100-250 ms of CPU each on this machine) stalled every request meanwhile (the p99). Without
# the timer a finished read is freed at once by reference counting; the service's event loop holds
# the deadline instead (ReadBatcher).
NO_DRIVER_TIMEOUT = None

# Product ids per `IN ?` query: Cassandra warns on (and may refuse) large multi-partition IN lists.
_IN_CHUNK = 100
# Rows per page when the A/B report scans `recommendations`.
AB_FETCH_SIZE = 5000


class QueryClient:
    """Reads what the job wrote; used by the CLI and the query service."""

    def __init__(self, config: CassandraConfig, session: Any = None) -> None:
        """``session``: one made by :func:`connect` with other options (the HTTP service's)."""
        self._session = session if session is not None else connection.connect(config, config.keyspace)
        ks = config.keyspace
        self._keyspace = ks
        self._recs_many: Any = None
        self._recs = self._session.prepare(
            "SELECT user_id, product_ids, scores, source, event_id, event_ts, updated_at, variant "
            f"FROM {qualified(ks, 'recommendations')} WHERE user_id = ?"
        )
        self._events = self._session.prepare(
            f"SELECT user_id, ts, event_id, type, product_id, query FROM {qualified(ks, 'events')} "
            "WHERE user_id = ? LIMIT ?"
        )
        self._products = self._session.prepare(
            f"SELECT product_id, category, title, price FROM {qualified(ks, 'products')} WHERE product_id IN ?"
        )

    def recommendations(self, user_id: str) -> Optional[StoredRecommendations]:
        return self.stored_recommendations(self._session.execute(self._recs, (user_id,)).one())

    def recommendations_future(self, user_id: str) -> Any:
        """The read of :meth:`recommendations` without waiting: the driver's ResponseFuture, whose
        rows :meth:`stored_recommendations` turns into the answer (the HTTP service awaits it on
        its event loop instead of blocking a thread per request). It has no driver timeout: the
        caller keeps the deadline (see :data:`NO_DRIVER_TIMEOUT`)."""
        return self._session.execute_async(self._recs, (user_id,), timeout=NO_DRIVER_TIMEOUT)

    def prepare_many(self) -> None:
        """Prepares :meth:`recommendations_many_future`'s statement (a blocking round trip: the HTTP
        service does it at start, not on its event loop; the CLI never needs it)."""
        if self._recs_many is None:
            self._recs_many = self._session.prepare(
                "SELECT user_id, product_ids, scores, source, event_id, event_ts, updated_at, variant "
                f"FROM {qualified(self._keyspace, 'recommendations')} WHERE user_id IN ?"
            )

    def recommendations_many_future(self, user_ids: Sequence[str]) -> Any:
        """One read of several users' rows (``user_id IN ?``; users without a row are absent): the
        HTTP service sends the reads that arrive together as one request. No driver timeout, as
        :meth:`recommendations_future`."""
        self.prepare_many()
        return self._session.execute_async(self._recs_many, (list(user_ids),), timeout=NO_DRIVER_TIMEOUT)

    @staticmethod
    def stored_recommendations(row: Any) -> Optional[StoredRecommendations]:
        if row is None:
            return None
        return StoredRecommendations(
            row.user_id, row.source or "", list(row.product_ids or []), list(row.scores or []),
            row.event_id, row.event_ts, row.updated_at, row.variant,
        )

    def events(self, user_id: str, limit: int = 20) -> list[dict[str, Any]]:
        rows: Iterable[Any] = self._session.execute(self._events, (user_id, limit))
        return [
            {
                "event_id": r.event_id, "user_id": r.user_id,
                "ts": datetime_to_ms(r.ts), "type": r.type,
                "product_id": r.product_id, "query": r.query,
            }
            for r in rows
        ]

    def products(self, product_ids: Iterable[str]) -> dict[str, ProductInfo]:
        """Category, title and price of each known product among ``product_ids`` (unknown ones are absent)."""
        ids = list(dict.fromkeys(product_ids))
        out: dict[str, ProductInfo] = {}
        for i in range(0, len(ids), _IN_CHUNK):
            for r in self._session.execute(self._products, (ids[i:i + _IN_CHUNK],)):
                out[r.product_id] = ProductInfo(r.category or "", r.title or "", r.price)
        return out

    def titles(self, product_ids: Iterable[str]) -> dict[str, str]:
        return {pid: info.title for pid, info in self.products(product_ids).items()}

    def variant_counters(self) -> Iterator[tuple[Optional[str], Optional[int], Optional[int]]]:
        """(variant, impressions, hits) of every user, read page by page (AB_FETCH_SIZE rows a page)."""
        from cassandra.query import SimpleStatement

        stmt = SimpleStatement("SELECT variant, impressions, hits FROM recommendations", fetch_size=AB_FETCH_SIZE)
        for r in self._session.execute(stmt, timeout=60):
            yield r.variant, r.impressions, r.hits

    def count(self, table: str) -> int:
        if table not in ("events", "recommendations", "products"):
            raise ValueError(table)
        return int(self._session.execute(f"SELECT COUNT(*) FROM {table}", timeout=120).one()[0])

    def ping(self, timeout: float = 2.0) -> bool:
        """Whether Cassandra answers a trivial read within ``timeout`` seconds."""
        try:
            self._session.execute("SELECT release_version FROM system.local", timeout=timeout)
            return True
        except Exception:
            return False

    def close(self) -> None:
        self._session.cluster.shutdown()
