"""The fast path's two Python steps, one call per batch of events, and the byte formats they share
with the JVM operators (``java/src/main/java/streamrec/flink/``).

1. :func:`parse_batch`: raw Kafka values (``RecordBatcher``'s format) -> the valid events, one
   text block (``EventUnbatcher`` reads it), and the dead letters.
2. :class:`BatchRanker`: a batch of ``UserStateOperator`` (each user's newest state: remembered
   events, purchases, cart) -> one recommendation per user, ranked together with one matrix
   product per variant, for ``RecommendationUnbatcher``; the events part passes through untouched.

Text blocks separate records with RS (0x1E) and fields with US (0x1F): ``str.split`` is the
fastest way Python has to cut them, and no field can hold either (the parser dead-letters ids
and queries with control characters, :func:`streamrec.model.events.text_problem`). Numbers in
text are decimal; scores travel as little-endian float32. Lengths are big-endian int32 (Java's
``DataOutputStream``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Container, Optional, Sequence

import numpy as np

from streamrec.model.events import BadRecord, Event, internal_dead_letter, parse_guarded, waiting_event
from streamrec.model.history import QueryVectors, fold_flat, fold_vectors
from streamrec.model.live import LiveCatalog
from streamrec.model.model import (
    HistoryEntry,
    Recommendation,
    UserState,
    recommend_users,
    trending_recommendation,
)
from streamrec.model.topk import top_k_flat
from streamrec.model.transitions import context_triplets, transition_boost

RS = "\x1e"
US = "\x1f"
_INT = struct.Struct(">i")


# --- raw records -> events ---------------------------------------------------------------------

def encode_raw_batch(values: Sequence[Optional[bytes]]) -> bytes:
    """``RecordBatcher``'s format: count, the length of each value, then the values (a record
    without a value is an empty one). For tests and tools; the job's batches come from Java."""
    body = [v or b"" for v in values]
    return struct.pack(f">i{len(body)}i", len(body), *(len(v) for v in body)) + b"".join(body)


def decode_raw_batch(data: bytes) -> list[bytes]:
    (n,) = _INT.unpack_from(data, 0)
    lengths = np.frombuffer(data, dtype=">i4", count=n, offset=4).tolist()
    out = []
    at = 4 + 4 * n
    for length in lengths:
        out.append(data[at:at + length])
        at += length
    return out


def event_line(e: Event) -> str:
    """One event as ``EventUnbatcher`` reads it: event_id, user_id, ts, type, product_id ("" for
    none: ids are never empty), query (only a search's counts; "" otherwise)."""
    return US.join((e.event_id, e.user_id, str(e.ts), e.type, e.product_id or "",
                    e.query or "" if e.type == "search" else ""))


def decode_events(data: bytes) -> list[Event]:
    """The inverse of the events block of :func:`parse_batch` (what the Java side does)."""
    if not data:
        return []
    out = []
    for line in data.decode("utf-8").split(RS):
        event_id, user_id, ts, etype, product_id, query = line.split(US)
        out.append(Event(event_id, user_id, int(ts), etype, product_id or None,
                         query if etype == "search" else None))
    return out


def parse_batch(data: bytes, known_products: Optional[Container[str]], max_record_bytes: int,
                max_query_chars: int, max_ts: Optional[int] = None,
                waiting: Optional[list[tuple[Event, BadRecord]]] = None) -> tuple[bytes, list[BadRecord]]:
    """A ``RecordBatcher`` batch -> (the valid events as one UTF-8 block, the dead letters), both in
    input order. Never raises for one record's sake: the parser's own failures become ``INTERNAL``
    dead letters, and so does an event whose text cannot be framed (a rule the parser missed).
    ``max_ts``: the clock rule's bound for the whole batch (``events.latest_ts``), None for none.
    ``waiting``: when given, an event that is valid but for its unknown product
    (``events.waiting_event``) is appended there with its ``UNKNOWN_PRODUCT`` letter instead of
    being dead-lettered (the late catalog: it waits for its product)."""
    lines: list[str] = []
    dead: list[BadRecord] = []
    for raw in decode_raw_batch(data):
        parsed = parse_guarded(raw, known_products, max_record_bytes, max_query_chars, max_ts)
        if isinstance(parsed, BadRecord):
            late = None if waiting is None else waiting_event(raw, parsed, max_record_bytes, max_query_chars, max_ts)
            if late is not None and waiting is not None:
                waiting.append((late, parsed))
            else:
                dead.append(parsed)
            continue
        line = event_line(parsed)
        if line.count(US) != 5 or RS in line:
            dead.append(internal_dead_letter(raw, ValueError("a field holds a record separator")))
            continue
        lines.append(line)
    text = RS.join(lines)
    try:
        return text.encode("utf-8"), dead
    except UnicodeEncodeError:  # a lone surrogate the parser let through: find it, keep the rest
        kept = []
        for line in lines:
            try:
                line.encode("utf-8")
                kept.append(line)
            except UnicodeEncodeError as exc:
                dead.append(internal_dead_letter(line.encode("utf-8", "backslashreplace"), exc))
        return RS.join(kept).encode("utf-8"), dead


