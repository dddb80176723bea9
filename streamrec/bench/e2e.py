"""`make bench` / `streamrec bench`: the job and the naive baseline side by side on the real stack.

1. Kafka and Cassandra on the `bench` profile (reused if running; whatever this run starts, it stops,
   also on Ctrl-C); a catalog (synthetic unit vectors, or the UCI catalog) written to a file both read.
2. The generator's events (Zipf products and users, views >> clicks > carts > purchases); each
   system reads the same events from its own topic, keyspace and group. A warm-up stream of other
   users is pre-loaded into every topic. Then Cassandra is warmed up (warmup.py) until its JIT
   compiler is quiet: a fresh Cassandra spends its first minute or two compiling, which only the
   first system measured would have paid for.
3. One system at a time (never both: 2 cores): start it, let it work through the warm-up stream (a
   JVM compiles its hot code for the first ~40 s of load), then produce the measured events at once
   and note when the first of their rows is readable and when every user's row names the user's last
   event; sustained events/s is the event count over that window. CPU over the same window from
   /proc: the system's process tree (PyFlink client + JVM + Python workers, or the baseline process),
   Kafka, Cassandra, this harness and the whole machine (to show how much the other users took).
4. Freshness: a paced warm-up at half the phase's rate until the JIT compilers of the system and of
   Kafka are quiet (a trickle runs other code than a backlog); then the maximum rate with the load
   produced live (1.1x the backlog rate for 20 s; the rate the system stores meanwhile, from when
   each probe's row became readable); then events at a steady rate (by default 80% of that
   maximum) plus, after a 5 s lead-in, a few probe events for fresh users; a poller reads each
   probe user's row until it names the probe: produce -> readable, p50/p95/p99. Then the same at a
   fixed 100 events/s. The harness produces with confluent-kafka
   and pre-encoded events (~20 us of CPU per event; kafka-python took ~510); every group's CPU over
   the phase is recorded, since here the harness and Kafka work live.
5. One JSON line per system in ``bench/results.jsonl``.
"""

from __future__ import annotations

import logging
import os
import signal
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from streamrec import localstack
from streamrec.bench import results
from streamrec.bench.load import delete_topics
from streamrec.bench.observe import Observer
from streamrec.bench.phases import (
    MAX_JIT_ROUNDS,
    JitWarmUp,
    measure_freshness_phases,
    measure_throughput,
    warm_up_jit,
)
from streamrec.bench.prepare import Prepared, prepare
from streamrec.bench.procstat import CpuSampler, Group
from streamrec.bench.record import build_record
from streamrec.bench.systems import System, restore_env, say

__all__ = ["MAX_JIT_ROUNDS", "BenchOptions", "JitWarmUp", "Prepared", "build_record", "measure_system", "prepare",
           "run", "warm_up_jit"]

log = logging.getLogger("streamrec.bench")

SYSTEMS = ("streamrec", "baseline", "baseline-batched")
BLAS_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
WORKER_MODE_ENV = "_python_worker_execution_mode"  # read by PyFlink's client (loopback | process)
DEFAULT_UCI = localstack.repo_root().parent / "shared" / "data" / "uci-online-retail" / "onlineretail.csv.gz"


@dataclass
class BenchOptions:
    systems: tuple[str, ...] = ("streamrec", "baseline")
    catalog: str = "synthetic"  # or "uci"
    catalog_size: int = 10_000  # synthetic only; the UCI catalog has what the data has
    # synthetic only: item-to-item successors per product, as `catalog build` keeps them (0: none);
    # both systems rank with their term, as the job does with a built catalog
    transitions: int = 100
    dim: int = 64
    events: int = 60_000
    users: int = 3_000
    seed: int = 0
    partitions: int = 2
    parallelism: int = 1
    checkpoint_interval_ms: int = 10_000
    fresh_rate: float = 0.0  # events/s of the freshness phase; 0: fresh_fraction x the maximum rate
    fresh_fraction: float = 0.8
    # The maximum rate that fresh_fraction applies to is measured with the load produced live: the
    # harness produces at live_max_factor x the backlog rate for live_max_seconds and the rate the
    # system stores meanwhile is its maximum (live_rate). A backlog is drained with the load
    # generator and the broker idle, so on a 2-core machine it overstates what the system sustains
    # while they run beside it. 0 seconds: the backlog rate is the maximum.
    live_max_seconds: float = 20.0
    live_max_factor: float = 1.1
    fresh_seconds: float = 15.0
    probe_rate: float = 5.0  # probe events per second during the freshness phase
    fresh_low_rate: float = 100.0  # a second freshness phase at this fixed, modest rate (0: skip)
    profile: bool = False  # py-spy record the Python processes during the throughput phase
    profile_seconds: float = 20.0
    uci_path: str = str(DEFAULT_UCI)
    results_path: str = ""
    keep_services: bool = False
    keep_data: bool = False
    note: str = ""
    timeout: float = 900.0  # give up on a system that makes no progress for this long (s)
    # BLAS threads of every process the systems start (OPENBLAS/OMP/MKL_NUM_THREADS); 0 leaves them alone.
    # On a busy 2-core machine a multi-threaded OpenBLAS turns a 40 us (1 x 64) @ (64 x 10k) product into
    # milliseconds (threads spinning against each other), so the default pins both systems to 1.
    blas_threads: int = 1
    # PyFlink runs a minicluster job's Python operators in "loopback" mode (inside the client process)
    # unless told otherwise; "process" gives them their own worker process as on a cluster.
    python_worker_mode: str = ""
    # Longest time to warm the bench's Cassandra up before the first system (0: no warm-up); see warmup.py.
    warmup_seconds: float = 180.0
    # Events each system works through (other users, same mix) before its throughput phase is measured:
    # a JVM compiles its hot code for the first ~40 s of load (up to 0.45 cores of C2 on this machine),
    # and a job runs for weeks, so its bill is the steady state. Both systems get the same events.
    warmup_events: int = 40_000
    # ... and then more rounds of as many events (fresh users each) until the system's JIT compiler
    # threads are quiet, at most this long (0: the one round). 40,000 events last ~5 s on the fast
    # path, and its JVM was still compiling in the measured window after them (0.2-0.4 of its ~1
    # core); a Python service has no JIT, so it stops after the first round.
    jit_warmup_seconds: float = 150.0
    # Seconds each freshness phase produces at its rate before the first probe (the switch from a
    # backlog to a trickle runs new code paths; the latency asked about is the steady one).
    fresh_lead_in: float = 5.0
    # Longest paced warm-up before the freshness phases (0: none); see warm_up_trickle.
    trickle_warmup_seconds: float = 90.0
    extra: dict[str, Any] = field(default_factory=dict)


