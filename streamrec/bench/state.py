"""``streamrec bench state``: what N users' state costs, for the README's sizing table.

For each size the job (the real source on Kafka and the real operators of ``build_pipeline``, its two
outputs discarded in the JVM so that Cassandra's cost does not hide the state's) runs on a local
minicluster in a process of its own, with the chosen state backend, the cluster's RocksDB options and
one cluster slot's managed memory (``cluster_state_settings``):

1. build: one event for each of N synthetic users goes to a fresh topic; the job reads them all
   (each user's state is created and written once);
2. checkpoint 1 (the configured kind: incremental with RocksDB, its first one uploads everything),
   then a wait until the job is idle (RocksDB compacts the build's load after it);
3. measured phase: ``measured_events`` more events of random users already in state; events/s per
   core = those events / the CPU seconds the job's process tree spent on them;
4. checkpoint 2 (incremental: only what the phase changed), then checkpoint 3 (FULL, all state).

Reported per size: checkpoint sizes and durations (Flink's REST API), bytes per user (the full
checkpoint's size / N), the job process's resident memory (JobManager and TaskManager share the
minicluster's JVM; RocksDB's native memory counts in it) and RocksDB's files on local disk.
One JSON line per size is appended to bench/results.jsonl (``"kind": "state"``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from streamrec.bench import results
from streamrec.bench.procstat import descendants, process_table
from streamrec.config import Config

log = logging.getLogger("streamrec.bench")

JOB_NAME = "streamrec-state-bench"
# the operator that holds the users' state, per hot path (pipeline.py)
STATE_VERTEX = {"batch": "user-state", "per-event": "update-and-recommend"}


@dataclass
class StateOptions:
    users: tuple[int, ...] = (100_000, 1_000_000)
    backend: str = "rocksdb"
    incremental: bool = True
    measured_events: int = 50_000
    products: int = 10_000
    dim: int = 64
    profile: str = "bench"  # "test": the test profile, shifted by STREAMREC_TEST_SLOT
    seed: int = 0
    timeout_s: float = 900.0  # per phase
    note: str = "default"
    results_path: str = ""


# ---------------------------------------------------------------------------------------------
# the job, in its own process (python -m streamrec.bench.state job <catalog.npz> <rocksdb dir>)


def _job(catalog_path: str, local_dir: str) -> None:
    from pyflink.common import Configuration, WatermarkStrategy
    from pyflink.java_gateway import get_gateway

    from streamrec.connectors.catalog import CatalogFromConfig
    from streamrec.connectors.kafka import events_source
    from streamrec.jobs.job import create_env
    from streamrec.jobs.pipeline import build_pipeline

    config = Config.from_env(model={"catalog_path": catalog_path})
    env = create_env(config)
    bench_conf = Configuration()
    for key, value in cluster_state_settings(local_dir).items():
        bench_conf.set_string(key, value)
    env.configure(bench_conf)
    raw = env.from_source(events_source(config.kafka), WatermarkStrategy.no_watermarks(),
                          "kafka-events").uid("kafka-events")
    streams = build_pipeline(env, raw, config, CatalogFromConfig(config))
    discard = get_gateway().jvm.org.apache.flink.streaming.api.functions.sink.v2.DiscardingSink
    streams.recommendations._j_data_stream.sinkTo(discard())
    streams.dead_letters._j_data_stream.sinkTo(discard())
    env.execute(JOB_NAME)


def _memory_bytes(text: object) -> int:
    """A Flink memory size ("1536m", "1 gb", "268435456") in bytes."""
    value = str(text).strip().lower().replace(" ", "").rstrip("b")
    units = {"k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
    if value and value[-1] in units:
        return int(float(value[:-1]) * units[value[-1]])
    return int(value)


def cluster_slot_managed_bytes(conf: dict[str, object]) -> int:
    """The managed memory of one slot of the cluster's TaskManager (flink-conf/config.yaml, Flink's
    defaults for what it leaves unset): process size less metaspace and JVM overhead, times the
    managed fraction, split over the slots."""
    process = _memory_bytes(conf["taskmanager.memory.process.size"])
    metaspace = _memory_bytes(conf.get("taskmanager.memory.jvm-metaspace.size", "256m"))
    overhead = min(max(process * float(str(conf.get("taskmanager.memory.jvm-overhead.fraction", 0.1))),
                       _memory_bytes(conf.get("taskmanager.memory.jvm-overhead.min", "192m"))),
                   _memory_bytes(conf.get("taskmanager.memory.jvm-overhead.max", "1g")))
    flink = process - metaspace - overhead
    managed = flink * float(str(conf.get("taskmanager.memory.managed.fraction", 0.4)))
    return int(managed / int(str(conf.get("taskmanager.numberOfTaskSlots", 1))))


def cluster_state_settings(local_dir: str) -> dict[str, str]:
    """What the bench's minicluster takes from the cluster configuration, so that it measures the state
    backend as the cluster runs it: the cluster's RocksDB options (``state.backend.rocksdb.*``) and one
    cluster slot's managed memory, which pays for RocksDB's block cache and write buffers. A local
    minicluster reads no config.yaml and gives its slot 128 MiB; then 1M users' index blocks no longer
    fit the block cache's shards and every get read and decompressed them again (README, "Sizing").
    RocksDB's files go to a folder the harness measures (the default is the minicluster's /tmp)."""
    import yaml

    from streamrec.localstack import _flatten
    from streamrec.localstack.paths import repo_root

    conf = _flatten(yaml.safe_load((repo_root() / "flink-conf" / "config.yaml").read_text()) or {})
    settings = {key: str(value).lower() if isinstance(value, bool) else str(value)
                for key, value in conf.items() if key.startswith("state.backend.rocksdb.")}
    settings["taskmanager.memory.managed.size"] = f"{cluster_slot_managed_bytes(conf) // 2**20}m"
    settings["state.backend.rocksdb.localdir"] = local_dir
    return settings


# ---------------------------------------------------------------------------------------------
# the harness


def _tree_pids(root: int) -> set[int]:
    return descendants(process_table(), [root])


def _tree_cpu(root: int) -> float:
    table = process_table()
    return sum(table[p][1] for p in descendants(table, [root]))


def _tree_rss_bytes(root: int) -> int:
    total = 0
    for pid in _tree_pids(root):
        with contextlib.suppress(OSError, ValueError, IndexError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


def _du(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, f)).st_size
    return total


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _event(i: int, user: int, ts: int, product: str) -> tuple[bytes, bytes]:
    """(Kafka key, value): keyed by user, as the shop's producers key them."""
    value = json.dumps({"event_id": f"s{i}", "user_id": f"u{user}", "ts": ts, "type": "view",
                        "product_id": product}, separators=(",", ":"))
    return f"u{user}".encode(), value.encode()


