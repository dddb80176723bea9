"""Flink-side sinks: the Cassandra writer operator and a sink that ends the graph."""

from __future__ import annotations

import asyncio
from typing import Any, Iterable, List

from pyflink.common import Types
from pyflink.common.time import Time
from pyflink.datastream import AsyncDataStream, DataStream, ProcessFunction, RuntimeContext
from pyflink.datastream.connectors import Sink
from pyflink.datastream.functions import AsyncFunction
from pyflink.java_gateway import get_gateway

from streamrec.config import Config
from streamrec.connectors.cassandra import RecommendationWriter

# Longer than the writer's own retries (0.5 + 1 + 2 + 4 + 8 s with the default 4): a write that
# still hangs after that fails the task, and Flink restarts it from the last checkpoint.
ASYNC_TIMEOUT_S = 120


class CassandraWrite(ProcessFunction):
    """One row at a time, each write awaited (``cassandra_max_in_flight`` = 0)."""

    def __init__(self, config: Config) -> None:
        self._writer = RecommendationWriter(config)

    def open(self, runtime_context: RuntimeContext) -> None:
        self._writer.open()

    def process_element(self, value: Any, ctx: ProcessFunction.Context) -> Iterable[Any]:
        self._writer.write(value)
        return []

    def close(self) -> None:
        self._writer.close()


def _awaitable(response_future: Any) -> asyncio.Future[Any]:
    """A cassandra-driver ResponseFuture as an asyncio future of the running loop."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Any] = loop.create_future()

    def settle(setter: str, value: Any) -> None:
        if not done.done():
            getattr(done, setter)(value)

    response_future.add_callbacks(lambda rows: loop.call_soon_threadsafe(settle, "set_result", rows),
                                  lambda exc: loop.call_soon_threadsafe(settle, "set_exception", exc))
    return done


class AsyncCassandraWrite(AsyncFunction):
    """Many rows in flight at once. PyFlink's async operator waits for every in-flight row when a
    bundle ends, and a bundle ends before each checkpoint barrier passes, so every row of a
    completed checkpoint is stored. The order of writes does not matter: each carries its own
    event-time write timestamp, and Cassandra keeps the newest."""

    def __init__(self, config: Config) -> None:
        self._writer = RecommendationWriter(config)

    def open(self, runtime_context: RuntimeContext) -> None:
        self._writer.open()

    async def async_invoke(self, value: Any) -> List[Any]:
        attempt = 0
        while True:
            try:
                await asyncio.gather(*(_awaitable(self._writer.execute_async(stmt, values))
                                       for stmt, values in self._writer.bound(value)))
                return []
            except Exception as exc:
                delay = self._writer.retry_delay(attempt, exc)
                if delay is None:
                    raise
                attempt += 1
                await asyncio.sleep(delay)

    def close(self) -> None:
        self._writer.close()


def discarding_sink() -> Sink:
    # The Cassandra writes happen in the Python operator (no Cassandra connector supports Flink 2);
    # the graph still needs a sink, and this one costs nothing.
    jvm = get_gateway().jvm
    return Sink(jvm.org.apache.flink.streaming.api.functions.sink.v2.DiscardingSink())


def attach_cassandra(recommendations: DataStream, config: Config) -> None:
    if config.cassandra_max_in_flight > 0:
        written = AsyncDataStream.unordered_wait(
            recommendations, AsyncCassandraWrite(config), Time.seconds(ASYNC_TIMEOUT_S),
            capacity=config.cassandra_max_in_flight, output_type=Types.BOOLEAN())
    else:
        written = recommendations.process(CassandraWrite(config))
    (
        written.name("save-cassandra")
        .uid("save-cassandra")
        .sink_to(discarding_sink())
        .name("end")
        .uid("end")
    )
