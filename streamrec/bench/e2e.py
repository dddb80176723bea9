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
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from streamrec import localstack
from streamrec.bench import results
from streamrec.bench.baseline import model_params
from streamrec.bench.freshness import Freshness, TrickleWarmUp, live_rate, measure_freshness, warm_up_trickle
from streamrec.bench.generator import EventGenerator, GenEvent, final_recommendation_events, mix_of
from streamrec.bench.load import delete_topics, preload
from streamrec.bench.observe import Observer
from streamrec.bench.procstat import MACHINE, CpuSampler, Group
from streamrec.bench.systems import System, restore_env, say
from streamrec.bench.warmup import (
    QuietDetector,
    RoundedRecord,
    WarmUp,
    compiler_cpu,
    warm_up_cassandra,
)
from streamrec.bench.watch import Throughput, first_users, steady_rate, stored_events, watch_throughput
from streamrec.config import Config
from streamrec.model.catalog import Catalog

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


MAX_JIT_ROUNDS = 12  # the event-time room kept for them before the measured events


@dataclass(frozen=True)
class JitWarmUp(RoundedRecord):
    rounds: int
    events: int
    seconds: float
    compiler_cpu_s: float  # the system's JIT compiler CPU during these rounds
    quiet: bool  # False: the time limit or the round limit came first


def warm_up_jit(session: Any, system: System, config: Config, catalog: Catalog, opts: BenchOptions,
                warm_start_ts: int, on_tick: Callable[[], None],
                detector: Optional[QuietDetector] = None) -> JitWarmUp:
    """After the first warm-up round: more backlogs of ``opts.warmup_events`` events (new users each
    round, event time after the first round's) until the system's JIT compiler threads are quiet,
    ``opts.jit_warmup_seconds`` pass, or :data:`MAX_JIT_ROUNDS` rounds ran.

    A backlog, not a paced stream: the throughput phase is one, and a backlog runs full batches."""
    detector = detector or QuietDetector()
    started = time.time()
    cpu0 = compiler_cpu(system.tree())
    if cpu0 == 0.0:  # no JIT compiler threads (a Python service): nothing to wait for
        return JitWarmUp(0, 0, 0.0, 0.0, True)
    detector.add(started, cpu0)

    def tick() -> None:
        on_tick()
        detector.add(time.time(), compiler_cpu(system.tree()))

    rounds = events = 0
    params = model_params(config)
    while (opts.jit_warmup_seconds > 0 and rounds < MAX_JIT_ROUNDS and not detector.quiet()
           and time.time() - started < opts.jit_warmup_seconds):
        rounds += 1
        batch = EventGenerator(catalog.product_ids, opts.users, seed=opts.seed + 10 + rounds,
                               start_ts=warm_start_ts + rounds * opts.warmup_events, id_prefix=f"j{rounds}-",
                               user_prefix=f"j{rounds}-").batch(opts.warmup_events)
        expected = final_recommendation_events(batch, catalog, params)
        preload([config], batch)
        watch_throughput(session, system, expected, time.time(), opts.timeout, on_tick=tick,
                         first_users=first_users(batch, expected))
        events += len(batch)
        tick()
    return JitWarmUp(rounds, events, time.time() - started, compiler_cpu(system.tree()) - cpu0, detector.quiet())


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


def _catalog(opts: BenchOptions, workdir: Path) -> tuple[Catalog, Path]:
    if opts.catalog == "uci":
        from streamrec.datasets import read_uci
        from streamrec.embeddings import build_catalog

        if not Path(opts.uci_path).exists():
            raise FileNotFoundError(f"UCI Online Retail not found at {opts.uci_path}")
        catalog = build_catalog(read_uci(opts.uci_path), dim=opts.dim)
        name = f"catalog-uci-{opts.dim}.npz"
    elif opts.catalog == "synthetic":
        from streamrec.bench.generator import synthetic_catalog

        catalog = synthetic_catalog(opts.catalog_size, opts.dim, seed=opts.seed)
        name = f"catalog-synthetic-{opts.catalog_size}x{opts.dim}-{opts.seed}.npz"
    else:
        raise ValueError(f"unknown catalog {opts.catalog!r}: synthetic or uci")
    path = workdir / name
    catalog.save(path)
    return catalog, path


