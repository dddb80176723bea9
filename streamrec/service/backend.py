"""What the HTTP service reads and writes: Cassandra, the catalog in memory, trending, the producer.

:class:`Backend` is the service's only view of the outside world, so the routes are tested with a
fake one (tests/unit/test_service.py) and run on the real stack with :class:`LiveBackend`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Optional, Protocol, Sequence

from streamrec.config import Config
from streamrec.model.catalog import Catalog
from streamrec.model.events import Event, latest_ts, parse_event
from streamrec.model.model import ModelParams
from streamrec.model.trending import DecayedPopularity

log = logging.getLogger(__name__)


@dataclass
class SendResult:
    """Which events of one request reached the events topic (indices into the request's list)."""

    sent: list[int] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)  # (index, why)


class Backend(Protocol):
    async def recommendations(self, user_id: str) -> Any:
        """The user's stored row (a StoredRecommendations) or None; awaited on the event loop."""

    def events(self, user_id: str, limit: int) -> list[dict[str, Any]]:
        """The user's newest stored events, newest first."""

    def catalog(self) -> Optional[Catalog]:
        """The catalog held in memory; None until it is loaded."""

    def trending(self) -> list[tuple[str, float]]:
        """(product_id, score), best first."""

    def send(self, events: Sequence[Event]) -> SendResult:
        """Produce the events to the events topic and wait for the broker's answers."""

    def readiness(self) -> dict[str, bool]:
        """Each dependency (cassandra, kafka, catalog) and whether it is usable now."""

    def close(self) -> None: ...


def _settle(future: asyncio.Future[Any], value: Any, exc: Optional[BaseException]) -> None:
    if future.done():  # the request went away (client disconnected, cancelled)
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(value)


# Users per batched read: the reads that gather go as one `IN` request of at most this many.
READ_BATCH = 32
# Batches in flight to Cassandra at once; reads that arrive meanwhile gather until one answers.
READS_IN_FLIGHT = 1
# Seconds a read may take before its requests fail (the driver's default request timeout; the
# reads carry no driver timer, see connectors/cassandra.py NO_DRIVER_TIMEOUT).
READ_TIMEOUT_S = 10.0


class ReadTimeout(TimeoutError):
    """Cassandra did not answer a read within READ_TIMEOUT_S."""


class _Batch:
    """The waiters of one read, its deadline on the event loop, and whether it holds a place in
    flight (until its answer or its deadline, whichever comes first)."""

    __slots__ = ("deadline", "in_flight", "loop", "waiting")

    def __init__(self, waiting: dict[str, list[asyncio.Future[Any]]], loop: asyncio.AbstractEventLoop) -> None:
        self.waiting = waiting
        self.loop = loop
        self.in_flight = False
        self.deadline: Optional[asyncio.TimerHandle] = None


