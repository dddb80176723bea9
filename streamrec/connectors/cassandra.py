"""Cassandra: schema, the job's idempotent writer, the catalog table and the query side."""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Iterator, Optional, Sequence

import numpy as np

from streamrec.config import Config
from streamrec.model.catalog import Catalog
from streamrec.query import ProductInfo

log = logging.getLogger(__name__)

_IDENT = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,47}$")


def _check_ident(name: str) -> str:
    # The keyspace name is the one thing we cannot bind as a parameter: refuse anything but a plain name.
    if not _IDENT.match(name):
        raise ValueError(f"invalid Cassandra keyspace name {name!r}")
    return name


def security_options(config: Config) -> dict[str, Any]:
    """``Cluster(...)`` arguments for username/password and TLS (empty when neither is configured)."""
    options: dict[str, Any] = {}
    if config.cassandra_username:
        from cassandra.auth import PlainTextAuthProvider

        options["auth_provider"] = PlainTextAuthProvider(config.cassandra_username, config.cassandra_password)
    elif config.cassandra_password:
        raise ValueError("STREAMREC_CASSANDRA_PASSWORD is set but STREAMREC_CASSANDRA_USERNAME is not")
    if config.cassandra_tls:
        import ssl

        context = ssl.create_default_context(cafile=config.cassandra_tls_ca_file or None)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.check_hostname = config.cassandra_tls_check_hostname
        if config.cassandra_tls_cert_file:
            context.load_cert_chain(config.cassandra_tls_cert_file, config.cassandra_tls_key_file or None)
        options["ssl_context"] = context
    return options


def consistency_level(name: str) -> int:
    """The driver's value of a consistency level name (``LOCAL_QUORUM``, ...)."""
    from cassandra import ConsistencyLevel

    return int(ConsistencyLevel.name_to_value[name.upper()])


def for_writes(statement: Any, config: Config) -> Any:
    """``statement`` with the write consistency level (STREAMREC_CASSANDRA_WRITE_CONSISTENCY); a
    session's own statements go at the read level (``connect``)."""
    statement.consistency_level = consistency_level(config.cassandra_write_consistency)
    return statement


_ROW_TYPES: dict[tuple[str, ...], Any] = {}


def named_tuple_rows(colnames: Any, rows: Any) -> list[Any]:
    """The driver's default rows (namedtuples), with each column set's class made once: the driver's
    own factory builds a new namedtuple class for every result, ~6% of the HTTP service's CPU per
    recommendations read (profiled)."""
    from cassandra.query import named_tuple_factory

    key = tuple(colnames)
    row_type = _ROW_TYPES.get(key)
    if row_type is None:
        if len(_ROW_TYPES) > 256:  # bounded: column sets come from the code's statements, a handful
            _ROW_TYPES.clear()
        row_type = _ROW_TYPES[key] = type(named_tuple_factory(colnames, [key])[0])
    return [row_type(*row) for row in rows]


def connect(config: Config, keyspace: Optional[str] = None, connect_timeout: float = 10.0,
            protocol_version: int = 5) -> Any:
    """A cassandra-driver Session (the Cluster is reachable as ``session.cluster``). Its requests go
    at the read consistency level (STREAMREC_CASSANDRA_READ_CONSISTENCY) unless a statement says
    otherwise: every write statement carries the write level (:func:`for_writes`)."""
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import DCAwareRoundRobinPolicy

    profile = ExecutionProfile(load_balancing_policy=DCAwareRoundRobinPolicy(),
                               consistency_level=consistency_level(config.cassandra_read_consistency),
                               row_factory=named_tuple_rows)
    cluster = Cluster(
        contact_points=config.cassandra_contact_points,
        port=config.cassandra_port,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        protocol_version=protocol_version,
        connect_timeout=connect_timeout,
        **security_options(config),
    )
    return cluster.connect(keyspace)


def schema_statements(keyspace: str, replication_factor: int, events_ttl_s: int = 0) -> list[str]:
    """The keyspace and tables. ``events_ttl_s`` is the events table's retention (its
    default_time_to_live; 0: none): Config.events_ttl_s, docs/GUARANTEES.md."""
    ks = _check_ident(keyspace)
    # frozen collections: every write replaces the whole list, and a frozen value is overwritten
    # in place instead of leaving a tombstone per write as a non-frozen list would.
    return [
        f"CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = "
        f"{{'class': 'SimpleStrategy', 'replication_factor': {int(replication_factor)}}}",
        f"""CREATE TABLE IF NOT EXISTS {ks}.events (
            user_id text, ts timestamp, event_id text, type text, product_id text, query text,
            PRIMARY KEY ((user_id), ts, event_id)
        ) WITH CLUSTERING ORDER BY (ts DESC, event_id ASC) AND default_time_to_live = {int(events_ttl_s)}""",
        f"""CREATE TABLE IF NOT EXISTS {ks}.recommendations (
            user_id text PRIMARY KEY, product_ids frozen<list<text>>, scores frozen<list<float>>,
            source text, event_id text, event_ts timestamp, updated_at timestamp,
            variant text, impressions bigint, hits bigint
        )""",
        f"""CREATE TABLE IF NOT EXISTS {ks}.products (
            product_id text PRIMARY KEY, title text, category text, price double,
            in_stock boolean, embedding frozen<list<float>>
        )""",
    ]


