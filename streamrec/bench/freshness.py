"""Freshness: events at a steady rate plus probe events for fresh users, each timed from its
produce call until its row is readable; and the paced warm-up before it."""

from __future__ import annotations

import logging
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from streamrec.bench.generator import EventGenerator, GenEvent
from streamrec.bench.load import PACED_LINGER_MS, Pacer, Producer
from streamrec.bench.warmup import QuietDetector, RoundedRecord, compiler_cpu, prepare_event_id_read
from streamrec.config import Config

log = logging.getLogger("streamrec.bench")


@dataclass
class Freshness:
    target_rate: float
    sent: int
    seconds: float
    latencies_ms: list[float]
    probes: int
    missing: int
    started: float = 0.0  # epoch seconds the phase began (its probes follow the lead-in at the probe rate)
    probe_sent: list[float] = field(default_factory=list)  # epoch seconds each probe was sent, in order
    # events the phase had produced when each probe was sent (same order as probe_sent)
    probe_after: list[int] = field(default_factory=list)

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


@dataclass(frozen=True)
class TrickleWarmUp(RoundedRecord):
    seconds: float
    events: int
    compiler_cpu_s: float  # the watched processes' JIT compiler CPU during the warm-up
    quiet: bool  # False: the time limit passed first


def warm_up_trickle(config: Config, gen: EventGenerator, rate: float, pid_sources: Sequence[Callable[[], list[int]]],
                    max_seconds: float, detector: Optional[QuietDetector] = None,
                    look_every: float = 1.0, clock: Callable[[], float] = time.time,
                    sleep: Callable[[float], None] = time.sleep) -> TrickleWarmUp:
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
    pacer = Pacer(producer, config.kafka.events_topic, gen, rate, clock)
    cpu0 = compiler_cpu(pids())
    detector.add(pacer.started, cpu0)
    next_look = pacer.started + look_every
    try:
        while True:
            now = clock()
            if now >= next_look:
                next_look = now + look_every
                detector.add(now, compiler_cpu(pids()))
                if detector.quiet() or now - pacer.started >= max_seconds:
                    break
            pacer.send_due(now)
            sleep(0.005)
        producer.flush()
    finally:
        producer.close()
    return TrickleWarmUp(clock() - pacer.started, pacer.sent, compiler_cpu(pids()) - cpu0, detector.quiet())


def measure_freshness(session: Any, config: Config, gen: EventGenerator, rate: float, seconds: float,
                      probe_rate: float, tag: str, poll_interval: float = 0.02, settle: float = 15.0,
                      backoff: float = 0.05, lead_in: float = 0.0) -> Freshness:
    """Produce ``rate`` events/s for ``lead_in`` + ``seconds`` plus, after the lead-in, probes; time
    each probe until its row is readable."""
    one_q = prepare_event_id_read(session)
    pending: dict[str, tuple[str, float]] = {}  # user -> (event id, produce time)
    due_at: dict[str, float] = {}  # user -> when to read the probe's row next
    order: list[str] = []
    pending_sent: dict[str, float] = {}  # user -> when their probe was sent (kept once seen)
    produced_before: dict[str, int] = {}  # user -> events the phase had produced before their probe
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
    pacer = Pacer(producer, config.kafka.events_topic, gen, rate)
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
                    pending_sent[user] = t_send
                    produced_before[user] = pacer.sent
                    order.append(user)
                producer.send(config.kafka.events_topic, key=user.encode(), value=probe.to_json().encode())
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
    return Freshness(rate, pacer.sent, duration, latencies, probes, probes - len(latencies), started,
                     [pending_sent[u] for u in order if u in seen], [produced_before[u] for u in order if u in seen])


def live_rate(fr: Freshness, min_probes: int = 5) -> Optional[float]:
    """Events/s the system stored while the load was produced live: the slope of "events produced
    before a probe" over "when the probe's row was readable", least squares over the probes that
    were readable before production ended (after it, the system no longer shares the machine with
    the load generator). A system that falls behind gives the rate it sustains; one that keeps up,
    the produced rate (a lower bound of its maximum: the slope is capped there, since a system
    still working off an earlier backlog stores faster than the load for a while). None with fewer
    than ``min_probes`` such probes."""
    end = fr.started + fr.seconds
    points = [(sent + lat / 1000.0, float(n)) for sent, lat, n in zip(fr.probe_sent, fr.latencies_ms, fr.probe_after)
              if sent + lat / 1000.0 <= end]
    if len(points) < min_probes:
        return None
    mx = statistics.fmean(x for x, _ in points)
    my = statistics.fmean(y for _, y in points)
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx <= 0:
        return None
    return min(sum((x - mx) * (y - my) for x, y in points) / sxx, fr.achieved_rate)
