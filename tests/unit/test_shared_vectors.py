"""Shared test vectors: the rules the JVM operators must know, written by the Python reference.

``java/src/test/resources/vectors/*.json`` hold what the Python model does with fixed inputs; the
Maven tests (``UserHistoryVectorsTest``, ``BatchFormatVectorsTest``, ``AwaitProductsTest``) run the
Java operators on the same inputs and require the same outputs. These tests require that the files still say what the
Python code does now: after a change of rule, regenerate them with

    STREAMREC_WRITE_VECTORS=1 .venv/bin/python -m pytest tests/unit/test_shared_vectors.py
"""

import base64
import json
import os
import random
from pathlib import Path

import pytest

from streamrec.config import DEFAULT_EVENT_WEIGHTS
from streamrec.model.batch import (
    UserRequest,
    UserResult,
    encode_event_part,
    encode_rank_request,
    encode_rank_result,
    encode_raw_batch,
    event_line,
)
from streamrec.model.catalog import Catalog
from streamrec.model.events import BadRecord, Event
from streamrec.model.model import ModelParams, Recommendation, UserState, apply_event

pytestmark = pytest.mark.unit

VECTORS = Path(__file__).resolve().parents[2] / "java" / "src" / "test" / "resources" / "vectors"
TYPES = ["view", "click", "search", "add_to_cart", "remove_from_cart", "purchase"]


def _events(r: random.Random, n: int, user: str) -> list[Event]:
    ts = 1_700_000_000_000
    out = []
    for i in range(n):
        ts += r.choice([0, 0, 1, 5, 1000] * 6 + [40 * 86_400_000])  # same-millisecond runs, rare idle gaps
        etype = r.choice(TYPES)
        pid = f"p{r.randrange(12)}" if etype != "search" or r.random() < 0.3 else None
        query = r.choice(["red lamp", "", "ünï 漢字 😀"]) if etype == "search" else None
        out.append(Event(f"e{i}", user, ts, etype, pid, query))
    return out


def user_state_vectors() -> dict:
    """Per case: settings, events, and after each event the state the JVM keeps (no vector)."""
    import numpy as np

    catalog = Catalog(tuple(f"p{i}" for i in range(12)), np.eye(12, 4, dtype=np.float32))
    r = random.Random(42)
    cases = []
    for name, weights, half_life, ttl in [
        ("defaults", DEFAULT_EVENT_WEIGHTS, 0.5, 30 * 86_400_000),
        ("views do not move, long half-life, no TTL", {**DEFAULT_EVENT_WEIGHTS, "view": 0.0}, 1.0, 0),
    ]:
        params = ModelParams(event_weights=weights, half_life_events=half_life)
        events = _events(r, 300, "user ü")
        state = UserState()
        after = []
        for e in events:
            state = apply_event(state, e, catalog, params, ttl)
            after.append({"seq": state.seq, "max_ts": state.max_ts, "write_us": state.write_us,
                          "history": [list(h) for h in state.history], "purchased": list(state.purchased),
                          "cart": list(state.cart)})
        final = UserRequest("user ü", state.history, state.purchased, state.cart)
        cases.append({
            "name": name, "moving_types": sorted(params.moving_types), "history_size": params.history_size,
            "ttl_ms": ttl, "events": [[e.event_id, e.user_id, e.ts, e.type, e.product_id, e.query] for e in events],
            "after": after,
            # the users part of a batch that ends with this state
            "request_users_text": encode_rank_request(b"", [final])[4:].decode("utf-8"),
        })
    return {"cases": cases}


