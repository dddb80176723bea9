"""Tools of the fault tier: the Flink REST API, `flink run/stop`, a paced producer, hard kills of a
TaskManager, and the figures each test reports (events produced / found / in the DLQ, restarts,
recovery time)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

from streamrec import localstack
from streamrec.config import Config
from streamrec.connectors.cassandra import connect
from streamrec.connectors.kafka import produce_lines
from streamrec.flinkrest import FlinkHttpError
from streamrec.flinkrest import FlinkRest as _FlinkRest
from streamrec.runner import config_env, wait_for
from streamrec.unreachable import Unreachable

JOB_PY = Path(__file__).resolve().parents[2] / "streamrec" / "jobs" / "job.py"

# Figures of every fault test of the session, printed at the end (see conftest.py).
FIGURES: list[dict[str, Any]] = []


# --------------------------------------------------------------------------------------------
# Flink


class FlinkRest(_FlinkRest):
    """streamrec's REST client plus what the fault tests ask of a job: restarts, recovery, a diagnosis."""

    def running_jobs(self) -> list[str]:
        return [j["jid"] for j in self.jobs() if j["state"] not in ("FINISHED", "CANCELED", "FAILED")]

    def restarts(self, jid: str) -> int:
        """How often the job restarted: Flink's numRestarts metric (a job-level gauge) or the failures
        in its exception history, whichever says more. The REST endpoint serves the metric from a
        cache that it can stop refreshing for minutes after a TaskManager is killed (seen once: the
        job had restarted and run for 5 minutes, the metric still said 1, the history held both
        failures); right after the start the metric is not reported at all."""
        values = self.get(f"/jobs/{jid}/metrics?get=numRestarts")
        metric = int(float(values[0]["value"])) if values else 0
        return max(metric, len(self.exceptions(jid)))

    def failures(self, jid: str) -> int:
        """How often the job failed, from its exception history alone (up to Flink's
        web.exception-history-size, 16). Never asks for metrics: a metrics query makes the cluster read
        every gauge, the ranker's Python gauges too, and one read from a metrics thread while a failed
        task's Python was being torn down crashed a minicluster's JVM (SIGSEGV in take_gil,
        docs/GUARANTEES.md, "What is not guaranteed"). Tests that fail the job many times count with this."""
        return len(self.exceptions(jid))

    def latest_checkpoint(self, jid: str) -> int:
        """The id of the job's newest completed checkpoint (0: none); asks for no metrics either. A
        checkpoint completes only when every task runs and acknowledges it: after a failure, the
        first one tells that the job has recovered."""
        latest = self.get(f"/jobs/{jid}/checkpoints").get("latest", {}).get("completed")
        return int(latest["id"]) if latest else 0

    def exceptions(self, jid: str) -> list[dict[str, Any]]:
        return list(self.get(f"/jobs/{jid}/exceptions").get("exceptionHistory", {}).get("entries", []))

    def all_running(self, jid: str) -> bool:
        """The job and every one of its subtasks are RUNNING (after a restart: recovered)."""
        job = self.job(jid)
        if job["state"] != "RUNNING":
            return False
        return all(v["status"] == "RUNNING" and v["tasks"].get("RUNNING", 0) == v["parallelism"]
                   for v in job["vertices"])

    def state(self, jid: str) -> str:
        return str(self.job(jid)["state"])

    def cancel_all(self) -> None:
        for jid in self.running_jobs():
            try:
                self.cancel(jid)
            except (FlinkHttpError, Unreachable):  # finished meanwhile, or the cluster is restarting
                pass
        wait_for(lambda: not self.running_jobs(), timeout=120, what="jobs to be cancelled")

    def describe(self, jid: str) -> str:
        """What a failed wait on the job needs to be diagnosed from a CI log alone: the job's and each
        vertex's state, the TaskManagers and their free slots, and the newest exceptions."""
        try:
            job = self.job(jid)
            lines = [f"job {jid}: {job['state']}, restarts {self.restarts(jid)}"]
            lines += [f"  {v['name'][:60]}: {v['status']} {v['tasks']}" for v in job["vertices"]]
            lines += [f"  taskmanager {t['id']}: {t['freeSlots']}/{t['slotsNumber']} slots free"
                      for t in self.taskmanagers()]
            for entry in self.exceptions(jid)[:3]:
                trace = entry.get("stacktrace", entry.get("exceptionName", ""))
                lines.append(f"  exception at {entry.get('timestamp')} on {entry.get('taskName')} "
                             f"({entry.get('endpoint')}): {trace[:1500]}")
            return "\n".join(lines)
        except Exception as exc:  # diagnostics must never hide the original timeout
            return f"(could not describe job {jid}: {exc})"