# --- user states -> recommendations -------------------------------------------------------------

@dataclass(frozen=True)
class UserRequest:
    """What ``UserStateOperator`` sends for one user of a batch: the state after their newest event."""

    user_id: str
    history: list[HistoryEntry]
    purchased: list[str]
    cart: list[str]


@dataclass(frozen=True)
class UserResult:
    variant: str
    recommendation: Recommendation


# The source of a user whose ranking raised: RecommendationUnbatcher drops their events of the
# batch, which went to the dead-letter topic instead (as the per-event job does with such events).
FAILED = "error"


def encode_event_part(events: Sequence[tuple[int, int, Event]]) -> bytes:
    """The events part of a ``UserStateOperator`` batch: per event its user's slot, the write
    timestamp, then the event (ts, event_id, user_id, type, product_id, query; strings as int32
    length + UTF-8, -1 for none). The JVM reads it back itself; Python only reads it to dead-letter
    the events of a user whose ranking failed, and tests write it."""
    out = bytearray()
    for slot, write_us, e in events:
        out += struct.pack(">iqq", slot, e.ts, write_us)
        for text in (e.event_id, e.user_id, e.type, e.product_id, e.query):
            if text is None:
                out += _INT.pack(-1)
            else:
                b = text.encode("utf-8")
                out += _INT.pack(len(b)) + b
    return bytes(out)


def request_event_part(data: bytes) -> bytes:
    """The events part of a ``UserStateOperator`` batch (see :func:`encode_rank_request`)."""
    (n,) = _INT.unpack_from(data, 0)
    return data[4:4 + n]


def decode_event_part(data: bytes) -> list[tuple[int, int, Event]]:
    """(slot, write timestamp, event) of each event of a batch's events part."""
    out = []
    at = 0
    while at < len(data):
        slot, ts, write_us = struct.unpack_from(">iqq", data, at)
        at += 20
        texts: list[Optional[str]] = []
        for _ in range(5):
            (n,) = _INT.unpack_from(data, at)
            at += 4
            if n < 0:
                texts.append(None)
            else:
                texts.append(data[at:at + n].decode("utf-8"))
                at += n
        event_id, user_id, etype, product_id, query = texts
        out.append((slot, write_us, Event(event_id or "", user_id or "", ts, etype or "", product_id, query)))
    return out


def encode_rank_request(events_block: bytes, users: Sequence[UserRequest]) -> bytes:
    """``UserStateOperator``'s format (the reference its Java tests compare with)."""
    records = []
    for u in users:
        fields = [u.user_id, str(len(u.history))]
        for etype, ts, product_id, query in u.history:
            fields.extend((etype, str(ts), product_id or "", query or ""))
        fields.append(str(len(u.purchased)))
        fields.extend(u.purchased)
        fields.append(str(len(u.cart)))
        fields.extend(u.cart)
        records.append(US.join(fields))
    return _INT.pack(len(events_block)) + events_block + RS.join(records).encode("utf-8")


