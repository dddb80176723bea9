"""streamrec.verify without services: the expected store is rebuilt from records, and each kind of
difference (missing, extra, doubled, stale, different, lost dead letter) is found and named.

The "job" here is a faithful in-memory model of what the real one writes: the same functions per
event, and a store with Cassandra's rule for USING TIMESTAMP (the newest timestamp wins a cell).
It also checks reliability target 2: applying any prefix of the output twice changes nothing.
"""

from __future__ import annotations

import dataclasses
import json
import random
from dataclasses import dataclass, field

import numpy as np
import pytest

from streamrec.model.catalog import Catalog
from streamrec.model.events import BadRecord, Event, parse_event
from streamrec.model.model import (
    ModelParams,
    UserState,
    apply_event,
    recommend_users,
    remember_shown,
    write_timestamp_us,
)
from streamrec.model.variants import Variants
from streamrec.verify import Expectation, Report, StoredRecs, compare, same_top_k

PARAMS = ModelParams(event_weights={"view": 1.0, "click": 2.0, "search": 0.0, "add_to_cart": 3.0,
                                    "remove_from_cart": -1.5, "purchase": 5.0}, top_k=4)


def _catalog(n: int = 40, dim: int = 6, seed: int = 1) -> Catalog:
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n, dim)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    in_stock = np.ones(n, dtype=bool)
    in_stock[3] = False
    return Catalog(tuple(f"p{i}" for i in range(n)), v, in_stock=in_stock)


CATALOG = _catalog()


def _records(seed: int = 7, n: int = 200) -> list[tuple[int, str]]:
    """(partition, raw JSON) like a topic keyed by user: a user's events stay in one partition."""
    r = random.Random(seed)
    out = []
    for i in range(n):
        user = f"u{r.randrange(12)}"
        etype = r.choice(["view", "view", "click", "add_to_cart", "remove_from_cart", "purchase", "search"])
        e = Event(f"e{i}", user, 1_700_000_000_000 + i * 1000, etype,
                  None if etype == "search" else f"p{r.randrange(40)}", "lamp" if etype == "search" else None)
        out.append((int(user[1:]) % 2, e.to_json()))
    out.insert(50, (0, "not json"))
    out.insert(90, (1, json.dumps({"event_id": "x", "user_id": "u1", "ts": 1, "type": "view", "product_id": "nope"})))
    return out


@dataclass
class FakeStore:
    """Cassandra's last-write-wins by write timestamp, per row (all cells of a row share it)."""

    events: dict = field(default_factory=dict)  # key -> (value, ts)
    recs: dict = field(default_factory=dict)  # user -> (StoredRecs, ts)
    dlq: list = field(default_factory=list)

    def upsert(self, table: dict, key, value, ts: int) -> None:
        old = table.get(key)
        if old is None or ts > old[1] or (ts == old[1] and repr(value) > repr(old[0])):
            table[key] = (value, ts)

    def stored_events(self):
        return [(k, v) for k, (v, _) in self.events.items()]

    def stored_recs(self):
        return {u: v for u, (v, _) in self.recs.items()}


def job_output(records: list[tuple[int, str]]) -> list[tuple[str, object]]:
    """What the job emits, in order: ("dlq", letter) or ("row", (event, write_ts, recommendation, state))."""
    known = frozenset(CATALOG.product_ids)
    states: dict[str, UserState] = {}
    out: list[tuple[str, object]] = []
    for _, raw in records:
        parsed = parse_event(raw, known)
        if isinstance(parsed, BadRecord):
            out.append(("dlq", parsed.to_json()))
            continue
        state = states[parsed.user_id] = apply_event(states.get(parsed.user_id, UserState()), parsed, CATALOG, PARAMS)
        rec = recommend_users([state], CATALOG, PARAMS)[0]
        remember_shown(state, rec, PARAMS)
        out.append(("row", (parsed, write_timestamp_us(state), rec, (state.impressions, state.hits))))
    return out