# Columns added after the first release: a keyspace created by an older version gets them here.
ADDED_COLUMNS = {"recommendations": [("variant", "text"), ("impressions", "bigint"), ("hits", "bigint")]}


def ensure_schema(config: Config) -> None:
    from cassandra import InvalidRequest

    session = connect(config)
    try:
        for stmt in schema_statements(config.keyspace, config.replication_factor, config.events_ttl_s):
            session.execute(stmt, timeout=60)
        ks = _check_ident(config.keyspace)
        _ensure_events_ttl(session, ks, config.events_ttl_s)
        columns_of = session.prepare(
            "SELECT column_name FROM system_schema.columns WHERE keyspace_name = ? AND table_name = ?")
        for table, columns in ADDED_COLUMNS.items():
            have = {r.column_name for r in session.execute(columns_of, (ks, table))}
            for stmt in [f"ALTER TABLE {ks}.{table} ADD {name} {typ}" for name, typ in columns if name not in have]:
                try:
                    session.execute(stmt, timeout=60)
                except InvalidRequest:  # added meanwhile by another client
                    pass
    finally:
        session.cluster.shutdown()


def _ensure_events_ttl(session: Any, ks: str, events_ttl_s: int) -> None:
    """A table created before the retention setting, or with another value, gets the configured one.
    The table option applies to writes from then on; rows already stored keep the TTL they were
    written with (none, for rows older than the option)."""
    row = session.execute(session.prepare(
        "SELECT default_time_to_live FROM system_schema.tables WHERE keyspace_name = ? AND table_name = ?"),
        (ks, "events"), timeout=60).one()
    if row is not None and int(row.default_time_to_live or 0) != int(events_ttl_s):
        session.execute(f"ALTER TABLE {ks}.events WITH default_time_to_live = {int(events_ttl_s)}", timeout=60)


def drop_keyspace(config: Config) -> None:
    session = connect(config)
    try:
        session.execute(f"DROP KEYSPACE IF EXISTS {_check_ident(config.keyspace)}", timeout=60)
    finally:
        session.cluster.shutdown()


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _ms_to_datetime(ms: int) -> datetime:
    # timedelta arithmetic is exact; fromtimestamp(ms / 1000) can round a millisecond away.
    return _EPOCH + timedelta(milliseconds=ms)


def datetime_to_ms(dt: datetime) -> int:
    # the driver returns naive datetimes in UTC
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    # Rounded, not floored: the driver makes the datetime from float seconds, which for late dates
    # lands just below the stored millisecond (31220835644905 ms, in 2959, read as ...44.904999 s).
    return round((dt - _EPOCH) / timedelta(milliseconds=1))


def qualified(keyspace: str, table: str) -> str:
    """``keyspace.table`` for a prepared statement. Every statement names its keyspace: prepared
    with table names alone in a session bound to a keyspace, Cassandra 5 answers each with the
    warning "`USE <keyspace>` with prepared statements is considered to be an anti-pattern due to
    ambiguity in non-qualified table names"."""
    return f"{_check_ident(keyspace)}.{table}"


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

    def __init__(self, config: Config) -> None:
        self._config = config
        self._session: Any = None

    def open(self) -> None:
        self._session = connect(self._config, self._config.keyspace)
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
        if attempt >= self._config.cassandra_write_retries:
            return None
        delay = min(8.0, 0.5 * 2**attempt)
        log.warning("Cassandra write failed (%s: %s); retry %d/%d in %.1f s", type(exc).__name__, exc,
                    attempt + 1, self._config.cassandra_write_retries, delay)
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

def store_catalog(config: Config, catalog: Catalog) -> int:
    from cassandra.concurrent import execute_concurrent_with_args

    session = connect(config, config.keyspace)
    try:
        stmt = for_writes(session.prepare(
            f"INSERT INTO {qualified(config.keyspace, 'products')} (product_id, title, category, price, in_stock, "
            "embedding) VALUES (?, ?, ?, ?, ?, ?)"
        ), config)
        args = [
            (
                pid, catalog.titles[i], catalog.categories[i],
                None if np.isnan(catalog.prices[i]) else float(catalog.prices[i]),
                bool(catalog.in_stock[i]), [float(x) for x in catalog.vectors[i]],
            )
            for i, pid in enumerate(catalog.product_ids)
        ]
        results = execute_concurrent_with_args(session, stmt, args, concurrency=64, raise_on_first_error=True)
        return sum(1 for ok, _ in results if ok)
    finally:
        session.cluster.shutdown()


def load_catalog(config: Config) -> Catalog:
    session = connect(config, config.keyspace)
    try:
        rows = list(session.execute("SELECT product_id, title, category, price, in_stock, embedding FROM products"))
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
    return Catalog(
        product_ids=tuple(r.product_id for r in rows),
        vectors=vectors,
        titles=tuple(r.title or "" for r in rows),
        categories=tuple(r.category or "" for r in rows),
        prices=np.array([np.nan if r.price is None else r.price for r in rows], dtype=np.float64),
        in_stock=np.array([r.in_stock is not False for r in rows], dtype=bool),
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

    def __init__(self, config: Config, session: Any = None) -> None:
        """``session``: one made by :func:`connect` with other options (the HTTP service's)."""
        self._session = session if session is not None else connect(config, config.keyspace)
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

    def __init__(self, config: Config, session: Any = None, concurrency: int = 64) -> None:
        self._own = session is None
        self._session = connect(config, config.keyspace) if session is None else session
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