def decode_rank_request(data: bytes) -> tuple[bytes, list[UserRequest]]:
    (n,) = _INT.unpack_from(data, 0)
    events_block = data[4:4 + n]
    users = []
    for record in data[4 + n:].decode("utf-8").split(RS):
        f = record.split(US)
        nh = int(f[1])
        at = 2 + 4 * nh
        history = [(f[i], int(f[i + 1]), f[i + 2] or None, f[i + 3] or None) for i in range(2, at, 4)]
        n_purchased = int(f[at])
        purchased = f[at + 1:at + 1 + n_purchased]
        at += 1 + n_purchased
        n_cart = int(f[at])
        users.append(UserRequest(f[0], history, purchased, f[at + 1:at + 1 + n_cart]))
    return events_block, users


def encode_rank_result(events_block: bytes, results: Sequence[UserResult]) -> bytes:
    """``RecommendationUnbatcher``'s format: the events block as it came, then per user (in the
    request's order) source, variant, count, product ids as text, then all scores as float32."""
    records = []
    scores: list[float] = []
    for r in results:
        rec = r.recommendation
        records.append(US.join((rec.source, r.variant, str(len(rec.product_ids)), *rec.product_ids)))
        scores.extend(rec.scores)
    text = RS.join(records).encode("utf-8")
    return b"".join((_INT.pack(len(events_block)), events_block, _INT.pack(len(text)), text,
                     np.asarray(scores, dtype="<f4").tobytes()))


def decode_rank_result(data: bytes) -> tuple[bytes, list[UserResult]]:
    (n,) = _INT.unpack_from(data, 0)
    events_block = data[4:4 + n]
    (t,) = _INT.unpack_from(data, 4 + n)
    text = data[8 + n:8 + n + t].decode("utf-8")
    scores = np.frombuffer(data, dtype="<f4", offset=8 + n + t).tolist()
    out = []
    at = 0
    for record in text.split(RS):
        f = record.split(US)
        k = int(f[2])
        ids = tuple(f[3:3 + k])
        out.append(UserResult(f[1], Recommendation(ids, tuple(scores[at:at + k]), f[0])))
        at += k
    return events_block, out


