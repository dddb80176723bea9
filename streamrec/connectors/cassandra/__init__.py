"""Cassandra: schema, the job's idempotent writer, the catalog table and the query side.

connection (the session and its options; every module connects through connection.connect),
schema (keyspace and tables), writers (the pipeline row, the catalog, product updates), readers
(the catalog, QueryClient). Every name is importable from here.
"""

from __future__ import annotations

from streamrec.connectors.cassandra.connection import (
    _check_ident,
    _ms_to_datetime,
    connect,
    consistency_level,
    datetime_to_ms,
    for_writes,
    named_tuple_rows,
    qualified,
    security_options,
)
from streamrec.connectors.cassandra.readers import (
    AB_FETCH_SIZE,
    NO_DRIVER_TIMEOUT,
    ProductInfo,
    QueryClient,
    StoredRecommendations,
    load_catalog,
)
from streamrec.connectors.cassandra.schema import ADDED_COLUMNS, drop_keyspace, ensure_schema, schema_statements
from streamrec.connectors.cassandra.writers import (
    PRODUCT_COLUMNS,
    ProductStore,
    RecommendationWriter,
    await_statements,
    insert_event_cql,
    product_upsert_cql,
    store_catalog,
    upsert_recommendations_cql,
)

__all__ = [
    "AB_FETCH_SIZE",
    "ADDED_COLUMNS",
    "NO_DRIVER_TIMEOUT",
    "PRODUCT_COLUMNS",
    "ProductInfo",
    "ProductStore",
    "QueryClient",
    "RecommendationWriter",
    "StoredRecommendations",
    "_check_ident",
    "_ms_to_datetime",
    "await_statements",
    "connect",
    "consistency_level",
    "datetime_to_ms",
    "drop_keyspace",
    "ensure_schema",
    "for_writes",
    "insert_event_cql",
    "load_catalog",
    "named_tuple_rows",
    "product_upsert_cql",
    "qualified",
    "schema_statements",
    "security_options",
    "store_catalog",
    "upsert_recommendations_cql",
]
