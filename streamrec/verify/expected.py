"""The expected store, rebuilt from the events topic with the job's own functions in the job's order
(:class:`Expectation`), and what a stored top-k may differ in (:func:`same_top_k`, :func:`ab_counts_fit`)."""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional, Union

import numpy as np

from streamrec.model.catalog import Catalog
from streamrec.model.events import (
    FUTURE_TS,
    UNKNOWN_PRODUCT,
    BadRecord,
    Event,
    decode_like_java,
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
from streamrec.model.variants import Variants
from streamrec.verify.reading import EventKey, EventValue
from streamrec.verify.report import MAX_EXAMPLES

SCORE_TOLERANCE = 1e-5


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

