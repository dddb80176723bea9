"""Flink-side sinks: the Cassandra writer operator and a sink that ends the graph."""

from __future__ import annotations

import logging
from collections import deque
from typing import Any, Iterable

from pyflink.datastream import DataStream, ProcessFunction, RuntimeContext
from pyflink.datastream.connectors import Sink
from pyflink.java_gateway import get_gateway

from streamrec.config import Config
from streamrec.connectors.cassandra import RecommendationWriter, await_statements

log = logging.getLogger(__name__)


class CassandraWrite(ProcessFunction):
    """Stores each pipeline row; with ``cassandra_max_in_flight`` > 0 many rows are in flight at once.

    Rows in flight must be stored before the checkpoint that covers them completes. The Java side
    ends the Python bundle before a checkpoint barrier passes (``prepareSnapshotPreBarrier``) and
    waits for it; at a bundle's end PyFlink reads every gauge of the operator, so the gauge
    registered here is where the writer waits for all of its rows (PyFlink has no other end-of-bundle
    callback for a user function). The order of writes does not matter: each carries its own
    event-time write timestamp, and Cassandra keeps the newest.
    """

    def __init__(self, config: Config) -> None:
        self._writer = RecommendationWriter(config)
        self._max_in_flight = config.cassandra_max_in_flight
        self._in_flight: deque[tuple[Any, tuple[Any, ...], Any]] = deque()

    def open(self, runtime_context: RuntimeContext) -> None:
        self._writer.open()
        self._in_flight = deque()
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
        for stmt, values in self._writer.bound(value):
            self._in_flight.append((stmt, values, self._writer.execute_async(stmt, values)))
        if len(self._in_flight) > self._max_in_flight:
            self._wait(len(self._in_flight) - self._max_in_flight // 2)
        return []

    def drain(self) -> int:
        """Wait for every write in flight (retrying failed ones); returns how many there were."""
        n = len(self._in_flight)
        self._wait(n)
        return n

    def _wait(self, count: int) -> None:
        await_statements(self._writer, [self._in_flight.popleft() for _ in range(min(count, len(self._in_flight)))])

    def close(self) -> None:
        try:
            self.drain()
        finally:
            self._writer.close()


def discarding_sink() -> Sink:
    # The Cassandra writes happen in the Python operator (no Cassandra connector supports Flink 2);
    # the graph still needs a sink, and this one costs nothing.
    jvm = get_gateway().jvm
    return Sink(jvm.org.apache.flink.streaming.api.functions.sink.v2.DiscardingSink())


def attach_cassandra(recommendations: DataStream, config: Config) -> None:
    (
        recommendations.process(CassandraWrite(config))
        .name("save-cassandra")
        .uid("save-cassandra")
        .sink_to(discarding_sink())
        .name("end")
        .uid("end")
    )
