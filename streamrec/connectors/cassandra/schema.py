"""The keyspace and tables: created if missing, columns added since the first release, the events
table's retention; dropped by the tests."""

from __future__ import annotations

from typing import Any

from streamrec.config import CassandraConfig
from streamrec.connectors.cassandra import connection
from streamrec.connectors.cassandra.connection import _check_ident


def schema_statements(keyspace: str, replication_factor: int, events_ttl_s: int = 0) -> list[str]:
    """The keyspace and tables. ``events_ttl_s`` is the events table's retention (its
    default_time_to_live; 0: none): CassandraConfig.events_ttl_s, docs/GUARANTEES.md."""
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
            in_stock boolean, embedding frozen<list<float>>,
            transition_ids frozen<list<text>>, transition_weights frozen<list<float>>
        )""",
    ]


# Columns added after the first release: a keyspace created by an older version gets them here.
ADDED_COLUMNS = {
    "recommendations": [("variant", "text"), ("impressions", "bigint"), ("hits", "bigint")],
    # the catalog's item-to-item transitions (streamrec.model.transitions.successor_lists)
    "products": [("transition_ids", "frozen<list<text>>"), ("transition_weights", "frozen<list<float>>")],
}


def ensure_schema(config: CassandraConfig) -> None:
    session = connection.connect(config)
    try:
        for stmt in schema_statements(config.keyspace, config.replication_factor, config.events_ttl_s):
            session.execute(stmt, timeout=60)
        ks = _check_ident(config.keyspace)
        _ensure_events_ttl(session, ks, config.events_ttl_s)
        for table in ADDED_COLUMNS:
            add_missing_columns(session, ks, table)
    finally:
        session.cluster.shutdown()


def add_missing_columns(session: Any, keyspace: str, table: str) -> None:
    """The columns of :data:`ADDED_COLUMNS` that ``keyspace.table`` lacks, added."""
    from cassandra import InvalidRequest

    ks = _check_ident(keyspace)
    have = table_columns(session, ks, table)
    for name, typ in ADDED_COLUMNS.get(table, []):
        if name not in have:
            try:
                session.execute(f"ALTER TABLE {ks}.{table} ADD {name} {typ}", timeout=60)
            except InvalidRequest:  # added meanwhile by another client
                pass


def table_columns(session: Any, keyspace: str, table: str) -> set[str]:
    """The names of ``keyspace.table``'s columns (empty when there is no such table)."""
    columns_of = session.prepare(
        "SELECT column_name FROM system_schema.columns WHERE keyspace_name = ? AND table_name = ?")
    return {r.column_name for r in session.execute(columns_of, (keyspace, table), timeout=60)}


def _ensure_events_ttl(session: Any, ks: str, events_ttl_s: int) -> None:
    """A table created before the retention setting, or with another value, gets the configured one.
    The table option applies to writes from then on; rows already stored keep the TTL they were
    written with (none, for rows older than the option)."""
    row = session.execute(session.prepare(
        "SELECT default_time_to_live FROM system_schema.tables WHERE keyspace_name = ? AND table_name = ?"),
        (ks, "events"), timeout=60).one()
    if row is not None and int(row.default_time_to_live or 0) != int(events_ttl_s):
        session.execute(f"ALTER TABLE {ks}.events WITH default_time_to_live = {int(events_ttl_s)}", timeout=60)


def drop_keyspace(config: CassandraConfig) -> None:
    session = connection.connect(config)
    try:
        session.execute(f"DROP KEYSPACE IF EXISTS {_check_ident(config.keyspace)}", timeout=60)
    finally:
        session.cluster.shutdown()
