"""The comparison of the expected store with what is stored: :func:`compare`, one step per table and
the dead letters, and the rule checks of rows whose exact content timing decides."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from typing import Iterable, Optional

from streamrec.model.events import FUTURE_TS, UNKNOWN_PRODUCT
from streamrec.model.model import excluded_ids
from streamrec.verify.expected import Expectation, ExpectedRecs, ab_counts_fit, same_top_k
from streamrec.verify.reading import EventKey, EventValue, StoredRecs
from streamrec.verify.report import DeadLetterCheck, Report


def compare(expect: Expectation, stored_events: Iterable[tuple[EventKey, EventValue]],
            stored_recs: dict[str, StoredRecs], report: Report,
            dead_letters: Optional[Iterable[Optional[bytes]]] = None) -> Report:
    """Fill ``report`` with the differences between what the topic implies and what is stored."""
    report.records, report.valid_events, report.users = expect.records, expect.valid, len(expect.users)
    report.warnings.extend(expect.conflicts)
    split = expect.split_users()
    if split:
        report.warnings.append(f"{len(split)} user(s) have events in several partitions (keyed by something "
                               f"else than user_id?); their order is not defined, e.g. {split[:3]}")
    _compare_events(expect, stored_events, report)
    _compare_recommendations(expect, stored_recs, report)
    if dead_letters is not None:
        _compare_dead_letters(expect, dead_letters, report)
    return report


def _compare_events(expect: Expectation, stored_events: Iterable[tuple[EventKey, EventValue]],
                    report: Report) -> None:
    """`events` is a set of primary keys; one event id under two keys is doubled."""
    ev = report.events
    ev.expected = len(expect.events)
    stored: dict[EventKey, EventValue] = {}
    by_event: defaultdict[tuple[str, str], int] = defaultdict(int)
    for key, value in stored_events:
        stored[key] = value
        by_event[(key[0], key[2])] += 1
    ev.found = len(stored)
    want_by_event: Counter[tuple[str, str]] = Counter((k[0], k[2]) for k in expect.events)
    for (user, event_id), n in by_event.items():
        if n > max(1, want_by_event.get((user, event_id), 0)):
            ev.doubled += 1
            report._example(f"events: event {event_id!r} of user {user!r} is stored {n} times")
    for key, value in expect.events.items():
        got = stored.get(key)
        if got is None:
            ev.missing += 1
            report._example(f"events: missing {key[2]!r} of user {key[0]!r} at ts {key[1]}")
        elif got != value:
            ev.different += 1
            report._example(f"events: {key[2]!r} of user {key[0]!r}: stored {got}, expected {value}")
    for key in stored.keys() - expect.events.keys():
        if by_event[(key[0], key[2])] > 1 and (key[0], key[2]) in want_by_event:
            continue  # counted as doubled
        ev.extra += 1
        report._example(f"events: extra {key[2]!r} of user {key[0]!r} at ts {key[1]}")


def _compare_recommendations(expect: Expectation, stored_recs: dict[str, StoredRecs], report: Report) -> None:
    """`recommendations` has one row per user, reflecting the user's newest event."""
    rc = report.recommendations
    want = expect.recommendations()
    maybe = expect.maybe_trending()
    rc.expected, rc.found = len(want), len(stored_recs)
    reordered = expect.order_open_users()
    if reordered:
        report.warnings.append(f"{len(reordered)} user(s) had an event for a product of the products topic "
                               "followed by more events: it may have waited for its product, so their "
                               f"recommendations are checked by rules only, e.g. {sorted(reordered)[:3]}")
    user_events: defaultdict[str, dict[str, int]] = defaultdict(dict)
    for user, ts, event_id in expect.events:
        if user in reordered:
            user_events[user][event_id] = ts
    for user, got_r in stored_recs.items():
        if user in reordered:
            _check_reordered(user, got_r, user_events[user], expect, report)
        else:
            _check_row(user, got_r, want.get(user), maybe.get(user), expect, report)
    for user in want.keys() - stored_recs.keys() - reordered:
        rc.missing += 1
        report._example(f"recommendations: missing for user {user!r} (newest event {want[user].event_id!r})")


def _check_row(user: str, got_r: StoredRecs, w: Optional[ExpectedRecs], m: Optional[ExpectedRecs],
               expect: Expectation, report: Report) -> None:
    """The stored row of one user against the newest row the job surely wrote (``w``) and the newest
    cold-start row it may have written after it (``m``)."""
    rc = report.recommendations
    if m is not None and got_r.source == "trending":
        _check_trending(user, got_r, m, expect, report)
        return
    if w is None and m is not None and not expect.ranks_every_event and got_r.source == "personal" \
            and (got_r.event_ts or 0) <= m.event_ts:
        return  # the fast path: a personal row of an earlier batch, before the user went cold
    if w is None:
        rc.extra += 1
        report._example(f"recommendations: extra row for user {user!r}")
        return
    if got_r.event_id != w.event_id or got_r.event_ts != w.event_ts or got_r.updated_at != w.updated_at:
        _count_other_event(user, got_r, w, report)
        return
    params = expect.params_of(user)
    if (got_r.source != w.source or not ab_counts_fit(got_r, w, expect, user)
            or not same_top_k(w, got_r.product_ids, got_r.scores, expect.catalog, expect.user_state(user),
                              params)):
        rc.different += 1
        report._example(f"recommendations: user {user!r}: stored {got_r.product_ids[:5]}... "
                        f"({got_r.source}, {got_r.variant}, {got_r.impressions}/{got_r.hits}), expected "
                        f"{list(w.product_ids[:5])}... ({w.source}, {w.variant}, {w.impressions}/{w.hits})")


