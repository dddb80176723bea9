"""`streamrec bench query`: latency of the query side (what `streamrec recs` reads) on Cassandra.

Fills a fresh keyspace of the bench profile's Cassandra with ``users`` recommendation rows (the
job's own writer and statements) and a catalog, then times many requests of the two read paths of
`streamrec recs`: the user's row alone (`-o json`), and the row plus the products lookup that
titles and category filters need (`--category`, table output). Users are drawn with Zipf(0.8)
popularity, as the event generator draws them. Results: one JSON line in bench/query.jsonl.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from streamrec.bench import results
from streamrec.bench.baseline import OutputRow
from streamrec.config import CassandraConfig


@dataclass(frozen=True)
class QueryOptions:
    users: int = 10_000
    products: int = 10_000
    requests: int = 5_000
    k: int = 30  # what the job stores with the defaults: top_k 10 x query_overfetch 3
    seed: int = 0
    results_path: str = ""


def percentiles(latencies_ms: list[float]) -> dict[str, float]:
    a = np.asarray(latencies_ms, dtype=np.float64)
    return {p: round(float(np.percentile(a, q)), 3) for p, q in (("p50", 50), ("p95", 95), ("p99", 99))} | {
        "max": round(float(a.max()), 3), "mean": round(float(a.mean()), 3)}


def _timed(fn: Callable[[], Any], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000.0)
    return out


def store_rows(config: CassandraConfig, ids: tuple[str, ...], users: int, k: int, rng: np.random.Generator
               ) -> None:
    """``users`` recommendation rows (users user0, user1, ...) of ``k`` random products of ``ids``,
    written with the job's own writer and statements (also `streamrec bench serve`'s data)."""
    from streamrec.connectors.cassandra import RecommendationWriter, await_statements

    writer = RecommendationWriter(config)
    writer.open()
    try:
        pending: list[Any] = []
        for u in range(users):
            picks = rng.choice(len(ids), size=k, replace=False)
            row = OutputRow(f"e{u}", f"user{u}", 1_700_000_000_000 + u, "view", ids[int(picks[0])], None,
                            (1_700_000_000_000 + u) * 1000, tuple(ids[int(i)] for i in picks),
                            tuple(sorted(rng.random(k).tolist(), reverse=True)), "personal")
            pending.extend((s, v, writer.execute_async(s, v)) for s, v in writer.bound(row))
            if len(pending) > 512:
                await_statements(writer, pending)
                pending = []
        await_statements(writer, pending)
    finally:
        writer.close()


def run(opts: QueryOptions, say: Callable[[str], None] = print) -> dict[str, Any]:
    from streamrec import localstack

    profile = localstack.PROFILES["bench"]
    localstack.fetch()
    say(f"Cassandra on 127.0.0.1:{profile.cassandra_port} (bench profile; started unless running)")
    with localstack.ensure(profile, ["cassandra"]):
        return _measure(opts, profile, say)


def _measure(opts: QueryOptions, profile: Any, say: Callable[[str], None]) -> dict[str, Any]:
    from streamrec.config import Config
    from streamrec.connectors.cassandra import QueryClient, drop_keyspace, ensure_schema, store_catalog
    from streamrec.model.catalog import Catalog

    config = Config(cassandra=CassandraConfig(port=profile.cassandra_port,
                                              keyspace=f"bench_query_{uuid.uuid4().hex[:6]}"))
    rng = np.random.default_rng(opts.seed)
    try:
        ensure_schema(config.cassandra)
        ids = tuple(f"p{i}" for i in range(opts.products))
        vectors = rng.normal(size=(opts.products, 8)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        store_catalog(config.cassandra, Catalog(ids, vectors,
                                                categories=tuple(f"c{i % 20}" for i in range(opts.products))))
        store_rows(config.cassandra, ids, opts.users, opts.k, rng)
        say(f"{opts.users} users' recommendations ({opts.k} each) and {opts.products} products stored")
        weights = 1.0 / np.arange(1, opts.users + 1) ** 0.8
        users = [f"user{int(i)}" for i in rng.choice(opts.users, size=opts.requests, p=weights / weights.sum())]
        client = QueryClient(config.cassandra)
        try:
            it = iter(users * 3)
            _timed(lambda: client.recommendations(next(it)), min(500, opts.requests))  # warm up
            row_only = _timed(lambda: client.recommendations(next(it)), opts.requests)

            def with_products() -> None:
                stored = client.recommendations(next(it))
                assert stored is not None
                client.products(stored.product_ids)

            with_lookup = _timed(with_products, opts.requests)
        finally:
            client.close()
        record = {
            "date": results.today(), "time": results.now_iso(), "machine": results.machine(),
            "users": opts.users, "products": opts.products, "requests": opts.requests, "k": opts.k,
            "recs_row_ms": percentiles(row_only), "recs_with_products_ms": percentiles(with_lookup),
        }
        path = Path(opts.results_path) if opts.results_path else results.bench_dir() / "query.jsonl"
        results.append(path, record)
        say(f"recs (one row): {record['recs_row_ms']} ms; with the products lookup: "
            f"{record['recs_with_products_ms']} ms over {opts.requests} requests each -> {path}")
        return record
    finally:
        drop_keyspace(config.cassandra)

