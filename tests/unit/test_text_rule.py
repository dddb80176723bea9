"""The text rule for ids and queries (BAD_ID) and the guard that turns an unforeseen exception into
an INTERNAL dead letter: no single record may stop the job."""

from __future__ import annotations

import json
import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamrec.model.events import (
    BAD_ID,
    ERROR_CODES,
    FORBIDDEN_CHARS,
    INTERNAL,
    MAX_ID_CHARS,
    BadRecord,
    Event,
    forbidden_char,
    guarded,
    internal_dead_letter,
    parse_event,
    parse_guarded,
    text_problem,
)
from streamrec.model.products import ProductUpdate, parse_product_update

pytestmark = pytest.mark.unit

CATALOG = {"p1", "p2"}
BASE = {"event_id": "e1", "user_id": "u1", "ts": 1700000000000, "type": "view", "product_id": "p1"}

# what an id may hold: anything but controls, lone surrogates, bidi controls and line separators
ALLOWED = st.characters(exclude_categories=["Cc", "Cs"], exclude_characters="".join(FORBIDDEN_CHARS))
FORBIDDEN = st.one_of(
    st.characters(categories=["Cc"]),
    st.characters(categories=["Cs"]),
    st.sampled_from(sorted(FORBIDDEN_CHARS)),
)


def event(**fields) -> str:
    return json.dumps({**BASE, **fields})


def utf8_safe(s: str) -> bool:
    try:
        s.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


# --- the rule ---------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [
    "u1", "user 17850", "用户-42", "emoji 👩‍👩‍👧 family (zero-width joiners)", "میخواهم",  # ZWNJ in Persian
    "\ue000private", "\ufeffbom", "x" * MAX_ID_CHARS, " leading and trailing ",
])
def test_ordinary_ids_of_any_script_pass_the_rule_unaltered(value):
    assert text_problem(value) is None
    parsed = parse_event(event(user_id=value, event_id=value), CATALOG)
    assert isinstance(parsed, Event)
    assert parsed.user_id == value and parsed.event_id == value  # never trimmed nor normalised


@pytest.mark.parametrize("value, why", [
    ("", "is empty"),
    ("x" * (MAX_ID_CHARS + 1), "characters, limit"),
    ("\ud800x", "lone surrogate (U+D800) at position 0"),
    ("x\udfff", "lone surrogate (U+DFFF) at position 1"),
    ("a\x00b", "control character (U+0000)"),
    ("\x1b[2J", "control character (U+001B)"),  # clears a terminal
    ("a\x7f", "control character (U+007F)"),
    ("a\x9bb", "control character (U+009B)"),  # C1 CSI
    ("admin\u202egnp.exe", "control character (U+202E)"),  # right-to-left override
    ("a\u2028b", "control character (U+2028)"),
])
def test_ids_with_surrogates_controls_or_bad_lengths_are_refused_with_the_reason(value, why):
    problem = text_problem(value)
    assert problem is not None and why in problem


@pytest.mark.parametrize("field", ["event_id", "user_id", "product_id"])
@pytest.mark.parametrize("bad", ["\ud800x", "a\x1bb", "", "x" * 300, "a\u202eb"])
def test_an_event_with_a_bad_id_is_a_BAD_ID_dead_letter_whose_json_is_ascii(field, bad):
    raw = event(**{field: bad})  # json.dumps writes the surrogate as the escape "\ud800"
    parsed = parse_event(raw, CATALOG)
    assert isinstance(parsed, BadRecord) and parsed.code == BAD_ID, parsed
    assert field in parsed.reason
    letter = parsed.to_json()
    assert letter.isascii() and json.loads(letter)["payload"] == raw


def test_the_issue_reproduction_a_lone_surrogate_user_id_is_dead_lettered_not_passed_on():
    raw = '{"event_id": "s1", "user_id": "\\ud800x", "ts": 1700000000000, "type": "view", "product_id": "p1"}'
    parsed = parse_guarded(raw, CATALOG)
    assert isinstance(parsed, BadRecord) and parsed.code == BAD_ID


def test_a_query_follows_the_same_rule_and_keeps_its_size_limit():
    def search(q: str) -> str:
        return event(type="search", product_id=None, query=q)

    assert parse_event(search("lanterne rouge 红灯笼 🏮"), CATALOG).query == "lanterne rouge 红灯笼 🏮"
    assert parse_event(search("\x1b]8;;http://evil\x1b\\click"), CATALOG).code == BAD_ID
    assert parse_event(search("\udc00"), CATALOG).code == BAD_ID
    assert parse_event(search(""), CATALOG).code == BAD_ID
    assert parse_event(search("x" * 1025), CATALOG).code == "OVERSIZED"  # as before: the size limit's own code