def flink_run(profile: localstack.Profile, config: Config, parallelism: int, savepoint: Optional[str] = None,
              timeout: float = 400) -> str:
    """`flink run -d -p <parallelism>` of the job on the profile's cluster; returns the job id.
    The config leaves the parallelism to Flink (STREAMREC_PARALLELISM unset), so `-p` decides, as
    it does for any Flink job."""
    assert config.job.parallelism == 0, "flink run -p sets the parallelism here"
    cmd = [str(localstack.flink_bin("flink")), "run", "-d", "-m", profile.flink_rest, "-p", str(parallelism)]
    if savepoint:
        cmd += ["-s", savepoint]  # and no --allowNonRestoredState: every piece of state must map
    cmd += ["-py", str(JOB_PY)]
    env = config_env(config, base=localstack.flink_env(profile))
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    text = out.stdout + out.stderr
    match = re.search(r"JobID ([0-9a-f]{32})", text)
    assert out.returncode == 0 and match, f"flink run failed ({out.returncode}):\n{text[-4000:]}"
    return match.group(1)


def flink_stop_with_savepoint(profile: localstack.Profile, jid: str, directory: Path, timeout: float = 300) -> str:
    cmd = [str(localstack.flink_bin("flink")), "stop", "-m", profile.flink_rest, "--savepointPath",
           directory.as_uri(), jid]
    out = subprocess.run(cmd, env=localstack.flink_env(profile), capture_output=True, text=True, timeout=timeout)
    text = out.stdout + out.stderr
    match = re.search(r"Savepoint completed\. Path: (\S+)", text)
    assert out.returncode == 0 and match, f"flink stop failed ({out.returncode}):\n{text[-4000:]}"
    return match.group(1)


def streamrec_job(profile: localstack.Profile, config: Config, *args: str, timeout: float = 600) -> tuple[str, str]:
    """`streamrec job <args>` as a user runs it against the profile's cluster (the wheel's `flink`, this
    venv's Python on the TaskManagers, which share this filesystem); asserts exit status 0 and returns
    (stdout, stderr)."""
    cmd = [sys.executable, "-m", "streamrec.cli", "job", *args, "-m", profile.flink_rest]
    env = config_env(config, base=localstack.flink_env(profile))
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"streamrec job {' '.join(args)} failed ({out.returncode}):\n{out.stderr[-4000:]}"
    return out.stdout, out.stderr


def streamrec_job_upgrade(profile: localstack.Profile, config: Config, directory: Path) -> tuple[str, str]:
    """`streamrec job upgrade --savepoint DIR`: (the new job's id, the savepoint's path)."""
    stdout, stderr = streamrec_job(profile, config, "upgrade", "--savepoint", str(directory),
                                   "--flink", str(localstack.flink_bin("flink")), "--python", sys.executable)
    match = re.search(r"savepoint (\S+) \(", stderr)
    assert match, stderr[-2000:]
    return stdout.strip(), match.group(1)


def recommendation_of(config: Config, user: str) -> Optional[tuple[str, list[str]]]:
    """(the event id that last updated ``user``'s recommendations, the products) or None."""
    session = connect(config.cassandra, config.cassandra.keyspace)
    try:
        row = session.execute(session.prepare(
            "SELECT event_id, product_ids FROM recommendations WHERE user_id = ?"), (user,), timeout=60).one()
    finally:
        session.cluster.shutdown()
    return None if row is None else (str(row.event_id), list(row.product_ids or []))


