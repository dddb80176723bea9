"""The fast path's Python share, per event, outside Flink (FAST-PATH.md, validation step 1).

Times the job's two batch functions on the bench's synthetic stream (10k products, 64-d, 3,000
users, Zipf): ``parse_batch`` on ``RecordBatcher``-format batches of raw JSON, and
``BatchRanker.rank`` on ``UserStateOperator``-format batches (built here with the Python reference
of the JVM's state rule, ``update_user``), one thread, for several batch sizes.

    .venv/bin/python bench/fast_path_python.py
"""
import time

from threadpoolctl import threadpool_limits

from streamrec.bench.generator import EventGenerator, synthetic_catalog
from streamrec.config import Config
from streamrec.model.batch import BatchRanker, UserRequest, encode_rank_request, encode_raw_batch, parse_batch
from streamrec.model.events import Event
from streamrec.model.live import LiveCatalog
from streamrec.model.model import UserState, update_user
from streamrec.model.variants import Variants

threadpool_limits(1)  # one core, as the job pins BLAS
cat = synthetic_catalog(10_000, 64)
cfg = Config()
variants = Variants.from_config(cfg)
_, params = variants.for_user("u")
known = set(cat.product_ids)
gen = list(EventGenerator(cat.product_ids, 3000, seed=2).batch(60_000))
raws = [e.to_json().encode() for e in gen]
live = LiveCatalog(cat, variants)
live.set_trending("[" + ",".join(f'["{p}",1.0]' for p in cat.product_ids[:30]) + "]")
ranker = BatchRanker(live)

print(f"{'batch':>6} {'parse us/event':>15} {'rank us/event':>14} {'users/batch':>12} {'rank us/user':>13}")
for size in (64, 256, 1024):
    states: dict[str, UserState] = {}
    parse_s = rank_s = 0.0
    n_events = n_users = 0
    for lo in range(0, len(raws), size):
        chunk = raws[lo:lo + size]
        batch = encode_raw_batch(chunk)
        t0 = time.perf_counter()
        events_block, _dead = parse_batch(batch, known, cfg.max_record_bytes, cfg.max_query_chars)
        t1 = time.perf_counter()
        # what the JVM's UserStateOperator would send: each user's state after their newest event
        touched: dict[str, UserState] = {}
        for g in gen[lo:lo + size]:
            e: Event = Event(g.event_id, g.user_id, g.ts, g.type, g.product_id, g.query)
            st = states.setdefault(e.user_id, UserState())
            update_user(st, e, cat, params)
            touched[e.user_id] = st
        request = encode_rank_request(events_block, [UserRequest(u, s.history, s.purchased, s.cart)
                                                     for u, s in touched.items()])
        t2 = time.perf_counter()
        ranker.rank(request)
        t3 = time.perf_counter()
        if lo >= 20_000:  # warm
            parse_s += t1 - t0
            rank_s += t3 - t2
            n_events += len(chunk)
            n_users += len(touched)
    print(f"{size:>6} {parse_s / n_events * 1e6:>15.1f} {rank_s / n_events * 1e6:>14.1f} "
          f"{n_users / max(1, (n_events // size)):>12.0f} {rank_s / n_users * 1e6:>13.1f}")