@dataclass
class Prepared:
    """What every system of one run is measured on: the same events, catalog and services."""

    tag: str
    workdir: Path
    machine: dict[str, Any]
    catalog: Catalog
    events: list[GenEvent]  # the measured throughput phase
    expected: dict[str, str]  # user -> the event id their final row must name
    warm_events: list[GenEvent]  # the first warm-up round (users of their own)
    warm_expected: dict[str, str]
    warm_start_ts: int
    configs: dict[str, Config]  # per system: its own keyspace, topics and consumer group
    kafka_pids: list[int]
    cassandra_pids: list[int]
    cassandra_warmup: Optional[WarmUp]


def prepare(opts: BenchOptions, profile: localstack.Profile, drops: list[Callable[[], None]]) -> Prepared:
    """The catalog, the events, every system's topics and keyspace (pre-loaded with the warm-up
    round), and a warm Cassandra. Data made outside the systems' own keyspaces goes on ``drops``."""
    from streamrec.connectors.cassandra import drop_keyspace, ensure_schema
    from streamrec.connectors.kafka import ensure_topics

    workdir = localstack.run_dir(profile) / "work"
    workdir.mkdir(parents=True, exist_ok=True)
    artifacts = localstack.fetch()
    status = localstack.status(profile)
    catalog, catalog_path = _catalog(opts, workdir)
    say(f"catalog: {len(catalog)} products x {catalog.dim} ({opts.catalog}) -> {catalog_path}")
    start_ts = int(time.time() * 1000) - opts.events - 3_600_000  # all in the past of the paced phase
    events = EventGenerator(catalog.product_ids, opts.users, seed=opts.seed, start_ts=start_ts).batch(opts.events)
    # the warm-up: users of their own ("w..."), before the measured events in event time
    # (the JIT rounds after it get the event time between it and the measured events)
    warm_start_ts = start_ts - (MAX_JIT_ROUNDS + 1) * opts.warmup_events - 60_000
    warm_events = EventGenerator(catalog.product_ids, opts.users, seed=opts.seed + 2,
                                 start_ts=warm_start_ts, id_prefix="w",
                                 user_prefix="w").batch(opts.warmup_events) if opts.warmup_events > 0 else []
    # other job settings come from STREAMREC_* variables, as for `streamrec job run`
    base = Config.from_env(kafka_bootstrap=profile.kafka_bootstrap, cassandra_port=profile.cassandra_port,
                           jars=str(artifacts.kafka_connector_jar), catalog_path=str(catalog_path),
                           parallelism=opts.parallelism, checkpoint_interval_ms=opts.checkpoint_interval_ms,
                           blas_threads=opts.blas_threads)  # the job pins its own BLAS; the env is for the baseline
    expected = final_recommendation_events(events, catalog, model_params(base))
    warm_expected = final_recommendation_events(warm_events, catalog, model_params(base))
    tag = uuid.uuid4().hex[:6]
    configs = {}
    for name in opts.systems:
        short = name.replace("-", "_")
        configs[name] = base.replace(
            keyspace=f"bench_{short}_{tag}", events_topic=f"bench-{tag}-{name}-events",
            dlq_topic=f"bench-{tag}-{name}-dlq", products_topic=f"bench-{tag}-{name}-products",
            consumer_group=f"bench-{tag}-{name}")
        ensure_topics(configs[name], partitions=opts.partitions)
        ensure_schema(configs[name])
    if warm_events:
        secs = preload(list(configs.values()), warm_events)
        say(f"{len(warm_events)} warm-up events pre-loaded into {len(configs)} topic(s) in {secs:.1f} s")
    say(f"{len(events)} events of {opts.users} users ({len(expected)} with recommendations) to measure; mix "
         f"{ {k: round(v, 3) for k, v in mix_of(events).items()} }")
    cassandra_pids = status["cassandra"].pids
    warm: Optional[WarmUp] = None
    if opts.warmup_seconds > 0:
        warm_config = base.replace(keyspace=f"bench_warmup_{tag}")
        ensure_schema(warm_config)
        if not opts.keep_data:  # not a service: dropped also with --keep-services
            drops.append(lambda: drop_keyspace(warm_config))
        say(f"warming Cassandra up (until its JIT compiler is quiet, at most {opts.warmup_seconds:.0f} s)")
        warm = warm_up_cassandra(warm_config, catalog, lambda: cassandra_pids, opts.warmup_seconds)
        say(f"Cassandra warm-up: {warm.rows} rows in {warm.seconds:.0f} s, its JIT used "
             f"{warm.compiler_cpu_s:.1f} s of CPU; {'quiet' if warm.quiet else 'NOT quiet yet'}")
    return Prepared(tag, workdir, results.machine(), catalog, events, expected, warm_events, warm_expected,
                    warm_start_ts, configs, status["kafka"].pids, cassandra_pids, warm)