def wait_progress(config: Config, above: int, timeout: float, what: str) -> int:
    """Wait until `events` holds more than ``above`` rows (the job is making progress)."""
    return wait_for(lambda: (lambda n: n if n > above else 0)(count_events(config)), timeout=timeout,
                    what=what, interval=1.0)


# --------------------------------------------------------------------------------------------
# processes


def taskmanager_pids(profile: localstack.Profile) -> list[int]:
    """This profile's TaskManager JVMs (command line names the profile's folder and the runner)."""
    marker = str(localstack.run_dir(profile) / "flink") + os.sep
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in cmd and "TaskManagerRunner" in cmd:
                out.append(int(entry.name))
    return sorted(out)


def pid_listening_on(port: int, candidates: list[int]) -> Optional[int]:
    inodes = localstack.listening_inodes(port)
    for pid in candidates:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:  # the process is gone
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:  # closed since the listing: a busy JVM opens and closes files all the time
                continue
            if link.startswith("socket:[") and link[8:-1] in inodes:
                return pid
    return None


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_busy_taskmanager(profile: localstack.Profile, rest: FlinkRest) -> str:
    """kill -9 a TaskManager that runs tasks of the job, and its Python workers (a crashed machine
    takes both); returns the TaskManager's id (as REST names it)."""
    # REST may still list a TaskManager killed in an earlier round as busy until the JobManager
    # notices; the one to kill is a busy TaskManager whose process is alive and listening
    deadline = time.monotonic() + 60
    while True:
        tms = [t for t in rest.taskmanagers() if t["freeSlots"] < t["slotsNumber"]]
        assert tms, "no TaskManager runs a task"
        pids = taskmanager_pids(profile)
        found = [(tm, pid_listening_on(int(tm["dataPort"]), pids)) for tm in tms]
        live = [(tm, pid) for tm, pid in found if pid is not None]
        if live:
            break
        assert time.monotonic() < deadline, (
            f"no TaskManager of {profile.name} listens on {[tm['dataPort'] for tm in tms]} (pids {pids})")
        time.sleep(1)
    tm, pid = live[0]
    workers = descendants(pid)
    os.kill(pid, signal.SIGKILL)
    for child in workers:
        try:
            os.kill(child, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return str(tm["id"])


# warnings every healthy run logs (Kafka committer metrics registered twice, the driver's advice on
# `USE <keyspace>`, a schema another test left half-made): they would bury the one that matters
_LOG_NOISE = ("Name collision", "USE <keyspace>", "SchemaParser")


def _flink_logs(profile: localstack.Profile, *roles: str) -> Iterator[tuple[Path, list[str]]]:
    """(file, lines) of the profile's Flink log and .out files whose name names one of ``roles``."""
    for log_file in sorted((localstack.run_dir(profile) / "flink" / "log").glob("*")):
        if any(role in log_file.name for role in roles):
            yield log_file, log_file.read_text(errors="replace").splitlines()


def flink_log_problems(profile: localstack.Profile, lines: int = 40) -> str:
    """The newest WARN/ERROR lines of the profile's JobManager and TaskManager logs (and the .out
    files, where a JVM that failed to start says why): appended to a failed wait's message."""
    out = []
    for log_file, text in _flink_logs(profile, "standalonesession", "taskexecutor"):
        hits = text if log_file.suffix == ".out" else [
            t for t in text if (" WARN " in t or " ERROR " in t) and not any(n in t for n in _LOG_NOISE)]
        if hits:
            out.append(f"--- {log_file.name} (last {min(lines, len(hits))} of {len(hits)})")
            out += [h[:400] for h in hits[-lines:]]
    return "\n".join(out)


def taskmanager_fatal_errors(profile: localstack.Profile) -> list[str]:
    """Every "fatal error" with which a TaskManager of the profile shut itself down, with the
    exception's first line. A failing task must fail and restart; it must never take its
    TaskManager, and the other jobs' tasks on it, down."""
    found = []
    for log_file, text in _flink_logs(profile, "taskexecutor"):
        if log_file.suffix != ".log":
            continue
        for i, line in enumerate(text):
            if "Fatal error occurred while executing the TaskManager" in line:
                found.append(f"{log_file.name}: {line[:23]} {text[i + 1][:300] if i + 1 < len(text) else ''}")
    return found


def kill9_service(profile: localstack.Profile, service: str) -> list[int]:
    """kill -9 every process of the profile's ``service`` ("kafka", "cassandra"): no shutdown hook,
    no flush, as when the machine or the JVM dies. Found as localstack finds them (the command line
    names the profile's folder of that service). Returns the pids killed."""
    marker = str(localstack.run_dir(profile) / service)
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in cmd and "java" in cmd.split(" ", 1)[0]:
                pids.append(int(entry.name))
    assert pids, f"no {service} process of {profile.name} to kill"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not any(Path(f"/proc/{pid}").exists() and _not_zombie(pid) for pid in pids), timeout=30,
             what=f"{service} to die")
    return pids


