"""CPU per event of the job's topology alone: ``build_pipeline`` fed from a collection of generated
JSON events, its outputs discarded in the JVM. No Kafka, no Cassandra, no harness sharing the
cores, so a change to the operators shows here without the end-to-end run's noise.

Each size runs in a fresh process (its own minicluster); the figures are the differences between a
small run and a large one, which removes start-up, class loading and most of the JIT warm-up.
CPU is read per thread of the job's JVM (``/proc/<pid>/task``), sampled while the job runs because
a task's threads are gone when ``execute`` returns.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from streamrec.bench.procstat import descendants, process_table, thread_cpu


def _jvm_pid() -> int:
    for pid in descendants(process_table(), [os.getpid()]) - {os.getpid()}:
        try:
            if "java" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace"):
                return pid
        except OSError:  # gone since the table was read
            continue
    raise RuntimeError("the PyFlink gateway JVM was not found among this process's children")


def _threads(pid: int) -> dict[int, tuple[str, float]]:
    """tid -> (thread name, CPU seconds) of every thread of ``pid``."""
    found = {}
    for tid, cpu in thread_cpu(pid).items():
        try:
            found[tid] = (Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip(), cpu)
        except OSError:  # the thread ended after its CPU was read
            pass
    return found


def run_once(events: int, products: int, dim: int, users: int) -> dict[str, Any]:
    """One job over ``events`` generated events: wall seconds and CPU seconds per JVM thread name."""
    from pyflink.common import Types
    from pyflink.java_gateway import get_gateway

    from streamrec.bench.generator import EventGenerator, synthetic_catalog
    from streamrec.config import Config
    from streamrec.jobs.job import create_env
    from streamrec.jobs.pipeline import build_pipeline

    catalog = synthetic_catalog(products, dim)
    config = Config.from_env(job={"checkpoint_interval_ms": 0})
    env = create_env(config)
    stream = iter(EventGenerator(catalog.product_ids, users, seed=1))
    raw = [next(stream).to_json() for _ in range(events)]
    streams = build_pipeline(env, env.from_collection(raw, type_info=Types.STRING()), config, lambda: catalog)
    discard = get_gateway().jvm.org.apache.flink.streaming.api.functions.sink.v2.DiscardingSink
    streams.recommendations._j_data_stream.sinkTo(discard())
    streams.dead_letters._j_data_stream.sinkTo(discard())

    pid = _jvm_pid()
    first = dict(_threads(pid))
    last: dict[int, tuple[str, float]] = {}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for tid, value in _threads(pid).items():
                first.setdefault(tid, (value[0], 0.0))
                last[tid] = value
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.monotonic()
    env.execute("streamrec-topology-bench")
    wall = time.monotonic() - start
    done.set()
    sampler.join()
    cpu: dict[str, float] = defaultdict(float)
    for tid, (name, seconds) in last.items():
        cpu[name] += seconds - first[tid][1]
    return {"events": events, "wall_s": wall, "cpu_s": dict(cpu)}


def measure(events: int, base: int = 10_000, products: int = 10_000, dim: int = 64,
            users: int = 3_000) -> dict[str, Any]:
    """us per event (wall, all JVM threads, per thread name) over the ``events`` beyond ``base``."""
    runs = []
    for n in (base, base + events):
        proc = subprocess.run([sys.executable, "-m", "streamrec.bench.topology", str(n), str(products), str(dim),
                               str(users)], capture_output=True, text=True, check=False)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        if proc.returncode != 0 or not lines:
            raise RuntimeError(f"the topology run of {n} events failed:\n{proc.stderr[-3000:]}")
        runs.append(json.loads(lines[-1]))
    small, large = runs
    per_thread = {name: (large["cpu_s"].get(name, 0.0) - small["cpu_s"].get(name, 0.0)) / events * 1e6
                  for name in large["cpu_s"]}
    return {
        "events": events, "products": products, "dim": dim, "users": users,
        "wall_us_per_event": (large["wall_s"] - small["wall_s"]) / events * 1e6,
        "cpu_us_per_event": sum(per_thread.values()),
        "threads_us_per_event": dict(sorted(per_thread.items(), key=lambda kv: -kv[1])),
    }


if __name__ == "__main__":
    n, products, dim, users = (int(a) for a in sys.argv[1:5])
    print(json.dumps(run_once(n, products, dim, users)), flush=True)