def _sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


def measure_system(name: str, prep: Prepared, opts: BenchOptions) -> dict[str, Any]:
    """One system from start to stop: throughput, then freshness; its record. Its keyspace and
    topics are dropped afterwards unless ``keep_data``."""
    from streamrec.connectors.cassandra import connect, drop_keyspace

    config = prep.configs[name]
    system = System(name, config, prep.workdir / f"{name}-{prep.tag}.log", opts.python_worker_mode)
    session = connect(config.cassandra, config.cassandra.keyspace)
    sampler = CpuSampler([
        Group(name, system.pids),
        Group("kafka", lambda: prep.kafka_pids),
        Group("cassandra", lambda: prep.cassandra_pids),
        Group("harness", lambda: [os.getpid()], tree=False),
    ]).start()
    observer = Observer(system, opts)
    try:
        tp = measure_throughput(session, system, prep, opts, sampler, observer)
        fp = measure_freshness_phases(session, system, prep, opts, sampler, tp, observer.flink)
        return build_record(name, prep, opts, tp, fp, observer.flink)
    finally:
        sampler.stop()
        system.stop()
        session.cluster.shutdown()
        if not opts.keep_data:
            try:
                drop_keyspace(config.cassandra)
                delete_topics(config)
            except Exception as exc:
                log.warning("cleanup of %s failed: %s", name, exc)


def run(opts: BenchOptions) -> list[dict[str, Any]]:
    """The whole benchmark; returns the records it appended to the results file."""
    unknown = [s for s in opts.systems if s not in SYSTEMS]
    if unknown:
        raise ValueError(f"unknown system(s) {unknown}; expected some of {SYSTEMS}")
    old_term = signal.signal(signal.SIGTERM, _sigterm)
    old_env = {k: os.environ.get(k) for k in BLAS_ENV}
    if opts.blas_threads > 0:
        os.environ.update({k: str(opts.blas_threads) for k in BLAS_ENV})
    profile = localstack.PROFILES["bench"]
    results_path = Path(opts.results_path) if opts.results_path else results.bench_dir() / "results.jsonl"
    drops: list[Callable[[], None]] = []  # data this run made outside the systems' own keyspaces
    records: list[dict[str, Any]] = []
    try:
        say(f"Kafka on {profile.kafka_bootstrap}, Cassandra on 127.0.0.1:{profile.cassandra_port} "
             "(bench profile; started unless running)")
        with localstack.ensure(profile, ["kafka", "cassandra"]) as stack:
            if opts.keep_services:
                stack.keep()
            try:
                prep = prepare(opts, profile, drops)
                for name in opts.systems:
                    record = measure_system(name, prep, opts)
                    results.append(results_path, record)
                    records.append(record)
            finally:
                for drop in drops:
                    try:
                        drop()
                    except Exception as exc:
                        log.warning("cleanup failed: %s", exc)
        say(f"results appended to {results_path}")
        return records
    except KeyboardInterrupt:
        say("interrupted: cleaning up")
        raise SystemExit(130) from None
    finally:
        signal.signal(signal.SIGTERM, old_term)
        for k, v in old_env.items():
            restore_env(k, v)


def options_dict(opts: BenchOptions) -> dict[str, Any]:
    return asdict(opts)