class ReadBatcher:
    """The recommendation reads that gather while a read is in flight, sent to Cassandra as one
    request. Each read on its own costs the driver a request future, the encoding of a request, a
    wake-up of its IO thread, the decoding of an answer and a wake-up of the event loop, and
    Cassandra a native-protocol request; under load those costs are shared. A lone read (nothing in
    flight) goes at once, as before, so it waits for nothing; the reads of one event-loop turn go
    together at its end; while READS_IN_FLIGHT batches are out, new reads wait for the first answer
    (at most one Cassandra round trip) and then go together. Profiled at 1,000 requests/s on a
    busy machine, the driver was half of the service's CPU with one request per read: the reads
    arrived one per turn. The gain shows when the service is short of CPU (the loop falls behind,
    reads gather); with CPU to spare the cost per request was the same within noise (~500 us, bench
    serve on the test profile). A large READS_IN_FLIGHT gives back the batching of one turn alone.
    Requests for the same user share the read, which was sent after each of them arrived (no
    staler than its own)."""

    def __init__(self, client: Any, max_batch: int = READ_BATCH, timeout: float = READ_TIMEOUT_S,
                 in_flight: int = READS_IN_FLIGHT) -> None:
        self._client = client
        self._max_batch = max_batch
        self._timeout = timeout
        self._max_in_flight = max(1, in_flight)
        self._pending: dict[str, list[asyncio.Future[Any]]] = {}
        # the loop the pending reads belong to: a flush is scheduled on it, or (held) the next answer sends them
        self._flush_loop: Optional[asyncio.AbstractEventLoop] = None
        self._held = False
        self._in_flight = 0
        self._in_flight_loop: Optional[asyncio.AbstractEventLoop] = None  # the loop _in_flight counts for

    async def read(self, user_id: str) -> Any:
        """The user's stored row (the driver's row), or None."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Any] = loop.create_future()
        if self._flush_loop is not None and self._flush_loop is not loop:
            if not self._flush_loop.is_closed():  # another loop's batch is open: this read goes alone
                self._send({user_id: [answer]}, loop)
                return await answer
            # that loop is gone, and its requests with it
            self._pending, self._flush_loop, self._held = {}, None, False
        waiting = self._pending.get(user_id)
        if waiting is None:
            self._pending[user_id] = [answer]
        else:
            waiting.append(answer)
        if self._flush_loop is None:
            self._flush_loop = loop
            if self._in_flight_loop is not loop:  # batches of a loop that is gone never answer there
                self._in_flight, self._in_flight_loop = 0, loop
            if self._in_flight < self._max_in_flight:
                loop.call_soon(self._flush, loop)
            else:
                self._held = True  # _answer sends them
        return await answer

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        self._flush_loop, self._held = None, False
        pending, self._pending = self._pending, {}
        users = list(pending)
        for start in range(0, len(users), self._max_batch):
            self._send({u: pending[u] for u in users[start:start + self._max_batch]}, loop, counted=True)

    def _send(self, waiting: dict[str, list[asyncio.Future[Any]]], loop: asyncio.AbstractEventLoop,
              counted: bool = False) -> None:
        batch = _Batch(waiting, loop)
        try:
            if len(waiting) == 1:
                future = self._client.recommendations_future(next(iter(waiting)))
            else:
                future = self._client.recommendations_many_future(list(waiting))
        except Exception as exc:  # the driver refused at once (no connection): these reads fail
            self._answer(batch, None, exc)
            return
        if counted and self._in_flight_loop is loop:
            batch.in_flight = True
            self._in_flight += 1
        batch.deadline = loop.call_later(self._timeout, self._answer, batch, None,
                                         ReadTimeout(f"Cassandra did not answer within {self._timeout:g} s"))
        future.add_callbacks(self._done, self._failed, callback_args=(loop, batch), errback_args=(loop, batch))

    def _done(self, rows: Any, loop: asyncio.AbstractEventLoop, batch: _Batch) -> None:
        # on the driver's IO thread: one hop to the event loop for the whole batch
        loop.call_soon_threadsafe(self._answer, batch, list(rows or ()), None)

    def _failed(self, exc: BaseException, loop: asyncio.AbstractEventLoop, batch: _Batch) -> None:
        loop.call_soon_threadsafe(self._answer, batch, None, exc)

    def _answer(self, batch: _Batch, rows: Optional[list[Any]], exc: Optional[BaseException]) -> None:
        if batch.deadline is not None:
            batch.deadline.cancel()  # a cancelled handle lets go of the batch at once
            batch.deadline = None
        by_user = {row.user_id: row for row in rows} if rows is not None else {}
        for user_id, waiting in batch.waiting.items():
            for answer in waiting:
                _settle(answer, by_user.get(user_id), exc)
        # the first of the answer and the deadline settles; the second finds nobody waiting
        batch.waiting = {}
        if batch.in_flight:
            batch.in_flight = False
            if self._in_flight_loop is batch.loop:
                self._in_flight -= 1
                if self._held and self._flush_loop is batch.loop:
                    self._flush(batch.loop)  # the reads that gathered meanwhile go now, together


class TrendingTracker:
    """The trending list from the events themselves: the model's DecayedPopularity over the valid
    events (parsed by the job's parse_event, positive weights only), as the job's trending branch
    computes it. The job keeps its list inside the stream and stores none, so the service counts on
    its own; the job counts per minute of event time, this per event (the same order up to ties)."""

    def __init__(self, config: Config) -> None:
        params = ModelParams.from_config(config.model)
        self._weights = {t: w for t, w in params.event_weights.items() if w > 0}
        self._config = config
        self._popularity = DecayedPopularity(config.model.trending_half_life_minutes * 60_000)
        self._now = 0
        self._lock = threading.Lock()
        self._cached: list[tuple[str, float]] = []
        self._dirty = False

    def add_raw(self, raw: bytes, known: Optional[Catalog]) -> None:
        # the job's clock rule with the service's clock: an event from the future must not move `_now`
        # (one at year 2999 would decay every real product to nothing, for good)
        parsed = parse_event(raw, known_products=known.index if known is not None else None,
                             max_record_bytes=self._config.limits.max_record_bytes,
                             max_query_chars=self._config.limits.max_query_chars,
                             max_ts=latest_ts(int(time.time() * 1000), self._config.limits.max_ts_lead_ms))
        if isinstance(parsed, Event):
            self.add(parsed)

    def add(self, event: Event) -> None:
        weight = self._weights.get(event.type, 0.0)
        if weight <= 0 or event.product_id is None:
            return
        with self._lock:
            self._popularity.add(event.product_id, event.ts, weight)
            self._now = max(self._now, event.ts)
            self._dirty = True

    def top(self) -> list[tuple[str, float]]:
        with self._lock:
            if self._dirty:
                self._cached = self._popularity.top(self._config.model.trending_size, self._now)
                self._dirty = False
            return self._cached


# Parameterized column types (list<text>, ...) the driver has built, by (type, subtypes, names).
_COLLECTION_TYPES: dict[tuple[Any, ...], Any] = {}


def reuse_collection_types() -> None:
    """Make the Cassandra driver build each parameterized column type once per process.

    The driver never sets the protocol's skip-metadata flag, so every answer carries its column
    types again, and for each collection column the driver makes a new class (``type(...)``, its
    metaclass registering it): two per recommendations read (product_ids list<text>, scores
    list<float>), ~100 us each on this busy machine, and each one cyclic garbage for the
    collector. A class made from the same type and subtypes is the same type, so the first one is
    kept and handed out again. Types with their own ``apply_parameters`` (user types, which the
    driver already keeps; vectors) are left as they are."""
    from cassandra import cqltypes

    base = cqltypes._CassandraType
    build = vars(base)["apply_parameters"]
    if getattr(build, "_streamrec_reused", False):
        return
    make = build.__func__

    def apply_parameters(cls: Any, subtypes: Any, names: Any = None) -> Any:
        key = (cls, tuple(subtypes), None if names is None else tuple(names))
        made = _COLLECTION_TYPES.get(key)
        if made is None:
            if len(_COLLECTION_TYPES) > 1024:  # bounded: the column types of a few tables
                _COLLECTION_TYPES.clear()
            made = _COLLECTION_TYPES[key] = make(cls, subtypes, names)
        return made

    reused = classmethod(apply_parameters)
    reused._streamrec_reused = True  # type: ignore[attr-defined]
    base.apply_parameters = reused


class LiveBackend:
    """Cassandra (prepared statements, QueryClient), the catalog loaded once and reloaded when the
    products topic says it changed, trending from the events topic, and the acks=all idempotent
    producer of the CLI. One background thread follows both topics."""

    def __init__(self, config: Config) -> None:
        from streamrec.connectors.cassandra import QueryClient, connect
        from streamrec.connectors.kafka import new_producer

        self._config = config
        reuse_collection_types()
        # protocol v4: v5 wraps every frame in a checksummed segment whose CRC24 the driver computes
        # in pure Python, ~8% of a recommendations request's CPU (profiled); v4 frames carry the
        # same requests and answers, and TCP (or TLS) already checks what crosses the wire
        self._client = QueryClient(config.cassandra, session=connect(config.cassandra, config.cassandra.keyspace,
                                                                     protocol_version=4))
        self._client.prepare_many()
        self._reads = ReadBatcher(self._client)
        self._producer = new_producer(config.kafka, config.limits.max_record_bytes)
        self._catalog: Optional[Catalog] = None
        self._catalog_loaded_at = 0.0
        self._reload = threading.Event()
        self._stop = threading.Event()
        self._kafka_ok_at = 0.0
        self._trending = TrendingTracker(config)
        self._load_catalog()
        self._thread = threading.Thread(target=self._follow, name="streamrec-serve-follow", daemon=True)
        self._thread.start()

    # --- reads ---------------------------------------------------------------------------------

    async def recommendations(self, user_id: str) -> Any:
        # the driver answers on its own IO thread and hands the rows to the event loop: no thread waits
        return self._client.stored_recommendations(await self._reads.read(user_id))

    def events(self, user_id: str, limit: int) -> list[dict[str, Any]]:
        return self._client.events(user_id, limit)

    def catalog(self) -> Optional[Catalog]:
        return self._catalog

    def trending(self) -> list[tuple[str, float]]:
        return self._trending.top()

    # --- writes --------------------------------------------------------------------------------

    def send(self, events: Sequence[Event]) -> SendResult:
        from streamrec.connectors.kafka import send_keyed

        report = send_keyed(((i, e.user_id, e.to_json()) for i, e in enumerate(events)),
                            self._config.kafka.events_topic,
                            self._config.kafka, self._config.limits.max_record_bytes, producer=self._producer)
        failed = {i for i, _ in report.rejected}
        return SendResult(sent=[i for i in range(len(events)) if i not in failed], failed=list(report.rejected))

    # --- health --------------------------------------------------------------------------------

    def readiness(self) -> dict[str, bool]:
        return {
            "cassandra": self._client.ping(),
            # the follower asks the broker for the topics' end offsets every couple of seconds
            "kafka": time.monotonic() - self._kafka_ok_at < 10.0,
            "catalog": self._catalog is not None,
        }

    # --- the catalog and the topics ------------------------------------------------------------

    def _load_catalog(self) -> None:
        from streamrec.connectors.cassandra import load_catalog

        try:
            catalog = load_catalog(self._config.cassandra)
        except Exception as exc:  # an empty table or Cassandra away: keep what we have, say why
            log.warning("catalog not (re)loaded: %s: %s", type(exc).__name__, exc)
            self._catalog_loaded_at = time.monotonic()
            return
        self._catalog = catalog  # one reference swap: readers see the old or the new catalog whole
        self._catalog_loaded_at = time.monotonic()
        log.info("catalog loaded: %d products", len(catalog))

    def _follow(self) -> None:
        while not self._stop.is_set():
            try:
                self._follow_once()
            except Exception as exc:
                log.warning("following the topics failed (%s: %s); again in 2 s", type(exc).__name__, exc)
                self._stop.wait(2.0)

    def _follow_once(self) -> None:
        from kafka import KafkaConsumer, TopicPartition

        from streamrec.connectors.kafka import client_options

        config = self._config
        consumer = KafkaConsumer(bootstrap_servers=config.kafka.bootstrap, group_id=None, enable_auto_commit=False,
                                 **client_options(config.kafka))
        try:
            parts: list[Any] = []
            for topic in (config.kafka.events_topic, config.kafka.products_topic):
                ids = consumer.partitions_for_topic(topic) or set()
                parts += [TopicPartition(topic, p) for p in sorted(ids)]
            if not parts:
                raise RuntimeError(f"no partitions yet for {config.kafka.events_topic} / {config.kafka.products_topic}")
            consumer.assign(parts)
            events = [tp for tp in parts if tp.topic == config.kafka.events_topic]
            products = [tp for tp in parts if tp.topic == config.kafka.products_topic]
            since = int(time.time() * 1000 - config.service.trending_lookback_minutes * 60_000)
            starts = consumer.offsets_for_times({tp: since for tp in events})
            ends = consumer.end_offsets(parts)
            for tp in events:
                found = starts.get(tp)
                consumer.seek(tp, found.offset if found is not None else ends[tp])
            for tp in products:  # the catalog just loaded already holds what came before
                consumer.seek(tp, ends[tp])
            self._kafka_ok_at = time.monotonic()
            checked = time.monotonic()
            while not self._stop.is_set():
                batches = consumer.poll(timeout_ms=500, max_records=5000)
                for tp, records in batches.items():
                    if tp.topic == config.kafka.products_topic:
                        self._reload.set()
                        continue
                    catalog = self._catalog
                    for record in records:
                        if record.value is not None:
                            self._trending.add_raw(record.value, catalog)
                now = time.monotonic()
                if now - checked >= 2.0:
                    consumer.end_offsets(parts)  # raises when the broker is gone
                    self._kafka_ok_at = checked = now
                # no catalog yet (an empty table at start): try again every few seconds
                every = 5.0 if self._catalog is None else config.service.catalog_refresh_s
                if self._reload.is_set() or now - self._catalog_loaded_at >= every:
                    self._reload.clear()
                    self._load_catalog()
        finally:
            consumer.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._producer.close()
        self._client.close()
