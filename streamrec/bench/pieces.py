"""`streamrec bench pieces`: CPU per event of each piece of the per-event work, one thread.

The model's pieces need nothing running (parse, update + pickled state, top-k at several batch
sizes, top-k once per user per batch, the fast path's ranker per batch size, faiss flat). With
``cassandra_port`` the write forms are measured too, against a live Cassandra (client CPU of this
process and the node's CPU per event): the job's writer (one row at a time, waiting for each), rows
in flight together, the events insert alone, unlogged batches.
"""

from __future__ import annotations

import dataclasses
import pickle
import time
from typing import Any, Callable, Optional

import numpy as np

from streamrec.bench.baseline import OutputRow, _write_concurrently, model_params
from streamrec.bench.generator import EventGenerator, synthetic_catalog, synthetic_transitions
from streamrec.config import Config
from streamrec.model.batch import BatchRanker, UserRequest, encode_rank_request
from streamrec.model.catalog import Catalog
from streamrec.model.events import Event, parse_event
from streamrec.model.live import LiveCatalog
from streamrec.model.model import ModelParams, UserState, apply_event, eligible_mask, recommend_batch, update_user
from streamrec.model.variants import Variants


def _cpu_us(fn: Callable[[], Any], n: int) -> float:
    t = time.process_time()
    fn()
    return (time.process_time() - t) / n * 1e6


def model_pieces(products: int = 10_000, dim: int = 64, events: int = 20_000, users: int = 3_000,
                 seed: int = 0) -> list[tuple[str, float]]:
    """[(piece, CPU microseconds per event)] with BLAS and faiss on one thread."""
    from threadpoolctl import threadpool_limits

    cat = synthetic_catalog(products, dim, seed=seed)
    gen = EventGenerator(cat.product_ids, users, seed=seed)
    raws = [e.to_json() for e in gen.batch(events)]
    params = model_params(Config())
    known = frozenset(cat.product_ids)
    out: list[tuple[str, float]] = []
    with threadpool_limits(1):
        parsed: list[Event] = []

        def parse() -> None:
            for r in raws:
                p = parse_event(r, known)
                if isinstance(p, Event):
                    parsed.append(p)

        out.append(("parse_event", _cpu_us(parse, len(raws))))
        stored: dict[str, bytes] = {}

        def update() -> None:
            for e in parsed:
                raw = stored.get(e.user_id)
                st = pickle.loads(raw) if raw else UserState()
                update_user(st, e, cat, params)
                stored[e.user_id] = pickle.dumps(st, protocol=pickle.HIGHEST_PROTOCOL)

        out.append(("update_user + pickled state", _cpu_us(update, len(parsed))))
        states: dict[str, UserState] = {}
        snaps: list[tuple[Optional[np.ndarray], list[str]]] = []
        for e in parsed:
            st = states.setdefault(e.user_id, UserState())
            update_user(st, e, cat, params)
            snaps.append((st.vector, list(st.purchased)))
        n = len(snaps)
        mask = eligible_mask(cat, params)  # the job keeps it with its catalog (LiveCatalog.mask)
        for b in (1, 64, 256, 1024):
            m = min(n, 2000) if b == 1 else n

            def rank(b: int = b, m: int = m) -> None:
                for i in range(0, m, b):
                    chunk = snaps[i:i + b]
                    recommend_batch([s[0] for s in chunk], [s[1] for s in chunk], cat, params, mask)

            out.append((f"top-k, batch of {b}", _cpu_us(rank, m)))
        distinct = 0

        def rank_latest() -> None:
            nonlocal distinct
            for i in range(0, n, 1000):
                latest = {parsed[j].user_id: j for j in range(i, min(n, i + 1000))}
                distinct += len(latest)
                idx = list(latest.values())
                recommend_batch([snaps[j][0] for j in idx], [snaps[j][1] for j in idx], cat, params, mask)

        cost = _cpu_us(rank_latest, n)
        out.append((f"top-k once per user per 1000 events ({distinct / n:.2f} queries/event)", cost))
        out.extend(fast_path_rank(parsed, cat, params))
        # a catalog from `catalog build` carries item-to-item transitions (100 kept per product), and
        # the job adds their term (STREAMREC_TRANSITION_WEIGHT) to every warm user's ranking
        with_t = dataclasses.replace(cat, transitions=synthetic_transitions(products, seed=seed))
        out.extend((f"{name}, with transitions (100 per product)", us)
                   for name, us in fast_path_rank(parsed, with_t, params, sizes=(150, 512)))
        try:
            import faiss
        except ImportError:
            return out
        faiss.omp_set_num_threads(1)
        index = faiss.IndexFlatIP(dim)
        index.add(cat.vectors)
        q = np.stack([v / np.linalg.norm(v) for v, _ in snaps if v is not None and np.any(v)]).astype(np.float32)

        def flat() -> None:
            for i in range(0, len(q), 256):
                index.search(q[i:i + 256], 10)

        out.append(("faiss flat, batch of 256 (no filters)", _cpu_us(flat, len(q))))
    return out