class BatchRanker:
    """Ranks every user of a batch for their newest state: users are grouped by A/B variant, each
    group's vectors come from one fold of their histories and their lists from one matrix product
    (:func:`recommend_users`: filters, trending for cold users)."""

    def __init__(self, live: LiveCatalog) -> None:
        self.live = live
        self._queries: Optional[QueryVectors] = None

    def rank_users(self, users: Sequence[UserRequest]) -> list[UserResult]:
        catalog = self.live.catalog
        if self._queries is None or self._queries.catalog is not catalog:
            self._queries = QueryVectors(catalog)
        variants = self.live.variants
        groups: dict[str, list[int]] = {}
        names = []
        for i, u in enumerate(users):
            name = variants.for_user(u.user_id)[0]
            names.append(name)
            groups.setdefault(name, []).append(i)
        results: list[Optional[UserResult]] = [None] * len(users)
        for name, members in groups.items():
            params = variants.params[name]
            vectors, moves = fold_vectors([users[i].history for i in members], catalog, params, self._queries)
            states = [UserState(vector=vectors[j] if moves[j] else None, purchased=users[i].purchased,
                                cart=users[i].cart, moves=int(moves[j]), history=users[i].history)
                      for j, i in enumerate(members)]
            recs = recommend_users(states, catalog, params, self.live.trending, self.live.mask(name, params),
                                   self.live.ranker)
            for i, rec in zip(members, recs):
                results[i] = UserResult(name, rec)
        return [r for r in results if r is not None]

    def rank(self, data: bytes) -> tuple[bytes, list[BadRecord]]:
        """A ``UserStateOperator`` batch -> (``RecommendationUnbatcher``'s input, dead letters).

        The batch is read into flat columns and ranked without a Python object per user
        (:meth:`rank_columns`); should that raise, the users are ranked again one object at a time
        (:meth:`rank_decoded`), which isolates a user whose ranking fails."""
        try:
            return self.rank_columns(data), []
        except Exception:
            return self.rank_decoded(*decode_rank_request(data))

    def rank_columns(self, data: bytes) -> bytes:
        """:meth:`rank_users` on flat columns: the same lists (the unit tests compare them), with
        every per-entry step (ids to rows, weights, fold, exclusions) done for the whole batch."""
        (n,) = _INT.unpack_from(data, 0)
        events_block = data[4:4 + n]
        b = _Columns(data[4 + n:].decode("utf-8"))
        live = self.live
        catalog = live.catalog
        if self._queries is None or self._queries.catalog is not catalog:
            self._queries = QueryVectors(catalog)
        queries = self._queries
        queries.start_batch()
        variants = live.variants
        users = len(b.user_ids)
        if len(variants.params) == 1:
            names = [next(iter(variants.params))] * users
        else:
            names = [variants.for_user(u)[0] for u in b.user_ids]
        h_user = np.repeat(np.arange(users), b.h_counts)
        h_ts = np.fromiter(map(int, b.h_ts), dtype=np.int64, count=len(b.h_ts))
        h_rows = live.rows_of(b.h_product)
        for j in np.flatnonzero(h_rows < 0).tolist():  # a search without a product: its query's vector
            if not b.h_product[j] and b.h_query[j]:
                q = queries.row(b.h_query[j])
                h_rows[j] = -2 if q is None else -1 - q
            else:
                h_rows[j] = -(1 << 40)  # an unknown product (or nothing): moves no one
        p_user = np.repeat(np.arange(users), b.p_counts)
        c_user = np.repeat(np.arange(users), b.c_counts)
        p_rows = live.rows_of(b.p_ids)
        c_rows = live.rows_of(b.c_ids)
        p_off = np.concatenate(([0], np.cumsum(b.p_counts)))
        c_off = np.concatenate(([0], np.cumsum(b.c_counts)))
        product_ids = np.asarray(catalog.product_ids, dtype=object)
        records: list[str] = [""] * users
        scores: list[Optional[np.ndarray]] = [None] * users
        q_matrix = queries.matrix()
        for name in dict.fromkeys(names):
            params = variants.params[name]
            in_group = np.fromiter((x == name for x in names), dtype=bool, count=users)
            members = np.flatnonzero(in_group)
            local = np.full(users, -1, dtype=np.int64)
            local[members] = np.arange(len(members))
            weights = params.event_weights
            w = np.fromiter((weights.get(t, 0.0) for t in b.h_type), dtype=np.float64, count=len(b.h_type))
            moving = in_group[h_user] & (w != 0.0) & (h_rows > -(1 << 40)) & (h_rows != -2)
            vectors, moves = fold_flat(local[h_user[moving]], h_ts[moving], w[moving], h_rows[moving], len(members),
                                       catalog, params, q_matrix)
            warm = (moves > 0) & (moves >= params.cold_start_events)
            mask = live.mask(name, params)
            # exclusions: (local user, catalog row) of purchases and cart, as excluded_ids says
            parts_u, parts_r = [], []
            if params.exclude_purchased:
                parts_u.append(p_user)
                parts_r.append(p_rows)
            if params.exclude_cart:
                parts_u.append(c_user)
                parts_r.append(c_rows)
            x_user = np.concatenate(parts_u) if parts_u else np.zeros(0, dtype=np.int64)
            x_rows = np.concatenate(parts_r) if parts_r else np.zeros(0, dtype=np.int64)
            keep = (x_rows >= 0) & in_group[x_user]
            x_user, x_rows = local[x_user[keep]], x_rows[keep]
            warm_at = np.flatnonzero(warm)
            if len(warm_at):
                order = np.full(len(members), -1, dtype=np.int64)
                order[warm_at] = np.arange(len(warm_at))
                xw = warm[x_user]
                ranker = live.ranker
                boost = None
                if catalog.transitions is not None and params.transition_weight != 0.0:
                    # the transition term: the successors of each warm user's last products
                    ctx = moving & (w > 0) & (h_rows >= 0)
                    ctx &= warm[np.maximum(local[h_user], 0)]
                    cu, cr, cw = context_triplets(order[local[h_user[ctx]]], h_rows[ctx], params.transition_context)
                    boost = transition_boost(catalog.transitions, cu, cr, cw * params.transition_weight, len(warm_at))
                if ranker.ann is None:
                    rows, top = top_k_flat(vectors[warm_at], catalog, params.stored_k, order[x_user[xw]], x_rows[xw],
                                           mask, boost)
                else:
                    lists: list[list[int]] = [[] for _ in warm_at]
                    for uu, rr in zip(order[x_user[xw]].tolist(), x_rows[xw].tolist()):
                        lists[uu].append(rr)
                    rows, top = ranker.top_k(vectors[warm_at], params.stored_k, lists, mask, boost)
                found = (rows >= 0).sum(axis=1).tolist()
                ids = product_ids[np.maximum(rows, 0)].tolist()  # one lookup for the batch: half the cost
                for j, i in enumerate(members[warm_at].tolist()):
                    k = found[j]
                    if k:
                        records[i] = US.join(("personal", name, str(k), *ids[j][:k]))
                        scores[i] = top[j, :k]
                    else:
                        records[i] = US.join(("none", name, "0"))
            for i in members[~warm].tolist():
                excluded = ((b.p_ids[p_off[i]:p_off[i + 1]] if params.exclude_purchased else [])
                            + (b.c_ids[c_off[i]:c_off[i + 1]] if params.exclude_cart else []))
                rec = trending_recommendation(live.trending, excluded, catalog, params, mask)
                records[i] = US.join((rec.source, name, str(len(rec.product_ids)), *rec.product_ids))
                scores[i] = np.asarray(rec.scores, dtype=np.float32)
        text = RS.join(records).encode("utf-8")
        parts = [x for x in scores if x is not None and len(x)]
        all_scores = np.concatenate(parts).astype("<f4") if parts else np.zeros(0, dtype="<f4")
        return b"".join((_INT.pack(len(events_block)), events_block, _INT.pack(len(text)), text, all_scores.tobytes()))

    def rank_decoded(self, events_block: bytes, users: Sequence[UserRequest]) -> tuple[bytes, list[BadRecord]]:
        """:meth:`rank` of a decoded batch. If ranking the batch raises, each user is ranked alone, and
        a user whose ranking still raises is marked FAILED: each of their events in the batch
        becomes an ``INTERNAL`` dead letter (the event and the exception text) instead of a stored
        row, as in the per-event job; one user can never stop the job."""
        try:
            return encode_rank_result(events_block, self.rank_users(users)), []
        except Exception:
            pass
        results: list[UserResult] = []
        failures: dict[int, Exception] = {}
        for slot, u in enumerate(users):
            try:
                results.extend(self.rank_users([u]))
            except Exception as exc:
                results.append(UserResult("", Recommendation((), (), FAILED)))
                failures[slot] = exc
        dead = [internal_dead_letter(e.to_json(), failures[slot])
                for slot, _, e in decode_event_part(events_block) if slot in failures]
        return encode_rank_result(events_block, results), dead


