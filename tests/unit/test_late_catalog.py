"""The late catalog (issue 22, part 5): an event valid but for a product the parser does not know
yet waits for the product (await-products, in the JVM) instead of being dead-lettered at once; the
parser hands it over with the exact UNKNOWN_PRODUCT letter it gets if the product never comes, and
``verify`` agrees with the job whichever happened."""

from __future__ import annotations

import json

import pytest

from streamrec.config import Config, LimitsConfig
from streamrec.model.batch import decode_events, encode_raw_batch, parse_batch
from streamrec.model.events import FUTURE_TS, UNKNOWN_PRODUCT, BadRecord, Event, parse_event, waiting_event
from streamrec.model.model import UserState, apply_event, recommend_users, remember_shown, write_timestamp_us
from streamrec.model.variants import Variants
from streamrec.verify import Expectation, Report, compare, unknown_product_payloads
from tests.unit.test_verify import CATALOG, PARAMS, FakeStore, apply

pytestmark = pytest.mark.unit

NOW = 1_780_000_000_000
LEAD = 5 * 60_000


def ev(event_id: str, product: str, ts: int = NOW - 1000, user: str = "u1", etype: str = "view") -> str:
    return json.dumps({"event_id": event_id, "user_id": user, "ts": ts, "type": etype, "product_id": product})


def test_the_wait_defaults_to_30_s_comes_from_its_env_var_and_is_never_negative():
    assert Config().limits.unknown_product_wait_ms == 30_000
    assert Config.from_env({"STREAMREC_UNKNOWN_PRODUCT_WAIT_MS": "0"}).limits.unknown_product_wait_ms == 0
    with pytest.raises(ValueError, match="STREAMREC_UNKNOWN_PRODUCT_WAIT_MS"):
        Config(limits=LimitsConfig(unknown_product_wait_ms=-1))


def test_only_an_event_valid_but_for_its_product_may_wait():
    letter = parse_event(ev("e1", "new"), {"p1"}, max_ts=NOW + LEAD)
    assert isinstance(letter, BadRecord) and letter.code == UNKNOWN_PRODUCT
    assert waiting_event(ev("e1", "new"), letter, max_ts=NOW + LEAD) == Event("e1", "u1", NOW - 1000, "view", "new")
    # the clock rule still holds: a future event for an unknown product keeps its letter at once
    future = parse_event(ev("f1", "new", ts=NOW + 2 * LEAD), {"p1"}, max_ts=NOW + LEAD)
    assert isinstance(future, BadRecord) and future.code == UNKNOWN_PRODUCT
    assert waiting_event(ev("f1", "new", ts=NOW + 2 * LEAD), future, max_ts=NOW + LEAD) is None
    other = parse_event(ev("t1", "new", etype="bogus"), {"p1"})
    assert isinstance(other, BadRecord) and waiting_event(ev("t1", "new", etype="bogus"), other) is None


def test_a_batch_hands_waiting_events_over_with_their_letters_and_dead_letters_the_rest():
    raws = [ev("k1", "p1"), ev("w1", "new"), ev("f1", "new", ts=NOW + 2 * LEAD), ev("w2", "new", user="u2")]
    batch = encode_raw_batch([r.encode() for r in raws])
    waiting: list[tuple[Event, BadRecord]] = []
    events, dead = parse_batch(batch, {"p1"}, 64 * 1024, 1024, NOW + LEAD, waiting)
    assert [e.event_id for e in decode_events(events)] == ["k1"]
    assert [e.event_id for e, _ in waiting] == ["w1", "w2"]
    # the letter each would have got at once, byte for byte
    assert [letter.to_json() for _, letter in waiting] == [
        parse_event(ev("w1", "new"), {"p1"}).to_json(), parse_event(ev("w2", "new", user="u2"), {"p1"}).to_json()]
    assert [(d.code, json.loads(d.payload)["event_id"]) for d in dead] == [(UNKNOWN_PRODUCT, "f1")]
    # without a waiting list (no wait, no products stream): every unknown product is a letter, as before
    _, dead = parse_batch(batch, {"p1"}, 64 * 1024, 1024, NOW + LEAD)
    assert [json.loads(d.payload)["event_id"] for d in dead] == ["w1", "f1", "w2"]


class _Clock:
    @staticmethod
    def time() -> float:
        return NOW / 1000


@pytest.mark.parametrize("hot_path", ["batch", "per-event"])
def test_both_parsers_send_a_waiting_event_to_the_waiting_output_only_when_told(monkeypatch, hot_path):
    from streamrec.udfs import operators
    from streamrec.udfs.batch import ParseBatch
    from streamrec.udfs.operators import DLQ_TAG, WAITING_TAG, ParseEvents

    monkeypatch.setattr(operators, "time", _Clock)
    for hold in (True, False):
        parser = (ParseBatch if hot_path == "batch" else ParseEvents)(lambda: CATALOG, 64 * 1024, 1024, LEAD, hold)
        parser.known = {"p1"}
        raw = ev("w1", "new")
        out = list(parser.parse(encode_raw_batch([raw.encode()]) if hot_path == "batch" else raw))
        letter = parse_event(raw, {"p1"}).to_json()
        if hold:
            [(tag, row)] = out
            assert tag is WAITING_TAG
            assert tuple(row) == ("w1", "u1", NOW - 1000, "view", "new", None, letter)
        else:
            assert out == [(DLQ_TAG, letter)]