def fast_path_rank(events: list[Event], cat: Catalog, params: ModelParams,
                   sizes: tuple[int, ...] = (25, 150, 350, 512)) -> list[tuple[str, float]]:
    """The fast path's ranker (``BatchRanker.rank``, the rank operator's whole Python step) on
    ``UserStateOperator`` batches of each size: each user of a batch once, in their newest state.
    Why a busy job lingers for full batches (``STREAMREC_BATCH_MAX_LINGER_MS``): the CPU per event
    falls with the batch, from the per-batch steps and from users met more than once in it."""
    live = LiveCatalog(cat, Variants.single(params))
    ranker = BatchRanker(live)
    states: dict[str, UserState] = {}
    newest: list[tuple[str, UserRequest]] = []
    for e in events:
        state = apply_event(states.get(e.user_id, UserState()), e, cat, params)
        states[e.user_id] = state
        newest.append((e.user_id, UserRequest(e.user_id, state.history, state.purchased, state.cart)))
    out = []
    for size in sizes:
        batches = []
        for i in range(0, len(newest), size):
            users = dict(newest[i:i + size])  # a user's newest state wins, as in the JVM operator
            batches.append(encode_rank_request(b"", list(users.values())))

        def rank(batches: list[bytes] = batches) -> None:
            for b in batches:
                ranker.rank(b)

        out.append((f"fast path rank, batches of {size} events", _cpu_us(rank, len(newest))))
    return out


def write_pieces(config: Config, cassandra_pid: Optional[int], rows: int = 2000) -> list[tuple[str, float, float]]:
    """[(write form, client CPU us per event, Cassandra CPU us per event)] on a scratch keyspace."""
    from streamrec.bench.procstat import read_stat
    from streamrec.connectors.cassandra import RecommendationWriter, drop_keyspace, ensure_schema

    config = config.replace(cassandra={"keyspace": "bench_pieces"})
    ensure_schema(config.cassandra)
    writer = RecommendationWriter(config.cassandra)
    writer.open()
    session = writer._session
    base = 1_700_000_000_000
    ids = tuple(f"p{j:07d}" for j in range(10))
    data = [OutputRow(f"e{i}", f"u{i % 3000}", base + i, "view", "p0000001", None, (base + i) * 1000, ids,
                      tuple(float(j) for j in range(10)), "personal") for i in range(rows * 6)]

    def events_only(chunk: list[OutputRow]) -> None:
        fs = [session.execute_async(*writer.bound(r)[0]) for r in chunk]  # the events insert alone
        for f in fs:
            f.result()

    def unlogged(per: int) -> Callable[[list[OutputRow]], None]:
        def run(chunk: list[OutputRow]) -> None:
            fs = [session.execute_async(*writer.batch([p for r in chunk[j:j + per] for p in writer.bound(r)]))
                  for j in range(0, len(chunk), per)]
            for f in fs:
                f.result()
        return run

    def one_by_one(chunk: list[OutputRow]) -> None:
        for r in chunk:
            writer.write(r)

    def in_flight(chunk: list[OutputRow]) -> None:
        _write_concurrently(writer, session, chunk)

    def node_cpu() -> float:
        st = read_stat(cassandra_pid) if cassandra_pid else None
        return st[1] if st else float("nan")

    forms: list[tuple[str, Callable[[list[OutputRow]], None]]] = [
        ("job's writer: one row at a time, wait for each", one_by_one),
        ("500 rows in flight together", in_flight),
        ("events insert only, 500 in flight", events_only),
        ("unlogged batches of 10 rows", unlogged(10)),
        ("unlogged batches of 50 rows", unlogged(50)),
    ]
    out = []
    try:
        _write_concurrently(writer, session, data[:500])  # warm-up
        for k, (name, form) in enumerate(forms):
            chunk = data[(k + 1) * rows:(k + 2) * rows]
            c0 = node_cpu()
            p0 = time.process_time()
            for i in range(0, len(chunk), 500):
                form(chunk[i:i + 500])
            client = (time.process_time() - p0) / len(chunk) * 1e6
            node = (node_cpu() - c0) / len(chunk) * 1e6
            out.append((name, client, node))
    finally:
        writer.close()
        drop_keyspace(config.cassandra)
    return out
