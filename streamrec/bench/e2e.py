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
   Kafka are quiet (a trickle runs other code than a backlog), then events at a steady rate (by
   default 80% of the rate just measured) plus, after a 5 s lead-in, a few probe events for fresh
   users; a poller reads each probe user's row until it names the probe: produce -> readable,
   p50/p95/p99. Then the same at a fixed 100 events/s. The harness produces with confluent-kafka
   (~90 us of CPU per event; kafka-python took ~510), so the load generator takes little from the
   2 cores.
5. One JSON line per system in ``bench/results.jsonl``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from streamrec import localstack
from streamrec.bench import results
from streamrec.bench.baseline import model_params
from streamrec.bench.generator import EventGenerator, GenEvent, final_recommendation_events, mix_of
from streamrec.bench.procstat import MACHINE, CpuSampler, Group, descendants, process_table, thread_cpu
from streamrec.bench.warmup import (
    QuietDetector,
    RoundedRecord,
    WarmUp,
    compiler_cpu,
    prepare_event_id_read,
    warm_up_cassandra,
)
from streamrec.config import Config
from streamrec.model.catalog import Catalog
from streamrec.runner import BackgroundJob, config_env

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
    fresh_rate: float = 0.0  # events/s of the freshness phase; 0: fresh_fraction x the measured rate
    fresh_fraction: float = 0.8
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


def _restore_env(key: str, value: Optional[str]) -> None:
    if value is None:
        os.environ.pop(key, None)
    else:
        os.environ[key] = value


def _say(msg: str) -> None:
    print(f"==> {msg}", file=sys.stderr, flush=True)


def _sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


# --------------------------------------------------------------------------------------------
# The systems under test
# --------------------------------------------------------------------------------------------


class _Job(BackgroundJob):
    @property
    def pid(self) -> Optional[int]:
        proc = self._proc
        return None if proc is None else proc.pid


class System:
    """The streamrec job (minicluster, the real job code) or the baseline, as one process tree."""

    def __init__(self, name: str, config: Config, log_path: Path, worker_mode: str = "") -> None:
        self.name = name
        self.worker_mode = worker_mode
        self.config = config
        self.log_path = log_path
        self._job: Optional[_Job] = None
        self._proc: Optional[subprocess.Popen[bytes]] = None
        self._log: Any = None
        self.flink_log_dir = log_path.with_suffix(".flink-log")

    def start(self) -> System:
        if self.name == "streamrec":
            # The minicluster's own log (where it says its REST port) in a folder of this run: by
            # default it goes to the venv's pyflink/log, shared by every job started from the venv.
            self.flink_log_dir.mkdir(parents=True, exist_ok=True)
            old = os.environ.get("FLINK_LOG_DIR")
            os.environ["FLINK_LOG_DIR"] = str(self.flink_log_dir)
            if self.worker_mode:
                old_mode = os.environ.get(WORKER_MODE_ENV)
                os.environ[WORKER_MODE_ENV] = self.worker_mode
            try:
                self._job = _Job(self.config, self.log_path)
                self._job.start()
            finally:
                _restore_env("FLINK_LOG_DIR", old)
                if self.worker_mode:
                    _restore_env(WORKER_MODE_ENV, old_mode)
        else:
            mode = "batched" if self.name == "baseline-batched" else "naive"
            self._log = open(self.log_path, "wb")
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "streamrec.bench.baseline", "--mode", mode],
                env=config_env(self.config), stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        return self

    @property
    def pid(self) -> Optional[int]:
        if self._job is not None:
            return self._job.pid
        return None if self._proc is None else self._proc.pid

    def pids(self) -> list[int]:
        pid = self.pid
        return [] if pid is None else [pid]

    def tree(self) -> list[int]:
        return sorted(descendants(process_table(), self.pids()))

    def alive(self) -> bool:
        if self._job is not None:
            return self._job.alive()
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self._job is not None:
            self._job.stop()
            self._job = None
        if self._proc is not None:
            if self._proc.poll() is None:
                try:
                    os.killpg(self._proc.pid, signal.SIGTERM)
                    self._proc.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(self._proc.pid, signal.SIGKILL)
                    self._proc.wait(10)
                except ProcessLookupError:
                    pass
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None


# --------------------------------------------------------------------------------------------
# Producing
# --------------------------------------------------------------------------------------------


