"""Writes: the pipeline row (events and recommendations, idempotent, stamped with event time; the
Java sink binds the same statements), the catalog table, and product updates."""

from __future__ import annotations

import logging
import time
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from streamrec.config import CassandraConfig
from streamrec.connectors.cassandra import connection
from streamrec.connectors.cassandra.connection import _ms_to_datetime, for_writes, qualified
from streamrec.connectors.cassandra.schema import add_missing_columns
from streamrec.model.catalog import Catalog
from streamrec.model.transitions import successor_lists

log = logging.getLogger("streamrec.connectors.cassandra")


# The two statements that store a pipeline row: the Python writer and the Java sink
# (java/src/main/java/streamrec/flink/CassandraRowSink.java, which receives them as they are) bind the same columns.
def insert_event_cql(keyspace: str) -> str:
    return (
        f"INSERT INTO {qualified(keyspace, 'events')} (user_id, ts, event_id, type, product_id, query) "
        "VALUES (?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"
    )


def upsert_recommendations_cql(keyspace: str) -> str:
    return (
        f"INSERT INTO {qualified(keyspace, 'recommendations')} (user_id, product_ids, scores, source, event_id, "
        "event_ts, updated_at, variant, impressions, hits) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"
    )


class RecommendationWriter:
    """Writes one pipeline output row to `events` and `recommendations`.

    Every statement is prepared, marked idempotent and carries a write timestamp derived from
    event time (``USING TIMESTAMP``), so replaying a row rewrites identical cells and an older row
    can never overwrite a newer one: at-least-once delivery gives effectively-once results.
    :meth:`write` waits for the row; the job's operator (:class:`streamrec.connectors.flink.CassandraWrite`)
    sends :meth:`bound` statements without waiting and awaits them all at each bundle end, so
    before the checkpoint barrier passes.
    """

    def __init__(self, config: CassandraConfig) -> None:
        self._config = config
        self._session: Any = None

    def open(self) -> None:
        self._session = connection.connect(self._config, self._config.keyspace)
        s = self._session
        self._insert_event = for_writes(s.prepare(insert_event_cql(self._config.keyspace)), self._config)
        self._insert_event.is_idempotent = True
        self._upsert_recs = for_writes(s.prepare(upsert_recommendations_cql(self._config.keyspace)), self._config)
        self._upsert_recs.is_idempotent = True

    def write(self, row: Any) -> None:
        """Write one row and wait for it; a failed request is retried (the statements are
        idempotent) with back-off, then re-raised so that the task fails and Flink restarts it from
        the last checkpoint."""
        stmt, values = self.batch(self.bound(row))
        await_statements(self, [(stmt, values, self.execute_async(stmt, values))])

    def batch(self, pairs: Sequence[tuple[Any, tuple[Any, ...]]]) -> tuple[Any, Optional[tuple[Any, ...]]]:
        """One request for several (statement, values) pairs: an unlogged batch.

        Per request the Python driver spends ~0.1-0.2 ms of CPU, far more than per statement in it
        (docs/benchmark-history.md, write forms), so rows are sent a few at a time. Unlogged: each statement
        carries its own write timestamp and is idempotent, so a batch that is applied in part and
        retried ends the same as one applied whole; no batch log is needed."""
        if len(pairs) == 1:
            return pairs[0]
        from cassandra.query import BatchStatement, BatchType

        batch = for_writes(BatchStatement(batch_type=BatchType.UNLOGGED), self._config)
        for stmt, values in pairs:
            batch.add(stmt, values)
        batch.is_idempotent = True
        return batch, None

    def bound(self, row: Any) -> list[tuple[Any, tuple[Any, ...]]]:
        """The (prepared statement, values) pairs that store one pipeline row."""
        from cassandra.query import UNSET_VALUE

        ts = _ms_to_datetime(row.ts)
        # A bound None is stored as a tombstone, and every event lacks either a product or a query;
        # the row is new, so there is nothing to delete: leave the column unset.
        product_id = UNSET_VALUE if row.product_id is None else row.product_id
        query = UNSET_VALUE if row.query is None else row.query
        out: list[tuple[Any, tuple[Any, ...]]] = [
            (self._insert_event, (row.user_id, ts, row.event_id, row.type, product_id, query, row.ts * 1000))
        ]
        if row.product_ids:  # an empty list would hide the previous, useful one
            out.append((self._upsert_recs, (
                row.user_id, list(row.product_ids), [float(x) for x in row.scores], row.source,
                row.event_id, ts, _ms_to_datetime(row.write_ts // 1000), row.variant,
                row.impressions, row.hits, row.write_ts,
            )))
        return out

    def execute_async(self, statement: Any, values: Optional[tuple[Any, ...]]) -> Any:
        return self._session.execute_async(statement, values)

    def _retry_delay(self, attempt: int, exc: BaseException) -> Optional[float]:
        """Seconds to wait before retry ``attempt`` (0-based) after ``exc``; None: give up."""
        if attempt >= self._config.write_retries:
            return None
        delay = min(8.0, 0.5 * 2**attempt)
        log.warning("Cassandra write failed (%s: %s); retry %d/%d in %.1f s", type(exc).__name__, exc,
                    attempt + 1, self._config.write_retries, delay)
        return delay

    def execute_with_retries(self, statement: Any, values: Optional[tuple[Any, ...]],
                             first_error: BaseException) -> None:
        """Run a statement that failed once again, synchronously, with the writer's retries."""
        attempt, exc = 0, first_error
        while True:
            delay = self._retry_delay(attempt, exc)
            if delay is None:
                raise exc
            attempt += 1
            time.sleep(delay)
            try:
                self._session.execute(statement, values)
                return
            except Exception as again:
                exc = again

    def close(self) -> None:
        if self._session is not None:
            self._session.cluster.shutdown()
            self._session = None


def await_statements(writer: Any, sent: Iterable[tuple[Any, Optional[tuple[Any, ...]], Any]]) -> None:
    """Wait for (statement, values, future) triples in order; a failed one is run again with the
    writer's retries (:meth:`RecommendationWriter.execute_with_retries`), which raises when they run out."""
    for stmt, values, future in sent:
        try:
            future.result()
        except Exception as exc:
            writer.execute_with_retries(stmt, values, exc)


# ---------------------------------------------------------------------------------------------
# catalog table

def store_catalog(config: CassandraConfig, catalog: Catalog) -> int:
    """Every product of ``catalog`` into ``products``, its transitions included (a catalog without
    them writes empty lists, so none of an earlier catalog's stay behind)."""
    from cassandra.concurrent import execute_concurrent_with_args

    session = connection.connect(config, config.keyspace)
    try:
        add_missing_columns(session, config.keyspace, "products")  # a keyspace made by an older version
        stmt = for_writes(session.prepare(
            f"INSERT INTO {qualified(config.keyspace, 'products')} (product_id, title, category, price, in_stock, "
            "embedding, transition_ids, transition_weights) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        ), config)
        successors = successor_lists(catalog.transitions, catalog.product_ids)
        args = [
            (
                pid, catalog.titles[i], catalog.categories[i],
                None if np.isnan(catalog.prices[i]) else float(catalog.prices[i]),
                bool(catalog.in_stock[i]), [float(x) for x in catalog.vectors[i]], *successors[i],
            )
            for i, pid in enumerate(catalog.product_ids)
        ]
        results = execute_concurrent_with_args(session, stmt, args, concurrency=64, raise_on_first_error=True)
        return sum(1 for ok, _ in results if ok)
    finally:
        session.cluster.shutdown()


# ---------------------------------------------------------------------------------------------
# catalog updates (`streamrec catalog publish`)

# Columns of `products` a product update may set, in the order of ProductUpdate's fields.
PRODUCT_COLUMNS = ("title", "category", "price", "in_stock", "embedding")


def product_upsert_cql(columns: Iterable[str], keyspace: Optional[str] = None) -> str:
    """The upsert of one product that sets only ``columns``: the others keep their value
    (into ``keyspace.products``; without a keyspace, the session's).

    An INSERT of a subset of columns writes those cells alone (and creates the row if it is new).
    """
    cols = list(columns)
    unknown = [c for c in cols if c not in PRODUCT_COLUMNS]
    if unknown or len(set(cols)) != len(cols):
        raise ValueError(f"not a set of product columns: {cols}")
    names = ["product_id", *cols]
    table = "products" if keyspace is None else qualified(keyspace, "products")
    return f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"


def _product_values(update: Any, columns: Iterable[str]) -> tuple[Any, ...]:
    values: list[Any] = [update.product_id]
    for c in columns:
        v = getattr(update, c)
        values.append([float(x) for x in v] if c == "embedding" else v)
    return tuple(values)


class ProductStore:
    """Writes product updates into `products`, setting only the fields each update names.

    One prepared statement per set of changed fields, prepared on first use and cached. Writes are
    issued in input order with the driver's client-side, monotonic write timestamps, so when one
    product is updated twice the later update wins even though up to ``concurrency`` writes are in
    flight at once. Every statement is idempotent (a plain upsert): a retry rewrites the same cells.
    """

    def __init__(self, config: CassandraConfig, session: Any = None, concurrency: int = 64) -> None:
        self._own = session is None
        self._session = connection.connect(config, config.keyspace) if session is None else session
        self._keyspace = config.keyspace
        self._config = config
        self._statements: dict[tuple[str, ...], Any] = {}
        self._concurrency = max(1, concurrency)

    def _statement(self, columns: tuple[str, ...]) -> Any:
        stmt = self._statements.get(columns)
        if stmt is None:
            stmt = for_writes(self._session.prepare(product_upsert_cql(columns, self._keyspace)), self._config)
            stmt.is_idempotent = True
            self._statements[columns] = stmt
        return stmt

    def embedding_dim(self) -> Optional[int]:
        """Length of the first non-empty embedding among the first 1000 products (None: none)."""
        from cassandra.query import SimpleStatement

        stmt = SimpleStatement("SELECT embedding FROM products LIMIT 1000", fetch_size=100)
        for r in self._session.execute(stmt, timeout=60):
            if r.embedding:
                return len(r.embedding)
        return None

    def upsert(self, updates: Iterable[Any]) -> list[Optional[str]]:
        """Write every update (ProductUpdate) in order; one entry per update: None, or why it failed."""
        from collections import deque

        items = list(updates)
        errors: list[Optional[str]] = [None] * len(items)
        in_flight: deque[tuple[int, Any]] = deque()

        def settle(i: int, future: Any) -> None:
            try:
                future.result()
            except Exception as exc:
                errors[i] = f"Cassandra write failed ({type(exc).__name__}: {exc})"

        for i, u in enumerate(items):
            columns = tuple(u.changed_fields())
            try:
                future = self._session.execute_async(self._statement(columns), _product_values(u, columns))
            except Exception as exc:
                errors[i] = f"Cassandra write failed ({type(exc).__name__}: {exc})"
                continue
            in_flight.append((i, future))
            if len(in_flight) >= self._concurrency:
                settle(*in_flight.popleft())
        for i, future in in_flight:
            settle(i, future)
        return errors

    def close(self) -> None:
        if self._own:
            self._session.cluster.shutdown()
