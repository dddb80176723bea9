"""`streamrec bench topk`: the top-k step alone, one thread, numpy exact vs faiss exact / IVF / HNSW.

For each catalog size and dataset: events/s per core (one query = one event's top-k, asked in
batches of ``batch`` users, BLAS and faiss pinned to one thread with threadpoolctl) and recall@10
against the exact answer of the job's own function (:func:`streamrec.model.topk.top_k_batch`).
IVF and HNSW are swept over their search knob (nprobe, efSearch); every point is recorded, and the
summary picks the fastest setting that reaches the recall floor.

Datasets:
- ``random``: uniform unit vectors (no structure: the pessimistic case for approximate search);
  queries are user vectors the model builds from generated events (Zipf-popular products).
- ``uci``: the catalog learned from UCI Online Retail (``build_catalog``, 64-d) and real user
  vectors (the model replayed over real purchase histories, sampled at random points). The real
  catalog has ~3.9k products; larger sizes add jittered copies of real vectors (each a real
  vector plus noise of half its length, renormalised), which keeps the real catalog's structure
  but is synthetic; the table says so.

Building indexes (k-means, HNSW graph) may use every core: only the queries are per core.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np

from streamrec.bench import results
from streamrec.model.catalog import Catalog

log = logging.getLogger("streamrec.bench.topk")

DEFAULT_UCI = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "uci-online-retail" / \
    "onlineretail.csv.gz"
NPROBES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
EF_SEARCH = (16, 32, 64, 128, 256, 512)


@dataclass
class TopkOptions:
    sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    methods: tuple[str, ...] = ("numpy", "flat", "ivf", "hnsw")
    datasets: tuple[str, ...] = ("random", "uci")
    dim: int = 64
    k: int = 10
    batch: int = 256
    queries: int = 4096
    recall_floor: float = 0.95
    seed: int = 0
    hnsw_m: int = 32
    hnsw_ef_construction: int = 64
    hnsw_max_size: int = 10_000_000  # no HNSW beyond this many products (its build is the slow part)
    uci_path: str = str(DEFAULT_UCI)
    results_path: str = ""


def _say(msg: str) -> None:
    print(f"==> {msg}", flush=True)


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean over queries of |found ∩ truth| / |truth| (rows of catalog indices; -1 = nothing)."""
    hits = 0
    total = 0
    for f, t in zip(found, truth):
        want = {int(x) for x in t if x >= 0}
        if not want:
            continue
        hits += len(want & {int(x) for x in f if x >= 0})
        total += len(want)
    return hits / total if total else 1.0


def normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, n, out=np.zeros_like(x), where=n > 0)


def jittered(base: np.ndarray, n: int, seed: int, noise: float = 0.5) -> np.ndarray:
    """``n`` vectors: ``base`` first, then random rows of ``base`` plus noise of length ~``noise``."""
    if n <= len(base):
        return base[:n].copy()
    rng = np.random.default_rng(seed)
    extra = n - len(base)
    src = base[rng.integers(0, len(base), extra)]
    d = base.shape[1]
    out = src + np.float32(noise) * rng.standard_normal((extra, d), dtype=np.float32) / np.float32(np.sqrt(d))
    return np.vstack([base, normalise(out)]).astype(np.float32)


def model_user_vectors(catalog: Catalog, histories: Sequence[Sequence[Any]], count: int, seed: int) -> np.ndarray:
    """User vectors as the model builds them: each history replayed, snapshot at a random event."""
    from streamrec.bench.baseline import model_params
    from streamrec.config import Config
    from streamrec.model.model import UserState, update_user

    params = model_params(Config())
    rng = np.random.default_rng(seed)
    usable = [h for h in histories if h]
    out: list[np.ndarray] = []
    for _ in range(count * 4):
        if len(out) >= count or not usable:
            break
        events = usable[int(rng.integers(0, len(usable)))]
        cut = int(rng.integers(1, len(events) + 1))
        state = UserState()
        for e in events[:cut]:
            update_user(state, e, catalog, params)
        if state.vector is not None and float(np.dot(state.vector, state.vector)) > 0:
            out.append(state.vector.astype(np.float32))
    return normalise(np.stack(out)) if out else np.zeros((0, catalog.dim), dtype=np.float32)


def _histories_by_user(events: Sequence[Any]) -> list[list[Any]]:
    by: dict[str, list[Any]] = {}
    for e in events:
        by.setdefault(e.user_id, []).append(e)
    return [v for v in by.values() if len(v) >= 1]


def random_dataset(n: int, dim: int, queries: int, seed: int) -> tuple[Catalog, np.ndarray]:
    from streamrec.bench.generator import EventGenerator, synthetic_catalog, to_event

    catalog = synthetic_catalog(n, dim, seed=seed)
    users = max(64, queries)
    gen = EventGenerator(catalog.product_ids, users, seed=seed + 7)
    events = [to_event(e) for e in gen.batch(users * 12)]
    return catalog, model_user_vectors(catalog, _histories_by_user(events), queries, seed)


