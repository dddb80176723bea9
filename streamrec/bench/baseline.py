"""The baseline: the service a user would write instead of the Flink job.

One plain Python process: a kafka-python consumer (auto-commit, the library's default) -> the same
parsing, update rule and top-k functions as the job (:mod:`streamrec.model`) -> the same Cassandra
writer and prepared statements (:class:`~streamrec.connectors.cassandra.RecommendationWriter`).
The user states live in a dict in memory: no checkpoints, no recovery (a crash loses every
embedding, and auto-commit may have committed offsets of events whose writes never happened),
no way to run a second instance on the same users.

``mode="naive"`` (the default, what the benchmark compares against): one event at a time, the
top-k of that event's user, then a write that waits for its rows. ``mode="batched"`` is the best a
single Python process does with the same functions: one matrix product for every event of a
poll, the writes of the poll in flight together. The rows written are identical in both modes.

Run it with ``python -m streamrec.bench.baseline --catalog FILE`` (settings from ``STREAMREC_*``).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from streamrec.config import Config
from streamrec.model.catalog import Catalog
from streamrec.model.events import BadRecord, Event, parse_event
from streamrec.model.model import (
    HistoryEntry,
    ModelParams,
    UserState,
    excluded_ids,
    recommend_batch,
    transition_scores,
    update_user,
    write_timestamp_us,
)

log = logging.getLogger("streamrec.bench.baseline")


@dataclass(frozen=True)
class OutputRow:
    """What :meth:`RecommendationWriter.write` reads: the job's output row, field for field."""

    event_id: str
    user_id: str
    ts: int
    type: str
    product_id: Optional[str]
    query: Optional[str]
    write_ts: int
    product_ids: tuple[str, ...]
    scores: tuple[float, ...]
    source: str
    variant: str = "default"  # the naive service has no A/B variants or hit counts
    impressions: int = 0
    hits: int = 0


def model_params(config: Config) -> ModelParams:
    """The job's model parameters for ``config`` (what ``streamrec.jobs.pipeline`` builds, without pyflink)."""
    return ModelParams.from_config(config.model)


class BaselineModel:
    """The per-event logic of the baseline, without Kafka or Cassandra (unit-testable)."""

    def __init__(self, catalog: Catalog, params: ModelParams, max_record_bytes: int = 64 * 1024,
                 max_query_chars: int = 1024) -> None:
        self.catalog = catalog
        self.params = params
        self.known = frozenset(catalog.product_ids)
        self.states: dict[str, UserState] = {}
        self._max_record_bytes = max_record_bytes
        self._max_query_chars = max_query_chars

    def parse(self, raw: bytes) -> Event | BadRecord:
        return parse_event(raw, self.known, self._max_record_bytes, self._max_query_chars)

    def apply(self, event: Event) -> tuple[Optional[np.ndarray], list[str], int, tuple[HistoryEntry, ...]]:
        """Update the user's state; return a snapshot (vector, excluded ids, write timestamp, the
        history the transition term reads) after it."""
        state = self.states.get(event.user_id)
        if state is None:
            state = self.states[event.user_id] = UserState()
        update_user(state, event, self.catalog, self.params)
        return state.vector, excluded_ids(state, self.params), write_timestamp_us(state), tuple(state.history)

    def process(self, events: Sequence[Event]) -> list[OutputRow]:
        """Output rows for ``events`` in order: one top-k batch for all of them, with the
        transition term when the catalog carries transitions (the job's model)."""
        snaps = [self.apply(e) for e in events]
        boost = transition_scores([s[3] for s in snaps], self.catalog, self.params)
        recs = recommend_batch([s[0] for s in snaps], [s[1] for s in snaps], self.catalog, self.params, boost=boost)
        return [
            OutputRow(e.event_id, e.user_id, e.ts, e.type, e.product_id, e.query, s[2],
                      r.product_ids, r.scores, r.source)
            for e, s, r in zip(events, snaps, recs)
        ]


class _Stop(Exception):
    pass


def _raise_stop(signum: int, frame: Any) -> None:
    raise _Stop


def run(config: Config, catalog: Catalog, mode: str = "naive", max_poll_records: int = 500) -> int:
    """Consume ``config.kafka.events_topic`` until SIGTERM/SIGINT; return the number of events processed."""
    from kafka import KafkaConsumer, KafkaProducer

    from streamrec.connectors.cassandra import RecommendationWriter

    model = BaselineModel(catalog, model_params(config), config.limits.max_record_bytes, config.limits.max_query_chars)
    writer = RecommendationWriter(config.cassandra)
    writer.open()
    consumer = KafkaConsumer(
        config.kafka.events_topic,
        bootstrap_servers=config.kafka.bootstrap,
        group_id=config.kafka.consumer_group,
        enable_auto_commit=True,  # what the tutorials do: offsets committed every 5 s, whatever happened
        auto_offset_reset="earliest" if config.kafka.start_from_earliest else "latest",
        max_poll_records=max_poll_records,
    )
    dlq = KafkaProducer(bootstrap_servers=config.kafka.bootstrap)
    processed = 0
    old_term = signal.signal(signal.SIGTERM, _raise_stop)
    try:
        if mode == "naive":
            for msg in consumer:
                parsed = model.parse(msg.value)
                if isinstance(parsed, BadRecord):
                    dlq.send(config.kafka.dlq_topic, parsed.to_json().encode("utf-8"))
                    continue
                (row,) = model.process([parsed])
                writer.write(row)
                processed += 1
        elif mode == "batched":
            session = writer._session  # the writer's own session and statements, only in flight together
            while True:
                polled = consumer.poll(timeout_ms=500)
                events: list[Event] = []
                for records in polled.values():
                    for msg in records:
                        parsed = model.parse(msg.value)
                        if isinstance(parsed, BadRecord):
                            dlq.send(config.kafka.dlq_topic, parsed.to_json().encode("utf-8"))
                        else:
                            events.append(parsed)
                if not events:
                    continue
                _write_concurrently(writer, session, model.process(events))
                processed += len(events)
        else:
            raise ValueError(f"unknown mode {mode!r}")
    except (_Stop, KeyboardInterrupt):
        pass
    finally:
        signal.signal(signal.SIGTERM, old_term)
        log.info("baseline (%s) stopping after %d events", mode, processed)
        consumer.close()
        dlq.close()
        writer.close()
    return processed


def _write_concurrently(writer: Any, session: Any, rows: list[OutputRow]) -> None:
    """The writer's statements for every row (the same as the naive mode's), all in flight, then
    wait for all of them."""
    futures = [session.execute_async(stmt, values) for row in rows for stmt, values in writer.bound(row)]
    for f in futures:
        f.result()


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m streamrec.bench.baseline", description=__doc__.split("\n\n")[0])
    parser.add_argument("--catalog", default="", help="catalog file (.npz); default: STREAMREC_CATALOG_PATH, "
                        "else the Cassandra products table")
    parser.add_argument("--mode", choices=["naive", "batched"], default="naive")
    parser.add_argument("--max-poll-records", type=int, default=500)
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    config = Config.from_env()
    path = args.catalog or config.model.catalog_path
    if path:
        catalog = Catalog.load(path)
    else:
        from streamrec.connectors.cassandra import load_catalog

        catalog = load_catalog(config.cassandra)
    started = time.monotonic()
    n = run(config, catalog, args.mode, args.max_poll_records)
    log.info("processed %d events in %.1f s", n, time.monotonic() - started)


if __name__ == "__main__":
    main()
