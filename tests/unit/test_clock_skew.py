"""The clock rule (issue 22, part 3): an event whose ts leads the job's clock by more than
STREAMREC_MAX_TS_LEAD_MS is a FUTURE_TS dead letter on both hot paths, so it can never drive
trending or the idle-user TTL; history (timestamps in the past) is always accepted; ``verify``
expects exactly the letters the job can have written."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from streamrec.config import Config, ModelConfig
from streamrec.model.batch import decode_events, encode_raw_batch, parse_batch
from streamrec.model.catalog import Catalog
from streamrec.model.events import BAD_ID, ERROR_CODES, FUTURE_TS, BadRecord, Event, latest_ts, parse_event
from streamrec.model.model import ModelParams
from streamrec.model.variants import Variants
from streamrec.verify import Expectation, future_ts_payloads

pytestmark = pytest.mark.unit

NOW = 1_780_000_000_000  # the job's clock in these tests (2026)
LEAD = 5 * 60_000
DAY = 86_400_000
YEAR_2999 = 32_503_593_600_000 - 366 * DAY  # still below the parser's year-3000 unit check
UCI_2010 = 1_291_191_960_000  # 2010-12-01 08:26, the first UCI Online Retail invoice


def ev(event_id: str, ts: int, user: str = "u1", product: str = "p1") -> str:
    return json.dumps({"event_id": event_id, "user_id": user, "ts": ts, "type": "view", "product_id": product})


def test_the_default_lead_is_five_minutes_and_comes_from_its_env_var():
    assert Config().limits.max_ts_lead_ms == 300_000
    assert Config.from_env({"STREAMREC_MAX_TS_LEAD_MS": "60000"}).limits.max_ts_lead_ms == 60_000
    assert FUTURE_TS in ERROR_CODES


def test_latest_ts_is_the_clock_plus_the_lead_and_no_limit_when_the_lead_is_zero():
    assert latest_ts(NOW, LEAD) == NOW + LEAD
    assert latest_ts(NOW, 0) is None and latest_ts(NOW, -1) is None


@pytest.mark.parametrize("ts", [NOW + LEAD + 1, NOW + DAY, YEAR_2999])
def test_an_event_further_ahead_than_the_lead_is_a_future_ts_dead_letter(ts):
    got = parse_event(ev("e1", ts), {"p1"}, max_ts=latest_ts(NOW, LEAD))
    assert isinstance(got, BadRecord) and got.code == FUTURE_TS
    assert got.payload == ev("e1", ts)  # the record as sent, like every dead letter


@pytest.mark.parametrize("ts", [NOW + LEAD, NOW, NOW - DAY, UCI_2010, 0])
def test_events_up_to_the_lead_and_any_past_event_are_accepted(ts):
    assert parse_event(ev("e1", ts), {"p1"}, max_ts=latest_ts(NOW, LEAD)) == Event("e1", "u1", ts, "view", "p1")


def test_without_a_bound_the_parser_accepts_the_future_as_before():
    assert isinstance(parse_event(ev("e1", YEAR_2999), {"p1"}), Event)


def test_the_clock_rule_is_the_last_check_so_another_fault_keeps_its_code():
    bad_id = json.dumps({"event_id": "e1", "user_id": "a\x1bb", "ts": YEAR_2999, "type": "view", "product_id": "p1"})
    assert parse_event(bad_id, {"p1"}, max_ts=NOW).code == BAD_ID
    assert parse_event(ev("e1", YEAR_2999, product="nope"), {"p1"}, max_ts=NOW).code == "UNKNOWN_PRODUCT"


def test_a_batch_keeps_its_past_events_and_dead_letters_its_future_ones_in_order():
    raws = [ev("old", UCI_2010), ev("tomorrow", NOW + DAY), ev("now", NOW), ev("y2999", YEAR_2999)]
    block, dead = parse_batch(encode_raw_batch([r.encode() for r in raws]), {"p1"}, 64 * 1024, 1024,
                              latest_ts(NOW, LEAD))
    assert [e.event_id for e in decode_events(block)] == ["old", "now"]
    assert [(d.code, json.loads(d.payload)["event_id"]) for d in dead] == [(FUTURE_TS, "tomorrow"),
                                                                           (FUTURE_TS, "y2999")]


class _Clock:
    """time.time() of the operators' module, counting its reads."""

    def __init__(self, now_ms: int) -> None:
        self.now_ms, self.reads = now_ms, 0

    def time(self) -> float:
        self.reads += 1
        return self.now_ms / 1000


def _catalog() -> Catalog:
    v = np.eye(2, 4, dtype=np.float32)
    return Catalog(("p1", "p2"), v)