def _not_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------------------------
# data


class PacedProducer(threading.Thread):
    """Sends lines to the events topic in small chunks at a steady rate (events keep flowing while
    a fault is injected); ``hurry()`` sends the rest at once. Uses the project's producer path
    (keyed by user, acks=all, idempotent)."""

    def __init__(self, config: Config, lines: list[str], per_second: float, chunk: int = 10) -> None:
        super().__init__(daemon=True)
        self.config, self.lines, self.chunk = config, lines, chunk
        self.delay = chunk / per_second
        self.sent = 0
        self.error: Optional[BaseException] = None
        self._hurry = threading.Event()
        self._go = threading.Event()
        self._go.set()
        self._idle = threading.Event()  # paused, with nothing in flight

    def hurry(self) -> None:
        self._hurry.set()

    def pause(self, timeout: float = 120) -> None:
        """Stop sending after the chunk in flight (acknowledged); returns once it is."""
        self._idle.clear()
        self._go.clear()
        assert self._idle.wait(timeout) or not self.is_alive(), "the producer did not pause"

    def resume(self) -> None:
        self._go.set()

    def run(self) -> None:
        from kafka import KafkaProducer

        from streamrec.connectors.kafka import client_options

        producer = KafkaProducer(bootstrap_servers=self.config.kafka.bootstrap, acks="all", enable_idempotence=True,
                                 linger_ms=5, max_request_size=1024 * 1024, **client_options(self.config.kafka))
        try:
            for start in range(0, len(self.lines), self.chunk):
                if not self._go.is_set():
                    self._idle.set()
                    self._go.wait()
                report = produce_lines(self.lines[start:start + self.chunk], self.config, raw=True, producer=producer)
                assert not report.rejected, report.rejected
                self.sent += report.sent
                if not self._hurry.is_set():
                    self._hurry.wait(self.delay)
        except BaseException as exc:
            self.error = exc
        finally:
            self._idle.set()
            producer.close()

    def finish(self, timeout: float = 300) -> int:
        self.hurry()
        self.resume()
        self.join(timeout)
        assert not self.is_alive(), "the producer did not finish"
        if self.error is not None:
            raise self.error
        return self.sent


