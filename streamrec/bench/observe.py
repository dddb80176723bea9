"""What the bench watches besides Cassandra: the system's processes by kind, Flink's REST
metrics, and py-spy profiles of the Python workers."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamrec import localstack
from streamrec.bench import results
from streamrec.bench.procstat import thread_cpu
from streamrec.bench.systems import System, say

if TYPE_CHECKING:
    from streamrec.bench.e2e import BenchOptions

log = logging.getLogger("streamrec.bench")


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
        say("py-spy not installed (pip install py-spy): no profile")
        return []
    procs = []
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    jcmd = localstack.java_home() / "bin" / "jcmd"
    for pid in system.tree():
        if process_kind(pid) == "jvm" and jcmd.exists():
            # Java Flight Recorder (built into the JDK): sampled Java stacks of the minicluster's JVM.
            jfr = out_dir / f"jfr-{system.name}-{stamp}-{pid}.jfr"
            say(f"{system.name}: JFR recording of JVM pid {pid} for {seconds:.0f} s -> {jfr}")
            try:
                done = subprocess.run([str(jcmd), str(pid), "JFR.start", "name=streamrec-bench", "settings=profile",
                                       f"duration={int(seconds)}s", f"filename={jfr}"],
                                      capture_output=True, text=True, timeout=60, check=False)
                if done.returncode != 0 or "Started recording" not in done.stdout:
                    say(f"JFR did not start: {(done.stdout + done.stderr).strip()[-300:]}")
            except (OSError, subprocess.TimeoutExpired) as exc:
                say(f"JFR did not start: {exc}")
    for pid in python_workers(system):
        out = out_dir / f"pyspy-{system.name}-{stamp}-{pid}.txt"
        say(f"{system.name}: py-spy record of pid {pid} for {seconds:.0f} s -> {out}")
        procs.append(subprocess.Popen(
            [str(py_spy), "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "100",
             "--nonblocking", "--threads", "--idle", "--format", "raw", "--output", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return procs


class Observer:
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
