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

import copy
import dataclasses
import json
import logging
import math
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Optional, Union

import numpy as np

from streamrec.config import Config
from streamrec.model.catalog import Catalog
from streamrec.model.events import (
    FUTURE_TS,
    UNKNOWN_PRODUCT,
    BadRecord,
    Event,
    decode_like_java,
    guarded,
    internal_dead_letter,
    latest_ts,
    parse_guarded,
)
from streamrec.model.model import (
    ModelParams,
    UserState,
    apply_event,
    eligible_mask,
    excluded_ids,
    is_cold,
    recommend_users,
    remember_shown,
    write_timestamp_us,
)
from streamrec.model.products import parse_product_update
from streamrec.model.variants import Variants

log = logging.getLogger("streamrec.verify")

SCORE_TOLERANCE = 1e-5
MAX_EXAMPLES = 20


# --------------------------------------------------------------------------------------------
# the expected store, rebuilt from the topic
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ExpectedRecs:
    product_ids: tuple[str, ...]
    scores: tuple[float, ...]
    source: str
    event_id: str
    event_ts: int  # epoch ms of the event the row reflects
    updated_at: int  # epoch ms: the newest event time seen for the user (write timestamp // 1000)
    variant: str = ""
    impressions: int = 0
    hits: int = 0


@dataclass
class _User:
    state: UserState = field(default_factory=UserState)
    partitions: set[int] = field(default_factory=set)
    recs: Optional[ExpectedRecs] = None  # the newest row the job surely wrote
    # a cold-start event after it: the job wrote a trending row for it, or (no trending list yet) nothing
    maybe_trending: Optional[ExpectedRecs] = None
    # the late catalog: an event of this user named a product published on the products topic, so
    # the job may have held it back until the product came (after the user's later events)
    named_live: bool = False
    order_open: bool = False  # ... and a later event followed it: the job's order is not defined


EventKey = tuple[str, int, str]  # the primary key of `events`: (user_id, ts ms, event_id)
EventValue = tuple[str, Optional[str], Optional[str]]  # (type, product_id, query)


