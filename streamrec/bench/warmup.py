"""Warm the bench's Cassandra up before anything is measured.

A freshly started Cassandra spends its first minutes compiling its hot code: on this 2-core machine
its JIT compiler threads took ~0.8 of a core for over a minute of load (~47 s of CPU in all), which
the first system measured had to share the machine with and the second did not. The harness
therefore writes and reads rows of the same shape, through the same writer, as both systems, into a
keyspace of its own until Cassandra's compiler threads have gone quiet (or a time limit passes).
"""

from __future__ import annotations

import collections
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from streamrec.bench.baseline import BaselineModel, OutputRow, model_params
from streamrec.bench.generator import EventGenerator, to_event
from streamrec.config import Config
from streamrec.connectors.cassandra import qualified
from streamrec.model.catalog import Catalog

# HotSpot names its JIT compiler threads "C1 CompilerThread0", "C2 CompilerThread0", ...; the kernel
# keeps the first 15 characters.
COMPILER_THREAD_PREFIXES = ("C1 CompilerThre", "C2 CompilerThre")


def compiler_cpu(pids: Iterable[int], proc: Path = Path("/proc")) -> float:
    """CPU seconds the JIT compiler threads of ``pids`` have used so far (0 for what cannot be read)."""
    from streamrec.bench.procstat import parse_stat

    total = 0.0
    for pid in pids:
        try:
            tids = [p.name for p in (proc / str(pid) / "task").iterdir()]
        except OSError:
            continue
        for tid in tids:
            try:
                stat = (proc / str(pid) / "task" / tid / "stat").read_text()
            except OSError:
                continue
            if stat[stat.find("(") + 1:].startswith(COMPILER_THREAD_PREFIXES):  # the thread's name
                total += parse_stat(stat)[1]
    return total


class QuietDetector:
    """Says when a cumulative CPU counter has grown by less than ``quiet_cores`` x ``window`` over
    the last ``window`` seconds, not before ``min_seconds`` have passed since the first reading."""

    def __init__(self, window: float = 5.0, quiet_cores: float = 0.05, min_seconds: float = 10.0) -> None:
        self.window = window
        self.quiet_cores = quiet_cores
        self.min_seconds = min_seconds
        self._readings: collections.deque[tuple[float, float]] = collections.deque()
        self._first: Optional[float] = None

    def add(self, t: float, cpu: float) -> None:
        if self._first is None:
            self._first = t
        self._readings.append((t, cpu))
        while len(self._readings) > 2 and self._readings[1][0] <= t - self.window:
            self._readings.popleft()

    def rate(self) -> Optional[float]:
        """Cores over the current window, once it spans ``window`` seconds."""
        (t0, c0), (t1, c1) = self._readings[0], self._readings[-1]
        if t1 - t0 < self.window * 0.999:
            return None
        return (c1 - c0) / (t1 - t0)

    def quiet(self) -> bool:
        if self._first is None or self._readings[-1][0] - self._first < self.min_seconds:
            return False
        r = self.rate()
        return r is not None and r < self.quiet_cores


class RoundedRecord:
    """A dataclass's fields for a results record, floats rounded to 0.1."""

    def as_record(self) -> dict[str, Any]:
        fields = dataclasses.asdict(self)  # type: ignore[call-overload]  # the subclasses are dataclasses
        return {k: round(v, 1) if isinstance(v, float) else v for k, v in fields.items()}


@dataclass(frozen=True)
class WarmUp(RoundedRecord):
    seconds: float
    rows: int
    compiler_cpu_s: float  # Cassandra's JIT compiler CPU during the warm-up
    quiet: bool  # False: the time limit passed first


def warm_up_rows(catalog: Catalog, config: Config, n: int = 2000, seed: int = 12345) -> list[OutputRow]:
    """``n`` rows as both systems write them (events + recommendations, 30 candidates)."""
    gen = EventGenerator(catalog.product_ids, max(1, n // 10), seed=seed, id_prefix="w", user_prefix="w")
    return BaselineModel(catalog, model_params(config)).process([to_event(e) for e in gen.batch(n)])


def prepare_event_id_read(session: Any) -> Any:
    """The read of a user's newest event id, as the freshness poller and ``streamrec recs`` do it."""
    return session.prepare(f"SELECT event_id FROM {qualified(session.keyspace, 'recommendations')} WHERE user_id = ?")


def warm_up_cassandra(config: Config, catalog: Catalog, cassandra_pids: Callable[[], list[int]],
                      max_seconds: float = 180.0, detector: Optional[QuietDetector] = None,
                      batch_rows: int = 10, in_flight: int = 16) -> WarmUp:
    """Write and read rows in ``config.cassandra.keyspace`` until Cassandra's JIT is quiet or ``max_seconds`` pass.

    The rows go in unlogged batches of ``batch_rows`` through :class:`RecommendationWriter`, as the
    job's sink sends them; every batch is followed by a read of one row, as the freshness poller and
    ``streamrec recs`` do. Each pass renames the users so that every write makes new partitions.
    """
    from streamrec.connectors.cassandra import RecommendationWriter

    detector = detector or QuietDetector()
    rows = warm_up_rows(catalog, config)
    writer = RecommendationWriter(config.cassandra)
    writer.open()
    session = writer._session  # the writer's session: its statements are prepared there
    read = prepare_event_id_read(session)
    started = time.time()
    cpu0 = compiler_cpu(cassandra_pids())
    detector.add(started, cpu0)
    written = 0
    futures: collections.deque[Any] = collections.deque()
    next_look = started + 1.0
    quiet = False
    try:
        passes = 0
        while not quiet and time.time() - started < max_seconds:
            passes += 1
            for i in range(0, len(rows), batch_rows):
                chunk = [dataclasses.replace(r, user_id=f"{r.user_id}-{passes}") for r in rows[i:i + batch_rows]]
                stmt, values = writer.batch([pair for r in chunk for pair in writer.bound(r)])
                futures.append(session.execute_async(stmt, values))
                futures.append(session.execute_async(read, (chunk[0].user_id,)))
                written += len(chunk)
                while len(futures) > 2 * in_flight:
                    futures.popleft().result()
                now = time.time()
                if now >= next_look:
                    next_look = now + 1.0
                    detector.add(now, compiler_cpu(cassandra_pids()))
                    quiet = detector.quiet()
                    if quiet or now - started >= max_seconds:
                        break
        while futures:
            futures.popleft().result()
    finally:
        writer.close()
    return WarmUp(time.time() - started, written, compiler_cpu(cassandra_pids()) - cpu0, quiet)