class _Columns:
    """A batch's users part (see :func:`encode_rank_request`) cut into flat columns with one split:
    per user their id and counts; the history entries, purchases and carts of all users one after
    the other."""

    def __init__(self, text: str) -> None:
        f = text.replace(RS, US).split(US)
        self.user_ids: list[str] = []
        self.h_counts: list[int] = []
        self.h_type: list[str] = []
        self.h_ts: list[str] = []
        self.h_product: list[str] = []
        self.h_query: list[str] = []
        self.p_counts: list[int] = []
        self.p_ids: list[str] = []
        self.c_counts: list[int] = []
        self.c_ids: list[str] = []
        at, end = 0, len(f)
        while at < end:
            self.user_ids.append(f[at])
            nh = int(f[at + 1])
            a = at + 2
            z = a + 4 * nh
            self.h_counts.append(nh)
            self.h_type += f[a:z:4]
            self.h_ts += f[a + 1:z:4]
            self.h_product += f[a + 2:z:4]
            self.h_query += f[a + 3:z:4]
            k = int(f[z])
            self.p_counts.append(k)
            self.p_ids += f[z + 1:z + 1 + k]
            c = z + 1 + k
            k = int(f[c])
            self.c_counts.append(k)
            self.c_ids += f[c + 1:c + 1 + k]
            at = c + 1 + k