class Producer:
    """The harness's load generator: confluent-kafka (librdkafka) behind the three calls it needs.

    The harness shares the 2 cores with the system it measures. kafka-python spent ~510 us of CPU
    per event at 700 events/s (0.36 cores, plus the poller), confluent-kafka ~90 us, so the freshness
    phases no longer take a third of a core away from the system under test (docs/benchmark-history.md).
    A message that cannot be delivered fails :meth:`flush`: the counts checked afterwards assume
    every produced event reached the topic.
    """

    def __init__(self, config: Config, linger_ms: int) -> None:
        from confluent_kafka import Producer as _Kafka

        self._kafka = _Kafka({"bootstrap.servers": config.kafka_bootstrap, "linger.ms": linger_ms, "acks": 1,
                              "client.id": "streamrec-bench"})
        self._errors: list[str] = []

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is not None:
            self._errors.append(str(err))

    def send(self, topic: str, key: bytes, value: bytes) -> None:
        while True:
            try:
                self._kafka.produce(topic, value=value, key=key, on_delivery=self._delivered)
                break
            except BufferError:  # the local queue is full: let librdkafka send some first
                self._kafka.poll(0.05)
        self._kafka.poll(0)

    def flush(self, timeout: float = 120.0) -> None:
        left = self._kafka.flush(timeout)
        if left or self._errors:
            raise RuntimeError(f"{left} message(s) not sent in {timeout:.0f} s; delivery errors: {self._errors[:3]}")

    def close(self) -> None:
        self._kafka.flush(10.0)


# The paced phases' producer batches for up to 5 ms (librdkafka's default), as a shop's services would.
PACED_LINGER_MS = 5


def preload(configs: list[Config], events: list[GenEvent]) -> float:
    """Write ``events`` to the events topic of every config (keyed by user); return seconds spent."""
    started = time.monotonic()
    payloads = [(e.user_id.encode(), e.to_json().encode()) for e in events]
    producer = Producer(configs[0], linger_ms=50)
    try:
        for config in configs:
            for key, value in payloads:
                producer.send(config.events_topic, key=key, value=value)
        producer.flush()
    finally:
        producer.close()
    return time.monotonic() - started


def _delete_topics(config: Config) -> None:
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=config.kafka_bootstrap, client_id="streamrec-bench")
    try:
        admin.delete_topics([config.events_topic, config.dlq_topic, config.products_topic])
    except Exception as exc:  # leftovers are harmless: the next run uses new names
        log.warning("could not delete topics of %s: %s", config.events_topic, exc)
    finally:
        admin.close()


# --------------------------------------------------------------------------------------------
# Watching Cassandra
# --------------------------------------------------------------------------------------------


@dataclass
class Throughput:
    t_start: float  # system started (time.time())
    t_first: float  # first recommendation row readable
    t_last: float  # every user's row names the user's last event
    timeline: list[tuple[float, int]]  # (time, highest event sequence number seen in a row)

    @property
    def seconds(self) -> float:
        return self.t_last - self.t_first


def _event_seq(event_id: str) -> int:
    digits = event_id.lstrip("abcdefghijklmnopqrstuvwxyz")
    return int(digits) if digits.isdigit() else -1


def watch_throughput(session: Any, system: System, expected: dict[str, str], t_start: float, timeout: float,
                     on_tick: Optional[Callable[[], None]] = None, first_users: Sequence[str] = ()) -> Throughput:
    """Poll until every user in ``expected`` has a row naming their final event.

    The phase starts with the first row of one of ``first_users`` (the users of the phase's first
    events; default: any of ``expected``), so rows left by an earlier phase (the warm-up) do not count."""
    one_q = prepare_event_id_read(session)
    watch_first = list(first_users or expected)[:16]
    t_first: Optional[float] = None
    while t_first is None:
        t0 = time.time()
        futures = [session.execute_async(one_q, (u,)) for u in watch_first]
        if any(f.result().one() is not None for f in futures):
            t_first = (t0 + time.time()) / 2
            break
        if not system.alive():
            raise RuntimeError(f"{system.name} stopped before writing anything:\n{system.log_tail()}")
        if time.time() - t_start > timeout:
            raise TimeoutError(f"{system.name} wrote nothing in {timeout:.0f} s:\n{system.log_tail()}")
        time.sleep(0.05)
    _say(f"{system.name}: first row after {t_first - t_start:.1f} s (start-up)")
    pending = dict(expected)
    timeline: list[tuple[float, int]] = []
    last_progress = time.time()
    last_report = 0.0
    while pending:
        t0 = time.time()
        before = len(pending)
        best = -1
        if len(pending) > 300:
            for row in session.execute("SELECT user_id, event_id FROM recommendations", timeout=60):
                if row.user_id not in expected:  # another phase's user (the warm-up): other sequence numbers
                    continue
                best = max(best, _event_seq(row.event_id or ""))
                if pending.get(row.user_id) == row.event_id:
                    del pending[row.user_id]
            interval = 1.0
        else:
            futures = [(u, session.execute_async(one_q, (u,))) for u in pending]
            for u, f in futures:
                row = f.result().one()
                if row is not None:
                    best = max(best, _event_seq(row.event_id or ""))
                    if row.event_id == pending[u]:
                        del pending[u]
            interval = 0.1
        now = time.time()
        if best >= 0:
            timeline.append((now, best))
        if len(pending) < before:
            last_progress = now
        if now - last_report > 5:
            _say(f"{system.name}: {len(expected) - len(pending)}/{len(expected)} users complete, "
                 f"event #{best} seen, {now - t_first:.0f} s")
            last_report = now
        if on_tick is not None:
            on_tick()
        if not pending:
            return Throughput(t_start, t_first, now, timeline)
        if not system.alive():
            raise RuntimeError(f"{system.name} stopped with {len(pending)} users incomplete:\n{system.log_tail()}")
        if now - last_progress > timeout:
            raise TimeoutError(f"{system.name}: no progress for {timeout:.0f} s, {len(pending)} users incomplete")
        time.sleep(max(0.0, interval - (time.time() - t0)))
    raise AssertionError("unreachable")