class Expectation:
    """What the job must have written after processing the records fed so far, in that order."""

    def __init__(self, catalog: Catalog, variants: Variants, max_record_bytes: int = 64 * 1024,
                 max_query_chars: int = 1024, user_ttl_ms: int = 0, ranks_every_event: bool = True,
                 max_ts_lead_ms: int = 0, unknown_product_wait_ms: int = 0) -> None:
        self.catalog = catalog
        # The per-event job ranks after every event, so a user's impressions and hits, and the row
        # of a user whose newest events left them cold, follow from the topic alone. The fast path
        # ranks a user once per batch, so they depend on where batches were cut: only their bounds
        # can be checked there (see ab_counts_fit and recommendations).
        self.ranks_every_event = ranks_every_event
        self.variants = variants
        self._known = frozenset(catalog.product_ids)
        self._max_record_bytes = max_record_bytes
        self._max_query_chars = max_query_chars
        self._user_ttl_ms = user_ttl_ms
        self._max_ts_lead_ms = max_ts_lead_ms
        # The clock rule (FUTURE_TS) depends on when the job read a record, which the topic does not
        # say: it was no earlier than the record's Kafka timestamp and no later than verify's clock
        # (``now_ms``, set before each read). Between the two bounds the dead-letter topic decides:
        # ``refused_future`` holds the payloads of the FUTURE_TS letters read from it.
        self.now_ms: Optional[int] = None
        self.refused_future: set[str] = set()
        # The late catalog: products published on the products topic may have been unknown to the job's
        # parser when it read an event (it loads its catalog once, then follows the topic). Such an event
        # is expected stored unless the dead-letter topic holds its UNKNOWN_PRODUCT letter (the product
        # came after the wait, or with no wait after the event): ``refused_unknown`` holds their payloads.
        self._unknown_product_wait_ms = unknown_product_wait_ms
        self.live_products: frozenset[str] = frozenset()
        self._known_all = self._known
        self._known_before_live = self._known
        self.refused_unknown: set[str] = set()
        self._masks = {name: eligible_mask(catalog, p) for name, p in variants.params.items()}
        self.users: dict[str, _User] = {}
        self.events: dict[EventKey, EventValue] = {}
        self.dead_letters: Counter[tuple[str, str]] = Counter()  # (code, payload)
        self.records = 0
        self.valid = 0
        self.conflicts: list[str] = []  # one primary key, two different events in the topic

    def add_live_products(self, product_ids: Iterable[str]) -> None:
        """Product ids of valid updates on the products topic (read before the events are fed)."""
        self.live_products = self.live_products | frozenset(product_ids)
        self._known_all = self._known | self.live_products
        self._known_before_live = self._known - self.live_products

    def feed(self, value: Union[str, bytes, None], partition: int = 0, record_ts: Optional[int] = None) -> None:
        """One record value of the events topic, as the job's source hands it over; ``record_ts``:
        its Kafka timestamp (epoch ms; None or negative: unknown)."""
        self.records += 1
        # A record without a value (a tombstone) reaches the parser as "" (NullSafeStringSchema).
        text = "" if value is None else decode_like_java(value) if isinstance(value, bytes) else value
        now = int(time.time() * 1000) if self.now_ms is None else self.now_ms
        # refused for sure when ts leads verify's clock by more than the lead: the job accepts an event
        # only once its own clock has reached ts minus the lead (clocks in sync assumed)
        max_ts = latest_ts(now, self._max_ts_lead_ms)
        parsed = parse_guarded(text, self._known_all, self._max_record_bytes, self._max_query_chars, max_ts)
        if text in self.refused_unknown:
            # the job's parser did not know the product yet, and the product did not come within the wait:
            # the letter is the one the parser writes without the live products
            before = parse_guarded(text, self._known_before_live, self._max_record_bytes, self._max_query_chars,
                                   max_ts)
            if isinstance(before, BadRecord) and before.code == UNKNOWN_PRODUCT:
                parsed = before
        if isinstance(parsed, Event) and self._max_ts_lead_ms > 0 and text in self.refused_future:
            earliest = min(now, record_ts) if record_ts is not None and record_ts >= 0 else None
            if earliest is None or earliest + self._max_ts_lead_ms < parsed.ts:
                # the job may have read it while it was still too far ahead, and its letter says it did
                parsed = BadRecord(FUTURE_TS, "ahead of the job's clock when it read the record", text)
        if isinstance(parsed, BadRecord):
            self.dead_letters[(parsed.code, parsed.payload)] += 1
            return
        e = parsed
        user = self.users.get(e.user_id)
        # what the job's update-and-recommend operator does with the event, step by step; where it
        # raises, the job writes nothing for the event, keeps the user's state as it was (its copy
        # was unpickled for the event) and dead-letters the event as INTERNAL
        try:
            variant, params = self.variants.for_user(e.user_id)
            state = copy.deepcopy(user.state) if user is not None else UserState()
            state = apply_event(state, e, self.catalog, params, self._user_ttl_ms)
            rec = recommend_users([state], self.catalog, params, (), self._masks[variant])[0]
            remember_shown(state, rec, params)
        except Exception as exc:
            letter = internal_dead_letter(e.to_json(), exc)
            self.dead_letters[(letter.code, letter.payload)] += 1
            return
        self.valid += 1
        key = (e.user_id, e.ts, e.event_id)
        value_ = (e.type, e.product_id, e.query)
        old = self.events.get(key)
        if old is not None and old != value_ and len(self.conflicts) < MAX_EXAMPLES:
            # Cassandra keeps one of them (the later write, same timestamp: the larger value)
            self.conflicts.append(f"event {e.event_id!r} of user {e.user_id!r} at ts {e.ts} occurs twice "
                                  f"with different content: {old} and {value_}")
        self.events[key] = value_
        if user is None:
            user = self.users[e.user_id] = _User()
        if user.named_live:
            user.order_open = True
        if self._unknown_product_wait_ms > 0 and e.product_id in self.live_products:
            user.named_live = True
        user.partitions.add(partition)
        user.state = state
        row = ExpectedRecs(rec.product_ids, rec.scores, rec.source, e.event_id, e.ts,
                           write_timestamp_us(state) // 1000, variant, state.impressions, state.hits)
        if is_cold(state, params):
            user.maybe_trending = ExpectedRecs((), (), "trending", *dataclasses.astuple(row)[3:])
        elif rec.product_ids:  # the job writes no row for an empty list
            user.recs, user.maybe_trending = row, None

    def dead_letter_codes(self) -> Counter[str]:
        codes: Counter[str] = Counter()
        for (code, _), n in self.dead_letters.items():
            codes[code] += n
        return codes

    def recommendations(self) -> dict[str, ExpectedRecs]:
        """Per user, the newest row the job surely wrote to `recommendations`.

        The fast path ranks a user once per batch, for their newest event: when that event leaves
        the user cold (a cold start, or the first event after an idle reset), the personal row of an
        earlier event of the same batch was never written. For such users no row is sure; what is
        stored is checked by :meth:`maybe_trending`'s rules and must not be newer than the topic."""
        return {u: s.recs for u, s in self.users.items()
                if s.recs is not None and (self.ranks_every_event or s.maybe_trending is None)}

    def maybe_trending(self) -> dict[str, ExpectedRecs]:
        """Per user whose newest events were cold-start events: the newest of them."""
        return {u: s.maybe_trending for u, s in self.users.items() if s.maybe_trending is not None}

    def params_of(self, user_id: str) -> ModelParams:
        return self.variants.for_user(user_id)[1]

    def eligible_of(self, user_id: str) -> np.ndarray:
        """The eligibility mask of the user's variant (computed once per variant)."""
        return self._masks[self.variants.for_user(user_id)[0]]

    def user_state(self, user_id: str) -> Optional[UserState]:
        user = self.users.get(user_id)
        return None if user is None else user.state

    def order_open_users(self) -> set[str]:
        """Users the job may have processed in another order than the topic's: an event of theirs that
        named a product of the products topic may have waited for it (the late catalog) while their
        later events went on. Their recommendations are checked by rules only (:func:`_check_reordered`)."""
        return {u for u, s in self.users.items() if s.order_open}

    def split_users(self) -> list[str]:
        """Users whose events are in more than one partition: their order is not defined."""
        return sorted(u for u, s in self.users.items() if len(s.partitions) > 1)


def ab_counts_fit(got: Any, want: ExpectedRecs, expect: Expectation, user: str) -> bool:
    """The stored variant, impressions and hits are what the replay says (exact), or, where batching
    decides what each event saw, at least possible: 0 <= hits <= impressions < the user's events."""
    if got.variant != want.variant:
        return False
    if expect.ranks_every_event:
        return (got.impressions, got.hits) == (want.impressions, want.hits)
    state = expect.user_state(user)
    events = 0 if state is None else state.seq
    return got.impressions is not None and got.hits is not None and 0 <= got.hits <= got.impressions < max(1, events)


def same_top_k(want: ExpectedRecs, got_ids: list[str], got_scores: list[float], catalog: Catalog,
               state: Optional[UserState], params: ModelParams, tol: float = SCORE_TOLERANCE) -> bool:
    """The stored list is a correct top-k for the user: the same ids and scores, or - where the
    expected scores tie within ``tol`` - another order or choice among the tied products."""
    if list(want.product_ids) == got_ids and len(got_scores) == len(want.scores) and all(
            math.isclose(a, b, rel_tol=tol, abs_tol=tol) for a, b in zip(want.scores, got_scores)):
        return True
    if state is None or state.vector is None or len(got_ids) != len(want.product_ids):
        return False
    if len(got_scores) != len(got_ids) or not all(
            math.isclose(a, b, rel_tol=tol, abs_tol=tol) for a, b in zip(want.scores, got_scores)):
        return False
    # every stored product must be eligible and really have the stored score for this user
    u = np.asarray(state.vector, dtype=np.float32)
    norm = float(np.linalg.norm(u))
    if norm == 0:
        return False
    excluded = set(excluded_ids(state, params))
    eligible = eligible_mask(catalog, params)
    if len(set(got_ids)) != len(got_ids):
        return False
    for pid, score in zip(got_ids, got_scores):
        row = catalog.index.get(pid)
        if row is None or not eligible[row] or pid in excluded:
            return False
        true = float(catalog.vectors[row] @ (u / norm))
        if not math.isclose(true, score, rel_tol=10 * tol, abs_tol=10 * tol):
            return False
    return True


# --------------------------------------------------------------------------------------------
# reading the topic and the store
# --------------------------------------------------------------------------------------------

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
            bootstrap_servers=config.kafka_bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=max(1024 * 1024, config.max_record_bytes * 4),
            # as the job's source reads: an aborted transaction's records are no event of the topic
            isolation_level="read_committed",
            **client_options(config),
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

    session = connect(config, config.keyspace)
    try:
        ev = session.prepare(
            f"SELECT user_id, ts, event_id, type, product_id, query FROM {qualified(config.keyspace, 'events')}")
        ev.fetch_size = 5000
        rc = session.prepare(
            "SELECT user_id, product_ids, scores, source, event_id, event_ts, updated_at, variant, impressions, hits "
            f"FROM {qualified(config.keyspace, 'recommendations')}")
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


# --------------------------------------------------------------------------------------------
# the comparison
# --------------------------------------------------------------------------------------------

@dataclass
class TableCheck:
    expected: int = 0
    found: int = 0
    missing: int = 0
    extra: int = 0
    doubled: int = 0
    stale: int = 0
    different: int = 0

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.doubled or self.stale or self.different)


