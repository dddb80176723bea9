"""The Cassandra session: contact, security and consistency options, rows as namedtuples, keyspace
and table names, the timestamp conversions. Every other module of the package connects through
:func:`connect` here (tests replace it here)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any, Optional

from streamrec.config import CassandraConfig

_IDENT = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,47}$")


def _check_ident(name: str) -> str:
    # The keyspace name is the one thing we cannot bind as a parameter: refuse anything but a plain name.
    if not _IDENT.match(name):
        raise ValueError(f"invalid Cassandra keyspace name {name!r}")
    return name


def security_options(config: CassandraConfig) -> dict[str, Any]:
    """``Cluster(...)`` arguments for username/password and TLS (empty when neither is configured)."""
    options: dict[str, Any] = {}
    if config.username:
        from cassandra.auth import PlainTextAuthProvider

        options["auth_provider"] = PlainTextAuthProvider(config.username, config.password)
    elif config.password:
        raise ValueError("STREAMREC_CASSANDRA_PASSWORD is set but STREAMREC_CASSANDRA_USERNAME is not")
    if config.tls:
        import ssl

        context = ssl.create_default_context(cafile=config.tls_ca_file or None)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.check_hostname = config.tls_check_hostname
        if config.tls_cert_file:
            context.load_cert_chain(config.tls_cert_file, config.tls_key_file or None)
        options["ssl_context"] = context
    return options


def consistency_level(name: str) -> int:
    """The driver's value of a consistency level name (``LOCAL_QUORUM``, ...)."""
    from cassandra import ConsistencyLevel

    return int(ConsistencyLevel.name_to_value[name.upper()])


def for_writes(statement: Any, config: CassandraConfig) -> Any:
    """``statement`` with the write consistency level (STREAMREC_CASSANDRA_WRITE_CONSISTENCY); a
    session's own statements go at the read level (``connect``)."""
    statement.consistency_level = consistency_level(config.write_consistency)
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


def connect(config: CassandraConfig, keyspace: Optional[str] = None, connect_timeout: float = 10.0,
            protocol_version: int = 5) -> Any:
    """A cassandra-driver Session (the Cluster is reachable as ``session.cluster``). Its requests go
    at the read consistency level (STREAMREC_CASSANDRA_READ_CONSISTENCY) unless a statement says
    otherwise: every write statement carries the write level (:func:`for_writes`)."""
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import DCAwareRoundRobinPolicy

    profile = ExecutionProfile(load_balancing_policy=DCAwareRoundRobinPolicy(),
                               consistency_level=consistency_level(config.read_consistency),
                               row_factory=named_tuple_rows)
    cluster = Cluster(
        contact_points=config.contact_points,
        port=config.port,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        protocol_version=protocol_version,
        connect_timeout=connect_timeout,
        **security_options(config),
    )
    return cluster.connect(keyspace)


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