# --- verify -----------------------------------------------------------------------------------

def _job(records: list[str], known: frozenset[str], late: set[str]) -> list[tuple[str, object]]:
    """A faithful model of the job with the late catalog: events whose product is in ``late`` were
    held back until the end (their product came after every other event), the rest in order."""
    states: dict[str, UserState] = {}
    out: list[tuple[str, object]] = []
    held = []
    for raw in records:
        parsed = parse_event(raw, known | late)
        if isinstance(parsed, Event) and parsed.product_id in late:
            held.append(parsed)
            continue
        if isinstance(parsed, BadRecord):
            out.append(("dlq", parsed.to_json()))
            continue
        out.append(_row(parsed, states))
    out.extend(_row(e, states) for e in held)
    return out


def _row(e: Event, states: dict[str, UserState]) -> tuple[str, object]:
    state = states[e.user_id] = apply_event(states.get(e.user_id, UserState()), e, CATALOG, PARAMS)
    rec = recommend_users([state], CATALOG, PARAMS)[0]
    remember_shown(state, rec, PARAMS)
    return "row", (e, write_timestamp_us(state), rec, (state.impressions, state.hits))


RECORDS = [
    ev("a1", "p1", ts=NOW - 9000),
    ev("a2", "p-new", ts=NOW - 8000),  # published on the products topic after the job read it
    ev("a3", "p2", ts=NOW - 7000),
    ev("a4", "p5", ts=NOW - 6000),
    ev("b1", "p-never", ts=NOW - 5000, user="u2"),  # never published: dead after the wait
    ev("b2", "p3", ts=NOW - 4000, user="u2"),
]


def _check(store: FakeStore, live: set[str], wait_ms: int = 30_000) -> Report:
    expect = Expectation(CATALOG, Variants.single(PARAMS), unknown_product_wait_ms=wait_ms)
    expect.now_ms = NOW
    expect.add_live_products(live)
    expect.refused_unknown.update(unknown_product_payloads([d.encode() for d in store.dlq]))
    for raw in RECORDS:
        expect.feed(raw)
    return compare(expect, store.stored_events(), store.stored_recs(), Report(topic="events"), store.dlq)


def test_verify_accepts_an_event_that_waited_for_its_product_and_was_processed_after_later_ones():
    store = FakeStore()
    apply(store, _job(RECORDS, frozenset(CATALOG.product_ids), {"p-new"}))
    report = _check(store, {"p-new"})
    assert report.ok, report.examples
    assert report.events.expected == 5 and report.dead_letters is not None
    assert report.dead_letters.expected == {UNKNOWN_PRODUCT: 1}
    assert any("checked by rules only" in w for w in report.warnings)
    # the stored row reflects the late event, not the topic's newest one: without the live product
    # (no wait) verify would call it different
    assert store.stored_recs()["u1"].event_id == "a2"
    assert not _check(store, {"p-new"}, wait_ms=0).ok


def test_verify_expects_the_letter_when_the_product_came_after_the_wait():
    store = FakeStore()
    # the job gave up on a2 (its letter is in the dead-letter topic), then the product came
    output = _job(RECORDS, frozenset(CATALOG.product_ids), set())
    apply(store, output)
    letters = [json.loads(d)["payload"] for d in store.dlq]
    assert json.loads(letters[0])["event_id"] == "a2"
    report = _check(store, {"p-new"})
    assert report.ok, report.examples
    assert report.dead_letters is not None and report.dead_letters.expected == {UNKNOWN_PRODUCT: 2}


def test_verify_still_finds_a_lost_late_event_and_a_row_no_event_of_the_user_explains():
    store = FakeStore()
    apply(store, _job(RECORDS, frozenset(CATALOG.product_ids), {"p-new"}))
    key = next(k for k in store.events if k[2] == "a2")
    good = store.events.pop(key)
    assert _check(store, {"p-new"}).events.missing == 1
    store.events[key] = good
    row, ts = store.recs["u1"]
    store.recs["u1"] = (type(row)(**{**row.__dict__, "event_id": "b2"}), ts)
    report = _check(store, {"p-new"})
    assert not report.ok and report.recommendations.different == 1


def test_a_future_ts_letter_is_not_taken_for_an_unknown_product():
    assert unknown_product_payloads([json.dumps({"error": FUTURE_TS, "payload": "x"}).encode(), None]) == set()