@dataclass
class ThroughputPhase:
    """The measured backlog: events/s and every group's CPU over the window."""

    window: Throughput  # what watch_throughput saw
    events_per_s: float
    cores: dict[str, float]  # per group, plus "others": the machine less the groups
    cores_by_process: dict[str, float]  # the system's CPU by kind of process (jvm, python worker, ...)
    startup_s: float
    jit_warmup: Optional[JitWarmUp]
    cassandra_jit_cores: float  # Cassandra's JIT compiler threads over the window: ~0 once warm
    system_jit_cores: float  # the system's own (0 for a Python service)
    checkpoints: dict[str, Any]
    produced: int  # events produced so far, warm-up rounds included


GROUPS = ("kafka", "cassandra", "harness")


def group_cores(sampler: CpuSampler, name: str, t0: float, t1: float) -> dict[str, float]:
    """Cores used between ``t0`` and ``t1`` by the system, Kafka, Cassandra, this harness, the
    machine, and by everything else ("others": other users' processes)."""
    cores = {g: round(sampler.cores(g, t0, t1), 3) for g in (name, *GROUPS, MACHINE)}
    cores["others"] = round(cores[MACHINE] - sum(cores[g] for g in (name, *GROUPS)), 3)
    return cores


def measure_throughput(session: Any, system: System, prep: Prepared, opts: BenchOptions, sampler: CpuSampler,
                       observer: Observer) -> ThroughputPhase:
    """Start the system, let it work through the warm-up (and the JIT rounds), then produce the
    measured events at once and time the backlog."""
    config = prep.configs[system.name]
    say(f"{system.name}: starting")
    t_start = time.time()
    system.start()
    jit_warm: Optional[JitWarmUp] = None
    t_first_warm = 0.0
    if prep.warm_events:
        wt = watch_throughput(session, system, prep.warm_expected, t_start, opts.timeout,
                              first_users=first_users(prep.warm_events, prep.warm_expected))
        t_first_warm = wt.t_first
        say(f"{system.name}: warm-up of {len(prep.warm_events)} events done in {wt.seconds:.1f} s "
             f"({len(prep.warm_events) / max(wt.seconds, 1e-9):.0f} events/s)")
        jit_warm = warm_up_jit(session, system, config, prep.catalog, opts, prep.warm_start_ts, observer.tick)
        say(f"{system.name}: JIT warm-up: {jit_warm.rounds} more round(s), {jit_warm.events} events in "
             f"{jit_warm.seconds:.0f} s, JIT {jit_warm.compiler_cpu_s:.1f} s of CPU; "
             f"{'quiet' if jit_warm.quiet else 'NOT quiet yet'}")
    t_main = time.time()
    jit0 = compiler_cpu(prep.cassandra_pids)
    job_jit0 = compiler_cpu(system.tree())
    secs = preload([config], prep.events)
    say(f"{system.name}: {len(prep.events)} events produced in {secs:.1f} s")
    tp = watch_throughput(session, system, prep.expected, t_main, opts.timeout, on_tick=observer.tick,
                          first_users=first_users(prep.events, prep.expected))
    window = max(time.time() - t_main, 1e-9)
    cassandra_jit_cores = (compiler_cpu(prep.cassandra_pids) - jit0) / window
    system_jit_cores = (compiler_cpu(system.tree()) - job_jit0) / window
    observer.wait_profiles(opts.profile_seconds + 30)
    eps = len(prep.events) / tp.seconds
    cores = group_cores(sampler, system.name, tp.t_first, tp.t_last)
    by_kind: dict[str, float] = {}
    for pid, c in sampler.cores_by_pid(system.name, tp.t_first, tp.t_last).items():
        kind = observer.labels.get(pid, "other")
        by_kind[kind] = round(by_kind.get(kind, 0.0) + c, 3)
    say(f"{system.name}: {len(prep.events)} events in {tp.seconds:.1f} s = {eps:.0f} events/s on "
         f"{cores[system.name]:.2f} cores ({eps / max(cores[system.name], 1e-9):.0f} events/s per core); "
         f"cores {cores}")
    return ThroughputPhase(
        window=tp, events_per_s=eps, cores=cores, cores_by_process=by_kind,
        startup_s=(t_first_warm if prep.warm_events else tp.t_first) - t_start, jit_warmup=jit_warm,
        cassandra_jit_cores=cassandra_jit_cores, system_jit_cores=system_jit_cores,
        checkpoints=observer.flink.checkpoints() if observer.flink is not None else {},
        produced=len(prep.warm_events) + len(prep.events) + (jit_warm.events if jit_warm else 0),
    )


