"""The fast path's Python steps, without a JVM: a batch of raw records parsed in one call, and a
batch of user states ranked in one call, as the JVM operators hand them over."""

import json

import numpy as np
import pytest

from streamrec.config import DEFAULT_EVENT_WEIGHTS, Config, ModelConfig
from streamrec.model.batch import (
    FAILED,
    BatchRanker,
    UserRequest,
    decode_event_part,
    decode_events,
    decode_rank_result,
    encode_event_part,
    encode_rank_request,
    encode_raw_batch,
    parse_batch,
)
from streamrec.model.catalog import Catalog
from streamrec.model.events import Event
from streamrec.model.live import LiveCatalog
from streamrec.model.model import ModelParams, UserState, apply_event, recommend_users
from streamrec.model.variants import Variants

pytestmark = pytest.mark.unit

PARAMS = ModelParams(event_weights=DEFAULT_EVENT_WEIGHTS, top_k=3)


def catalog(n=30, d=6):
    rng = np.random.default_rng(2)
    v = rng.normal(size=(n, d)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return Catalog(tuple(f"p{i}" for i in range(n)), v, titles=tuple(f"lamp {i}" for i in range(n)))


def test_a_batch_of_raw_records_becomes_its_valid_events_and_one_dead_letter_per_bad_record():
    events = [Event("e1", "u1", 5, "view", "p1"), Event("e2", "ü 漢", 6, "search", None, "lämp 漢"),
              Event("e3", "u1", 7, "search", "p2", "red lamp")]
    raws = [events[0].to_json().encode(), b"{not json", None, events[1].to_json().encode(),
            json.dumps({"event_id": "x", "user_id": "\ud800", "ts": 1, "type": "view", "product_id": "p1"}).encode(),
            b"\xff\xfe", events[2].to_json().encode()]
    block, dead = parse_batch(encode_raw_batch(raws), {"p1", "p2"}, 64 * 1024, 1024)
    assert decode_events(block) == events
    assert [d.code for d in dead] == ["NOT_JSON", "NOT_JSON", "BAD_ID", "NOT_JSON"]


def test_a_batch_of_only_bad_records_gives_no_events():
    block, dead = parse_batch(encode_raw_batch([b"[]", b"1"]), None, 1024, 10)
    assert block == b"" and len(dead) == 2 and decode_events(block) == []


def test_each_user_of_a_batch_is_ranked_as_the_offline_model_ranks_the_same_state():
    cat = catalog()
    live = LiveCatalog(cat, Variants.single(PARAMS))
    live.set_trending('[["p7", 3.0], ["p8", 2.0]]')
    rng = np.random.default_rng(5)
    states, requests = {}, []
    for u in range(20):
        state = UserState()
        for i in range(int(rng.integers(0, 6))):
            etype = str(rng.choice(["view", "click", "purchase", "add_to_cart", "search"]))
            e = Event(f"e{u}-{i}", f"u{u}", 100 + i, etype, None if etype == "search" else f"p{rng.integers(30)}",
                      "lamp 3" if etype == "search" else None)
            state = apply_event(state, e, cat, PARAMS)
        states[f"u{u}"] = state
        requests.append(UserRequest(f"u{u}", state.history, state.purchased, state.cart))
    answer, dead = BatchRanker(live).rank(encode_rank_request(b"opaque", requests))
    events_block, results = decode_rank_result(answer)
    assert events_block == b"opaque" and not dead and len(results) == 20
    for req, got in zip(requests, results):
        want = recommend_users([states[req.user_id]], cat, PARAMS, live.trending)[0]
        assert got.variant == "default" and got.recommendation.source == want.source
        assert got.recommendation.product_ids == want.product_ids
        np.testing.assert_allclose(got.recommendation.scores, want.scores, rtol=1e-5, atol=1e-6)


def test_a_user_whose_ranking_raises_has_each_event_of_the_batch_dead_lettered_and_the_others_are_ranked():
    cat = catalog()
    ranker = BatchRanker(LiveCatalog(cat, Variants.single(PARAMS)))
    good = UserRequest("good", [("click", 1, "p1", None)], [], [])
    bad = UserRequest("bad", [("click", 1, "p2", None), ("view", 2, "p3", None)], [], [])
    events = [(0, 1000, Event("g1", "good", 1, "click", "p1")), (1, 1000, Event("b1", "bad", 1, "click", "p2")),
              (1, 2000, Event("b2", "bad", 2, "view", "p3"))]
    real = ranker.rank_users

    def fails_for_bad(users):
        if any(u.user_id == "bad" for u in users):
            raise ValueError("model bug")
        return real(users)

    def columns_fail_for_bad(data):
        if b"bad" in data:
            raise ValueError("model bug")
        return real_columns(data)

    real_columns = ranker.rank_columns
    ranker.rank_users = fails_for_bad  # a model bug that one user's state triggers
    ranker.rank_columns = columns_fail_for_bad
    answer, dead = ranker.rank(encode_rank_request(encode_event_part(events), [good, bad]))
    block, results = decode_rank_result(answer)
    assert [r.recommendation.source for r in results] == ["personal", FAILED]
    assert [(d.code, d.payload) for d in dead] == [("INTERNAL", e.to_json()) for _, _, e in events[1:]]
    assert all(d.reason == "ValueError: model bug" for d in dead)
    assert decode_event_part(block) == events  # passed through for the JVM, which drops b1 and b2


def test_the_columnar_ranking_gives_every_variant_the_lists_of_the_per_user_ranking():
    cat = catalog(n=400, d=8)
    variants = Variants.from_config(Config(model=ModelConfig(top_k=4, variants=json.dumps({
        "A": {"share": 1},
        "B": {"share": 1, "exclude_purchased": False, "half_life_events": 2.0,
              "event_weights": {**DEFAULT_EVENT_WEIGHTS, "view": 0.0}},
        "C": {"share": 1, "exclude_cart": False, "cold_start_events": 3},
    }))).model)
    live = LiveCatalog(cat, variants)
    live.set_trending('[["p7", 3.0], ["p8", 2.0], ["p9", 1.0]]')
    rng = np.random.default_rng(9)
    requests = []
    for u in range(60):
        history, purchased, cart = [], [], []
        for i in range(int(rng.integers(0, 14))):
            etype = str(rng.choice(["view", "click", "purchase", "add_to_cart", "search"]))
            if etype == "search":
                pid = f"p{rng.integers(400)}" if rng.random() < 0.3 else None
                history.append((etype, 100 + i, pid, None if pid else str(rng.choice(["lamp 3", "zzz"]))))
            else:
                pid = f"p{rng.integers(410)}"  # p400.. are unknown
                history.append((etype, 100 + i, pid, None))
                (purchased if etype == "purchase" else cart).append(pid)
        requests.append(UserRequest(f"user {u}", history, purchased, cart))
    ranker = BatchRanker(live)
    data = encode_rank_request(b"", requests)
    _, fast = decode_rank_result(ranker.rank_columns(data))
    slow = ranker.rank_users(requests)
    assert {r.variant for r in slow} == {"A", "B", "C"}
    assert [r.variant for r in fast] == [r.variant for r in slow]
    for f, w in zip(fast, slow):
        assert (f.recommendation.source, f.recommendation.product_ids) == (w.recommendation.source,
                                                                          w.recommendation.product_ids)
        np.testing.assert_allclose(f.recommendation.scores, w.recommendation.scores, rtol=1e-5, atol=1e-6)