class UciData:
    """The UCI catalog (``dim``-d) and real user histories, loaded once."""

    def __init__(self, path: str, dim: int) -> None:
        from streamrec.datasets import read_uci
        from streamrec.embeddings import build_catalog

        history = read_uci(path)
        self.catalog = build_catalog(history, dim=dim)
        self.histories = _histories_by_user([e for e in history.events if e.product_id in self.catalog.index])

    def dataset(self, n: int, queries: int, seed: int) -> tuple[Catalog, np.ndarray, str]:
        q = model_user_vectors(self.catalog, self.histories, queries, seed)
        native = len(self.catalog)
        if n <= native:
            return self.catalog, q, f"uci (real, {native} products)"
        vectors = jittered(self.catalog.vectors, n, seed)
        from streamrec.bench.generator import product_id

        ids = tuple(self.catalog.product_ids) + tuple(product_id(i) for i in range(native, n))
        return Catalog(product_ids=ids, vectors=vectors), q, f"uci + jittered copies ({native} real)"


# --------------------------------------------------------------------------------------------
# methods
# --------------------------------------------------------------------------------------------


def _timed(search: Callable[[np.ndarray], np.ndarray], queries: np.ndarray, batch: int,
           repeats: int = 5) -> tuple[float, np.ndarray]:
    """(median over ``repeats`` passes of the seconds per query, the rows found in the first pass).

    A pass asks every query in batches of ``batch``; passes stop early once 10 s were spent.
    """
    found: list[np.ndarray] = []
    times: list[float] = []
    spent = 0.0
    for r in range(repeats):
        parts = []
        t0 = time.perf_counter()
        for i in range(0, len(queries), batch):
            parts.append(search(queries[i:i + batch]))
        dt = time.perf_counter() - t0
        times.append(dt)
        spent += dt
        if r == 0:
            found = parts
        if spent > 10.0 and len(times) >= 1:
            break
    return float(np.median(times)) / len(queries), np.vstack(found)


def _numpy_search(catalog: Catalog, k: int) -> Callable[[np.ndarray], np.ndarray]:
    from streamrec.model.topk import top_k_batch

    def search(q: np.ndarray) -> np.ndarray:
        rows, _ = top_k_batch(q, catalog, k)
        return rows

    return search


def _faiss_search(index: Any, k: int) -> Callable[[np.ndarray], np.ndarray]:
    def search(q: np.ndarray) -> np.ndarray:
        _, rows = index.search(q, k)
        return rows

    return search


def run(opts: TopkOptions) -> list[dict[str, Any]]:
    import faiss
    from threadpoolctl import threadpool_limits

    results_path = Path(opts.results_path) if opts.results_path else results.bench_dir() / "topk.jsonl"
    machine = results.machine()
    all_threads = os.cpu_count() or 1
    records: list[dict[str, Any]] = []

    def record(**fields: Any) -> None:
        rec = {"date": results.today(), "time": results.now_iso(), "k": opts.k, "dim": opts.dim,
               "batch": opts.batch, "machine": machine, **fields}
        results.append(results_path, rec)
        records.append(rec)

    for dataset, catalog, queries, label in _datasets(opts):
        size = len(catalog)
        _say(f"{dataset}: {size} products x {catalog.dim}, {len(queries)} queries ({label})")
        # exact reference: the job's own function (numpy), one thread
        with threadpool_limits(1):
            exact_s, truth = _timed(_numpy_search(catalog, opts.k), queries,
                                    64 if size >= 1_000_000 else opts.batch)
        base = {"dataset": dataset, "dataset_label": label, "catalog_size": size, "queries": len(queries)}
        if "numpy" in opts.methods:
            bs = 64 if size >= 1_000_000 else opts.batch
            record(**base, method="numpy", param=None, batch=bs, build_s=0.0,
                   events_per_s_per_core=round(1.0 / exact_s, 1), recall=1.0)
            _say(f"  numpy exact (batch {bs}): {1.0 / exact_s:,.0f} queries/s per core")
        with threadpool_limits(1):
            faiss.omp_set_num_threads(1)
            bench = _FaissBench(opts, catalog, queries, truth, functools.partial(record, **base), all_threads)
            if "flat" in opts.methods:
                bench.flat()
            if "ivf" in opts.methods:
                bench.ivf()
            if "hnsw" in opts.methods and size <= opts.hnsw_max_size:
                bench.hnsw()
            faiss.omp_set_num_threads(all_threads)
    _say(f"results appended to {results_path}")
    for line in summary_table(records, opts.recall_floor):
        print(line)
    return records