@dataclass
class DeadLetterCheck:
    expected: dict[str, int] = field(default_factory=dict)  # per error code
    found: dict[str, int] = field(default_factory=dict)
    missing: int = 0  # a bad record of the topic without its dead letter
    unexpected: int = 0  # a dead letter no record of the topic explains
    duplicates: int = 0  # the same dead letter more than once (allowed: the DLQ is at-least-once)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected)


@dataclass
class Report:
    topic: str
    partitions: int = 0
    records: int = 0
    valid_events: int = 0
    users: int = 0
    events: TableCheck = field(default_factory=TableCheck)
    recommendations: TableCheck = field(default_factory=TableCheck)
    dead_letters: Optional[DeadLetterCheck] = None
    warnings: list[str] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)
    attempts: int = 1
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.events.ok and self.recommendations.ok and (self.dead_letters is None or self.dead_letters.ok)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ok"] = self.ok
        return d

    def _example(self, text: str) -> None:
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(text)


def compare(expect: Expectation, stored_events: Iterable[tuple[EventKey, EventValue]],
            stored_recs: dict[str, StoredRecs], report: Report,
            dead_letters: Optional[Iterable[Optional[bytes]]] = None) -> Report:
    """Fill ``report`` with the differences between what the topic implies and what is stored."""
    report.records, report.valid_events, report.users = expect.records, expect.valid, len(expect.users)
    report.warnings.extend(expect.conflicts)
    split = expect.split_users()
    if split:
        report.warnings.append(f"{len(split)} user(s) have events in several partitions (keyed by something "
                               f"else than user_id?); their order is not defined, e.g. {split[:3]}")

    # --- events: a set of primary keys; one event id under two keys is doubled
    ev = report.events
    ev.expected = len(expect.events)
    stored: dict[EventKey, EventValue] = {}
    by_event: defaultdict[tuple[str, str], int] = defaultdict(int)
    for key, value in stored_events:
        stored[key] = value
        by_event[(key[0], key[2])] += 1
    ev.found = len(stored)
    want_by_event: Counter[tuple[str, str]] = Counter((k[0], k[2]) for k in expect.events)
    for (user, event_id), n in by_event.items():
        if n > max(1, want_by_event.get((user, event_id), 0)):
            ev.doubled += 1
            report._example(f"events: event {event_id!r} of user {user!r} is stored {n} times")
    for key, value in expect.events.items():
        got = stored.get(key)
        if got is None:
            ev.missing += 1
            report._example(f"events: missing {key[2]!r} of user {key[0]!r} at ts {key[1]}")
        elif got != value:
            ev.different += 1
            report._example(f"events: {key[2]!r} of user {key[0]!r}: stored {got}, expected {value}")
    for key in stored.keys() - expect.events.keys():
        if by_event[(key[0], key[2])] > 1 and (key[0], key[2]) in want_by_event:
            continue  # counted as doubled
        ev.extra += 1
        report._example(f"events: extra {key[2]!r} of user {key[0]!r} at ts {key[1]}")

    # --- recommendations: one row per user, reflecting the user's newest event
    rc = report.recommendations
    want = expect.recommendations()
    maybe = expect.maybe_trending()
    rc.expected, rc.found = len(want), len(stored_recs)
    reordered = expect.order_open_users()
    if reordered:
        report.warnings.append(f"{len(reordered)} user(s) had an event for a product of the products topic "
                               "followed by more events: it may have waited for its product, so their "
                               f"recommendations are checked by rules only, e.g. {sorted(reordered)[:3]}")
    user_events: defaultdict[str, dict[str, int]] = defaultdict(dict)
    for user, ts, event_id in expect.events:
        if user in reordered:
            user_events[user][event_id] = ts
    for user, got_r in stored_recs.items():
        w, m = want.get(user), maybe.get(user)
        if user in reordered:
            _check_reordered(user, got_r, user_events[user], expect, report)
            continue
        if m is not None and got_r.source == "trending":
            _check_trending(user, got_r, m, expect, report)
            continue
        if w is None and m is not None and not expect.ranks_every_event and got_r.source == "personal" \
                and (got_r.event_ts or 0) <= m.event_ts:
            continue  # the fast path: a personal row of an earlier batch, before the user went cold
        if w is None:
            rc.extra += 1
            report._example(f"recommendations: extra row for user {user!r}")
            continue
        if got_r.event_id != w.event_id or got_r.event_ts != w.event_ts or got_r.updated_at != w.updated_at:
            older = (got_r.updated_at or 0, got_r.event_ts or 0) < (w.updated_at, w.event_ts)
            if older:
                rc.stale += 1
                report._example(f"recommendations: stale for user {user!r}: reflects {got_r.event_id!r} "
                                f"(updated_at {got_r.updated_at}), newest is {w.event_id!r} ({w.updated_at})")
            else:
                rc.different += 1
                report._example(f"recommendations: user {user!r} reflects {got_r.event_id!r} at "
                                f"{got_r.event_ts}/{got_r.updated_at}, expected {w.event_id!r} at "
                                f"{w.event_ts}/{w.updated_at}")
            continue
        params = expect.params_of(user)
        if (got_r.source != w.source or not ab_counts_fit(got_r, w, expect, user)
                or not same_top_k(w, got_r.product_ids, got_r.scores, expect.catalog, expect.user_state(user),
                                  params)):
            rc.different += 1
            report._example(f"recommendations: user {user!r}: stored {got_r.product_ids[:5]}... "
                            f"({got_r.source}, {got_r.variant}, {got_r.impressions}/{got_r.hits}), expected "
                            f"{list(w.product_ids[:5])}... ({w.source}, {w.variant}, {w.impressions}/{w.hits})")
    for user in want.keys() - stored_recs.keys() - reordered:
        rc.missing += 1
        report._example(f"recommendations: missing for user {user!r} (newest event {want[user].event_id!r})")

    # --- dead letters: every bad record of the topic has one (duplicates allowed)
    if dead_letters is not None:
        dl = report.dead_letters = DeadLetterCheck()
        found: Counter[tuple[str, str]] = Counter()
        for raw in dead_letters:
            try:
                letter = json.loads(raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw or "")
                found[(str(letter["error"]), str(letter["payload"]))] += 1
            except (ValueError, KeyError, TypeError):
                found[("<unreadable>", str(raw)[:200])] += 1
        dl.expected = dict(sorted(expect.dead_letter_codes().items()))
        codes: Counter[str] = Counter()
        for (code, _), n in found.items():
            codes[code] += n
        dl.found = dict(sorted(codes.items()))
        for letter, n in expect.dead_letters.items():
            have = found.get(letter, 0)
            if have < n:
                dl.missing += n - have
                report._example(f"dead letters: missing {n - have} x {letter[0]} for payload {letter[1][:80]!r}")
            elif have > n:
                dl.duplicates += have - n
        for letter, n in found.items():
            if letter not in expect.dead_letters:
                dl.unexpected += n
                report._example(f"dead letters: unexpected {letter[0]} for payload {letter[1][:80]!r}")
    return report


