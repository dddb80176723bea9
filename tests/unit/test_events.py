"""Parsing: every valid event becomes an Event; every bad-input class gets its own error code."""

import json

import pytest

from streamrec.model.events import (
    ERROR_CODES,
    MISSING_FIELD,
    NON_FINITE,
    NOT_JSON,
    OVERSIZED,
    UNKNOWN_PRODUCT,
    UNKNOWN_TYPE,
    WRONG_TYPE,
    BadRecord,
    Event,
    parse_event,
)

CATALOG = {"p1", "p2"}


def ev(**fields):
    base = {"event_id": "e1", "user_id": "u1", "ts": 1700000000000, "type": "view", "product_id": "p1"}
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not None})


@pytest.mark.parametrize("etype", ["view", "click", "add_to_cart", "remove_from_cart", "purchase"])
def test_a_valid_product_event_parses_into_an_event(etype):
    assert parse_event(ev(type=etype), CATALOG) == Event("e1", "u1", 1700000000000, etype, "p1")


def test_a_search_event_needs_a_query_and_no_product():
    assert parse_event(ev(type="search", product_id=None, query="lantern"), CATALOG) == Event(
        "e1", "u1", 1700000000000, "search", None, "lantern"
    )
    assert parse_event(ev(type="search", product_id=None), CATALOG).code == MISSING_FIELD


def test_bytes_and_whole_float_timestamps_are_accepted():
    assert parse_event(ev(ts=1700000000000.0).encode(), CATALOG).ts == 1700000000000


@pytest.mark.parametrize(
    "raw, code",
    [
        ("not json at all", NOT_JSON),
        ("[1, 2, 3]", NOT_JSON),
        ("", NOT_JSON),
        (ev(user_id=None), MISSING_FIELD),
        (ev(product_id=None), MISSING_FIELD),
        (ev(ts=None), MISSING_FIELD),
        (ev(user_id=42), WRONG_TYPE),
        (ev(ts="yesterday"), WRONG_TYPE),
        (ev(ts=True), WRONG_TYPE),
        (ev(ts=1.5), WRONG_TYPE),
        (ev(ts=1700000000000000000), WRONG_TYPE),
        (ev(product_id=7), WRONG_TYPE),
        (ev(query="lamp"), WRONG_TYPE),
        (ev(type="like"), UNKNOWN_TYPE),
        (ev(product_id="nope"), UNKNOWN_PRODUCT),
        ('{"event_id": "e", "user_id": "u", "ts": NaN, "type": "view", "product_id": "p1"}', NON_FINITE),
        ('{"event_id": "e", "user_id": "u", "ts": Infinity, "type": "view", "product_id": "p1"}', NON_FINITE),
        (ev(type="search", product_id=None, query="x" * 1025), OVERSIZED),
        (ev(padding="x" * 70000), OVERSIZED),
    ],
)
def test_bad_input_becomes_a_dead_letter_with_its_code(raw, code):
    result = parse_event(raw, CATALOG)
    assert isinstance(result, BadRecord), result
    assert result.code == code
    assert code in ERROR_CODES
    letter = json.loads(result.to_json())
    assert letter["error"] == code and letter["reason"]
    # the payload is kept (oversized ones truncated) so the producer can be found
    assert raw[:100] in letter["payload"] or letter["payload"] == raw[:1024]


def test_limits_are_configurable():
    assert parse_event(ev(), CATALOG, max_record_bytes=50).code == OVERSIZED
    q = ev(type="search", product_id=None, query="abcdef")
    assert parse_event(q, CATALOG, max_query_chars=5).code == OVERSIZED


def test_without_a_catalog_any_product_is_accepted():
    assert isinstance(parse_event(ev(product_id="anything"), None), Event)