def _datasets(opts: TopkOptions) -> Iterator[tuple[str, Catalog, np.ndarray, str]]:
    """(dataset, catalog, queries, label) of each dataset and size, in order; UCI is read once."""
    uci: Optional[UciData] = None
    for dataset in opts.datasets:
        sizes = list(opts.sizes)
        if dataset == "uci":
            if uci is None:
                _say("loading UCI Online Retail and learning the catalog ...")
                uci = UciData(opts.uci_path, opts.dim)
            native = len(uci.catalog)
            sizes = [native] + [n for n in sizes if n > native]  # the real catalog, then jittered sizes
        for n in sizes:
            nq = opts.queries if n < 1_000_000 else max(256, opts.queries // 4)
            if dataset == "random":
                catalog, queries = random_dataset(n, opts.dim, nq, opts.seed)
                label = "random unit vectors"
            elif dataset == "uci" and uci is not None:
                catalog, queries, label = uci.dataset(n, nq, opts.seed)
            else:
                raise ValueError(f"unknown dataset {dataset!r}")
            yield dataset, catalog, queries, label


class _FaissBench:
    """The faiss indexes of one catalog, each searched one thread at a time (built with all threads)
    against the exact ``truth``; ``record`` appends a result record."""

    def __init__(self, opts: TopkOptions, catalog: Catalog, queries: np.ndarray, truth: np.ndarray,
                 record: Callable[..., None], all_threads: int) -> None:
        self.opts, self.catalog, self.queries, self.truth = opts, catalog, queries, truth
        self.record, self.all_threads = record, all_threads

    def _measure(self, index: Any, method: str, param: Optional[dict[str, Any]], build_s: float, label: str,
                 note: str = "") -> float:
        """Search ``index`` as it is set now, one thread; record and print the result; its recall."""
        sec, found = _timed(_faiss_search(index, self.opts.k), self.queries, self.opts.batch)
        rec = recall_at_k(found, self.truth)
        self.record(method=method, param=param, build_s=build_s, events_per_s_per_core=round(1.0 / sec, 1),
                    recall=round(rec, 4))
        _say(f"  {label}: {1.0 / sec:,.0f} queries/s per core, recall {rec:.4f}{note}")
        return rec

    def flat(self) -> None:
        import faiss

        index: Any = faiss.IndexFlatIP(self.catalog.dim)
        index.add(self.catalog.vectors)
        self._measure(index, "faiss-flat", None, 0.0, "faiss flat")
        del index

    def ivf(self) -> None:
        import faiss

        opts, vectors, size = self.opts, self.catalog.vectors, len(self.catalog)
        nlist = max(16, int(4 * np.sqrt(size)))
        faiss.omp_set_num_threads(self.all_threads)
        t0 = time.perf_counter()
        quantizer = faiss.IndexFlatIP(self.catalog.dim)
        index = faiss.IndexIVFFlat(quantizer, self.catalog.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(opts.seed)
        train = vectors[rng.choice(size, size=min(size, 64 * nlist), replace=False)]
        index.train(train)
        index.add(vectors)
        build = time.perf_counter() - t0
        faiss.omp_set_num_threads(1)
        for nprobe in NPROBES:
            if nprobe > nlist:
                break
            index.nprobe = nprobe
            rec = self._measure(index, "faiss-ivf", {"nlist": nlist, "nprobe": nprobe}, round(build, 1),
                                f"faiss IVF{nlist} nprobe {nprobe}")
            if rec >= 0.999:
                break
        del index, quantizer

    def hnsw(self) -> None:
        import faiss

        opts = self.opts
        faiss.omp_set_num_threads(self.all_threads)
        t0 = time.perf_counter()
        index = faiss.IndexHNSWFlat(self.catalog.dim, opts.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = opts.hnsw_ef_construction
        index.add(self.catalog.vectors)
        build = time.perf_counter() - t0
        faiss.omp_set_num_threads(1)
        for ef in EF_SEARCH:
            index.hnsw.efSearch = ef
            rec = self._measure(index, "faiss-hnsw",
                                {"M": opts.hnsw_m, "efConstruction": opts.hnsw_ef_construction, "efSearch": ef},
                                round(build, 1), f"faiss HNSW{opts.hnsw_m} efSearch {ef}",
                                f" (build {build:.0f} s)")
            if rec >= 0.999:
                break
        del index


def best_per_method(records: Sequence[dict[str, Any]], floor: float) -> list[dict[str, Any]]:
    """Per (dataset, size, method): the fastest record with recall >= ``floor`` (else the best recall)."""
    groups: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["dataset"], r["catalog_size"], r["method"]), []).append(r)
    out = []
    for key in sorted(groups):
        rs = groups[key]
        ok = [r for r in rs if r["recall"] >= floor]
        out.append(max(ok, key=lambda r: r["events_per_s_per_core"]) if ok else max(rs, key=lambda r: r["recall"]))
    return out


def summary_table(records: Sequence[dict[str, Any]], floor: float) -> list[str]:
    lines = ["| dataset | products | method | setting | events/s per core | recall@10 | build s |",
             "| --- | ---: | --- | --- | ---: | ---: | ---: |"]
    for r in best_per_method(records, floor):
        param = r.get("param") or {}
        setting = ", ".join(f"{k} {v}" for k, v in param.items()) if param else "-"
        mark = "" if r["recall"] >= floor else " (below floor)"
        lines.append(f"| {r['dataset']} | {r['catalog_size']:,} | {r['method']} | {setting} | "
                     f"{r['events_per_s_per_core']:,.0f} | {r['recall']:.3f}{mark} | {r.get('build_s', 0):.0f} |")
    return lines