def test_the_fast_path_parser_reads_the_clock_once_per_batch_and_refuses_the_future(monkeypatch):
    from streamrec.udfs import operators
    from streamrec.udfs.batch import ParseBatch
    from streamrec.udfs.operators import DLQ_TAG

    clock = _Clock(NOW)
    monkeypatch.setattr(operators, "time", clock)
    parser = ParseBatch(_catalog, 64 * 1024, 1024, LEAD)
    parser.known = {"p1", "p2"}
    raws = [ev(f"e{i}", NOW - i) for i in range(50)] + [ev("tomorrow", NOW + DAY), ev("y2999", YEAR_2999)]
    out = list(parser.parse(encode_raw_batch([r.encode() for r in raws])))
    assert clock.reads == 1
    letters = [json.loads(item[1]) for item in out if isinstance(item, tuple) and item[0] is DLQ_TAG]
    assert [(d["error"], json.loads(d["payload"])["event_id"]) for d in letters] == [
        (FUTURE_TS, "tomorrow"), (FUTURE_TS, "y2999")]
    blocks = [item for item in out if isinstance(item, bytes)]
    assert len(decode_events(blocks[0])) == 50


def test_the_per_event_parser_refuses_the_future_too(monkeypatch):
    from streamrec.udfs import operators
    from streamrec.udfs.operators import DLQ_TAG, ParseEvents

    monkeypatch.setattr(operators, "time", _Clock(NOW))
    parser = ParseEvents(_catalog, 64 * 1024, 1024, LEAD)
    parser.known = {"p1"}
    [(tag, letter)] = list(parser.parse(ev("tomorrow", NOW + DAY)))
    assert tag is DLQ_TAG and json.loads(letter)["error"] == FUTURE_TS
    [row] = list(parser.parse(ev("old", UCI_2010)))
    assert row[0] == "old"


def test_the_services_trending_list_is_not_moved_by_events_from_the_future(monkeypatch):
    from streamrec.service import backend

    monkeypatch.setattr(backend, "time", _Clock(NOW))
    tracker = backend.TrendingTracker(Config(model=ModelConfig(trending_size=2)))
    for i in range(3):
        tracker.add_raw(ev(f"r{i}", NOW - 60_000 * i, product="p1").encode(), _catalog())
    tracker.add_raw(ev("y2999", YEAR_2999, product="p2").encode(), _catalog())
    for i in range(5):
        tracker.add_raw(ev(f"t{i}", NOW + DAY, product="p2").encode(), _catalog())
    top = tracker.top()
    assert [p for p, _ in top] == ["p1"] and top[0][1] > 1.0  # p1 keeps its score: nothing decayed it


# --- verify: which FUTURE_TS letters the job can have written --------------------------------------

def _expectation() -> Expectation:
    cat = Catalog(("p1", "p2"), np.eye(2, 4, dtype=np.float32))
    params = ModelParams(event_weights={"view": 1.0}, top_k=1)
    exp = Expectation(cat, Variants.single(params), max_ts_lead_ms=LEAD)
    exp.now_ms = NOW
    return exp


def test_verify_expects_a_future_ts_letter_for_what_still_leads_its_own_clock():
    exp = _expectation()
    exp.feed(ev("y2999", YEAR_2999), 0, NOW - 1000)
    exp.feed(ev("tomorrow", NOW + DAY), 0, NOW - 1000)
    exp.feed(ev("uci", UCI_2010), 0, NOW - 1000)
    assert exp.dead_letter_codes() == {FUTURE_TS: 2}
    assert set(exp.events) == {("u1", UCI_2010, "uci")}


def test_between_the_record_time_and_verifys_clock_the_dead_letter_topic_decides():
    # sent an hour ago with a ts 30 minutes ahead of the sender: too far ahead when the job read it
    # live, accepted by a job that read it only now (a replay, a lagging job)
    sent = NOW - 3_600_000
    record = ev("ahead", sent + 30 * 60_000)
    refused = _expectation()
    refused.refused_future = future_ts_payloads([json.dumps({"error": FUTURE_TS, "reason": "r",
                                                             "payload": record}).encode(), b"{}", None])
    refused.feed(record, 0, sent)
    assert refused.dead_letter_codes() == {FUTURE_TS: 1} and not refused.events
    accepted = _expectation()
    accepted.feed(record, 0, sent)
    assert accepted.dead_letter_codes() == {} and len(accepted.events) == 1


def test_a_letter_does_not_make_verify_refuse_a_copy_sent_once_its_time_had_come():
    # the same payload re-sent later (a producer's retry): its Kafka timestamp proves the job accepted it
    record = ev("ahead", NOW - 10 * 60_000)
    exp = _expectation()
    exp.refused_future = {record}
    exp.feed(record, 0, NOW - 20 * 60_000)  # the first copy: 10 minutes ahead when sent
    exp.feed(record, 0, NOW - 10 * 60_000)  # the retry: on time
    assert exp.dead_letter_codes() == {FUTURE_TS: 1} and len(exp.events) == 1


def test_the_service_refuses_a_posted_event_from_the_future_as_the_job_would():
    from tests.unit.test_service import FakeQueryBackend, client_for

    backend = FakeQueryBackend()
    client = client_for(backend)
    ahead = {"event_id": "f1", "user_id": "u1", "ts": int(time.time() * 1000) + DAY, "type": "click",
             "product_id": "p2"}
    r = client.post("/v1/events", json=[ahead, {**ahead, "event_id": "f2", "ts": UCI_2010}])
    assert r.status_code == 400 and r.json()["error"] == FUTURE_TS
    assert [e["index"] for e in r.json()["errors"]] == [0] and backend.sent == []
    assert client.post("/v1/events", json={**ahead, "ts": UCI_2010}).status_code == 202