def batch_format_vectors() -> dict:
    raws = [b'{"a":1}', b"", "ünï 漢字 😀".encode(), b"\xff\xfe broken utf-8"]
    events = [Event("e1", "u1", 1_700_000_000_000, "view", "p1"), Event("e2", "u ü", 5, "search", None, ""),
              Event("e3", "u ü", 6, "search", "p2", "lamp 漢字")]
    answer = encode_rank_result(b"\x00\x01opaque events part", [
        UserResult("A", Recommendation(("p1", "p 2 ü"), (0.5, -0.25), "personal")),
        UserResult("default", Recommendation((), (), "none")),
        UserResult("B", Recommendation(("p3",), (1.0,), "trending")),
    ])
    # what UserStateOperator writes for these events of three users (slots 0, 1, 0, 2)
    part_events = [Event("a1", "ua", 10, "view", "p1"), Event("b1", "ub ü", 11, "view", "p2"),
                   Event("a2", "ua", 12, "purchase", "p3"), Event("c1", "uc", 13, "search", None, "lamp 漢")]
    part = encode_event_part([(0, 10_000, part_events[0]), (1, 11_000, part_events[1]), (0, 12_000, part_events[2]),
                              (2, 13_000, part_events[3])])
    return {
        "event_part_events": [[e.event_id, e.user_id, e.ts, e.type, e.product_id, e.query] for e in part_events],
        "event_part": base64.b64encode(part).decode(),
        "raw_records": [base64.b64encode(v).decode() for v in raws],
        "raw_batch": base64.b64encode(encode_raw_batch(raws)).decode(),
        "event_lines": "\x1e".join(event_line(e) for e in events),
        "events": [[e.event_id, e.user_id, e.ts, e.type, e.product_id, e.query] for e in events],
        "rank_answer": base64.b64encode(answer).decode(),
        "rank_results": [["A", "personal", ["p1", "p 2 ü"], [0.5, -0.25]], ["default", "none", [], []],
                         ["B", "trending", ["p3"], [1.0]]],
    }


def late_catalog_vectors() -> dict:
    """What the fast path's parser hands await-products (the late catalog): per raw record of one
    batch, known products p1 only and a clock bound, either the waiting row (the event's fields and
    the exact UNKNOWN_PRODUCT letter the JVM writes if the product never comes), a dead letter, or a
    valid event. The Java test feeds the waiting rows and requires the event or the letter back."""
    from streamrec.model.batch import decode_events, parse_batch

    max_ts = 1_800_000_000_000
    raws = [
        '{"event_id": "w1", "user_id": "u ü", "ts": 1700000000000, "type": "view", "product_id": "new 漢"}',
        '{"event_id": "w2", "user_id": "u2", "ts": 1700000000001, "type": "purchase", "product_id": "new 漢"}',
        '{"event_id": "w3", "user_id": "u3", "ts": 1700000000002, "type": "search", "query": "lamp", '
        '"product_id": "never"}',
        '{"event_id": "k1", "user_id": "u1", "ts": 1700000000003, "type": "click", "product_id": "p1"}',
        # not valid but for the product: dead at once, never waiting
        '{"event_id": "f1", "user_id": "u1", "ts": 1900000000000, "type": "view", "product_id": "never"}',
        '{"event_id": "b1", "user_id": "u1", "ts": 1700000000004, "type": "bogus", "product_id": "never"}',
        '{"event_id": "x1", "user_id": "u1", "ts": 1700000000005, "type": "view", "product_id": "never\\u001b"}',
    ]
    waiting: list[tuple[Event, BadRecord]] = []
    events, dead = parse_batch(encode_raw_batch([r.encode() for r in raws]), {"p1"}, 64 * 1024, 1024, max_ts,
                               waiting)
    return {
        "raw_records": raws,
        "waiting": [[e.event_id, e.user_id, e.ts, e.type, e.product_id, e.query, letter.to_json()]
                    for e, letter in waiting],
        "dead": [letter.to_json() for letter in dead],
        "events": [[e.event_id, e.user_id, e.ts, e.type, e.product_id, e.query] for e in decode_events(events)],
    }


@pytest.mark.parametrize(("name", "make"), [("user-state.json", user_state_vectors),
                                            ("batch-format.json", batch_format_vectors),
                                            ("late-catalog.json", late_catalog_vectors)])
def test_the_java_tests_vectors_say_what_the_python_reference_does_now(name, make):
    want = make()
    path = VECTORS / name
    if os.environ.get("STREAMREC_WRITE_VECTORS"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(want, ensure_ascii=False, indent=None) + "\n", encoding="utf-8")
    assert json.loads(path.read_text(encoding="utf-8")) == json.loads(json.dumps(want)), (
        f"{path} is out of date: regenerate it (see this module's docstring)")