@dataclass
class SequenceReport:
    """The independent per-user check of `events`: what each user's partition holds against what was
    produced, in the table's clustering order (ts DESC, event_id ASC; docs/ARCHITECTURE.md, Contracts)."""

    users: int = 0
    expected: int = 0
    found: int = 0
    missing: list[str] = field(default_factory=list)  # produced, not stored (gaps)
    doubled: list[str] = field(default_factory=list)  # stored more than once (under another ts or user)
    extra: list[str] = field(default_factory=list)  # stored, never produced
    out_of_order: list[str] = field(default_factory=list)  # users whose partition is not in the contract's order
    unexpected_users: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.doubled or self.extra or self.out_of_order or self.unexpected_users)

    def summary(self) -> str:
        return (f"{self.users} users, {self.expected} events expected, {self.found} found; missing "
                f"{len(self.missing)} {self.missing[:5]}, doubled {len(self.doubled)} {self.doubled[:5]}, extra "
                f"{len(self.extra)} {self.extra[:5]}, out of order {self.out_of_order[:5]}, users never produced "
                f"{self.unexpected_users[:5]}")


def user_sequences(config: Config, expected: list[tuple[str, str, int]]) -> SequenceReport:
    """Every produced event (user_id, event_id, ts in ms) present exactly once in `events`, each user's
    partition in the contract's order, no other user's partition: read from Cassandra with plain CQL,
    sharing nothing with verify (nor the parser). ``expected`` holds the valid events the test sent."""
    from collections import Counter

    by_user: dict[str, list[tuple[int, str]]] = {}
    for user, event_id, ts in expected:
        by_user.setdefault(user, []).append((ts, event_id))
    report = SequenceReport(users=len(by_user), expected=len(expected))
    session = connect(config.cassandra, config.cassandra.keyspace)
    try:
        ks = config.cassandra.keyspace
        read = session.prepare(f"SELECT ts, event_id FROM {ks}.events WHERE user_id = ?")
        read.fetch_size = 5000
        stored_ids: Counter[str] = Counter()
        for user, events in sorted(by_user.items()):
            rows = [(_ms(r.ts), r.event_id) for r in session.execute(read, (user,), timeout=120)]
            report.found += len(rows)
            stored_ids.update(event_id for _, event_id in rows)
            want = sorted(set(events), key=lambda e: (-e[0], e[1]))  # ts DESC, event_id ASC
            wanted, have = set(want), set(rows)
            report.missing += [f"{user}/{eid}@{ts}" for ts, eid in want if (ts, eid) not in have]
            report.extra += [f"{user}/{eid}@{ts}" for ts, eid in rows if (ts, eid) not in wanted]
            if [r for r in rows if r in wanted] != [w for w in want if w in have]:
                report.out_of_order.append(user)
        report.doubled = sorted(eid for eid, n in stored_ids.items() if n > 1)
        stored_users = {r.user_id for r in session.execute(f"SELECT DISTINCT user_id FROM {ks}.events", timeout=120)}
        report.unexpected_users = sorted(stored_users - set(by_user))
    finally:
        session.cluster.shutdown()
    return report


def _ms(dt: Any) -> int:
    """A driver timestamp (a naive UTC datetime) in epoch ms, computed here rather than with the
    project's helper, so that the check shares no code with what it checks. Rounded: the driver
    builds the datetime from float seconds, which can land just below the stored millisecond."""
    import datetime as _dt

    return round((dt - _dt.datetime(1970, 1, 1)) / _dt.timedelta(milliseconds=1))


def count_events(config: Config) -> int:
    session = connect(config.cassandra, config.cassandra.keyspace)
    try:
        return int(session.execute(session.prepare("SELECT COUNT(*) FROM events"), timeout=60).one()[0])
    finally:
        session.cluster.shutdown()


def store_snapshot(config: Config) -> dict[str, Any]:
    """Every stored cell with its write timestamp: a replay must leave all of them as they were."""
    session = connect(config.cassandra, config.cassandra.keyspace)
    try:
        events = sorted(
            (r.user_id, str(r.ts), r.event_id, r.type, r.product_id, r.query, r.wt)
            for r in session.execute(session.prepare(
                "SELECT user_id, ts, event_id, type, product_id, query, writetime(type) AS wt FROM events"),
                timeout=60))
        recs = sorted(
            (r.user_id, tuple(r.product_ids), tuple(r.scores), r.source, r.event_id, str(r.event_ts),
             str(r.updated_at), r.wt)
            for r in session.execute(session.prepare(
                "SELECT user_id, product_ids, scores, source, event_id, event_ts, updated_at, "
                "writetime(product_ids) AS wt FROM recommendations"), timeout=60))
    finally:
        session.cluster.shutdown()
    return {"events": events, "recommendations": recs}