def test_product_updates_follow_the_rule_for_ids_titles_and_categories():
    assert parse_product_update('{"product_id": "\\ud800"}').code == BAD_ID
    assert parse_product_update('{"product_id": "p\\u0007"}').code == BAD_ID
    assert parse_product_update('{"product_id": "p", "title": "\\u001b[31mred"}').code == BAD_ID
    assert parse_product_update('{"product_id": "p", "category": "\\udfff"}').code == BAD_ID
    assert parse_product_update('{"product_id": "p", "title": ""}') == ProductUpdate("p", title="")
    assert parse_product_update('{"product_id": "灯笼", "title": "红灯笼"}') == ProductUpdate("灯笼", title="红灯笼")


def test_the_two_new_codes_are_part_of_the_contract():
    assert BAD_ID in ERROR_CODES and INTERNAL in ERROR_CODES and len(set(ERROR_CODES)) == 10  # and FUTURE_TS


@given(st.text(ALLOWED, min_size=1, max_size=MAX_ID_CHARS))
def test_property_any_string_of_allowed_characters_is_a_valid_id(value):
    assert text_problem(value) is None


@given(st.text(ALLOWED, max_size=20), FORBIDDEN, st.text(ALLOWED, max_size=20))
def test_property_one_forbidden_character_anywhere_makes_it_a_BAD_ID(left, ch, right):
    value = left + ch + right
    assert forbidden_char(ch)
    assert text_problem(value) is not None
    assert parse_event(event(user_id=value), CATALOG).code == BAD_ID


# --- the parser never raises and never lets out what Java refuses -------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=300)
@given(st.one_of(
    JSON_VALUES.map(lambda v: json.dumps(v)),
    st.dictionaries(st.sampled_from([*BASE, "query"]), JSON_VALUES, max_size=7).map(
        lambda d: json.dumps({**BASE, **d})),
    st.binary(max_size=200),
    st.text(max_size=200),
    st.integers(1, 50_000).map(lambda n: "[" * n + "]" * n),
    st.integers(0, 10**6).map(lambda n: event(ts=f"__{n}").replace(f'"__{n}"', "9" * (4000 + n % 2000))),
))
def test_property_the_parser_never_raises_and_its_output_always_crosses_to_java(raw):
    parsed = parse_event(raw, CATALOG)
    if isinstance(parsed, Event):
        for value in (parsed.event_id, parsed.user_id, parsed.type, parsed.product_id, parsed.query):
            assert value is None or (utf8_safe(value) and text_problem(value, 1024) is None)
    else:
        assert parsed.code in ERROR_CODES
        assert parsed.to_json().isascii()


def test_deep_nesting_and_huge_numbers_are_dead_letters():
    assert parse_event("[" * 100_000 + "]" * 100_000, max_record_bytes=10**6).code == "NOT_JSON"
    assert parse_event(event(ts=1e308).replace("1e+308", "1e999"), CATALOG).code == "NON_FINITE"
    assert parse_event(event().replace("1700000000000", "9" * 5000), CATALOG).code == "NOT_JSON"
    assert parse_event(event().replace("1700000000000", "9" * 400), CATALOG).code == "WRONG_TYPE"


# --- the guard --------------------------------------------------------------------------------

def test_an_unforeseen_exception_becomes_an_INTERNAL_dead_letter_with_its_text():
    def boom(raw, *args):
        raise RuntimeError("\ud800 in the message")

    letter = guarded(boom, b"\xff{payload")
    assert isinstance(letter, BadRecord) and letter.code == INTERNAL
    assert letter.reason == "RuntimeError: \ud800 in the message"
    assert letter.payload == "\ufffd{payload"  # bytes decoded as the job's source decodes them
    assert letter.to_json().isascii()  # the surrogate of the message is escaped: Java takes it
    assert json.loads(letter.to_json())["error"] == INTERNAL


def test_the_guard_passes_results_through_and_the_job_parser_is_guarded(monkeypatch):
    assert guarded(lambda raw, n: raw * n, "ab", 2) == "abab"
    assert parse_guarded(event(), CATALOG) == Event("e1", "u1", 1700000000000, "view", "p1")
    import streamrec.model.events as events

    monkeypatch.setattr(events, "parse_event", lambda *a: 1 / 0)
    letter = events.parse_guarded(event(), CATALOG)
    assert letter.code == INTERNAL and "ZeroDivisionError" in letter.reason and letter.payload == event()


def test_an_internal_dead_letter_keeps_a_bounded_reason():
    letter = internal_dead_letter("p", RuntimeError("x" * 10_000))
    assert len(letter.reason) < 1100 and letter.reason.endswith("...")
    assert internal_dead_letter(None, RuntimeError("e")).payload == ""


def test_unicode_categories_are_what_the_rule_documents():
    assert unicodedata.category("\u200d") == "Cf" and not forbidden_char("\u200d")  # ZWJ: emoji sequences
    assert unicodedata.category("\u202e") == "Cf" and forbidden_char("\u202e")
