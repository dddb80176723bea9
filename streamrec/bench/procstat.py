"""CPU accounting from /proc: how many cores a group of processes used over a time window.

A group is a set of root pids plus (optionally) all their descendants, found again at every sample
so that processes started later (the JVM of a PyFlink client, its Python workers) are counted.
The sampler keeps the last CPU time seen per pid, so a process that exits between two samples
still counts with what it had used at the previous sample (at most one interval is lost).
"""

from __future__ import annotations

import bisect
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
MACHINE = "machine"  # the series of the whole machine's busy CPU time (every process, also other users')


def parse_stat(text: str) -> tuple[int, float]:
    """(parent pid, utime + stime in seconds) from the text of /proc/<pid>/stat."""
    # The command name (field 2) is in parentheses and may contain spaces and ')'.
    rest = text.rsplit(")", 1)[1].split()
    ppid = int(rest[1])
    utime, stime = int(rest[11]), int(rest[12])
    return ppid, (utime + stime) / CLK_TCK


def read_stat(pid: int) -> Optional[tuple[int, float]]:
    try:
        return parse_stat(Path(f"/proc/{pid}/stat").read_text())
    except (OSError, ValueError, IndexError):
        return None


def machine_busy() -> float:
    """CPU seconds all cores of the machine spent not idle since boot (first line of /proc/stat)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return 0.0
    ticks = [int(x) for x in fields[:8]]  # user nice system idle iowait irq softirq steal
    return (sum(ticks) - ticks[3] - ticks[4]) / CLK_TCK


def thread_cpu(pid: int) -> dict[int, float]:
    """tid -> CPU seconds of every thread of ``pid`` (from /proc/<pid>/task/<tid>/stat)."""
    out: dict[int, float] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            out[int(tid)] = parse_stat(Path(f"/proc/{pid}/task/{tid}/stat").read_text())[1]
        except (OSError, ValueError, IndexError):
            continue
    return out


def process_table() -> dict[int, tuple[int, float]]:
    """pid -> (ppid, cpu seconds) of every visible process."""
    table: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = read_stat(int(entry))
            if st is not None:
                table[int(entry)] = st
    return table


def descendants(table: dict[int, tuple[int, float]], roots: Iterable[int]) -> set[int]:
    """``roots`` and all their descendants that appear in ``table``."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found: set[int] = set()
    todo = [r for r in roots if r in table]
    while todo:
        pid = todo.pop()
        if pid in found:
            continue
        found.add(pid)
        todo.extend(children.get(pid, []))
    return found


@dataclass
class Group:
    """A named set of processes: ``roots()`` gives the root pids now; ``tree`` adds descendants."""

    name: str
    roots: Callable[[], Iterable[int]]
    tree: bool = True
    seen: dict[int, float] = field(default_factory=dict)  # pid -> last cpu seconds seen

    def total(self) -> float:
        return sum(self.seen.values())


class CpuSampler:
    """Samples the CPU seconds of some groups every ``interval`` seconds in a background thread.

    ``cores(name, t0, t1)`` is (cpu seconds used in [t0, t1]) / (t1 - t0), with the cumulative
    CPU time interpolated linearly between samples; times are ``time.time()`` values.
    """

    def __init__(self, groups: list[Group], interval: float = 0.5) -> None:
        self.groups = {g.name: g for g in groups}
        self.interval = interval
        self.times: list[float] = []
        self.series: dict[str, list[float]] = {g.name: [] for g in groups}
        self.series[MACHINE] = []
        self.pid_series: dict[int, tuple[list[float], list[float]]] = {}  # pid -> (times, cpu seconds)
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()

    def sample(self) -> None:
        table = process_table()
        now = time.time()
        with self._lock:
            for g in self.groups.values():
                try:
                    roots = list(g.roots())
                except Exception:  # a group whose roots cannot be found right now counts nothing new
                    roots = []
                pids = descendants(table, roots) if g.tree else {r for r in roots if r in table}
                for pid in pids:
                    g.seen[pid] = max(g.seen.get(pid, 0.0), table[pid][1])
                    self.pid_series.setdefault(pid, ([], []))
                    self.pid_series[pid][0].append(now)
                    self.pid_series[pid][1].append(g.seen[pid])
                self.series[g.name].append(g.total())
            self.series[MACHINE].append(machine_busy())
            self.times.append(now)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def start(self) -> CpuSampler:
        self.sample()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()

    def cpu_at(self, name: str, t: float) -> float:
        with self._lock:
            return interpolate(self.times, self.series[name], t)

    def cores_by_pid(self, name: str, t0: float, t1: float) -> dict[int, float]:
        """Cores each process of group ``name`` used in [t0, t1] (processes seen in the window only)."""
        if t1 <= t0:
            return {}
        out: dict[int, float] = {}
        with self._lock:
            for pid in self.groups[name].seen:
                times, values = self.pid_series.get(pid, ([], []))
                if not times or times[-1] < t0 or times[0] > t1:
                    continue
                out[pid] = (interpolate(times, values, t1) - interpolate(times, values, t0)) / (t1 - t0)
        return out

    def cores(self, name: str, t0: float, t1: float) -> float:
        if t1 <= t0:
            return 0.0
        return (self.cpu_at(name, t1) - self.cpu_at(name, t0)) / (t1 - t0)


def interpolate(times: list[float], values: list[float], t: float) -> float:
    """Linear interpolation of a non-decreasing series at ``t`` (clamped to its ends)."""
    if not times:
        return 0.0
    i = bisect.bisect_left(times, t)
    if i <= 0:
        return values[0]
    if i >= len(times):
        return values[-1]
    t0, t1 = times[i - 1], times[i]
    v0, v1 = values[i - 1], values[i]
    return v0 if t1 == t0 else v0 + (v1 - v0) * (t - t0) / (t1 - t0)
