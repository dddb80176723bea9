"""Parsing and validation of the JSON events that arrive on the `events` topic.

Every input either becomes an :class:`Event` or a :class:`BadRecord` with a stable error code;
nothing raises, because one poison pill must never restart the job.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any, Container, Optional, Union

EVENT_TYPES = ("view", "click", "search", "add_to_cart", "remove_from_cart", "purchase")

# Error codes written to the dead-letter topic; part of the public contract.
NOT_JSON = "NOT_JSON"
MISSING_FIELD = "MISSING_FIELD"
WRONG_TYPE = "WRONG_TYPE"
UNKNOWN_TYPE = "UNKNOWN_TYPE"
UNKNOWN_PRODUCT = "UNKNOWN_PRODUCT"
OVERSIZED = "OVERSIZED"
NON_FINITE = "NON_FINITE"
ERROR_CODES = (NOT_JSON, MISSING_FIELD, WRONG_TYPE, UNKNOWN_TYPE, UNKNOWN_PRODUCT, OVERSIZED, NON_FINITE)

MAX_ID_CHARS = 256


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
) -> Union[Event, BadRecord]:
    """Validate one raw record against the event contract (see ARCHITECTURE.md)."""
    if isinstance(raw, bytes):
        size = len(raw)
        text = raw.decode("utf-8", errors="replace")
    else:
        text = raw
        size = len(raw.encode("utf-8", errors="replace"))
    if size > max_record_bytes:
        # Keep the dead letter itself bounded: the head of the payload is enough to find the producer.
        return BadRecord(OVERSIZED, f"record is {size} bytes, limit {max_record_bytes}", text[:1024])

    def bad(code: str, reason: str) -> BadRecord:
        return BadRecord(code, reason, text)

    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except _NonFinite as exc:
        return bad(NON_FINITE, f"non-finite number {exc}")
    except (ValueError, RecursionError) as exc:
        return bad(NOT_JSON, f"not JSON: {exc}")
    if not isinstance(obj, dict):
        return bad(NOT_JSON, f"expected a JSON object, got {type(obj).__name__}")

    for name in ("event_id", "user_id", "ts", "type"):
        if obj.get(name) is None:
            return bad(MISSING_FIELD, f"missing field {name!r}")
    for name in ("event_id", "user_id", "type"):
        value = obj[name]
        if not isinstance(value, str):
            return bad(WRONG_TYPE, f"{name!r} must be a string, got {type(value).__name__}")
        if not value or len(value) > MAX_ID_CHARS:
            return bad(WRONG_TYPE, f"{name!r} must have 1..{MAX_ID_CHARS} characters")

    ts = obj["ts"]
    if isinstance(ts, bool) or not isinstance(ts, (int, float)):
        return bad(WRONG_TYPE, f"'ts' must be epoch milliseconds (a number), got {type(ts).__name__}")
    if isinstance(ts, float):
        if not math.isfinite(ts):
            return bad(NON_FINITE, "'ts' is not finite")
        if not ts.is_integer():
            return bad(WRONG_TYPE, "'ts' must be whole epoch milliseconds")
        ts = int(ts)
    if ts < 0 or ts > 32503680000000:  # year 3000: anything later is a unit mistake (micro/nanoseconds)
        return bad(WRONG_TYPE, f"'ts' {ts} is not epoch milliseconds")

    etype = obj["type"]
    if etype not in EVENT_TYPES:
        return bad(UNKNOWN_TYPE, f"unknown event type {etype!r}; expected one of {', '.join(EVENT_TYPES)}")

    product_id = obj.get("product_id")
    query = obj.get("query")
    if etype == "search":
        if query is None:
            return bad(MISSING_FIELD, "a search event needs 'query'")
        if not isinstance(query, str):
            return bad(WRONG_TYPE, f"'query' must be a string, got {type(query).__name__}")
        if len(query) > max_query_chars:
            return bad(OVERSIZED, f"query has {len(query)} characters, limit {max_query_chars}")
    elif query is not None:
        return bad(WRONG_TYPE, f"'query' is only allowed on search events, not {etype!r}")

    if product_id is not None:
        if not isinstance(product_id, str):
            return bad(WRONG_TYPE, f"'product_id' must be a string, got {type(product_id).__name__}")
        if not product_id or len(product_id) > MAX_ID_CHARS:
            return bad(WRONG_TYPE, f"'product_id' must have 1..{MAX_ID_CHARS} characters")
    elif etype != "search":
        return bad(MISSING_FIELD, f"a {etype!r} event needs 'product_id'")
    if product_id is not None and known_products is not None and product_id not in known_products:
        return bad(UNKNOWN_PRODUCT, f"product {product_id!r} is not in the catalog")

    return Event(obj["event_id"], obj["user_id"], ts, etype, product_id, query)