def first_users(events: Sequence[GenEvent], expected: dict[str, str], n: int = 16) -> list[str]:
    """The users of a phase's first events that get a row: whichever partition the system reads
    first, one of them has the phase's first row. A few users suffice, and watching them costs the
    start-up a read each per poll."""
    return list(dict.fromkeys(e.user_id for e in events if e.user_id in expected))[:n]


def steady_rate(timeline: list[tuple[float, int]], lo: float = 0.2, hi: float = 0.8) -> Optional[float]:
    """Events/s between the times the stream's sequence numbers crossed ``lo`` and ``hi`` of the maximum."""
    if len(timeline) < 3:
        return None
    top = timeline[-1][1]
    a = next(((t, s) for t, s in timeline if s >= lo * top), None)
    b = next(((t, s) for t, s in timeline if s >= hi * top), None)
    if a is None or b is None or b[0] <= a[0]:
        return None
    return (b[1] - a[1]) / (b[0] - a[0])


@dataclass
class Freshness:
    target_rate: float
    sent: int
    seconds: float
    latencies_ms: list[float]
    probes: int
    missing: int

    @property
    def achieved_rate(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0

    def kept_up(self) -> bool:
        """Every probe seen, and latency did not grow across the phase (it would if the input piled up)."""
        lat = self.latencies_ms
        if self.missing or len(lat) < 8:
            return False
        q = max(1, len(lat) // 4)
        first, last = statistics.median(lat[:q]), statistics.median(lat[-q:])
        return last <= max(1000.0, 2.0 * first)


def next_poll(sent: float, now: float, poll_interval: float, backoff: float) -> float:
    """When to read a probe's row again: every ``poll_interval`` while it is young, then after
    ``backoff`` x its age, so a latency is overstated by at most that fraction. A probe that waits
    seconds is not read 50 times a second: on a small machine those reads took CPU from the system
    being measured just when it lagged, and made it lag more."""
    return now + max(poll_interval, backoff * (now - sent))


class Pacer:
    """Sends ``gen``'s events to ``topic`` at ``rate`` per second from its creation on, each stamped
    with the wall clock when sent: the load of the paced phases."""

    def __init__(self, producer: Producer, topic: str, gen: EventGenerator, rate: float) -> None:
        self._producer, self._topic, self._gen, self._rate = producer, topic, gen, rate
        self._buffer: list[GenEvent] = []
        self.started = time.time()
        self.sent = 0

    def send_due(self, now: float) -> None:
        """Send what is due by ``now``."""
        for _ in range(int(self._rate * (now - self.started)) - self.sent):
            if not self._buffer:
                self._buffer = self._gen.batch(1024)[::-1]
            e = self._buffer.pop()
            self._producer.send(self._topic, key=e.user_id.encode(),
                                value=e.to_json(ts=int(time.time() * 1000)).encode())
            self.sent += 1


@dataclass(frozen=True)
class TrickleWarmUp(RoundedRecord):
    seconds: float
    events: int
    compiler_cpu_s: float  # the watched processes' JIT compiler CPU during the warm-up
    quiet: bool  # False: the time limit passed first


def warm_up_trickle(config: Config, gen: EventGenerator, rate: float, pid_sources: Sequence[Callable[[], list[int]]],
                    max_seconds: float, detector: Optional[QuietDetector] = None,
                    look_every: float = 1.0) -> TrickleWarmUp:
    """Produce ``rate`` events/s until the JIT compilers of the processes ``pid_sources`` name are
    quiet or ``max_seconds`` pass.

    A backlog and a trickle run different code: after the throughput phase, the system's JVM and the
    Kafka broker compiled the trickle's paths for the first tens of seconds of a paced phase (0.2-0.3
    cores each on this machine), which the first system measured paid for and the next did not. A
    rate the system keeps up with while compiling (half the phase's) runs the same paths."""
    detector = detector or QuietDetector()

    def pids() -> list[int]:
        return [pid for source in pid_sources for pid in source()]

    producer = Producer(config, linger_ms=PACED_LINGER_MS)
    pacer = Pacer(producer, config.events_topic, gen, rate)
    cpu0 = compiler_cpu(pids())
    detector.add(pacer.started, cpu0)
    next_look = pacer.started + look_every
    try:
        while True:
            now = time.time()
            if now >= next_look:
                next_look = now + look_every
                detector.add(now, compiler_cpu(pids()))
                if detector.quiet() or now - pacer.started >= max_seconds:
                    break
            pacer.send_due(now)
            time.sleep(0.005)
        producer.flush()
    finally:
        producer.close()
    return TrickleWarmUp(time.time() - pacer.started, pacer.sent, compiler_cpu(pids()) - cpu0, detector.quiet())


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


def measure_freshness(session: Any, config: Config, gen: EventGenerator, rate: float, seconds: float,
                      probe_rate: float, tag: str, poll_interval: float = 0.02, settle: float = 15.0,
                      backoff: float = 0.05, lead_in: float = 0.0) -> Freshness:
    """Produce ``rate`` events/s for ``lead_in`` + ``seconds`` plus, after the lead-in, probes; time
    each probe until its row is readable."""
    one_q = prepare_event_id_read(session)
    pending: dict[str, tuple[str, float]] = {}  # user -> (event id, produce time)
    due_at: dict[str, float] = {}  # user -> when to read the probe's row next
    order: list[str] = []
    seen: dict[str, float] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set() or pending:
            t0 = time.time()
            with lock:
                todo = [(u, p) for u, p in pending.items() if due_at.get(u, 0.0) <= t0]
            for u, (_, sent) in todo:
                due_at[u] = next_poll(sent, t0, poll_interval, backoff)
            futures = [(u, eid, sent, session.execute_async(one_q, (u,))) for u, (eid, sent) in todo]
            for u, eid, sent, f in futures:
                try:
                    row = f.result().one()
                except Exception:
                    continue
                if row is not None and row.event_id == eid:
                    done = time.time()
                    with lock:
                        pending.pop(u, None)
                        seen[u] = (done - sent) * 1000.0
            if stop.is_set() and time.time() - stop_time[0] > settle:
                return
            time.sleep(max(0.0, poll_interval - (time.time() - t0)))

    stop_time = [0.0]
    poller = threading.Thread(target=poll, name="freshness-poller", daemon=True)
    poller.start()
    producer = Producer(config, linger_ms=PACED_LINGER_MS)
    probe_products = gen.popular_products(max(1, int(probe_rate * seconds) + 1))
    probes = 0
    pacer = Pacer(producer, config.events_topic, gen, rate)
    started = pacer.started
    try:
        next_probe = started + lead_in
        while True:
            now = time.time()
            if now - started >= lead_in + seconds:
                break
            pacer.send_due(now)
            if now >= next_probe and probes < len(probe_products):
                user = f"probe-{tag}-{probes}"
                eid = f"probe-{tag}-{probes}"
                t_send = time.time()
                probe = GenEvent(eid, user, int(t_send * 1000), "view", probe_products[probes])
                with lock:
                    pending[user] = (eid, t_send)
                    order.append(user)
                producer.send(config.events_topic, key=user.encode(), value=probe.to_json().encode())
                probes += 1
                next_probe += 1.0 / probe_rate
            time.sleep(0.005)
        producer.flush()
    finally:
        producer.close()
        stop_time[0] = time.time()
        stop.set()
        poller.join(settle + 30)
    duration = stop_time[0] - started
    latencies = [seen[u] for u in order if u in seen]
    return Freshness(rate, pacer.sent, duration, latencies, probes, probes - len(latencies))


# --------------------------------------------------------------------------------------------
# Profiling
# --------------------------------------------------------------------------------------------


def process_kind(pid: int) -> str:
    """A short name for a process of a system's tree (what its CPU is reported under)."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "other"
    exe = cmd.split(" ", 1)[0]
    if exe.endswith("java"):
        return "jvm"
    if "beam_boot" in cmd or "fn_execution" in cmd:
        return "python-worker"
    if "streamrec.jobs.job" in cmd:
        return "pyflink-client"  # also the Python worker: local jobs run their operators in loopback mode
    if "streamrec.bench.baseline" in cmd:
        return "baseline"
    if exe.endswith("sh"):
        return "shell"
    return "other"


def python_workers(system: System) -> list[int]:
    """The Python processes of the system's tree that do the work (PyFlink workers, or the baseline)."""
    pids = system.tree()
    if system.name != "streamrec":
        return pids[:1]
    # On a local minicluster PyFlink runs the Python operators in "loopback" mode: inside the client
    # process that submitted the job, so that process is profiled too.
    return [pid for pid in pids if process_kind(pid) in ("python-worker", "pyflink-client")]


def start_profiles(system: System, seconds: float, out_dir: Path) -> list[subprocess.Popen[bytes]]:
    """``py-spy record`` per worker: collapsed stacks per thread, waits included (wall-clock time);
    ``--nonblocking``: the process is never paused.

    ``streamrec bench profile FILE`` summarises a recording; ``flamegraph.pl`` or speedscope draw it.
    """
    py_spy = Path(sys.executable).parent / "py-spy"
    if not py_spy.exists():
        _say("py-spy not installed (pip install py-spy): no profile")
        return []
    procs = []
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    jcmd = localstack.java_home() / "bin" / "jcmd"
    for pid in system.tree():
        if process_kind(pid) == "jvm" and jcmd.exists():
            # Java Flight Recorder (built into the JDK): sampled Java stacks of the minicluster's JVM.
            jfr = out_dir / f"jfr-{system.name}-{stamp}-{pid}.jfr"
            _say(f"{system.name}: JFR recording of JVM pid {pid} for {seconds:.0f} s -> {jfr}")
            try:
                done = subprocess.run([str(jcmd), str(pid), "JFR.start", "name=streamrec-bench", "settings=profile",
                                       f"duration={int(seconds)}s", f"filename={jfr}"],
                                      capture_output=True, text=True, timeout=60, check=False)
                if done.returncode != 0 or "Started recording" not in done.stdout:
                    _say(f"JFR did not start: {(done.stdout + done.stderr).strip()[-300:]}")
            except (OSError, subprocess.TimeoutExpired) as exc:
                _say(f"JFR did not start: {exc}")
    for pid in python_workers(system):
        out = out_dir / f"pyspy-{system.name}-{stamp}-{pid}.txt"
        _say(f"{system.name}: py-spy record of pid {pid} for {seconds:.0f} s -> {out}")
        procs.append(subprocess.Popen(
            [str(py_spy), "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "100",
             "--nonblocking", "--threads", "--idle", "--format", "raw", "--output", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return procs


class _Observer:
    """What the throughput watcher does on every poll: names the system's processes, samples Flink's
    REST metrics (minicluster only), starts py-spy once the system is writing."""

    def __init__(self, system: System, opts: BenchOptions) -> None:
        self.system = system
        self.opts = opts
        self.labels: dict[int, str] = {}
        self.flink: Any = None
        self.profiles: list[subprocess.Popen[bytes]] = []
        self._last_flink = 0.0
        self._threads_t0 = self._threads_t1 = 0.0
        self._threads_before: dict[int, dict[int, float]] = {}
        self._threads_after: dict[int, dict[int, float]] = {}

    def tick(self) -> None:
        system = self.system
        now = time.time()
        for pid in system.tree():
            if pid not in self.labels:
                self.labels[pid] = process_kind(pid)
        if system.name == "streamrec" and now - self._last_flink > 3:
            self._last_flink = now
            try:
                if self.flink is None:
                    from streamrec.bench.flinkrest import FlinkMetrics, find_rest

                    rest = find_rest(system.flink_log_dir)
                    self.flink = FlinkMetrics(rest) if rest else None
                if self.flink is not None:
                    self.flink.sample()
            except Exception as exc:
                log.debug("flink metrics: %s", exc)
        if self.opts.profile and not self.profiles:
            self.profiles = start_profiles(system, self.opts.profile_seconds, results.bench_dir() / "profiles")
            self._threads_t0 = time.time()
            self._threads_before = {pid: thread_cpu(pid) for pid in python_workers(system)}
        elif self.profiles and not self._threads_after and time.time() - self._threads_t0 >= self.opts.profile_seconds:
            self._threads_t1 = time.time()
            self._threads_after = {pid: thread_cpu(pid) for pid in self._threads_before}

    def wait_profiles(self, timeout: float) -> None:
        for p in self.profiles:
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
        if self._threads_after:
            # CPU per thread over the recording: joins the py-spy thread ids (`streamrec bench profile`).
            seconds = self._threads_t1 - self._threads_t0
            for pid, before in self._threads_before.items():
                after = self._threads_after.get(pid, {})
                cores = {str(tid): round((after[tid] - before.get(tid, 0.0)) / seconds, 4)
                         for tid in after if after[tid] - before.get(tid, 0.0) > 0}
                out = results.bench_dir() / "profiles" / f"threads-{self.system.name}-{pid}.json"
                out.write_text(json.dumps({"pid": pid, "seconds": round(seconds, 1), "cores_by_tid": cores},
                                          indent=1))


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


def run(opts: BenchOptions) -> list[dict[str, Any]]:
    """The whole benchmark; returns the records it appended to the results file."""
    from streamrec.connectors.cassandra import connect, drop_keyspace, ensure_schema
    from streamrec.connectors.kafka import ensure_topics

    unknown = [s for s in opts.systems if s not in SYSTEMS]
    if unknown:
        raise ValueError(f"unknown system(s) {unknown}; expected some of {SYSTEMS}")
    old_term = signal.signal(signal.SIGTERM, _sigterm)
    old_env = {k: os.environ.get(k) for k in BLAS_ENV}
    if opts.blas_threads > 0:
        os.environ.update({k: str(opts.blas_threads) for k in BLAS_ENV})
    profile = localstack.PROFILES["bench"]
    results_path = Path(opts.results_path) if opts.results_path else results.bench_dir() / "results.jsonl"
    workdir = localstack.run_dir(profile) / "work"
    workdir.mkdir(parents=True, exist_ok=True)
    machine = results.machine()
    artifacts = localstack.fetch()
    stops: list[Callable[[], None]] = []  # services this run started
    drops: list[Callable[[], None]] = []  # data this run made outside the systems' own keyspaces
    records: list[dict[str, Any]] = []
    system: Optional[System] = None
    try:
        running = localstack.is_running(profile)
        if not running["kafka"]:
            _say(f"starting Kafka on {profile.kafka_bootstrap} (bench profile)")
            localstack.start_kafka(profile)
            stops.append(lambda: localstack.stop_kafka(profile))
        if not running["cassandra"]:
            _say(f"starting Cassandra on 127.0.0.1:{profile.cassandra_port} (bench profile)")
            localstack.start_cassandra(profile)
            stops.append(lambda: localstack.stop_cassandra(profile))
        status = localstack.status(profile)
        kafka_pids, cassandra_pids = status["kafka"].pids, status["cassandra"].pids

        catalog, catalog_path = _catalog(opts, workdir)
        _say(f"catalog: {len(catalog)} products x {catalog.dim} ({opts.catalog}) -> {catalog_path}")
        start_ts = int(time.time() * 1000) - opts.events - 3_600_000  # all in the past of the paced phase
        gen = EventGenerator(catalog.product_ids, opts.users, seed=opts.seed, start_ts=start_ts)
        events = gen.batch(opts.events)
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
            _say(f"{len(warm_events)} warm-up events pre-loaded into {len(configs)} topic(s) in {secs:.1f} s")
        _say(f"{len(events)} events of {opts.users} users ({len(expected)} with recommendations) to measure; mix "
             f"{ {k: round(v, 3) for k, v in mix_of(events).items()} }")
        warm: Optional[WarmUp] = None
        if opts.warmup_seconds > 0:
            warm_config = base.replace(keyspace=f"bench_warmup_{tag}")
            ensure_schema(warm_config)
            if not opts.keep_data:  # not a service: dropped also with --keep-services
                drops.append(lambda: drop_keyspace(warm_config))
            _say(f"warming Cassandra up (until its JIT compiler is quiet, at most {opts.warmup_seconds:.0f} s)")
            warm = warm_up_cassandra(warm_config, catalog, lambda: cassandra_pids, opts.warmup_seconds)
            _say(f"Cassandra warm-up: {warm.rows} rows in {warm.seconds:.0f} s, its JIT used "
                 f"{warm.compiler_cpu_s:.1f} s of CPU; {'quiet' if warm.quiet else 'NOT quiet yet'}")

        for name in opts.systems:
            config = configs[name]
            system = System(name, config, workdir / f"{name}-{tag}.log", opts.python_worker_mode)
            session = connect(config, config.keyspace)
            sampler = CpuSampler([
                Group(name, system.pids),
                Group("kafka", lambda: kafka_pids),
                Group("cassandra", lambda: cassandra_pids),
                Group("harness", lambda: [os.getpid()], tree=False),
            ]).start()
            observer = _Observer(system, opts)
            try:
                _say(f"{name}: starting")
                t_start = time.time()
                system.start()
                jit_warm: Optional[JitWarmUp] = None
                if warm_events:
                    wt = watch_throughput(session, system, warm_expected, t_start, opts.timeout,
                                          first_users=first_users(warm_events, warm_expected))
                    _say(f"{name}: warm-up of {len(warm_events)} events done in {wt.seconds:.1f} s "
                         f"({len(warm_events) / max(wt.seconds, 1e-9):.0f} events/s)")
                    jit_warm = warm_up_jit(session, system, config, catalog, opts, warm_start_ts, observer.tick)
                    _say(f"{name}: JIT warm-up: {jit_warm.rounds} more round(s), {jit_warm.events} events in "
                         f"{jit_warm.seconds:.0f} s, JIT {jit_warm.compiler_cpu_s:.1f} s of CPU; "
                         f"{'quiet' if jit_warm.quiet else 'NOT quiet yet'}")
                t_main = time.time()
                jit0 = compiler_cpu(cassandra_pids)
                job_jit0 = compiler_cpu(system.tree())
                secs = preload([config], events)
                _say(f"{name}: {len(events)} events produced in {secs:.1f} s")
                tp = watch_throughput(session, system, expected, t_main, opts.timeout, on_tick=observer.tick,
                                      first_users=first_users(events, expected))
                startup_s = (wt.t_first if warm_events else tp.t_first) - t_start
                window = max(time.time() - t_main, 1e-9)
                cassandra_jit_cores = (compiler_cpu(cassandra_pids) - jit0) / window
                system_jit_cores = (compiler_cpu(system.tree()) - job_jit0) / window
                observer.wait_profiles(opts.profile_seconds + 30)
                flink = observer.flink
                eps = len(events) / tp.seconds
                cores = {g: round(sampler.cores(g, tp.t_first, tp.t_last), 3)
                         for g in (name, "kafka", "cassandra", "harness", MACHINE)}
                by_kind: dict[str, float] = {}
                for pid, c in sampler.cores_by_pid(name, tp.t_first, tp.t_last).items():
                    kind = observer.labels.get(pid, "other")
                    by_kind[kind] = round(by_kind.get(kind, 0.0) + c, 3)
                cores["others"] = round(cores[MACHINE] - sum(cores[g] for g in (name, "kafka", "cassandra",
                                                                                    "harness")), 3)
                _say(f"{name}: {len(events)} events in {tp.seconds:.1f} s = {eps:.0f} events/s on "
                     f"{cores[name]:.2f} cores ({eps / max(cores[name], 1e-9):.0f} events/s per core); cores {cores}")
                checkpoints = flink.checkpoints() if flink is not None else {}

                rate = opts.fresh_rate or opts.fresh_fraction * eps
                produced = len(warm_events) + len(events) + (jit_warm.events if jit_warm else 0)
                trickle: Optional[TrickleWarmUp] = None
                if opts.trickle_warmup_seconds > 0:
                    _say(f"{name}: warming the paced path up at {rate / 2:.0f} events/s (until the JIT "
                         f"compilers of {name} and Kafka are quiet, at most {opts.trickle_warmup_seconds:.0f} s)")
                    trickle_gen = EventGenerator(catalog.product_ids, opts.users, seed=opts.seed + 3,
                                                 id_prefix="t", user_prefix="w")
                    trickle = warm_up_trickle(config, trickle_gen, rate / 2, [system.tree, lambda: kafka_pids],
                                              opts.trickle_warmup_seconds)
                    produced += trickle.events
                    _stored_events(session, produced, system, timeout=180)
                    _say(f"{name}: paced warm-up: {trickle.events} events in {trickle.seconds:.0f} s, JIT "
                         f"{trickle.compiler_cpu_s:.1f} s of CPU; {'quiet' if trickle.quiet else 'NOT quiet yet'}")
                _say(f"{name}: freshness at {rate:.0f} events/s for {opts.fresh_seconds:.0f} s "
                     f"({opts.probe_rate:g} probes/s)")
                fresh_gen = EventGenerator(catalog.product_ids, opts.users, seed=opts.seed + 1, id_prefix="f")
                t_fresh = time.time()
                fr = measure_freshness(session, config, fresh_gen, rate, opts.fresh_seconds, opts.probe_rate,
                                       f"{tag}-{name}", lead_in=opts.fresh_lead_in)
                # every group's CPU over the phase: here the harness produces live and Kafka takes the
                # records in, which a preloaded throughput phase does not pay for
                fresh_by_group = {g: round(sampler.cores(g, t_fresh, t_fresh + fr.seconds), 3)
                                  for g in (name, "kafka", "cassandra", "harness", MACHINE)}
                fresh_by_group["others"] = round(fresh_by_group[MACHINE] - sum(
                    fresh_by_group[g] for g in (name, "kafka", "cassandra", "harness")), 3)
                fresh_cores = fresh_by_group[name]
                low: Optional[Freshness] = None
                if opts.fresh_low_rate > 0:
                    # the fixed-rate phase measures the latency floor: start it once the previous
                    # phase is stored, not while the system still works off a backlog
                    _stored_events(session, produced + fr.sent + fr.probes, system, timeout=180)
                    _say(f"{name}: freshness at a fixed {opts.fresh_low_rate:.0f} events/s for "
                         f"{opts.fresh_seconds:.0f} s")
                    low = measure_freshness(session, config, fresh_gen, opts.fresh_low_rate, opts.fresh_seconds,
                                            opts.probe_rate, f"{tag}-{name}-low", lead_in=opts.fresh_lead_in)
                    _say(f"{name}: freshness at {opts.fresh_low_rate:.0f} events/s: "
                         f"{results.percentiles(low.latencies_ms)} ms")
                want = produced + fr.sent + fr.probes + (low.sent + low.probes if low else 0)
                stored = _stored_events(session, want, system)
                fresh_pct = results.percentiles(fr.latencies_ms)
                log.debug("%s: probe latencies in send order (ms): %s", name, [round(x) for x in fr.latencies_ms])
                _say(f"{name}: freshness {fresh_pct} ms over {len(fr.latencies_ms)}/{fr.probes} probes at "
                     f"{fr.achieved_rate:.0f} events/s; kept up: {fr.kept_up()}")
                record = {
                    "name": name,
                    "date": results.today(),
                    "time": results.now_iso(),
                    "catalog": opts.catalog,
                    "catalog_size": len(catalog),
                    "dim": catalog.dim,
                    "events": len(events),
                    "users": opts.users,
                    "partitions": opts.partitions,
                    "parallelism": opts.parallelism if name == "streamrec" else 1,
                    "checkpoint_interval_ms": opts.checkpoint_interval_ms if name == "streamrec" else None,
                    "startup_s": round(startup_s, 1),
                    "warmup_events": len(warm_events),
                    "jit_warmup": jit_warm.as_record() if jit_warm is not None else None,
                    "seconds": round(tp.seconds, 2),
                    "events_per_s": round(eps, 1),
                    "events_per_s_steady": _round(steady_rate(tp.timeline)),
                    "cores_used": cores[name],
                    "cores": cores,
                    "cores_by_process": by_kind,
                    "events_per_s_per_core": round(eps / max(cores[name], 1e-9), 1),
                    "events_per_s_per_core_with_stores": round(
                        eps / max(cores[name] + cores["kafka"] + cores["cassandra"], 1e-9), 1),
                    "freshness_ms": fresh_pct,
                    "freshness": {
                        "rate_target": round(rate, 1), "rate_achieved": round(fr.achieved_rate, 1),
                        "seconds": round(fr.seconds, 1), "probes": fr.probes, "missing": fr.missing,
                        "max_ms": round(max(fr.latencies_ms), 1) if fr.latencies_ms else None,
                        "cores_used": fresh_cores,
                        "cores": fresh_by_group,
                        "latencies_ms": [round(x) for x in fr.latencies_ms],  # probes in send order
                    },
                    "kept_up": fr.kept_up(),
                    # Cassandra's JIT compiler threads over this system's measured throughput phase:
                    # near 0 once warmed up (warmup.py)
                    "cassandra_jit_cores": round(cassandra_jit_cores, 3),
                    # the system's own JIT compiler threads over the same window (0 for a Python service)
                    "jit_cores": round(system_jit_cores, 3),
                    "cassandra_warmup": warm.as_record() if warm is not None else None,
                    "stored_events": stored,
                    "stored_events_expected": want,
                    "fresh_lead_in_s": opts.fresh_lead_in,
                    "paced_warmup": trickle.as_record() if trickle is not None else None,
                    "profiled": opts.profile,
                    "blas_threads": opts.blas_threads or None,
                    "python_worker_mode": (opts.python_worker_mode or "loopback") if name == "streamrec" else None,
                    "machine": machine,
                    "note": opts.note,
                }
                if low is not None:
                    record["freshness_low_ms"] = results.percentiles(low.latencies_ms)
                    record["freshness_low"] = {
                        "rate_target": low.target_rate, "rate_achieved": round(low.achieved_rate, 1),
                        "probes": low.probes, "missing": low.missing, "kept_up": low.kept_up(),
                        "max_ms": round(max(low.latencies_ms), 1) if low.latencies_ms else None,
                    }
                if flink is not None:
                    record["flink"] = {"vertices": flink.summary(), "checkpoints": checkpoints}
                record.update(opts.extra)
                results.append(results_path, record)
                records.append(record)
            finally:
                sampler.stop()
                system.stop()
                system = None
                session.cluster.shutdown()
                if not opts.keep_data:
                    try:
                        drop_keyspace(config)
                        _delete_topics(config)
                    except Exception as exc:
                        log.warning("cleanup of %s failed: %s", name, exc)
        _say(f"results appended to {results_path}")
        return records
    except KeyboardInterrupt:
        _say("interrupted: cleaning up")
        raise SystemExit(130) from None
    finally:
        if system is not None:
            system.stop()
        for drop in drops:
            try:
                drop()
            except Exception as exc:
                log.warning("cleanup failed: %s", exc)
        if opts.keep_services:
            stops.clear()
        for stop in reversed(stops):
            stop()
        signal.signal(signal.SIGTERM, old_term)
        for k, v in old_env.items():
            _restore_env(k, v)


def _stored_events(session: Any, want: int, system: System, timeout: float = 60.0) -> int:
    """Rows in `events` once the system has stored everything produced (or after ``timeout``)."""
    deadline = time.time() + timeout
    while True:
        n = int(session.execute("SELECT COUNT(*) FROM events", timeout=120).one()[0])
        if n >= want or time.time() > deadline or not system.alive():
            return n
        time.sleep(2)


def _round(x: Optional[float]) -> Optional[float]:
    return None if x is None else round(x, 1)


def options_dict(opts: BenchOptions) -> dict[str, Any]:
    return asdict(opts)