def snapshot_diff(a: dict[str, Any], b: dict[str, Any], limit: int = 5) -> list[str]:
    """The rows that differ between two store snapshots (empty: identical).

    Everything must be identical - values and write timestamps - except that a score may differ
    in its last bits (1e-6 relative): the top-k's batched matrix product rounds differently for
    another batch composition, and a replay batches differently. See docs/GUARANTEES.md.
    """
    import math

    out = []
    left, right = set(a["events"]), set(b["events"])
    out += [f"events before: {row}" for row in sorted(left - right)[:limit]]
    out += [f"events after:  {row}" for row in sorted(right - left)[:limit]]
    recs_a = {r[0]: r for r in a["recommendations"]}
    recs_b = {r[0]: r for r in b["recommendations"]}
    for user in sorted(recs_a.keys() | recs_b.keys()):
        ra, rb = recs_a.get(user), recs_b.get(user)
        same = ra is not None and rb is not None and ra[:2] == rb[:2] and ra[3:] == rb[3:] and all(
            math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-7) for x, y in zip(ra[2], rb[2]))
        if not same and len(out) < 4 * limit:
            out.append(f"recommendations before: {ra}\nrecommendations after:  {rb}")
    return out


def committed_offsets_reached(config: Config, group: str) -> bool:
    """The job's consumer group has committed (on a completed checkpoint) the end of every partition:
    everything before it is processed and written."""
    from kafka import KafkaAdminClient, KafkaConsumer

    from streamrec.connectors.kafka import client_options

    admin = KafkaAdminClient(bootstrap_servers=config.kafka.bootstrap, **client_options(config.kafka))
    consumer = KafkaConsumer(bootstrap_servers=config.kafka.bootstrap, group_id=None, **client_options(config.kafka))
    try:
        offsets = admin.list_group_offsets(group).get(group, {})
        committed = {tp: m.offset for tp, m in offsets.items() if tp.topic == config.kafka.events_topic}
        if not committed:
            return False
        end = consumer.end_offsets(list(committed))
        return all(committed[tp] >= end[tp] for tp in committed)
    finally:
        admin.close()
        consumer.close()


def verify_cli(config: Config, wait: float = 300, dead_letters: bool = True) -> dict[str, Any]:
    """`streamrec verify -o json` as a user runs it; returns the report (asserts nothing)."""
    cmd = [sys.executable, "-m", "streamrec.cli", "verify", "-o", "json", "--wait", str(wait)]
    if not dead_letters:
        cmd.append("--no-dead-letters")
    out = subprocess.run(cmd, env=config_env(config), capture_output=True, text=True, timeout=wait + 300)
    assert out.returncode in (0, 1), f"verify crashed ({out.returncode}):\n{out.stderr[-4000:]}"
    report = json.loads(out.stdout)
    report["exit_code"] = out.returncode
    if out.returncode != 0:
        report["stderr_tail"] = out.stderr[-2000:]
    return report


@dataclass
class Figures:
    test: str
    produced: int = 0  # records sent to the events topic (valid and bad)
    valid: int = 0
    found: int = 0  # rows in `events`
    dead_letters: int = 0  # records in events-dlq
    restarts: int = 0
    recovery_s: list[float] = field(default_factory=list)
    notes: str = ""
    seconds: float = 0.0

    def record(self, report: dict[str, Any]) -> None:
        self.produced = report["records"]
        self.valid = report["valid_events"]
        self.found = report["events"]["found"]
        if report.get("dead_letters"):
            self.dead_letters = sum(report["dead_letters"]["found"].values())
        FIGURES.append(dict(self.__dict__, recovery_s=[round(x, 1) for x in self.recovery_s],
                            seconds=round(self.seconds, 1)))