def _count_other_event(user: str, got_r: StoredRecs, w: ExpectedRecs, report: Report) -> None:
    """A row that reflects another event than the newest: stale when older, else different."""
    rc = report.recommendations
    older = (got_r.updated_at or 0, got_r.event_ts or 0) < (w.updated_at, w.event_ts)
    if older:
        rc.stale += 1
        report._example(f"recommendations: stale for user {user!r}: reflects {got_r.event_id!r} "
                        f"(updated_at {got_r.updated_at}), newest is {w.event_id!r} ({w.updated_at})")
    else:
        rc.different += 1
        report._example(f"recommendations: user {user!r} reflects {got_r.event_id!r} at "
                        f"{got_r.event_ts}/{got_r.updated_at}, expected {w.event_id!r} at "
                        f"{w.event_ts}/{w.updated_at}")


def _read_letters(dead_letters: Iterable[Optional[bytes]]) -> Counter[tuple[str, str]]:
    """(code, payload) of each dead letter; one that is not a letter counts as <unreadable>."""
    found: Counter[tuple[str, str]] = Counter()
    for raw in dead_letters:
        try:
            letter = json.loads(raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw or "")
            found[(str(letter["error"]), str(letter["payload"]))] += 1
        except (ValueError, KeyError, TypeError):
            found[("<unreadable>", str(raw)[:200])] += 1
    return found


def _compare_dead_letters(expect: Expectation, dead_letters: Iterable[Optional[bytes]], report: Report) -> None:
    """Every bad record of the topic has its dead letter (duplicates allowed: the DLQ is at-least-once)."""
    dl = report.dead_letters = DeadLetterCheck()
    found = _read_letters(dead_letters)
    dl.expected = dict(sorted(expect.dead_letter_codes().items()))
    codes: Counter[str] = Counter()
    for (code, _), n in found.items():
        codes[code] += n
    dl.found = dict(sorted(codes.items()))
    for letter, n in expect.dead_letters.items():
        have = found.get(letter, 0)
        if have < n:
            dl.missing += n - have
            report._example(f"dead letters: missing {n - have} x {letter[0]} for payload {letter[1][:80]!r}")
        elif have > n:
            dl.duplicates += have - n
    for letter, n in found.items():
        if letter not in expect.dead_letters:
            dl.unexpected += n
            report._example(f"dead letters: unexpected {letter[0]} for payload {letter[1][:80]!r}")


def future_ts_payloads(letters: Iterable[Optional[bytes]]) -> set[str]:
    """The payloads of the FUTURE_TS dead letters among ``letters``."""
    return _payloads_of(FUTURE_TS, letters)


def unknown_product_payloads(letters: Iterable[Optional[bytes]]) -> set[str]:
    """The payloads of the UNKNOWN_PRODUCT dead letters among ``letters``."""
    return _payloads_of(UNKNOWN_PRODUCT, letters)


def _payloads_of(code: str, letters: Iterable[Optional[bytes]]) -> set[str]:
    out = set()
    marker = code.encode()
    for raw in letters:
        if raw is None or marker not in raw:  # most letters: no JSON decode
            continue
        try:
            letter = json.loads(raw.decode("utf-8", errors="replace"))
            if letter.get("error") == code:
                out.add(str(letter["payload"]))
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
    return out


def _check_reordered(user: str, got: StoredRecs, events: dict[str, int], expect: Expectation,
                     report: Report) -> None:
    """The row of a user whose events the job may have taken in another order (the late catalog): it
    reflects one of the user's events, is stamped no earlier than their newest one, and lists
    distinct catalog products that the user's variant allows."""
    rc = report.recommendations
    newest = max(events.values(), default=0)
    eligible = expect.eligible_of(user)
    rows = [expect.catalog.index.get(p) for p in got.product_ids]
    if (got.event_id not in events or got.event_ts != events[got.event_id] or (got.updated_at or 0) < newest
            or len(set(got.product_ids)) != len(got.product_ids) or any(r is None or not eligible[r] for r in rows)
            or got.variant != expect.variants.for_user(user)[0]):
        rc.different += 1
        report._example(f"recommendations: user {user!r} (events possibly reordered by the late catalog): "
                        f"reflects {got.event_id!r} at {got.event_ts}/{got.updated_at}, "
                        f"products {got.product_ids[:5]}")


def _check_trending(user: str, got: StoredRecs, newest: ExpectedRecs, expect: Expectation, report: Report) -> None:
    """A trending row: its products depend on timing, so check the rules it must follow."""
    rc = report.recommendations
    if (got.updated_at or 0, got.event_ts or 0) > (newest.updated_at, newest.event_ts):
        rc.different += 1
        report._example(f"recommendations: trending row of user {user!r} is newer than the user's newest event")
        return
    state = expect.user_state(user)
    params = expect.params_of(user)
    eligible = expect.eligible_of(user)
    banned = set(excluded_ids(state, params)) if state is not None else set()
    rows = [expect.catalog.index.get(p) for p in got.product_ids]
    broken = any(r is None or not eligible[r] for r in rows) or bool(banned & set(got.product_ids))
    if broken or got.variant != newest.variant:
        rc.different += 1
        report._example(f"recommendations: trending row of user {user!r} breaks a filter: {got.product_ids[:5]}")

