"""Summaries of py-spy recordings (``record --format raw [--threads --idle]``).

A raw recording has one ``frame;frame;... count`` line per distinct stack, outermost frame first;
with ``--threads`` the first frame names the thread. With ``--idle`` waiting stacks are recorded
too, so the samples of one thread are its wall-clock time: the summary of the thread that runs the
bundles (the one with ``process_bundle`` on its stack, or the busiest) says how that time splits
between computing and waiting, and on what.

``self``: samples where the function is the innermost frame; ``total``: samples where it is anywhere
on the stack (counted once per stack). A *category* is decided by the innermost frame that matches
one of its substrings; a stack whose innermost frame is a wait primitive counts as waiting for that
category ("wait: Cassandra writes" = the thread blocked on a write's acknowledgement).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

# (category, substrings of a frame "function (path/file.py:line)"); the innermost matching frame wins.
CATEGORIES: Sequence[tuple[str, Sequence[str]]] = (
    ("top-k (numpy)", ("top_k_batch", "recommend_batch")),
    ("update rule", ("update_user",)),
    ("parse/validate", ("parse_event",)),
    ("Cassandra writes", ("cassandra/", "cassandra.py", "RecommendationWriter", "_write_concurrently")),
    ("keyed state (pickle, state backend)", ("pickle", "state_impl", "RemoteKeyedStateBackend")),
    ("Kafka client", ("kafka/",)),
    ("Arrow/pandas conversion", ("pyarrow", "pandas/", "arrow")),
    ("Beam/PyFlink runner, coders, gRPC", ("pyflink/", "apache_beam/", "grpc/")),
)

# Innermost frames that mean "this thread is blocked, not computing".
# (py-spy shows the innermost *Python* frame: a thread blocked in C shows the frame that called in.)
WAITS = ("Condition.wait", "Event.wait", "_wait_for_tstate_lock", "Queue.get", "sleep", "select", "poll",
         "channel_spin", "_serve", "LibevLoop._run_loop", "_wait_once", "acquire", "_worker", "readinto",
         "CallbackServer.run", "_blocking", "accept", "recv", "Thread.run")

_LINE = re.compile(r"^(.*) (\d+)$")

Stacks = list[tuple[list[str], int]]


def read_raw(path: Path) -> Stacks:
    """(frames outermost first, samples) for each line of a raw py-spy recording."""
    stacks = []
    for line in path.read_text(errors="replace").splitlines():
        m = _LINE.match(line.strip())
        if m:
            stacks.append((m.group(1).split(";"), int(m.group(2))))
    return stacks


def _func(frame: str) -> str:
    # "function (path/to/file.py:123)" -> "function (file.py)"
    m = re.match(r"^(.*?) \((.*?)(?::\d+)?\)$", frame)
    if not m:
        return frame
    return f"{m.group(1)} ({m.group(2).rsplit('/', 1)[-1]})"


def split_threads(stacks: Stacks) -> dict[str, Stacks]:
    """thread label -> its stacks (without the thread frame); all under "" without ``--threads``."""
    out: dict[str, Stacks] = {}
    for frames, c in stacks:
        if frames and frames[0].startswith("thread ("):
            out.setdefault(frames[0], []).append((frames[1:], c))
        else:
            out.setdefault("", []).append((frames, c))
    return out


def active_samples(stacks: Stacks) -> int:
    """Samples of ``stacks`` that are not waiting."""
    return sum(c for f, c in stacks if f and not is_wait(f[-1]))


def busiest_threads(stacks: Stacks, n: int = 4) -> list[tuple[str, Stacks]]:
    """The ``n`` threads with the most samples that are not waits, busiest first."""
    threads = split_threads(stacks)
    return sorted(threads.items(), key=lambda kv: active_samples(kv[1]), reverse=True)[:n]


def bundle_thread(stacks: Stacks) -> tuple[str, Stacks]:
    """The thread that computes the most: the one running bundles in a PyFlink worker."""
    return busiest_threads(stacks, 1)[0]


def is_wait(frame: str) -> bool:
    name = frame.split(" (", 1)[0]
    return any(w in name for w in WAITS)


def _category(frames: Sequence[str], categories: Sequence[tuple[str, Sequence[str]]]) -> str:
    for frame in reversed(frames):
        for name, keys in categories:
            if any(k in frame for k in keys):
                return name
    return "other"


def categorize(stacks: Iterable[tuple[list[str], int]],
               categories: Sequence[tuple[str, Sequence[str]]] = CATEGORIES) -> dict[str, float]:
    """Share of samples per category; waiting stacks count as ``wait: <category>``."""
    stacks = list(stacks)
    total = sum(c for _, c in stacks) or 1
    out: Counter[str] = Counter()
    for frames, c in stacks:
        cat = _category(frames, categories)
        if frames and is_wait(frames[-1]):
            cat = f"wait: {cat}"
        out[cat] += c
    return {k: round(v / total, 3) for k, v in out.most_common()}


def top_functions(stacks: Iterable[tuple[list[str], int]], n: int = 20,
                  skip_waits: bool = False) -> list[tuple[str, float, float]]:
    """[(function, self share, total share)] sorted by self share."""
    stacks = [(f, c) for f, c in stacks if f and not (skip_waits and is_wait(f[-1]))]
    total = sum(c for _, c in stacks) or 1
    self_c: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    for frames, c in stacks:
        self_c[_func(frames[-1])] += c
        for f in {_func(f) for f in frames}:
            incl[f] += c
    return [(f, c / total, incl[f] / total) for f, c in self_c.most_common(n)]


def _tid(label: str) -> str:
    m = re.match(r"thread \((\d+)\)", label)
    return m.group(1) if m else ""


def cpu_by_thread(stacks: Stacks, cores_by_tid: dict[str, float]) -> list[tuple[str, float, str]]:
    """[(thread label, cores from /proc, its main category while not waiting)], busiest first."""
    out = []
    for label, mine in split_threads(stacks).items():
        cores = cores_by_tid.get(_tid(label), 0.0)
        active = [(f, c) for f, c in mine if f and not is_wait(f[-1])]
        cats = categorize(active) if active else {"waiting": 1.0}
        out.append((label, cores, next(iter(cats))))
    return sorted(out, key=lambda x: x[1], reverse=True)


def summarize(path: Path, n: int = 15, threads: int = 3) -> str:
    """Per busiest thread (wall-clock samples with ``--idle``): categories, then top functions.

    With ``threads-<system>-<pid>.json`` next to the recording (written by ``streamrec bench
    --profile``), the CPU each thread used (from /proc) comes first.
    """
    import json

    stacks = read_raw(path)
    all_threads = split_threads(stacks)
    lines = [f"{path.name}: {sum(c for _, c in stacks)} samples in {len(all_threads)} thread(s)"]
    pid = path.stem.rsplit("-", 1)[-1]
    side = sorted(path.parent.glob(f"threads-*-{pid}.json"))
    busiest = busiest_threads(stacks, threads)
    if side:
        data = json.loads(side[-1].read_text())
        rows = cpu_by_thread(stacks, data.get("cores_by_tid", {}))
        total = sum(c for _, c, _ in rows)
        lines.append(f"  CPU by thread over {data.get('seconds')} s (from /proc): {total:.2f} cores in all")
        for label, cores, cat in rows[:8]:
            if cores >= 0.005:
                lines.append(f"    {cores:5.2f} cores  {label[:60]:60s}  mostly: {cat}")
        # the threads that really used the CPU (a thread blocked in C can look busy to py-spy)
        busiest = [(label, all_threads[label]) for label, cores, _ in rows[:threads] if cores > 0]
    for name, mine in busiest:
        samples = sum(c for _, c in mine)
        active = active_samples(mine)
        if not active:
            continue
        lines.append(f"  thread {name or '(all)'}: {samples} samples, {100 * active / max(samples, 1):.0f}% not "
                     "waiting; by category (wait: blocked inside that category):")
        for cat, share in categorize(mine).items():
            lines.append(f"    {share * 100:5.1f}%  {cat}")
        lines.append("    top functions while computing (self, total):")
        for f, s, t in top_functions(mine, n, skip_waits=True):
            lines.append(f"      {s * 100:5.1f}% {t * 100:5.1f}%  {f}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Java Flight Recorder (the minicluster's JVM)
# --------------------------------------------------------------------------------------------

# (category, substrings of a Java frame); the topmost (innermost) matching frame wins.
JAVA_CATEGORIES: Sequence[tuple[str, Sequence[str]]] = (
    ("Arrow (pandas UDF batches)", ("arrow",)),
    ("Python operator runtime (Beam gRPC, coders)", ("org.apache.flink.python", "org.apache.beam",
                                                     "apache.flink.streaming.api.operators.python",
                                                     "io.grpc", "shaded.io.netty", "fnexecution")),
    ("Table <-> DataStream row conversion, serializers", ("table.data", "table.runtime.typeutils",
                                                          "conversion", "typeutils", "TypeSerializer")),
    ("Kafka source / DLQ sink", ("kafka",)),
    ("keyed state backend", ("runtime.state", "state.heap")),
    ("checkpointing", ("checkpoint",)),
    ("network / record exchange", ("io.network", "runtime.io", "RecordWriter")),
    ("task mailbox / operator chain", ("streaming.runtime", "runtime.tasks")),
)

_JFR_EVENT = re.compile(r"jdk\.ExecutionSample \{(.*?)\n\}", re.S)
_JFR_THREAD = re.compile(r'sampledThread = "(.*?)" \(javaThreadId')


def read_jfr(path: Path, jfr_tool: str = "jfr", depth: int = 64) -> list[tuple[str, list[str]]]:
    """(thread name, frames innermost first) per execution sample of a JFR recording."""
    import subprocess

    text = subprocess.run([jfr_tool, "print", "--events", "jdk.ExecutionSample", "--stack-depth", str(depth),
                           str(path)], capture_output=True, text=True, check=True).stdout
    out = []
    for m in _JFR_EVENT.finditer(text):
        body = m.group(1)
        tm = _JFR_THREAD.search(body)
        thread = tm.group(1) if tm else "?"
        stack = body.split("stackTrace = [", 1)[-1].rsplit("]", 1)[0]
        frames = [line.strip() for line in stack.splitlines() if line.strip() and line.strip() != "..."]
        out.append((thread, frames))
    return out


def _thread_kind(name: str) -> str:
    if "->" in name or "(1/1)" in name or "Source:" in name:
        return name.split(" -> ")[0].split(":")[0][:40] + " ... (task thread)"
    return re.sub(r"[-#\d]+$", "", name)[:50] or "?"


def summarize_jfr(path: Path, jfr_tool: str = "jfr", n: int = 12) -> str:
    samples = read_jfr(path, jfr_tool)
    total = len(samples) or 1
    by_thread: Counter[str] = Counter(_thread_kind(t) for t, _ in samples)
    by_cat: Counter[str] = Counter()
    top: Counter[str] = Counter()
    for _, frames in samples:
        cat = next((name for f in frames for name, keys in JAVA_CATEGORIES if any(k in f for k in keys)), "other")
        by_cat[cat] += 1
        if frames:
            top[frames[0].split("(")[0]] += 1
    lines = [f"{path.name}: {len(samples)} Java execution samples (threads running Java code)"]
    lines.append("  by thread:")
    lines += [f"    {100 * c / total:5.1f}%  {t}" for t, c in by_thread.most_common(6)]
    lines.append("  by category (innermost matching frame):")
    lines += [f"    {100 * c / total:5.1f}%  {t}" for t, c in by_cat.most_common()]
    lines.append("  top methods (self):")
    lines += [f"    {100 * c / total:5.1f}%  {t}" for t, c in top.most_common(n)]
    return "\n".join(lines)
