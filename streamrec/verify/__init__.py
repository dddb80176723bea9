"""Consistency check: rebuild what Cassandra must hold from the events topic and compare.

The events topic is the source of truth. :func:`verify` reads it from the earliest offset up to
the end offsets it finds when it starts (a bounded read), runs every record through the same
functions the job runs (``parse_event``, ``apply_event``, ``write_timestamp_us``,
``recommend_users``) in the same order (the topic is keyed by user, so a user's events are in one
partition and the job sees them in offset order), and compares the result with the ``events`` and
``recommendations`` tables and the dead-letter topic:

- ``missing``: a row the topic implies that Cassandra lacks (a lost write);
- ``extra``: a row Cassandra has that no record of the topic implies;
- ``doubled``: one event stored under more than one primary key (e.g. a replay with another ts);
- ``stale``: a user's recommendations reflect an older event than the newest one of the topic
  (an older write won over a newer one, or the newest write is missing);
- ``different``: the right row with other values (another model, catalog or configuration).

Scores are compared with a tolerance and equal scores may come in either order: a batch matrix
product and a one-user product may round the last bit differently (see :func:`same_top_k`).
Trending lists (cold-start users) depend on when the trending list reached the job, so for those
rows only the rules are checked (source, nothing excluded, not newer than the newest event).
What it cannot see: events deleted from the topic by retention before the job read them, a
catalog that changed while the job ran (`streamrec catalog publish`), a job started with
``start_from_earliest=false``.
"""

from __future__ import annotations

import logging
import time
from typing import Optional

from streamrec.config import Config
from streamrec.model.catalog import Catalog
from streamrec.model.events import BadRecord, guarded
from streamrec.model.products import parse_product_update
from streamrec.model.variants import Variants
from streamrec.verify.comparing import compare, future_ts_payloads, unknown_product_payloads
from streamrec.verify.expected import SCORE_TOLERANCE, Expectation, ExpectedRecs, ab_counts_fit, same_top_k
from streamrec.verify.reading import EventKey, EventValue, StoredRecs, TopicReader, read_store
from streamrec.verify.report import MAX_EXAMPLES, DeadLetterCheck, Report, TableCheck

__all__ = ["MAX_EXAMPLES", "SCORE_TOLERANCE", "DeadLetterCheck", "EventKey", "EventValue", "Expectation",
           "ExpectedRecs", "Report", "StoredRecs", "TableCheck", "TopicReader", "Verifier", "ab_counts_fit", "compare",
           "future_ts_payloads", "read_store", "same_top_k", "unknown_product_payloads", "verify"]

log = logging.getLogger("streamrec.verify")


class Verifier:
    """Keeps the topic readers and the rebuilt state between attempts (``--wait`` re-checks
    incrementally: only what was appended to the topic since the last attempt is read)."""

    def __init__(self, config: Config, catalog: Optional[Catalog] = None, dead_letters: bool = True) -> None:
        from streamrec.connectors.catalog import CatalogFromConfig

        self.config = config
        self.catalog = catalog if catalog is not None else CatalogFromConfig(config)()
        self.expect = Expectation(self.catalog, Variants.from_config(config.model), config.limits.max_record_bytes,
                                  config.limits.max_query_chars, config.model.user_ttl_ms,
                                  ranks_every_event=config.job.hot_path == "per-event",
                                  max_ts_lead_ms=config.limits.max_ts_lead_ms,
                                  unknown_product_wait_ms=config.limits.unknown_product_wait_ms)
        self._events = TopicReader(config, config.kafka.events_topic)
        self._products = TopicReader(config, config.kafka.products_topic)
        self._dlq: Optional[TopicReader] = TopicReader(config, config.kafka.dlq_topic) if dead_letters else None
        self._letters: list[Optional[bytes]] = []
        self._partitions: set[int] = set()

    def check(self) -> Report:
        started = time.monotonic()
        # the clock before the events are read: the job read each of them no later than this
        self.expect.now_ms = int(time.time() * 1000)
        new = self._events.read()
        # the products the job learns from the products topic (read after the events: a product
        # published after the job read an event is one it may have waited for)
        self.expect.add_live_products(self._live_products())
        if self._dlq is not None:
            # before the events are fed: the FUTURE_TS letters decide the records the clock cannot,
            # the UNKNOWN_PRODUCT letters those whose product came late
            letters = [v for _, _, v in self._dlq.read()]
            self._letters.extend(letters)
            self.expect.refused_future.update(future_ts_payloads(letters))
            self.expect.refused_unknown.update(unknown_product_payloads(letters))
        for (partition, _offset, value), record_ts in zip(new, self._events.timestamps):
            self._partitions.add(partition)
            self.expect.feed(value, partition, record_ts)
        log.info("read %d new record(s) of %s (%d in all)", len(new), self.config.kafka.events_topic,
                 self.expect.records)
        stored_events, stored_recs = read_store(self.config)
        log.info("read %d event row(s) and %d recommendation row(s) from %s", len(stored_events), len(stored_recs),
                 self.config.cassandra.keyspace)
        report = Report(topic=self.config.kafka.events_topic, partitions=len(self._partitions))
        compare(self.expect, stored_events, stored_recs, report,
                self._letters if self._dlq is not None else None)
        report.seconds = round(time.monotonic() - started, 3)
        return report

    def _live_products(self) -> list[str]:
        """The product ids of the valid updates on the products topic (as parse-products reads
        them), or none when the topic does not exist."""
        try:
            records = self._products.read()
        except RuntimeError:  # no products topic: the job has nothing to learn products from either
            return []
        out = []
        for _, _, value in records:
            update = guarded(parse_product_update, value, self.catalog.dim, self.config.limits.max_record_bytes)
            if not isinstance(update, BadRecord):
                out.append(update.product_id)
        return out

    def close(self) -> None:
        self._events.close()
        self._products.close()
        if self._dlq is not None:
            self._dlq.close()


def verify(config: Config, wait: float = 0.0, dead_letters: bool = True, catalog: Optional[Catalog] = None,
           interval: float = 3.0) -> Report:
    """Compare once, or - with ``wait`` > 0 - until the store is consistent or ``wait`` seconds
    have passed (the job may still be catching up); returns the last report."""
    started = time.monotonic()
    verifier = Verifier(config, catalog, dead_letters)
    try:
        attempts = 0
        while True:
            attempts += 1
            report = verifier.check()
            report.attempts = attempts
            if report.ok or time.monotonic() - started >= wait:
                report.seconds = round(time.monotonic() - started, 3)
                return report
            log.info("not consistent yet (events: %d missing; recommendations: %d missing, %d stale); "
                     "checking again", report.events.missing, report.recommendations.missing,
                     report.recommendations.stale)
            time.sleep(interval)
    finally:
        verifier.close()
