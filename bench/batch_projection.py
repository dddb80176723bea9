"""What a batched design would leave in Python, per event (a projection, session 9).

The job calls Python once per event (~170 us of PyFlink framework each, BENCHMARKS.md session 8).
The way to 25,000 events/s per core is one Python call per batch, with the users' states kept on
the Java side. This times the Python share of such a design with the job's own functions, outside
Flink: parse a batch of raw events, unpickle and update each user's state, rank the batch with one
matrix product (recommend_users), remember what was shown, pickle the states, build the rows. It
leaves out what the JVM would add (state access, handing the batch over and back).

    .venv/bin/python bench/batch_projection.py
"""
import copy
import pickle
import time

from threadpoolctl import threadpool_limits

from streamrec.bench.generator import EventGenerator, synthetic_catalog
from streamrec.config import Config
from streamrec.model.events import parse_event
from streamrec.model.model import (
    UserState,
    apply_event,
    eligible_mask,
    recommend_users,
    remember_shown,
    write_timestamp_us,
)
from streamrec.model.ranking import Ranker
from streamrec.model.variants import Variants

threadpool_limits(1)  # one core, as the job pins BLAS
cat = synthetic_catalog(10_000, 64)
cfg = Config()
variants = Variants.from_config(cfg)
_, params = variants.for_user("u")
mask = eligible_mask(cat, params)
ranker = Ranker(cat, 0, 0.95, 30)
known = set(cat.product_ids)
raws = [e.to_json() for e in EventGenerator(cat.product_ids, 3000, seed=2).batch(60_000)]
trending = [(p, 1.0) for p in cat.product_ids[:30]]
for B in (1, 64, 256, 1024):
    store = {}
    T = {"parse": 0.0, "state+apply": 0.0, "rank": 0.0, "remember+pickle+row": 0.0}
    n = 0
    for lo in range(0, len(raws), B):
        measure = lo >= 20_000
        t0 = time.perf_counter()
        evs = [parse_event(r, known) for r in raws[lo:lo + B]]
        t1 = time.perf_counter()
        states = []
        for e in evs:
            raw = store.get(e.user_id)
            if isinstance(raw, UserState):  # seen earlier in this batch: rank that state as it was
                st = copy.copy(raw)
            else:
                st = pickle.loads(raw) if raw is not None else UserState()
            st = apply_event(st, e, cat, params, cfg.user_ttl_ms)
            states.append(st)
            store[e.user_id] = st  # a later event of the same user in the batch sees this one
        t2 = time.perf_counter()
        recs = recommend_users(states, cat, params, trending, mask, ranker)
        t3 = time.perf_counter()
        out = []
        for e, st, rec in zip(evs, states, recs):
            remember_shown(st, rec, params)
            out.append((e.event_id, write_timestamp_us(st), list(rec.product_ids), [float(x) for x in rec.scores]))
        for uid in {e.user_id for e in evs}:
            store[uid] = pickle.dumps(store[uid], protocol=pickle.HIGHEST_PROTOCOL)
        t4 = time.perf_counter()
        if measure:
            n += len(evs)
            steps = (("parse", t0, t1), ("state+apply", t1, t2), ("rank", t2, t3), ("remember+pickle+row", t3, t4))
            for k, a, b in steps:
                T[k] += b - a
    tot = sum(T.values()) / n * 1e6
    parts = ", ".join(f"{k} {v / n * 1e6:5.1f}" for k, v in T.items())
    print(f"batch {B:5d}: {parts} -> {tot:5.1f} us/event = {1e6 / tot:7.0f} events/s per core")