@dataclass
class LiveMax:
    phase: Freshness  # produced at live_max_factor x the backlog rate
    events_per_s: Optional[float]  # what the system stored meanwhile (None: too few probes to tell)
    cores: dict[str, float]

    def as_record(self) -> dict[str, Any]:
        return {"events_per_s": _round(self.events_per_s), "rate_target": round(self.phase.target_rate, 1),
                "rate_achieved": round(self.phase.achieved_rate, 1), "seconds": round(self.phase.seconds, 1),
                "probes": self.phase.probes, "kept_up": self.phase.kept_up(), "cores": self.cores}


@dataclass
class FreshnessPhases:
    rate: float  # the target rate of the main phase
    live_max: Optional[LiveMax]
    main: Freshness
    cores: dict[str, float]  # every group's CPU over the main phase
    low: Optional[Freshness]  # the fixed, modest rate
    trickle: Optional[TrickleWarmUp]
    stored: int
    want: int
    checkpoints: list[dict[str, Any]] = field(default_factory=list)  # the job's, during the main phase


def measure_freshness_phases(session: Any, system: System, prep: Prepared, opts: BenchOptions,
                             sampler: CpuSampler, tp: ThroughputPhase, flink: Any = None) -> FreshnessPhases:
    """A paced warm-up, the maximum rate with live load, then freshness at ``fresh_fraction`` of
    that maximum, then at the fixed ``fresh_low_rate``; every event produced is stored before the
    next phase starts."""
    name, config = system.name, prep.configs[system.name]
    rate = opts.fresh_rate or opts.fresh_fraction * tp.events_per_s  # until the live maximum is known
    produced = tp.produced
    trickle: Optional[TrickleWarmUp] = None
    if opts.trickle_warmup_seconds > 0:
        say(f"{name}: warming the paced path up at {rate / 2:.0f} events/s (until the JIT "
             f"compilers of {name} and Kafka are quiet, at most {opts.trickle_warmup_seconds:.0f} s)")
        trickle_gen = EventGenerator(prep.catalog.product_ids, opts.users, seed=opts.seed + 3,
                                     id_prefix="t", user_prefix="w")
        trickle = warm_up_trickle(config, trickle_gen, rate / 2, [system.tree, lambda: prep.kafka_pids],
                                  opts.trickle_warmup_seconds)
        produced += trickle.events
        stored_events(session, produced, system, timeout=180)
        say(f"{name}: paced warm-up: {trickle.events} events in {trickle.seconds:.0f} s, JIT "
             f"{trickle.compiler_cpu_s:.1f} s of CPU; {'quiet' if trickle.quiet else 'NOT quiet yet'}")
    live_max: Optional[LiveMax] = None
    if opts.live_max_seconds > 0:
        target = opts.live_max_factor * tp.events_per_s
        say(f"{name}: maximum rate with live load: producing {target:.0f} events/s for {opts.live_max_seconds:.0f} s")
        live_gen = EventGenerator(prep.catalog.product_ids, opts.users, seed=opts.seed + 4, id_prefix="m")
        t_live = time.time()
        lm = measure_freshness(session, config, live_gen, target, opts.live_max_seconds, opts.probe_rate,
                               f"{prep.tag}-{name}-max", lead_in=opts.fresh_lead_in)
        live_max = LiveMax(lm, live_rate(lm), group_cores(sampler, name, t_live, t_live + lm.seconds))
        produced += lm.sent + lm.probes
        stored_events(session, produced, system, timeout=180)
        say(f"{name}: stored {live_max.events_per_s or 0:.0f} events/s while {lm.achieved_rate:.0f}/s were "
             f"produced live (cores {live_max.cores})")
        if live_max.events_per_s and not opts.fresh_rate:
            rate = opts.fresh_fraction * live_max.events_per_s
    say(f"{name}: freshness at {rate:.0f} events/s for {opts.fresh_seconds:.0f} s ({opts.probe_rate:g} probes/s)")
    fresh_gen = EventGenerator(prep.catalog.product_ids, opts.users, seed=opts.seed + 1, id_prefix="f")
    t_fresh = time.time()
    fr = measure_freshness(session, config, fresh_gen, rate, opts.fresh_seconds, opts.probe_rate,
                           f"{prep.tag}-{name}", lead_in=opts.fresh_lead_in)
    # every group's CPU over the phase: here the harness produces live and Kafka takes the records
    # in, which a preloaded throughput phase does not pay for
    cores = group_cores(sampler, name, t_fresh, t_fresh + fr.seconds)
    checkpoints = _checkpoints_during(flink, fr.started, fr.started + fr.seconds)
    low: Optional[Freshness] = None
    if opts.fresh_low_rate > 0:
        # the fixed-rate phase measures the latency floor: start it once the previous phase is
        # stored, not while the system still works off a backlog
        stored_events(session, produced + fr.sent + fr.probes, system, timeout=180)
        say(f"{name}: freshness at a fixed {opts.fresh_low_rate:.0f} events/s for {opts.fresh_seconds:.0f} s")
        low = measure_freshness(session, config, fresh_gen, opts.fresh_low_rate, opts.fresh_seconds,
                                opts.probe_rate, f"{prep.tag}-{name}-low", lead_in=opts.fresh_lead_in)
        say(f"{name}: freshness at {opts.fresh_low_rate:.0f} events/s: {results.percentiles(low.latencies_ms)} ms")
    want = produced + fr.sent + fr.probes + (low.sent + low.probes if low else 0)
    stored = stored_events(session, want, system)
    log.debug("%s: probe latencies in send order (ms): %s", name, [round(x) for x in fr.latencies_ms])
    say(f"{name}: freshness {results.percentiles(fr.latencies_ms)} ms over {len(fr.latencies_ms)}/{fr.probes} "
         f"probes at {fr.achieved_rate:.0f} events/s (cores {cores}); kept up: {fr.kept_up()}")
    return FreshnessPhases(rate, live_max, fr, cores, low, trickle, stored, want, checkpoints)