class _Run:
    """One size: the job process, its REST API, the topic it reads."""

    def __init__(self, opts: StateOptions, users: int, kafka_bootstrap: str, work: Path, catalog_path: Path,
                 jars: str) -> None:
        from streamrec.flinkrest import FlinkRest

        tag = uuid.uuid4().hex[:8]
        self.users = users
        self.work = work / tag
        self.local_dir = self.work / "rocksdb"
        self.local_dir.mkdir(parents=True)
        port = _free_port()
        self.config = Config.from_env(
            kafka={"bootstrap": kafka_bootstrap, "events_topic": f"state-{tag}", "dlq_topic": f"state-dlq-{tag}",
                   "products_topic": f"state-products-{tag}", "consumer_group": f"state-{tag}"},
            job={"parallelism": 1,
                 # checkpoints only when the harness asks for one (REST), at the moments it measures
                 "checkpoint_interval_ms": 24 * 3_600_000,
                 "checkpoint_dir": (self.work / "checkpoints").as_uri(), "state_backend": opts.backend,
                 "state_incremental": opts.incremental, "minicluster_rest_port": port, "metrics_port": "",
                 "jars": jars},
        )
        self.rest = FlinkRest(f"127.0.0.1:{port}", timeout=10)
        self.catalog_path = catalog_path
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.jid = ""

    def start(self, timeout: float) -> None:
        from streamrec.connectors.kafka import ensure_topics
        from streamrec.runner import config_env

        ensure_topics(self.config.kafka, partitions=2)
        log_file = self.work / "job.log"
        with open(log_file, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streamrec.bench.state", "job", str(self.catalog_path), str(self.local_dir)],
                env=config_env(self.config), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

        def running() -> bool:
            jobs = [j["jid"] for j in self.rest.jobs(timeout=5) if j["state"] == "RUNNING"]
            if jobs:
                self.jid = jobs[0]
            return bool(self.jid)

        deadline = time.monotonic() + timeout
        while not self.jid:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the job exited ({self.proc.returncode}); see {log_file}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the state bench job did not run within {timeout:.0f} s; see {log_file}")
            with contextlib.suppress(Exception):  # its REST API is not up yet
                running()
            time.sleep(1.0)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(30)

    def check_alive(self) -> None:
        """Not an Exception: wait_for, which retries on those, must not wait out a dead job."""
        if self.proc is None or self.proc.poll() is not None:
            raise SystemExit(f"the state bench job exited; see {self.work / 'job.log'}")

    def state_records_in(self) -> int:
        self.check_alive()
        job = self.rest.job(self.jid)
        name = STATE_VERTEX[self.config.job.hot_path]
        for v in job.get("vertices", []):
            if v.get("name", "").startswith(name):
                return int(v.get("metrics", {}).get("read-records", 0))
        raise RuntimeError(f"no vertex named {name!r}: {[v.get('name') for v in job.get('vertices', [])]}")

    def wait_records(self, n: int, timeout: float) -> None:
        from streamrec.runner import wait_for

        wait_for(lambda: self.state_records_in() >= n, timeout=timeout, interval=1.0,
                 what=f"the job to read {n:,} events")

    def checkpoint(self, kind: str, timeout: float) -> dict[str, Any]:
        """Trigger a checkpoint (CONFIGURED or FULL), wait for it, return Flink's figures of it."""
        from streamrec.runner import wait_for

        trigger = self.rest.call(f"/jobs/{self.jid}/checkpoints", {"checkpointType": kind}, method="POST")
        request = trigger["request-id"]

        def done() -> Optional[int]:
            self.check_alive()
            status = self.rest.get(f"/jobs/{self.jid}/checkpoints/{request}")
            if status["status"]["id"] != "COMPLETED":
                return None
            op = status.get("operation", {})
            if "failure-cause" in op:
                raise RuntimeError(f"checkpoint failed: {op['failure-cause']}")
            return int(op["checkpointId"]) or None

        cid = wait_for(done, timeout=timeout, what=f"a {kind} checkpoint", interval=0.5)
        # the statistics of a checkpoint appear a moment after it completed
        details = wait_for(lambda: self.rest.get(f"/jobs/{self.jid}/checkpoints/details/{cid}"), timeout=60,
                           what=f"the statistics of checkpoint {cid}", interval=0.5)
        return {
            "kind": kind,
            "id": cid,
            "state_bytes": details.get("state_size"),
            "uploaded_bytes": details.get("checkpointed_size"),
            "duration_ms": details.get("end_to_end_duration"),
        }


def _settle(pid: int, quiet_cores: float = 0.15, window_s: float = 3.0, limit_s: float = 120.0) -> tuple[float, float]:
    """Wait until the job's process tree is nearly idle (under ``quiet_cores`` over ``window_s``), at most
    ``limit_s``: the measured phase then pays for its own events only, not for the compactions of the
    build's load that RocksDB still runs after the first checkpoint. Returns (seconds, CPU seconds)."""
    started, cpu0 = time.monotonic(), _tree_cpu(pid)
    while time.monotonic() - started < limit_s:
        before = _tree_cpu(pid)
        time.sleep(window_s)
        if _tree_cpu(pid) - before < quiet_cores * window_s:
            break
    return time.monotonic() - started, _tree_cpu(pid) - cpu0


def _produce(config: Config, events: Iterator[tuple[bytes, bytes]]) -> int:
    from streamrec.bench.load import Producer

    producer = Producer(config, linger_ms=20)
    n = 0
    try:
        for key, value in events:
            producer.send(config.kafka.events_topic, key, value)
            n += 1
        producer.flush(300)
    finally:
        producer.close()
    return n


def measure(opts: StateOptions, users: int, kafka_bootstrap: str, work: Path, catalog_path: Path, jars: str,
            product_ids: list[str], say: Callable[[str], None]) -> dict[str, Any]:
    run = _Run(opts, users, kafka_bootstrap, work, catalog_path, jars)
    rng = random.Random(opts.seed)
    ts0 = int(time.time() * 1000) - 3_600_000
    ok = False
    try:
        kind = ", incremental" if opts.incremental and opts.backend == "rocksdb" else ""
        say(f"{users:,} users ({opts.backend}{kind}): starting the job")
        run.start(opts.timeout_s)
        assert run.proc is not None
        pid = run.proc.pid
        started, cpu0 = time.monotonic(), _tree_cpu(pid)
        _produce(run.config, (_event(i, i, ts0 + i // 1000, rng.choice(product_ids)) for i in range(users)))
        run.wait_records(users, opts.timeout_s)
        build_s, build_cpu = time.monotonic() - started, _tree_cpu(pid) - cpu0
        say(f"  state built: {users:,} events in {build_s:.0f} s ({build_cpu:.0f} CPU s)")
        rss = _tree_rss_bytes(pid)
        first = run.checkpoint("CONFIGURED", opts.timeout_s)
        say(f"  checkpoint 1 ({first['kind']}): {first['uploaded_bytes']:,} B in {first['duration_ms']} ms")
        settle_s, settle_cpu = _settle(pid)
        say(f"  settled in {settle_s:.0f} s ({settle_cpu:.1f} CPU s: compactions, JIT)")

        m = opts.measured_events
        lines = [_event(users + j, rng.randrange(users), ts0 + users // 1000 + j // 1000 + 1,
                             rng.choice(product_ids)) for j in range(m)]
        started, cpu0 = time.monotonic(), _tree_cpu(pid)
        _produce(run.config, iter(lines))
        run.wait_records(users + m, opts.timeout_s)
        phase_s, phase_cpu = time.monotonic() - started, _tree_cpu(pid) - cpu0
        say(f"  measured phase: {m:,} events in {phase_s:.1f} s, {phase_cpu:.1f} CPU s")
        incremental = run.checkpoint("CONFIGURED", opts.timeout_s)
        full = run.checkpoint("FULL", opts.timeout_s)
        say(f"  checkpoint 2 ({'incremental' if opts.incremental and opts.backend == 'rocksdb' else 'full'}): "
            f"{incremental['uploaded_bytes']:,} B in {incremental['duration_ms']} ms; "
            f"full: {full['uploaded_bytes']:,} B in {full['duration_ms']} ms")
        rss = max(rss, _tree_rss_bytes(pid))
        disk = _du(run.local_dir)
        ok = True
    finally:
        run.stop()
        with contextlib.suppress(Exception):
            from streamrec.bench.load import delete_topics

            delete_topics(run.config)
        # the state's files go; after a failure the job's log stays for a look
        for sub in ("rocksdb", "checkpoints"):
            shutil.rmtree(run.work / sub, ignore_errors=True)
        if ok:
            shutil.rmtree(run.work, ignore_errors=True)
    full_bytes = full["state_bytes"] or full["uploaded_bytes"] or 0
    return {
        "kind": "state",
        "name": f"state-{opts.backend}",
        "backend": opts.backend,
        "incremental": opts.incremental,
        "users": users,
        "events_per_user_in_state": 1,
        "products": opts.products,
        "dim": opts.dim,
        "bytes_per_user": round(full_bytes / users, 1),
        "process_rss_mib": round(rss / 2**20),
        "rocksdb_disk_mib": round(disk / 2**20, 1) if opts.backend == "rocksdb" else None,
        "build_s": round(build_s, 1),
        "build_cpu_s": round(build_cpu, 1),
        "checkpoint_first": first,
        "checkpoint_incremental": incremental,
        "checkpoint_full": full,
        "measured_events": m,
        "measured_s": round(phase_s, 2),
        "measured_cpu_s": round(phase_cpu, 2),
        "settle_s": round(settle_s, 1),
        "settle_cpu_s": round(settle_cpu, 1),
        "events_per_s": round(m / phase_s, 1) if phase_s else None,
        "events_per_s_per_core": round(m / phase_cpu, 1) if phase_cpu else None,
    }


def _profile(name: str) -> Any:
    """A profile by name; "test" honours STREAMREC_TEST_SLOT as the test tiers do (100 ports per slot)."""
    import dataclasses

    from streamrec import localstack

    base = localstack.get_profile(name)
    slot = int(os.environ.get("STREAMREC_TEST_SLOT", "0") or 0) if name == "test" else 0
    if not slot:
        return base
    ports = {f.name: getattr(base, f.name) + 100 * slot for f in dataclasses.fields(base) if f.name != "name"}
    return dataclasses.replace(base, name=f"test{slot}", **ports)


def run(opts: StateOptions, say: Callable[[str], None] = print) -> list[dict[str, Any]]:
    from streamrec import localstack
    from streamrec.bench.generator import synthetic_catalog

    profile = _profile(opts.profile)
    work = localstack.run_dir(profile) / "state-bench"
    work.mkdir(parents=True, exist_ok=True)
    catalog = synthetic_catalog(opts.products, opts.dim, seed=opts.seed)
    catalog_path = work / "catalog.npz"
    catalog.save(catalog_path)
    path = Path(opts.results_path) if opts.results_path else results.bench_dir() / "results.jsonl"
    jars = str(localstack.fetch().kafka_connector_jar)
    records = []
    with localstack.ensure(profile, ["kafka"]):
        for users in opts.users:
            machine = results.machine()
            record = measure(opts, users, profile.kafka_bootstrap, work, catalog_path, jars,
                             list(catalog.product_ids), say)
            record.update({"date": results.today(), "time": results.now_iso(), "note": opts.note,
                           "machine": machine, "loadavg_1m_end": round(os.getloadavg()[0], 2)})
            results.append(path, record)
            records.append(record)
    return records


def table(records: list[dict[str, Any]]) -> list[str]:
    lines = ["| users | backend | bytes/user | process RSS | RocksDB on disk | checkpoint full | "
             "checkpoint incremental | events/s per core |",
             "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in records:
        full, inc = r["checkpoint_full"], r["checkpoint_incremental"]
        disk = f"{r['rocksdb_disk_mib']} MiB" if r["rocksdb_disk_mib"] is not None else "-"
        lines.append(
            f"| {r['users']:,} | {r['backend']} | {r['bytes_per_user']:.0f} | {r['process_rss_mib']:,} MiB | {disk} | "
            f"{full['uploaded_bytes'] / 2**20:.1f} MiB, {full['duration_ms'] / 1000:.1f} s | "
            f"{inc['uploaded_bytes'] / 2**20:.1f} MiB, {inc['duration_ms'] / 1000:.1f} s | "
            f"{r['events_per_s_per_core']:,.0f} |")
    return lines


if __name__ == "__main__":
    if sys.argv[1:2] == ["job"]:
        logging.basicConfig(stream=sys.stderr, level=logging.INFO)
        _job(sys.argv[2], sys.argv[3])
