"""Entry point of the streamrec Flink job: real sources and sinks around ``build_pipeline``.

Run it with ``streamrec job run`` (local minicluster) or ``flink run -py streamrec/jobs/job.py``
(a cluster). All settings come from ``STREAMREC_*`` environment variables of the submitting
process (see :class:`streamrec.config.Config`); they travel inside the job graph, so the
TaskManagers need none of them.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Optional

from pyflink.common import Configuration, WatermarkStrategy
from pyflink.datastream import CheckpointingMode, StreamExecutionEnvironment

from streamrec.config import Config
from streamrec.connectors.catalog import CatalogFromConfig
from streamrec.connectors.flink import attach_cassandra
from streamrec.connectors.javasupport import add_support_jar
from streamrec.connectors.kafka import dead_letter_sink, events_source, products_source, with_codec_jars
from streamrec.jobs.pipeline import build_pipeline
from streamrec.metrics import reporter_config, reporter_jar

MAX_PARALLELISM = 128

RESTART_STRATEGY = {
    "restart-strategy.type": "exponential-delay",
    "restart-strategy.exponential-delay.initial-backoff": "1 s",
    "restart-strategy.exponential-delay.max-backoff": "30 s",
    "restart-strategy.exponential-delay.backoff-multiplier": "2.0",
    "restart-strategy.exponential-delay.reset-backoff-threshold": "1 h",
    "restart-strategy.exponential-delay.jitter-factor": "0.1",
    # unbounded (Flink's default, spelled out): the job keeps retrying until the outage ends
    "restart-strategy.exponential-delay.attempts-before-reset-backoff": "2147483647",
}


# flink-conf/config.yaml's RocksDB options, also set by a job that picks RocksDB itself: a local
# minicluster reads no config.yaml, and without them 1M users ran 8x slower than on the heap (their
# index blocks did not stay in the block cache, so every get read and decompressed them again;
# README, "Sizing"). A unit test keeps the two the same.
ROCKSDB_OPTIONS = {
    "state.backend.rocksdb.memory.partitioned-index-filters": "true",
    "state.backend.rocksdb.use-bloom-filter": "true",
}


def state_backend_settings(config: Config) -> dict[str, str]:
    """The job's own state backend, over the cluster's default (`flink run` of a small job may keep
    its state on the heap); nothing when the job names none."""
    backend = config.job.state_backend
    if not backend:
        return {}
    settings = {"state.backend.type": backend,
                "execution.checkpointing.incremental": str(config.job.state_incremental).lower()}
    if backend == "rocksdb":
        settings.update(ROCKSDB_OPTIONS)
    return settings


def _venv_first_on_path() -> None:
    """Put this interpreter's folder first on PATH before the local minicluster's JVM starts.

    Thread mode embeds Python in that JVM, and the embedded interpreter finds its site-packages
    through the first `python` on PATH, not through `python.executable`: without an activated venv
    it is the system's, and every Python operator fails with "No module named 'pemja'"."""
    bin_dir = os.path.dirname(sys.executable)
    parts = os.environ.get("PATH", "").split(os.pathsep)
    if parts[:1] != [bin_dir]:
        os.environ["PATH"] = os.pathsep.join([bin_dir, *parts])


def _reporter_on_class_path() -> None:
    """Flink's Prometheus reporter for the local minicluster. A cluster loads it from its plugins/
    folder; the minicluster of PyFlink's gateway finds no plugins (its log: "Available factories:
    []"), so the jar goes on the gateway's class path, through the one variable its launcher appends
    there. Before anything starts the gateway's JVM (a pyflink Configuration does)."""
    jar = reporter_jar()
    if jar is None:
        raise RuntimeError("STREAMREC_METRICS_PORT is set, but the apache-flink wheel has no Prometheus reporter jar")
    if str(jar) not in os.environ.get("HADOOP_CLASSPATH", ""):
        os.environ["HADOOP_CLASSPATH"] = os.pathsep.join(
            p for p in (os.environ.get("HADOOP_CLASSPATH"), str(jar)) if p)


