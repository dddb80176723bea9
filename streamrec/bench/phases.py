"""The measured phases of one system in `streamrec bench`: the JIT warm-up rounds, the throughput
phase (a backlog) and the freshness phases (paced, with live load); each returns what it measured
and streamrec.bench.record turns it into the result line."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional

from streamrec.bench import results
from streamrec.bench.baseline import model_params
from streamrec.bench.freshness import Freshness, TrickleWarmUp, live_rate, measure_freshness, warm_up_trickle
from streamrec.bench.generator import EventGenerator, final_recommendation_events
from streamrec.bench.load import preload
from streamrec.bench.observe import Observer
from streamrec.bench.procstat import MACHINE, CpuSampler
from streamrec.bench.systems import System, say
from streamrec.bench.warmup import (
    QuietDetector,
    RoundedRecord,
    compiler_cpu,
)
from streamrec.bench.watch import Throughput, first_users, stored_events, watch_throughput
from streamrec.config import Config
from streamrec.model.catalog import Catalog

if TYPE_CHECKING:
    from streamrec.bench.e2e import BenchOptions
    from streamrec.bench.prepare import Prepared

log = logging.getLogger("streamrec.bench")


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


def _round(x: Optional[float]) -> Optional[float]:
    return None if x is None else round(x, 1)
