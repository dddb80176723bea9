"""Benchmarks: throughput, freshness and CPU of the job against a naive baseline, and top-k micro-benchmarks.

- :mod:`streamrec.bench.generator`  synthetic catalogs and a realistic event mix (Zipf products and users)
- :mod:`streamrec.bench.baseline`   the plain Python consumer service a user would write instead of the job
- :mod:`streamrec.bench.e2e`        ``streamrec bench`` / ``make bench``: both on the real Kafka + Cassandra,
  phase by phase (prepare, throughput, freshness) with one record builder; its parts:
  :mod:`~streamrec.bench.systems` (the systems under test), :mod:`~streamrec.bench.load` (producing),
  :mod:`~streamrec.bench.watch` (rows in Cassandra, event rates), :mod:`~streamrec.bench.freshness`
  (paced load and probes), :mod:`~streamrec.bench.observe` (processes, Flink metrics, py-spy)
- :mod:`streamrec.bench.topk`       ``streamrec bench topk``: numpy vs faiss exact/IVF/HNSW, per core
- :mod:`streamrec.bench.plot`       PNGs from ``bench/*.jsonl``

Nothing here is imported by the job; the heavy imports (faiss, matplotlib, Kafka/Cassandra clients)
happen inside the functions that need them.
"""