def future_ts_payloads(letters: Iterable[Optional[bytes]]) -> set[str]:
    """The payloads of the FUTURE_TS dead letters among ``letters``."""
    out = set()
    for raw in letters:
        if raw is None or FUTURE_TS.encode() not in raw:  # most letters: no JSON decode
            continue
        try:
            letter = json.loads(raw.decode("utf-8", errors="replace"))
            if letter.get("error") == FUTURE_TS:
                out.add(str(letter["payload"]))
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
    return out


def unknown_product_payloads(letters: Iterable[Optional[bytes]]) -> set[str]:
    """The payloads of the UNKNOWN_PRODUCT dead letters among ``letters``."""
    out = set()
    for raw in letters:
        if raw is None or UNKNOWN_PRODUCT.encode() not in raw:
            continue
        try:
            letter = json.loads(raw.decode("utf-8", errors="replace"))
            if letter.get("error") == UNKNOWN_PRODUCT:
                out.add(str(letter["payload"]))
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
    return out


def _check_reordered(user: str, got: StoredRecs, events: dict[str, int], expect: Expectation,
                     report: Report) -> None:
    """The row of a user whose events the job may have taken in another order (the late catalog): it
    reflects one of the user's events, is stamped no earlier than their newest one, and lists
    distinct catalog products that the user's variant allows."""
    rc = report.recommendations
    newest = max(events.values(), default=0)
    eligible = expect.eligible_of(user)
    rows = [expect.catalog.index.get(p) for p in got.product_ids]
    if (got.event_id not in events or got.event_ts != events[got.event_id] or (got.updated_at or 0) < newest
            or len(set(got.product_ids)) != len(got.product_ids) or any(r is None or not eligible[r] for r in rows)
            or got.variant != expect.variants.for_user(user)[0]):
        rc.different += 1
        report._example(f"recommendations: user {user!r} (events possibly reordered by the late catalog): "
                        f"reflects {got.event_id!r} at {got.event_ts}/{got.updated_at}, "
                        f"products {got.product_ids[:5]}")