def _checkpoints_during(flink: Any, t0: float, t1: float) -> list[dict[str, Any]]:
    """The job's checkpoints triggered between ``t0`` and ``t1`` (epoch seconds): seconds into the
    phase, duration and size; empty for a system without Flink."""
    if flink is None:
        return []
    try:
        history = flink.checkpoints().get("history", [])
    except Exception as exc:  # a figure for the record, not worth failing the run
        log.debug("checkpoint history: %s", exc)
        return []
    return sorted(
        ({"at_s": round(h["trigger_ms"] / 1000 - t0, 2), "duration_ms": h.get("duration_ms"),
          "size_bytes": h.get("size_bytes"), "status": h.get("status")}
         for h in history if h.get("trigger_ms") and t0 <= h["trigger_ms"] / 1000 <= t1),
        key=lambda c: c["at_s"])


def _freshness_record(fr: Freshness) -> dict[str, Any]:
    return {
        "rate_target": round(fr.target_rate, 1), "rate_achieved": round(fr.achieved_rate, 1),
        "seconds": round(fr.seconds, 1), "probes": fr.probes, "missing": fr.missing,
        "max_ms": round(max(fr.latencies_ms), 1) if fr.latencies_ms else None,
        "kept_up": fr.kept_up(),
        "latencies_ms": [round(x) for x in fr.latencies_ms],  # probes in send order
        "probe_at_s": [round(t - fr.started, 2) for t in fr.probe_sent],  # when each was sent, into the phase
    }


