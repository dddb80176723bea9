"""The harness's load: producing the bench's events to Kafka, all at once or paced."""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

from streamrec.bench.generator import EventGenerator, GenEvent
from streamrec.config import Config

log = logging.getLogger("streamrec.bench")


class Producer:
    """The harness's load generator: confluent-kafka (librdkafka) behind the three calls it needs.

    The harness shares the 2 cores with the system it measures. kafka-python spent ~510 us of CPU
    per event at 700 events/s (0.36 cores, plus the poller; docs/benchmark-history.md); this
    producer with :class:`Pacer`'s pre-encoded events ~20 us at 8,000 events/s (0.16 cores).
    A message that cannot be delivered fails :meth:`flush`: the counts checked afterwards assume
    every produced event reached the topic.
    """

    def __init__(self, config: Config, linger_ms: int) -> None:
        from confluent_kafka import Producer as _Kafka

        # Delivery reports for failed messages only: a Python callback per delivered message cost
        # the paced phases ~2 us of the harness's CPU per event, for nothing.
        self._kafka = _Kafka({"bootstrap.servers": config.kafka.bootstrap, "linger.ms": linger_ms, "acks": 1,
                              "client.id": "streamrec-bench", "delivery.report.only.error": True})
        self._errors: list[str] = []
        self._unpolled = 0

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is not None:
            self._errors.append(str(err))

    def send(self, topic: str, key: bytes, value: bytes) -> None:
        while True:
            try:
                self._kafka.produce(topic, value=value, key=key, on_delivery=self._delivered)
                break
            except BufferError:  # the local queue is full: let librdkafka send some first
                self._kafka.poll(0.05)
        self._unpolled += 1
        if self._unpolled >= 256:  # serves the (error) reports; they are rare, no need per message
            self._unpolled = 0
            self._kafka.poll(0)

    def flush(self, timeout: float = 120.0) -> None:
        left = self._kafka.flush(timeout)
        if left or self._errors:
            raise RuntimeError(f"{left} message(s) not sent in {timeout:.0f} s; delivery errors: {self._errors[:3]}")

    def close(self) -> None:
        self._kafka.flush(10.0)


# The paced phases' producer batches for up to 5 ms (librdkafka's default), as a shop's services would.
PACED_LINGER_MS = 5


def preload(configs: list[Config], events: list[GenEvent]) -> float:
    """Write ``events`` to the events topic of every config (keyed by user); return seconds spent."""
    started = time.monotonic()
    payloads = [(e.user_id.encode(), e.to_json().encode()) for e in events]
    producer = Producer(configs[0], linger_ms=50)
    try:
        for config in configs:
            for key, value in payloads:
                producer.send(config.kafka.events_topic, key=key, value=value)
        producer.flush()
    finally:
        producer.close()
    return time.monotonic() - started


def delete_topics(config: Config) -> None:
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=config.kafka.bootstrap, client_id="streamrec-bench")
    try:
        admin.delete_topics([config.kafka.events_topic, config.kafka.dlq_topic, config.kafka.products_topic])
    except Exception as exc:  # leftovers are harmless: the next run uses new names
        log.warning("could not delete topics of %s: %s", config.kafka.events_topic, exc)
    finally:
        admin.close()


class Pacer:
    """Sends ``gen``'s events to ``topic`` at ``rate`` per second from its creation on, each stamped
    with the wall clock when sent: the load of the paced phases."""

    def __init__(self, producer: Producer, topic: str, gen: EventGenerator, rate: float,
                 clock: Callable[[], float] = time.time) -> None:
        self._producer, self._topic, self._gen, self._rate = producer, topic, gen, rate
        self._buffer: list[tuple[bytes, bytes, bytes]] = []  # (key, JSON before ts, JSON after ts), reversed
        self._clock = clock
        self.started = clock()
        self.sent = 0

    def _refill(self) -> None:
        # Encoded ahead, around the ts that is stamped when sent: the harness shares the 2 cores with
        # the system under test, and json.dumps per event was a third of its CPU per event.
        out = []
        for e in self._gen.batch(1024):
            before, after = e.to_json(ts=TS_MARK).encode().split(str(TS_MARK).encode())
            out.append((e.user_id.encode(), before, after))
        self._buffer = out[::-1]

    def send_due(self, now: float) -> None:
        """Send what is due by ``now``, stamped with the wall clock (one stamp per call: they go out
        together)."""
        due = int(self._rate * (now - self.started)) - self.sent
        if due <= 0:
            return
        ts = str(int(self._clock() * 1000)).encode()
        for _ in range(due):
            if not self._buffer:
                self._refill()
            key, before, after = self._buffer.pop()
            self._producer.send(self._topic, key=key, value=before + ts + after)
            self.sent += 1


# A ts no generated event holds (events are stamped in milliseconds since 1970): where the Pacer
# splits an event's JSON to put the send time in.
TS_MARK = 987_654_321_987_654_321
