"""Flink-side sinks: the Cassandra writers (Java sink, or a Python operator) and a sink that ends the graph."""

from __future__ import annotations

import logging
from collections import deque
from typing import Any, Iterable, Optional

from pyflink.datastream import DataStream, ProcessFunction, RuntimeContext
from pyflink.datastream.connectors import Sink

from streamrec.config import Config
from streamrec.connectors.cassandra import (
    RecommendationWriter,
    await_statements,
    insert_event_cql,
    upsert_recommendations_cql,
)
from streamrec.connectors.javasupport import SINK_CLASS_NAME, java_class

log = logging.getLogger(__name__)


class CassandraWrite(ProcessFunction):
    """Stores each pipeline row; with ``cassandra_max_in_flight`` > 0 many rows are in flight at once.

    Rows go out ``cassandra_batch_rows`` at a time as one unlogged batch (the Python driver's cost is
    per request, not per statement). Rows in flight must be stored before the checkpoint that
    covers them completes. The Java side ends the Python bundle before a checkpoint barrier passes
    (``prepareSnapshotPreBarrier``) and waits for it; at a bundle's end PyFlink reads every gauge
    of the operator, so the gauge registered here is where the writer sends what it holds and
    waits for all of it (PyFlink has no other end-of-bundle callback for a user function). The
    order of writes does not matter: each carries its own event-time write timestamp, and
    Cassandra keeps the newest.
    """

    def __init__(self, config: Config) -> None:
        self._writer = RecommendationWriter(config.cassandra)
        # Thread mode has no bundles, so nothing would await the writes in flight before a checkpoint.
        self._max_in_flight = 0 if config.job.python_execution_mode == "thread" else config.cassandra.max_in_flight
        self._batch_rows = max(1, config.cassandra.batch_rows)
        self._pending: list[tuple[Any, tuple[Any, ...]]] = []  # statements of rows not sent yet
        self._pending_rows = 0
        self._in_flight: deque[tuple[Any, Optional[tuple[Any, ...]], Any]] = deque()

    def open(self, runtime_context: RuntimeContext) -> None:
        self._writer.open()
        self._pending, self._pending_rows, self._in_flight = [], 0, deque()
        if self._max_in_flight > 0:
            group = runtime_context.get_metrics_group()
            if group is None:  # python.metric.enabled=false: no bundle-end hook, so await every row
                log.warning("Python metrics are off: Cassandra writes are awaited one row at a time")
                self._max_in_flight = 0
            else:
                group.gauge("cassandraWritesDrained", self.drain)

    def process_element(self, value: Any, ctx: ProcessFunction.Context) -> Iterable[Any]:
        if self._max_in_flight <= 0:
            self._writer.write(value)
            return []
        self._pending.extend(self._writer.bound(value))
        self._pending_rows += 1
        if self._pending_rows >= self._batch_rows:
            self._send()
            if len(self._in_flight) > self._max_in_flight:
                self._wait(len(self._in_flight) - self._max_in_flight // 2)
        return []

    def _send(self) -> None:
        if self._pending:
            stmt, values = self._writer.batch(self._pending)
            self._in_flight.append((stmt, values, self._writer.execute_async(stmt, values)))
        self._pending, self._pending_rows = [], 0

    def drain(self) -> int:
        """Send what is held back, then wait for every request in flight (retrying failed ones);
        returns how many requests there were."""
        self._send()
        n = len(self._in_flight)
        self._wait(n)
        return n

    def _wait(self, count: int) -> None:
        await_statements(self._writer, [self._in_flight.popleft() for _ in range(min(count, len(self._in_flight)))])

    def close(self) -> None:
        # Never raises: in thread mode an exception from close (which also runs after a failure or a
        # cancellation) is fatal to the whole TaskManager. Rows not stored here were not covered by a
        # completed checkpoint, so the restart replays them.
        try:
            self.drain()
        except Exception as exc:
            log.error("Cassandra writes in flight at close were not stored (the restart replays them): %s", exc)
        finally:
            try:
                self._writer.close()
            except Exception as exc:
                log.warning("closing the Cassandra driver failed: %s", exc)


def discarding_sink() -> Sink:
    # The Python writer is an operator; the graph still needs a sink, and this one costs nothing.
    return Sink(java_class("org.apache.flink.streaming.api.functions.sink.v2.DiscardingSink")())


def uses_java_writer(config: Config) -> bool:
    """The Java sink writes unless the Python writer is asked for, or TLS is on (the Java sink
    speaks plain connections with optional username/password only)."""
    return config.cassandra.writer == "java" and not config.cassandra.tls


def java_cassandra_sink(config: Config) -> Sink:
    """``CassandraRowSink`` (java/src/main/java/streamrec/flink/) for the rows of RECOMMENDATION_ROW."""
    return Sink(java_class(SINK_CLASS_NAME)(
        ",".join(config.cassandra.contact_points), config.cassandra.port, config.cassandra.keyspace,
        config.cassandra.username, config.cassandra.password,
        insert_event_cql(config.cassandra.keyspace), upsert_recommendations_cql(config.cassandra.keyspace),
        config.cassandra.batch_rows, max(1, config.cassandra.max_in_flight), config.cassandra.write_retries,
        config.cassandra.batch_linger_ms, config.cassandra.write_consistency))


def attach_cassandra(recommendations: DataStream, config: Config) -> None:
    if uses_java_writer(config):
        recommendations.sink_to(java_cassandra_sink(config)).name("save-cassandra").uid("save-cassandra")
        return
    if config.cassandra.writer == "java":
        log.warning("Cassandra TLS is on: the Python writer stores the rows (the Java sink has no TLS)")
    (
        recommendations.process(CassandraWrite(config))
        .name("save-cassandra")
        .uid("save-cassandra")
        .sink_to(discarding_sink())
        .name("end")
        .uid("end")
    )