def build_record(name: str, prep: Prepared, opts: BenchOptions, tp: ThroughputPhase, fp: FreshnessPhases,
                 flink: Any) -> dict[str, Any]:
    """One line of ``bench/results.jsonl``: the system's figures of this run (the one record
    builder; ``streamrec bench report`` and the plots read these fields)."""
    eps = tp.events_per_s
    own = tp.cores[name]
    record: dict[str, Any] = {
        "name": name,
        "date": results.today(),
        "time": results.now_iso(),
        "catalog": opts.catalog,
        "catalog_size": len(prep.catalog),
        "dim": prep.catalog.dim,
        "events": len(prep.events),
        "users": opts.users,
        "partitions": opts.partitions,
        "parallelism": opts.parallelism if name == "streamrec" else 1,
        "checkpoint_interval_ms": opts.checkpoint_interval_ms if name == "streamrec" else None,
        "startup_s": round(tp.startup_s, 1),
        "warmup_events": len(prep.warm_events),
        "jit_warmup": tp.jit_warmup.as_record() if tp.jit_warmup is not None else None,
        "seconds": round(tp.window.seconds, 2),
        "events_per_s": round(eps, 1),
        "events_per_s_steady": _round(steady_rate(tp.window.timeline)),
        "cores_used": own,
        "cores": tp.cores,
        "cores_by_process": tp.cores_by_process,
        "events_per_s_per_core": round(eps / max(own, 1e-9), 1),
        "events_per_s_per_core_with_stores": round(
            eps / max(own + tp.cores["kafka"] + tp.cores["cassandra"], 1e-9), 1),
        "freshness_ms": results.percentiles(fp.main.latencies_ms),
        "freshness": {**_freshness_record(fp.main), "rate_target": round(fp.rate, 1),
                      "cores_used": fp.cores[name], "cores": fp.cores, "checkpoints": fp.checkpoints},
        "kept_up": fp.main.kept_up(),
        # the maximum the freshness rate is a fraction of: stored while produced live
        "live_max": fp.live_max.as_record() if fp.live_max is not None else None,
        # Cassandra's JIT compiler threads over this system's measured throughput phase:
        # near 0 once warmed up (warmup.py)
        "cassandra_jit_cores": round(tp.cassandra_jit_cores, 3),
        # the system's own JIT compiler threads over the same window (0 for a Python service)
        "jit_cores": round(tp.system_jit_cores, 3),
        "cassandra_warmup": prep.cassandra_warmup.as_record() if prep.cassandra_warmup is not None else None,
        "stored_events": fp.stored,
        "stored_events_expected": fp.want,
        "fresh_lead_in_s": opts.fresh_lead_in,
        "paced_warmup": fp.trickle.as_record() if fp.trickle is not None else None,
        "profiled": opts.profile,
        "blas_threads": opts.blas_threads or None,
        "python_worker_mode": (opts.python_worker_mode or "loopback") if name == "streamrec" else None,
        "machine": prep.machine,
        "note": opts.note,
    }
    if fp.low is not None:
        record["freshness_low_ms"] = results.percentiles(fp.low.latencies_ms)
        record["freshness_low"] = _freshness_record(fp.low)
    if flink is not None:
        record["flink"] = {"vertices": flink.summary(), "checkpoints": tp.checkpoints}
    record.update(opts.extra)
    return record


def measure_system(name: str, prep: Prepared, opts: BenchOptions) -> dict[str, Any]:
    """One system from start to stop: throughput, then freshness; its record. Its keyspace and
    topics are dropped afterwards unless ``keep_data``."""
    from streamrec.connectors.cassandra import connect, drop_keyspace

    config = prep.configs[name]
    system = System(name, config, prep.workdir / f"{name}-{prep.tag}.log", opts.python_worker_mode)
    session = connect(config, config.keyspace)
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
                drop_keyspace(config)
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


def _round(x: Optional[float]) -> Optional[float]:
    return None if x is None else round(x, 1)


def options_dict(opts: BenchOptions) -> dict[str, Any]:
    return asdict(opts)
