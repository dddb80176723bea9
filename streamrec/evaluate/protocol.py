"""The protocol: constants, the time split, sessions, and the replay of a history through the job's
own functions (the package's docstring says why it is done this way)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional, Sequence

import numpy as np

from streamrec.model.catalog import Catalog
from streamrec.model.events import Event
from streamrec.model.history import fold_vectors
from streamrec.model.model import (
    HistoryEntry,
    ModelParams,
    UserState,
    apply_event,
    excluded_ids,
    recommend_users,
    remember_shown,
)

DAY_MS = 86_400_000
KS = (10, 20)
# Which events are "the next item" to predict, per data format.
TARGET_TYPES = {"uci": ("purchase",), "otto": ("click", "add_to_cart", "purchase"), "movielens": ("purchase",)}
DEFAULT_TEST_DAYS = {"uci": 30, "otto": 7, "movielens": 30}
# How the baselines cut sessions: a UCI invoice is one timestamp; OTTO clicks are seconds apart, and
# so are the ratings of one MovieLens sitting.
SESSION_GAP_MS = {"uci": 0, "otto": 30 * 60 * 1000, "movielens": 30 * 60 * 1000}
MODEL_NAMES = ("streamrec", "pop", "item-knn", "session-knn", "sr", "v-sknn", "stan")
# How much of each user's recent history the replay keeps for the baselines' context.
RECENT_MAX = 50
BATCH = 1024
# A case more than this after the user's previous event starts a new visit (reported apart).
VISIT_GAP_MS = 30 * 60 * 1000


@dataclass(frozen=True)
class Split:
    train: list[Event]
    test: list[Event]
    start_ms: int  # first millisecond of the evaluation window
    end_ms: int  # first millisecond after it


def time_split(events: Sequence[Event], test_days: float, validation: bool = False) -> Split:
    """Training = before the window, window = the last ``test_days`` days (or the ones before them).

    The window ends at the midnight (UTC) after the last event, so it covers whole days.
    """
    if not events:
        raise ValueError("no events to split")
    if test_days <= 0:
        raise ValueError("test_days must be positive")
    last = max(e.ts for e in events)
    end = (last // DAY_MS + 1) * DAY_MS
    width = round(test_days * DAY_MS)
    if validation:
        end -= width
    start = end - width
    train = [e for e in events if e.ts < start]
    test = [e for e in events if start <= e.ts < end]
    return Split(train, test, start, end)


def sessions(events: Iterable[Event], gap_ms: int) -> list[list[Event]]:
    """A user's events cut into sessions wherever two consecutive events are more than ``gap_ms`` apart.

    ``gap_ms = 0`` makes one session per (user, timestamp): a UCI invoice is one basket.
    """
    by_user: dict[str, list[Event]] = {}
    for e in events:
        by_user.setdefault(e.user_id, []).append(e)
    out: list[list[Event]] = []
    for user in sorted(by_user):
        # stable by time: equal timestamps keep the data's order (a UCI invoice's lines as they went
        # into the cart), which the sequence-aware baselines read
        evs = sorted(by_user[user], key=lambda e: e.ts)
        current = [evs[0]]
        for prev, e in zip(evs, evs[1:]):
            if e.ts - prev.ts > gap_ms:
                out.append(current)
                current = []
            current.append(e)
        out.append(current)
    return out


@dataclass
class Queries:
    """A batch of cases: what each model may know about the user just before a test event."""

    # streamrec's user vector, folded from the user's remembered events as the job folds them
    vectors: list[Optional[np.ndarray]] = field(default_factory=list)
    histories: list[list[HistoryEntry]] = field(default_factory=list)
    excluded: list[tuple[str, ...]] = field(default_factory=list)  # the job's exclusion list (ids)
    recent: list[tuple[tuple[int, int], ...]] = field(default_factory=list)  # (catalog row, ts), oldest first
    targets: list[np.ndarray] = field(default_factory=list)  # catalog rows of the targets (-1: unknown)
    novel: list[np.ndarray] = field(default_factory=list)  # per target: never touched by the user
    ts: list[int] = field(default_factory=list)  # when the target event happened

    def __len__(self) -> int:
        return len(self.targets)


def replay(
    events: Sequence[Event],
    catalog: Catalog,
    params: ModelParams,
    start_ms: int,
    target_types: Sequence[str],
    on_batch: Callable[[Queries], None],
    progress: Optional[Callable[[int], None]] = None,
    batch: int = BATCH,
) -> dict[str, UserState]:
    """Feed ``events`` (in order) through apply_event, as the job does (no idle-user TTL: a history
    has gaps no live shop has); before each test target event, collect a case.

    Events of products the catalog does not know are skipped, as the job's parser does (they go
    to the dead-letter topic there); as targets they still count (as misses for every model).
    Returns the final user states.
    """
    states: dict[str, UserState] = {}
    recent: dict[str, deque[tuple[int, int]]] = {}
    touched: dict[str, set[str]] = {}
    targets_set = set(target_types)
    index = catalog.index
    pending = Queries()
    for n, e in enumerate(events, start=1):
        state = states.get(e.user_id)
        if state is None:
            state = states[e.user_id] = UserState()
            recent[e.user_id] = deque(maxlen=RECENT_MAX)
            touched[e.user_id] = set()
        history = recent[e.user_id]
        pid = e.product_id
        if e.ts >= start_ms and history and pid is not None and e.type in targets_set:
            pending.histories.append(list(state.history))
            pending.excluded.append(tuple(excluded_ids(state, params)))
            pending.recent.append(tuple(history))
            pending.targets.append(np.array([index.get(pid, -1)], dtype=np.int64))
            pending.novel.append(np.array([pid not in touched[e.user_id]], dtype=bool))
            pending.ts.append(e.ts)
            if len(pending) >= batch:
                on_batch(_folded(pending, catalog, params))
                pending = Queries()
        if pid is not None and pid not in index:
            continue  # the job's parser rejects it: UNKNOWN_PRODUCT
        state = states[e.user_id] = apply_event(state, e, catalog, params)
        if pid is not None:
            history.append((index[pid], e.ts))
            touched[e.user_id].add(pid)
        if progress is not None and n % 4096 == 0:
            progress(n)
    if len(pending):
        on_batch(_folded(pending, catalog, params))
    if progress is not None:
        progress(len(events))
    return states


def _folded(queries: Queries, catalog: Catalog, params: ModelParams) -> Queries:
    """The cases' user vectors from their histories, with the job's fold (fold_vectors)."""
    vectors, moves = fold_vectors(queries.histories, catalog, params)
    queries.vectors = [v if m else None for v, m in zip(vectors, moves)]
    return queries


def replay_recommendations(
    events: Iterable[Event], catalog: Catalog, params: ModelParams
) -> list[tuple[Event, tuple[str, ...], tuple[float, ...], str]]:
    """What the job computes for a history: after each valid event, that user's recommendations.

    One row per event the job accepts (events of unknown products are dropped, as the parser does):
    (event, product_ids, scores, source), in input order. The job's test compares against this.
    """
    states: dict[str, UserState] = {}
    out = []
    for e in events:
        if e.product_id is not None and e.product_id not in catalog.index:
            continue
        state = states[e.user_id] = apply_event(states.get(e.user_id, UserState()), e, catalog, params)
        rec = recommend_users([state], catalog, params)[0]
        remember_shown(state, rec, params)
        out.append((e, rec.product_ids, rec.scores, rec.source))
    return out
