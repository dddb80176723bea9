"""Flink-side sinks: the Cassandra writer operator and a sink that ends the graph."""

from __future__ import annotations

from typing import Any, Iterable

from pyflink.datastream import DataStream, ProcessFunction, RuntimeContext
from pyflink.datastream.connectors import Sink
from pyflink.java_gateway import get_gateway

from streamrec.config import Config
from streamrec.connectors.cassandra import RecommendationWriter


class CassandraWrite(ProcessFunction):
    def __init__(self, config: Config) -> None:
        self._writer = RecommendationWriter(config)

    def open(self, runtime_context: RuntimeContext) -> None:
        self._writer.open()

    def process_element(self, value: Any, ctx: ProcessFunction.Context) -> Iterable[Any]:
        self._writer.write(value)
        return []

    def close(self) -> None:
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
