"""Parsing and validation of the JSON events that arrive on the `events` topic.

Every input either becomes an :class:`Event` or a :class:`BadRecord` with a stable error code;
nothing raises, because one poison pill must never restart the job. :func:`parse_guarded` (what the
job calls) also turns an exception the parser did not foresee into an ``INTERNAL`` dead letter.

The text rule (:func:`text_problem`): ids (event, user, product) and search queries must be valid
Unicode (no lone surrogate: a JSON ``\\ud800`` escape decodes to one, and the JVM refuses it when the
row crosses to Java), hold no character of :data:`FORBIDDEN_CATEGORIES` or :data:`FORBIDDEN_CHARS`
(they rewrite a terminal or reorder what it shows) and have 1..``max_chars`` characters. A record
that breaks it is dead-lettered as ``BAD_ID``; an id is never altered (no trimming, no
normalisation): what the producer sent is what the store holds, byte for byte.

The clock rule: an event whose ``ts`` is later than ``max_ts`` (the job's clock plus the allowed
lead, :func:`latest_ts`, computed once per batch by the caller) is dead-lettered as ``FUTURE_TS``,
so that no producer's clock (or unit mistake) can drive trending or the idle-user TTL from the
future. It is the parser's last check: a record refused for anything else keeps that code.
"""

from __future__ import annotations

import codecs
import json
import math
import unicodedata
from dataclasses import asdict, dataclass
from typing import Any, Callable, Container, Optional, TypeVar, Union

EVENT_TYPES = ("view", "click", "search", "add_to_cart", "remove_from_cart", "purchase")

# Error codes written to the dead-letter topic; part of the public contract.
NOT_JSON = "NOT_JSON"
MISSING_FIELD = "MISSING_FIELD"
WRONG_TYPE = "WRONG_TYPE"
UNKNOWN_TYPE = "UNKNOWN_TYPE"
UNKNOWN_PRODUCT = "UNKNOWN_PRODUCT"
OVERSIZED = "OVERSIZED"
NON_FINITE = "NON_FINITE"
BAD_ID = "BAD_ID"  # an id or a query that breaks the text rule (text_problem)
INTERNAL = "INTERNAL"  # an exception raised by one record's own processing (internal_dead_letter)
FUTURE_TS = "FUTURE_TS"  # ts further ahead of the job's clock than the allowed lead (latest_ts)
ERROR_CODES = (NOT_JSON, MISSING_FIELD, WRONG_TYPE, UNKNOWN_TYPE, UNKNOWN_PRODUCT, OVERSIZED, NON_FINITE, BAD_ID,
               INTERNAL, FUTURE_TS)

MAX_ID_CHARS = 256

# Cc: C0, DEL and C1 controls (NUL, ESC sequences, bell, ...); Cs: lone surrogates. Both are refused
# in every id and query. Cf (format) stays allowed, except the characters below: zero-width joiners
# build emoji and ZWNJ is part of Persian and Indic spelling. Co (private use) and Cn (unassigned)
# stay allowed: refusing Cn would make a record's fate depend on the Unicode version of the Python
# that parses it (the job's and verify's could differ).
FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cs"})
# Bidi embeddings, overrides and isolates (a terminal then shows another string than the stored
# one: "Trojan source"), and the line and paragraph separators (line breaks to some readers).
FORBIDDEN_CHARS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u2028\u2029")
# The longest exception text an INTERNAL dead letter keeps.
MAX_REASON_CHARS = 1000


def _java_replace(exc: UnicodeError) -> tuple[str, int]:
    # Java's UTF-8 decoder (the job's source: new String(bytes, UTF_8)) replaces an encoded
    # surrogate - ED A0..BF, and its continuation byte if there is one - with one U+FFFD, where
    # Python's replaces each byte; every other malformed sequence is replaced alike by both.
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    data, i = exc.object, exc.start
    if data[i] == 0xED and i + 1 < len(data) and 0xA0 <= data[i + 1] <= 0xBF:
        return "\ufffd", i + 3 if i + 2 < len(data) and 0x80 <= data[i + 2] <= 0xBF else i + 2
    return "\ufffd", exc.end


codecs.register_error("streamrec-java-replace", _java_replace)


def decode_like_java(data: bytes) -> str:
    """``data`` decoded as the job's Kafka source decodes a record value (UTF-8, each malformed
    sequence replaced by U+FFFD the way Java's decoder cuts them), for tools that read the topic
    themselves (``verify``): the dead letter's payload is the text the job saw."""
    return data.decode("utf-8", errors="streamrec-java-replace")


def forbidden_char(ch: str) -> bool:
    """True for a character no id or query may hold (see the module docstring)."""
    return ch in FORBIDDEN_CHARS or unicodedata.category(ch) in FORBIDDEN_CATEGORIES