def local_checkpoint_dir(base: Optional[Path] = None) -> Path:
    """A fresh folder for a local minicluster's checkpoints when STREAMREC_CHECKPOINT_DIR is unset:
    ``<tmp>/streamrec-checkpoints/<pid>-...``. It only serves restarts inside this run, so it goes
    when the process exits, and the folders of runs whose process is gone (killed) are removed
    here: local runs no longer leave one folder each behind."""
    base = base or Path(tempfile.gettempdir()) / "streamrec-checkpoints"
    base.mkdir(parents=True, exist_ok=True)
    for old in base.iterdir():
        pid = old.name.split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    folder = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=base))
    atexit.register(shutil.rmtree, folder, True)
    return folder


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def create_env(config: Config) -> StreamExecutionEnvironment:
    # `flink run` sets PYFLINK_GATEWAY_PORT; without it the job starts a local minicluster
    local = "PYFLINK_GATEWAY_PORT" not in os.environ
    if local:
        _venv_first_on_path()
        if config.job.metrics_port:
            _reporter_on_class_path()
    conf = Configuration()
    # A Python operator hands its results back to Java when a bundle ends (or a checkpoint barrier
    # arrives). At low input rates a bundle ends on time, so this bounds the latency the Python
    # steps add to a recommendation (see Config.python_bundle_time_ms).
    conf.set_string("python.fn-execution.bundle.time", str(config.job.python_bundle_time_ms))
    conf.set_string("python.fn-execution.bundle.size", str(config.job.python_bundle_size))
    # The Cassandra writer awaits its writes in flight when PyFlink reads its gauge at each bundle
    # end (connectors/flink.py); keep Python metrics on even where a cluster turns them off.
    conf.set_string("python.metric.enabled", "true")
    # Keyed state the Python side caches; beyond it, every state access is a round trip to Java.
    conf.set_string("python.state.cache-size", str(config.job.python_state_cache_size))
    conf.set_string("python.execution-mode", config.job.python_execution_mode)
    # Never give up: a lost TaskManager or a Cassandra outage must end in recovery, not a FAILED
    # job (reliability targets 5, 6). Without this, a local minicluster (`streamrec job run`) only
    # restarts while checkpointing is on (Flink's fallback); set per job, it also wins over a
    # cluster's default. Same values as flink-conf/config.yaml.
    for key, value in RESTART_STRATEGY.items():
        conf.set_string(key, value)
    if config.job.checkpoint_dir:
        conf.set_string("execution.checkpointing.dir", config.job.checkpoint_dir)
    elif local and config.job.checkpoint_interval_ms > 0:
        # Without a folder a minicluster keeps checkpoints in the JobManager's memory, which refuses
        # a state over 5 MB (~10,000 users): every checkpoint after that fails and fails the job
        # over, for good. The folder only serves restarts inside this run.
        conf.set_string("execution.checkpointing.dir", local_checkpoint_dir().as_uri())
    for key, value in state_backend_settings(config).items():
        conf.set_string(key, value)
    if local:
        # Python functions run with this process's interpreter (its venv has pyflink, pemja and our
        # code). Under `flink run`, -pyexec or the cluster's configuration decides.
        conf.set_string("python.executable", sys.executable)
    if local and config.job.metrics_port:
        for key, value in reporter_config(config.job.metrics_port).items():
            conf.set_string(key, value)
    if local and config.job.minicluster_rest_port:
        # Under `flink run`, rest.port names the cluster the client submits to and must stay as the
        # client set it.
        conf.set_string("rest.port", str(config.job.minicluster_rest_port))
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    if config.job.parallelism > 0 or local:
        env.set_parallelism(config.job.parallelism or 1)
    # Keyed state is split into max-parallelism key groups; a savepoint only restores into the same
    # number. Flink derives it from the parallelism (128 up to parallelism 85, more above), so fix
    # it: a savepoint taken at any parallelism resumes at any other up to 128.
    env.set_max_parallelism(MAX_PARALLELISM)
    env.set_buffer_timeout(config.job.buffer_timeout_ms)
    if config.job.checkpoint_interval_ms > 0:
        env.enable_checkpointing(config.job.checkpoint_interval_ms, CheckpointingMode.EXACTLY_ONCE)
        # Flink's default (0) fails the job over at the first checkpoint that fails or times out: one
        # slow checkpoint (a Cassandra hiccup under load) would cost a restart and a replay.
        env.get_checkpoint_config().set_tolerable_checkpoint_failure_number(config.job.checkpoint_tolerable_failures)
    # with the codec jar the shaded Kafka connector lacks (zstd-jni), wherever STREAMREC_JARS names the connector
    jars = [j if "://" in j else f"file://{j}" for j in with_codec_jars(config.job.jar_list)]
    if jars:
        env.add_jars(*jars)
    # the events source's deserializer, the Cassandra sink (its driver shaded in), the popularity counter
    add_support_jar(env)
    return env


def build_job(config: Config) -> StreamExecutionEnvironment:
    env = create_env(config)
    raw = (
        env.from_source(events_source(config.kafka), WatermarkStrategy.no_watermarks(), "kafka-events")
        .uid("kafka-events")
    )
    products = (
        env.from_source(products_source(config.kafka), WatermarkStrategy.no_watermarks(), "kafka-products")
        .uid("kafka-products")
    )
    streams = build_pipeline(env, raw, config, CatalogFromConfig(config), products)
    streams.dead_letters.sink_to(dead_letter_sink(config.kafka)).name("kafka-dlq").uid("kafka-dlq")
    attach_cassandra(streams.recommendations, config)
    return env


def main(argv: Optional[list[str]] = None) -> None:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    config = Config.from_env()
    build_job(config).execute("streamrec")


if __name__ == "__main__":
    main()