def apply(store: FakeStore, output: list[tuple[str, object]]) -> None:
    """The writer: events row at ts*1000, recommendations row at write_ts (skipped when empty)."""
    for kind, item in output:
        if kind == "dlq":
            store.dlq.append(item)
            continue
        e, write_ts, rec, (impressions, hits) = item  # type: ignore[misc]
        store.upsert(store.events, (e.user_id, e.ts, e.event_id), (e.type, e.product_id, e.query), e.ts * 1000)
        if rec.product_ids:
            row = StoredRecs(list(rec.product_ids), [float(np.float32(s)) for s in rec.scores], rec.source,
                             e.event_id, e.ts, write_ts // 1000, "default", impressions, hits)
            store.upsert(store.recs, e.user_id, row, write_ts)


def expectation(records) -> Expectation:
    exp = Expectation(CATALOG, Variants.single(PARAMS))
    for partition, raw in records:
        exp.feed(raw, partition)
    return exp


def check(records, store: FakeStore) -> Report:
    return compare(expectation(records), store.stored_events(), store.stored_recs(), Report(topic="events"),
                   store.dlq)


@pytest.fixture
def good():
    records = _records()
    store = FakeStore()
    apply(store, job_output(records))
    return records, store


def test_a_correct_store_is_consistent(good):
    records, store = good
    report = check(records, store)
    assert report.ok, report.examples
    assert report.records == len(records) and report.valid_events == len(records) - 2
    assert report.events.expected == report.events.found == len(records) - 2
    assert report.recommendations.expected == report.recommendations.found > 0
    assert report.dead_letters is not None and report.dead_letters.expected == {"NOT_JSON": 1, "UNKNOWN_PRODUCT": 1}


def test_replaying_any_prefix_again_changes_nothing(good):
    records, store = good
    output = job_output(records)
    before = (dict(store.events), dict(store.recs))
    for cut in (0, 17, len(output) // 2, len(output)):
        apply(store, [o for o in output[:cut] if o[0] == "row"])
        assert (store.events, store.recs) == before
    assert check(records, store).ok


def test_a_lost_event_row_is_missing(good):
    records, store = good
    store.events.pop(next(iter(store.events)))
    report = check(records, store)
    assert not report.ok and report.events.missing == 1 and report.events.extra == 0


def test_an_unknown_event_row_is_extra_and_a_second_ts_is_doubled(good):
    records, store = good
    (user, ts, event_id), (value, w) = next(iter(store.events.items()))
    store.events[("ghost", 5, "g1")] = (("view", "p1", None), 5000)
    store.events[(user, ts + 1, event_id)] = (value, w + 1000)
    report = check(records, store)
    assert report.events.extra == 1 and report.events.doubled == 1 and report.events.missing == 0


def test_recommendations_from_an_older_event_are_stale_and_other_products_different(good):
    records, store = good
    output = job_output(records)
    rows = [item for kind, item in output if kind == "row"]
    # the user with the most events: put back the row of an earlier event of theirs
    user = max(store.recs, key=lambda u: sum(1 for e, *_ in rows if e.user_id == u))
    earlier = [(e, w, rec, c) for e, w, rec, c in rows if e.user_id == user and rec.product_ids][-3]
    e, w, rec, (impressions, hits) = earlier
    store.recs[user] = (StoredRecs(list(rec.product_ids), list(rec.scores), rec.source, e.event_id, e.ts,
                                   w // 1000, "default", impressions, hits), w)
    other = next(u for u in store.recs if u != user)
    row = store.recs[other][0]
    store.recs[other] = (dataclasses.replace(row, product_ids=list(reversed(row.product_ids))), 0)
    report = check(records, store)
    assert report.recommendations.stale == 1 and report.recommendations.different == 1
    assert any("stale" in x for x in report.examples)


def test_a_missing_dead_letter_fails_a_duplicate_does_not(good):
    records, store = good
    store.dlq.append(store.dlq[0])
    report = check(records, store)
    assert report.ok and report.dead_letters.duplicates == 1
    store.dlq[:] = store.dlq[1:2]
    report = check(records, store)
    assert not report.ok and report.dead_letters.missing == 1


def test_a_null_record_is_a_not_json_dead_letter():
    exp = Expectation(CATALOG, Variants.single(PARAMS))
    exp.feed(None)
    assert exp.dead_letter_codes() == {"NOT_JSON": 1} and exp.valid == 0


def test_users_split_over_partitions_are_warned_about():
    records = [(0, Event("a", "u", 1, "view", "p1").to_json()), (1, Event("b", "u", 2, "view", "p2").to_json())]
    report = compare(expectation(records), [], {}, Report(topic="events"))
    assert any("several partitions" in w for w in report.warnings)


def test_a_user_without_a_product_signal_may_have_a_trending_row_until_one_arrives():
    exp = Expectation(CATALOG, Variants.single(PARAMS))
    exp.feed(Event("s1", "u", 1, "search", None, "lamp").to_json())
    assert exp.recommendations() == {} and exp.maybe_trending()["u"].event_id == "s1"
    trending = StoredRecs(["p1", "p2"], [3.0, 2.0], "trending", "s1", 1, 0, "default", 0, 0)
    assert compare(exp, [], {"u": trending}, Report(topic="events")).recommendations.ok
    banned = StoredRecs(["p3"], [3.0], "trending", "s1", 1, 0, "default", 0, 0)  # p3 is out of stock
    assert not compare(exp, [], {"u": banned}, Report(topic="events")).recommendations.ok
    exp.feed(Event("v1", "u", 2, "view", "p1").to_json())
    assert exp.recommendations()["u"].event_id == "v1" and exp.maybe_trending() == {}


def test_hit_counts_must_match(good):
    records, store = good
    user = next(u for u, (row, _) in store.recs.items() if row.impressions)
    row, ts = store.recs[user]
    store.recs[user] = (dataclasses.replace(row, hits=row.hits + 1), ts)
    assert check(records, store).recommendations.different == 1


def test_equal_scores_may_come_in_either_order():
    v = np.eye(4, dtype=np.float32)
    v = np.vstack([v, v[:1]])  # p4 has p0's vector: a tie
    cat = Catalog(tuple(f"p{i}" for i in range(5)), v)
    params = ModelParams(event_weights={"view": 1.0}, top_k=2)
    exp = Expectation(cat, Variants.single(params))
    exp.feed(Event("e", "u", 1, "view", "p0").to_json())
    want = exp.recommendations()["u"]
    assert set(want.product_ids) == {"p0", "p4"}
    state = exp.user_state("u")
    assert same_top_k(want, list(reversed(want.product_ids)), list(want.scores), cat, state, params)
    assert not same_top_k(want, ["p0", "p1"], list(want.scores), cat, state, params)


def test_verify_expects_an_INTERNAL_dead_letter_and_no_row_where_the_jobs_model_raises():
    # the job's update-and-recommend operator dead-letters an event whose model step raises and
    # leaves the user's state as it was: verify must expect exactly that, not a missing row
    class Poisoned(Variants):
        def for_user(self, user_id):
            if user_id == "boom":
                raise ValueError("model failure")
            return super().for_user(user_id)

    expect = Expectation(CATALOG, Poisoned.single(PARAMS))
    good = Event("e1", "u1", 1_700_000_000_000, "view", "p1")
    boom = Event("e2", "boom", 1_700_000_000_001, "view", "p2")
    expect.feed(good.to_json())
    expect.feed(boom.to_json())
    expect.feed('{"event_id": "e3", "user_id": "\\ud800", "ts": 1, "type": "view", "product_id": "p1"}')
    assert expect.records == 3 and expect.valid == 1
    assert set(expect.events) == {("u1", good.ts, "e1")}
    assert expect.dead_letter_codes() == {"INTERNAL": 1, "BAD_ID": 1}
    assert ("INTERNAL", boom.to_json()) in expect.dead_letters


def test_verify_reads_committed_records_only_as_the_job_does(monkeypatch):
    import kafka

    from streamrec.config import Config
    from streamrec.verify import TopicReader

    seen = {}

    class FakeConsumer:
        def __init__(self, **settings):
            seen.update(settings)

    monkeypatch.setattr(kafka, "KafkaConsumer", FakeConsumer)
    TopicReader(Config(), "events")
    assert seen["isolation_level"] == "read_committed"