def _check_trending(user: str, got: StoredRecs, newest: ExpectedRecs, expect: Expectation, report: Report) -> None:
    """A trending row: its products depend on timing, so check the rules it must follow."""
    rc = report.recommendations
    if (got.updated_at or 0, got.event_ts or 0) > (newest.updated_at, newest.event_ts):
        rc.different += 1
        report._example(f"recommendations: trending row of user {user!r} is newer than the user's newest event")
        return
    state = expect.user_state(user)
    params = expect.params_of(user)
    eligible = expect.eligible_of(user)
    banned = set(excluded_ids(state, params)) if state is not None else set()
    rows = [expect.catalog.index.get(p) for p in got.product_ids]
    broken = any(r is None or not eligible[r] for r in rows) or bool(banned & set(got.product_ids))
    if broken or got.variant != newest.variant:
        rc.different += 1
        report._example(f"recommendations: trending row of user {user!r} breaks a filter: {got.product_ids[:5]}")


# --------------------------------------------------------------------------------------------
# the whole check
# --------------------------------------------------------------------------------------------

class Verifier:
    """Keeps the topic readers and the rebuilt state between attempts (``--wait`` re-checks
    incrementally: only what was appended to the topic since the last attempt is read)."""

    def __init__(self, config: Config, catalog: Optional[Catalog] = None, dead_letters: bool = True) -> None:
        from streamrec.connectors.catalog import CatalogFromConfig

        self.config = config
        self.catalog = catalog if catalog is not None else CatalogFromConfig(config)()
        self.expect = Expectation(self.catalog, Variants.from_config(config), config.max_record_bytes,
                                  config.max_query_chars, config.user_ttl_ms,
                                  ranks_every_event=config.hot_path == "per-event",
                                  max_ts_lead_ms=config.max_ts_lead_ms,
                                  unknown_product_wait_ms=config.unknown_product_wait_ms)
        self._events = TopicReader(config, config.events_topic)
        self._products = TopicReader(config, config.products_topic)
        self._dlq: Optional[TopicReader] = TopicReader(config, config.dlq_topic) if dead_letters else None
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
        log.info("read %d new record(s) of %s (%d in all)", len(new), self.config.events_topic, self.expect.records)
        stored_events, stored_recs = read_store(self.config)
        log.info("read %d event row(s) and %d recommendation row(s) from %s", len(stored_events), len(stored_recs),
                 self.config.keyspace)
        report = Report(topic=self.config.events_topic, partitions=len(self._partitions))
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
            update = guarded(parse_product_update, value, self.catalog.dim, self.config.max_record_bytes)
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