def text_problem(value: str, max_chars: int = MAX_ID_CHARS) -> Optional[str]:
    """Why ``value`` may not be an id or a query, or None when it may. The one rule of the job's
    parser, ``streamrec produce``, the query commands and ``verify``; it never alters the value."""
    if not value:
        return "is empty"
    if len(value) > max_chars:
        return f"has {len(value)} characters, limit {max_chars}"
    for i, ch in enumerate(value):
        if forbidden_char(ch):
            kind = "a lone surrogate" if unicodedata.category(ch) == "Cs" else "a control character"
            return f"holds {kind} (U+{ord(ch):04X}) at position {i}"
    return None


def latest_ts(now_ms: int, max_lead_ms: int) -> Optional[int]:
    """The newest event time (epoch ms) the parser accepts when the clock reads ``now_ms``, or None
    (no limit) when ``max_lead_ms`` is 0 or less. Callers read the clock once per batch and pass the
    result as ``max_ts``: the hot path then pays one comparison per event."""
    return now_ms + max_lead_ms if max_lead_ms > 0 else None


@dataclass(frozen=True)
class Event:
    event_id: str
    user_id: str
    ts: int  # epoch milliseconds
    type: str
    product_id: Optional[str] = None
    query: Optional[str] = None

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if v is not None}, separators=(",", ":"))


@dataclass(frozen=True)
class BadRecord:
    code: str
    reason: str
    payload: str

    def to_json(self) -> str:
        return json.dumps({"error": self.code, "reason": self.reason, "payload": self.payload})


