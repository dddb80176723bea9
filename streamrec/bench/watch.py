"""Watching Cassandra while a system works: when every user's row names their last event, and
the event rate over that window."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

from streamrec.bench.generator import GenEvent
from streamrec.bench.systems import System, say
from streamrec.bench.warmup import prepare_event_id_read

log = logging.getLogger("streamrec.bench")


@dataclass
class Throughput:
    t_start: float  # system started (time.time())
    t_first: float  # first recommendation row readable
    t_last: float  # every user's row names the user's last event
    timeline: list[tuple[float, int]]  # (time, highest event sequence number seen in a row)

    @property
    def seconds(self) -> float:
        return self.t_last - self.t_first


def _event_seq(event_id: str) -> int:
    digits = event_id.lstrip("abcdefghijklmnopqrstuvwxyz")
    return int(digits) if digits.isdigit() else -1


def watch_throughput(session: Any, system: System, expected: dict[str, str], t_start: float, timeout: float,
                     on_tick: Optional[Callable[[], None]] = None, first_users: Sequence[str] = ()) -> Throughput:
    """Poll until every user in ``expected`` has a row naming their final event.

    The phase starts with the first row of one of ``first_users`` (the users of the phase's first
    events; default: any of ``expected``), so rows left by an earlier phase (the warm-up) do not count."""
    one_q = prepare_event_id_read(session)
    t_first = _wait_first_row(session, one_q, system, list(first_users or expected)[:16], t_start, timeout)
    say(f"{system.name}: first row after {t_first - t_start:.1f} s (start-up)")
    pending = dict(expected)
    timeline: list[tuple[float, int]] = []
    last_progress = time.time()
    last_report = 0.0
    while pending:
        t0 = time.time()
        before = len(pending)
        if len(pending) > 300:
            best, interval = _poll_by_scan(session, expected, pending), 1.0
        else:
            best, interval = _poll_by_user(session, one_q, pending), 0.1
        now = time.time()
        if best >= 0:
            timeline.append((now, best))
        if len(pending) < before:
            last_progress = now
        if now - last_report > 5:
            say(f"{system.name}: {len(expected) - len(pending)}/{len(expected)} users complete, "
                f"event #{best} seen, {now - t_first:.0f} s")
            last_report = now
        if on_tick is not None:
            on_tick()
        if not pending:
            return Throughput(t_start, t_first, now, timeline)
        if not system.alive():
            raise RuntimeError(f"{system.name} stopped with {len(pending)} users incomplete:\n{system.log_tail()}")
        if now - last_progress > timeout:
            raise TimeoutError(f"{system.name}: no progress for {timeout:.0f} s, {len(pending)} users incomplete")
        time.sleep(max(0.0, interval - (time.time() - t0)))
    raise AssertionError("unreachable")


def _wait_first_row(session: Any, one_q: Any, system: System, watch_first: list[str], t_start: float,
                    timeout: float) -> float:
    """When the first row of one of ``watch_first`` appeared (the middle of the poll that saw it)."""
    while True:
        t0 = time.time()
        futures = [session.execute_async(one_q, (u,)) for u in watch_first]
        if any(f.result().one() is not None for f in futures):
            return (t0 + time.time()) / 2
        if not system.alive():
            raise RuntimeError(f"{system.name} stopped before writing anything:\n{system.log_tail()}")
        if time.time() - t_start > timeout:
            raise TimeoutError(f"{system.name} wrote nothing in {timeout:.0f} s:\n{system.log_tail()}")
        time.sleep(0.05)


def _poll_by_scan(session: Any, expected: dict[str, str], pending: dict[str, str]) -> int:
    """One read of the whole table (many users pending): drops from ``pending`` the users whose row
    names their final event; the highest event sequence number seen (-1: none)."""
    best = -1
    for row in session.execute("SELECT user_id, event_id FROM recommendations", timeout=60):
        if row.user_id not in expected:  # another phase's user (the warm-up): other sequence numbers
            continue
        best = max(best, _event_seq(row.event_id or ""))
        if pending.get(row.user_id) == row.event_id:
            del pending[row.user_id]
    return best


def _poll_by_user(session: Any, one_q: Any, pending: dict[str, str]) -> int:
    """One read per pending user (few left): as :func:`_poll_by_scan`."""
    best = -1
    futures = [(u, session.execute_async(one_q, (u,))) for u in pending]
    for u, f in futures:
        row = f.result().one()
        if row is not None:
            best = max(best, _event_seq(row.event_id or ""))
            if row.event_id == pending[u]:
                del pending[u]
    return best


def first_users(events: Sequence[GenEvent], expected: dict[str, str], n: int = 16) -> list[str]:
    """The users of a phase's first events that get a row: whichever partition the system reads
    first, one of them has the phase's first row. A few users suffice, and watching them costs the
    start-up a read each per poll."""
    return list(dict.fromkeys(e.user_id for e in events if e.user_id in expected))[:n]


def steady_rate(timeline: list[tuple[float, int]], lo: float = 0.2, hi: float = 0.8) -> Optional[float]:
    """Events/s between the times the stream's sequence numbers crossed ``lo`` and ``hi`` of the maximum."""
    if len(timeline) < 3:
        return None
    top = timeline[-1][1]
    a = next(((t, s) for t, s in timeline if s >= lo * top), None)
    b = next(((t, s) for t, s in timeline if s >= hi * top), None)
    if a is None or b is None or b[0] <= a[0]:
        return None
    return (b[1] - a[1]) / (b[0] - a[0])


def stored_events(session: Any, want: int, system: System, timeout: float = 60.0) -> int:
    """Rows in `events` once the system has stored everything produced (or after ``timeout``)."""
    from cassandra import DriverException, RequestExecutionException

    deadline = time.time() + timeout
    while True:
        try:
            n = int(session.execute("SELECT COUNT(*) FROM events", timeout=120).one()[0])
        except (RequestExecutionException, DriverException) as exc:
            # a full-table count on a Cassandra still busy with the system's writes may time out
            # server-side (a ReadFailure ended a `make bench` run): count again while time is left
            if time.time() > deadline:
                raise
            log.warning("counting the stored events failed (%s); again in 2 s", exc)
        else:
            if n >= want or time.time() > deadline or not system.alive():
                return n
        time.sleep(2)
