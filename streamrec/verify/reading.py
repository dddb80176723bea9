"""Reading what verify compares: the events topic (bounded, from the earliest offset) and the
`events` and `recommendations` tables."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Optional

from streamrec.config import Config

EventKey = tuple[str, int, str]  # the primary key of `events`: (user_id, ts ms, event_id)
EventValue = tuple[str, Optional[str], Optional[str]]  # (type, product_id, query)


class TopicReader:
    """Bounded reads of one topic from the earliest offset, in partition order.

    Each :meth:`read` returns what was appended since the previous one, up to (at least) the end
    offsets it found when it started; no consumer group, nothing committed.
    """

    def __init__(self, config: Config, topic: str) -> None:
        from kafka import KafkaConsumer

        from streamrec.connectors.kafka import client_options

        self.topic = topic
        self._consumer = KafkaConsumer(
            bootstrap_servers=config.kafka.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=max(1024 * 1024, config.limits.max_record_bytes * 4),
            # as the job's source reads: an aborted transaction's records are no event of the topic
            isolation_level="read_committed",
            **client_options(config.kafka),
        )
        self._assigned: list[Any] = []

    def _assign(self) -> list[Any]:
        from kafka import TopicPartition

        partitions = self._consumer.partitions_for_topic(self.topic)
        if not partitions:
            raise RuntimeError(f"topic {self.topic!r} does not exist (or has no partitions)")
        wanted = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        if wanted != self._assigned:
            new = [tp for tp in wanted if tp not in self._assigned]
            self._consumer.assign(wanted)
            self._consumer.seek_to_beginning(*new)
            self._assigned = wanted
        return wanted

    def read(self, timeout: float = 120.0) -> list[tuple[int, int, Optional[bytes]]]:
        """(partition, offset, value) of every new record, each partition in offset order; the
        records' Kafka timestamps (epoch ms) in the same order are in :attr:`timestamps`."""
        tps = self._assign()
        end = self._consumer.end_offsets(tps)
        out: list[tuple[int, int, Optional[bytes]]] = []
        self.timestamps: list[int] = []
        deadline = time.monotonic() + timeout
        while any(self._consumer.position(tp) < end[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {self.topic!r} up to offsets {end} took over {timeout:.0f} s")
            for tp, records in self._consumer.poll(timeout_ms=1000).items():
                out.extend((tp.partition, r.offset, r.value) for r in records)
                self.timestamps.extend(r.timestamp for r in records)
        return out

    def close(self) -> None:
        self._consumer.close()


@dataclass(frozen=True)
class StoredRecs:
    product_ids: list[str]
    scores: list[float]
    source: str
    event_id: Optional[str]
    event_ts: Optional[int]
    updated_at: Optional[int]
    variant: Optional[str] = None
    impressions: Optional[int] = None
    hits: Optional[int] = None


def read_store(config: Config) -> tuple[list[tuple[EventKey, EventValue]], dict[str, StoredRecs]]:
    """Every row of `events` and `recommendations` (prepared statements, paged)."""
    from streamrec.connectors.cassandra import connect, datetime_to_ms, qualified

    session = connect(config.cassandra, config.cassandra.keyspace)
    try:
        ev = session.prepare(
            "SELECT user_id, ts, event_id, type, product_id, query "
            f"FROM {qualified(config.cassandra.keyspace, 'events')}")
        ev.fetch_size = 5000
        rc = session.prepare(
            "SELECT user_id, product_ids, scores, source, event_id, event_ts, updated_at, variant, impressions, hits "
            f"FROM {qualified(config.cassandra.keyspace, 'recommendations')}")
        rc.fetch_size = 5000
        events = [((r.user_id, datetime_to_ms(r.ts), r.event_id), (r.type, r.product_id, r.query))
                  for r in session.execute(ev, timeout=120)]
        recs = {
            r.user_id: StoredRecs(
                list(r.product_ids or []), [float(x) for x in (r.scores or [])], r.source or "", r.event_id,
                None if r.event_ts is None else datetime_to_ms(r.event_ts),
                None if r.updated_at is None else datetime_to_ms(r.updated_at),
                r.variant, r.impressions, r.hits,
            )
            for r in session.execute(rc, timeout=120)
        }
    finally:
        session.cluster.shutdown()
    return events, recs