class _NonFinite(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    # json.loads accepts NaN/Infinity by default; they are not JSON and must not reach the model.
    raise _NonFinite(name)


def parse_event(
    raw: Union[str, bytes],
    known_products: Optional[Container[str]] = None,
    max_record_bytes: int = 64 * 1024,
    max_query_chars: int = 1024,
    max_ts: Optional[int] = None,
) -> Union[Event, BadRecord]:
    """Validate one raw record against the event contract (docs/ARCHITECTURE.md, "Contracts"); ``max_ts``: the
    clock rule's bound (:func:`latest_ts`), None for none.

    The rules are checked in a fixed order (size, JSON, fields, ts, type, query and product, catalog,
    clock), so a record that breaks several always gets the code of the first. On the job's hot path
    (once per event): each step is one call that returns the BadRecord or what the next step needs."""
    if isinstance(raw, bytes):
        size = len(raw)
        text = raw.decode("utf-8", errors="replace")
    else:
        text = raw
        size = len(raw.encode("utf-8", errors="replace"))
    if size > max_record_bytes:
        # Keep the dead letter itself bounded: the head of the payload is enough to find the producer.
        return BadRecord(OVERSIZED, f"record is {size} bytes, limit {max_record_bytes}", text[:1024])
    obj = _json_object(text)
    if isinstance(obj, BadRecord):
        return obj
    ts = _fields_and_ts(obj, text)
    if isinstance(ts, BadRecord):
        return ts
    etype = obj["type"]
    if etype not in EVENT_TYPES:
        return BadRecord(UNKNOWN_TYPE, f"unknown event type {etype!r}; expected one of {', '.join(EVENT_TYPES)}",
                         text)
    product_id = obj.get("product_id")
    query = obj.get("query")
    bad = _query_and_product(etype, query, product_id, max_query_chars, text)
    if bad is not None:
        return bad
    if product_id is not None and known_products is not None and product_id not in known_products:
        return BadRecord(UNKNOWN_PRODUCT, f"product {product_id!r} is not in the catalog", text)
    if max_ts is not None and ts > max_ts:
        return BadRecord(FUTURE_TS, f"'ts' {ts} is ahead of the clock by more than the allowed lead (latest "
                                    f"accepted: {max_ts})", text)
    return Event(obj["event_id"], obj["user_id"], ts, etype, product_id, query)


def _json_object(text: str) -> Union[dict[str, Any], BadRecord]:
    """The record as a JSON object (NaN and Infinity refused as NON_FINITE), or its NOT_JSON letter."""
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except _NonFinite as exc:
        return BadRecord(NON_FINITE, f"non-finite number {exc}", text)
    except (ValueError, RecursionError) as exc:
        return BadRecord(NOT_JSON, f"not JSON: {exc}", text)
    if not isinstance(obj, dict):
        return BadRecord(NOT_JSON, f"expected a JSON object, got {type(obj).__name__}", text)
    return obj


def _fields_and_ts(obj: dict[str, Any], text: str) -> Union[int, BadRecord]:
    """The required fields present, the ids valid strings, and ``ts`` as whole epoch milliseconds
    (the int ts), or the first rule broken."""
    for name in ("event_id", "user_id", "ts", "type"):
        if obj.get(name) is None:
            return BadRecord(MISSING_FIELD, f"missing field {name!r}", text)
    for name in ("event_id", "user_id", "type"):
        value = obj[name]
        if not isinstance(value, str):
            return BadRecord(WRONG_TYPE, f"{name!r} must be a string, got {type(value).__name__}", text)
    for name in ("event_id", "user_id"):
        problem = text_problem(obj[name])
        if problem is not None:
            return BadRecord(BAD_ID, f"{name!r} {problem}", text)
    ts = obj["ts"]
    if isinstance(ts, bool) or not isinstance(ts, (int, float)):
        return BadRecord(WRONG_TYPE, f"'ts' must be epoch milliseconds (a number), got {type(ts).__name__}", text)
    if isinstance(ts, float):
        if not math.isfinite(ts):
            return BadRecord(NON_FINITE, "'ts' is not finite", text)
        if not ts.is_integer():
            return BadRecord(WRONG_TYPE, "'ts' must be whole epoch milliseconds", text)
        ts = int(ts)
    if ts < 0 or ts > 32503680000000:  # year 3000: anything later is a unit mistake (micro/nanoseconds)
        return BadRecord(WRONG_TYPE, f"'ts' {ts} is not epoch milliseconds", text)
    return ts


def _query_and_product(etype: str, query: Any, product_id: Any, max_query_chars: int,
                       text: str) -> Optional[BadRecord]:
    """A search has a valid query and may have a product; any other type has a valid product and no query."""
    if etype == "search":
        if query is None:
            return BadRecord(MISSING_FIELD, "a search event needs 'query'", text)
        if not isinstance(query, str):
            return BadRecord(WRONG_TYPE, f"'query' must be a string, got {type(query).__name__}", text)
        if len(query) > max_query_chars:
            return BadRecord(OVERSIZED, f"query has {len(query)} characters, limit {max_query_chars}", text)
        problem = text_problem(query, max_query_chars)
        if problem is not None:
            return BadRecord(BAD_ID, f"'query' {problem}", text)
    elif query is not None:
        return BadRecord(WRONG_TYPE, f"'query' is only allowed on search events, not {etype!r}", text)
    if product_id is not None:
        if not isinstance(product_id, str):
            return BadRecord(WRONG_TYPE, f"'product_id' must be a string, got {type(product_id).__name__}", text)
        problem = text_problem(product_id)
        if problem is not None:
            return BadRecord(BAD_ID, f"'product_id' {problem}", text)
    elif etype != "search":
        return BadRecord(MISSING_FIELD, f"a {etype!r} event needs 'product_id'", text)
    return None


def waiting_event(raw: Union[str, bytes], letter: BadRecord, max_record_bytes: int = 64 * 1024,
                  max_query_chars: int = 1024, max_ts: Optional[int] = None) -> Optional[Event]:
    """The late catalog's rule: the event ``raw`` is once its product is known, when ``letter`` (the
    parser's verdict on ``raw``) is ``UNKNOWN_PRODUCT`` and every other rule passes (the clock rule
    included, with the same ``max_ts``); else None, and ``letter`` stands. Such an event may wait for
    its product (the job's ``await-products``); if the product never comes, ``letter`` is its dead
    letter, exactly as without the wait."""
    if letter.code != UNKNOWN_PRODUCT:
        return None
    parsed = parse_guarded(raw, None, max_record_bytes, max_query_chars, max_ts)
    return parsed if isinstance(parsed, Event) else None


def internal_dead_letter(payload: Union[str, bytes, None], exc: BaseException) -> BadRecord:
    """The ``INTERNAL`` dead letter of a record whose processing raised ``exc``: the exception's
    type and text, and the payload (bytes decoded as the job's source decodes them). Its JSON is
    ASCII whatever the payload holds (json.dumps escapes lone surrogates), so it always crosses to
    Java."""
    if payload is None:
        text = ""
    elif isinstance(payload, bytes):
        text = payload.decode("utf-8", errors="replace")
    else:
        text = payload
    reason = f"{type(exc).__name__}: {exc}"
    if len(reason) > MAX_REASON_CHARS:
        reason = reason[:MAX_REASON_CHARS] + "..."
    return BadRecord(INTERNAL, reason, text)


T = TypeVar("T")


def guarded(fn: Callable[..., T], raw: Union[str, bytes, None], *args: Any) -> Union[T, BadRecord]:
    """``fn(raw, *args)``, or the ``INTERNAL`` dead letter of ``raw`` when it raises: one record can
    never fail the operator that processes it (a restart would meet the same record again)."""
    try:
        return fn(raw, *args)
    except Exception as exc:
        return internal_dead_letter(raw, exc)


def parse_guarded(
    raw: Union[str, bytes],
    known_products: Optional[Container[str]] = None,
    max_record_bytes: int = 64 * 1024,
    max_query_chars: int = 1024,
    max_ts: Optional[int] = None,
) -> Union[Event, BadRecord]:
    """:func:`parse_event` that never raises: what the job's parsers and ``verify`` call."""
    return guarded(parse_event, raw, known_products, max_record_bytes, max_query_chars, max_ts)
