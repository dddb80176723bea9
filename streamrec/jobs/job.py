"""Entry point of the streamrec Flink job: real sources and sinks around ``build_pipeline``.

Run it with ``streamrec job run`` (local minicluster) or ``flink run -py streamrec/jobs/job.py``
(a cluster). All settings come from ``STREAMREC_*`` environment variables of the submitting
process (see :class:`streamrec.config.Config`); they travel inside the job graph, so the
TaskManagers need none of them.
"""

from __future__ import annotations

import logging
import sys
from typing import Optional

from pyflink.common import Configuration, WatermarkStrategy
from pyflink.datastream import CheckpointingMode, StreamExecutionEnvironment

from streamrec.config import Config
from streamrec.connectors.catalog import CatalogFromConfig
from streamrec.connectors.flink import attach_cassandra
from streamrec.connectors.kafka import dead_letter_sink, events_source
from streamrec.jobs.pipeline import build_pipeline


def create_env(config: Config) -> StreamExecutionEnvironment:
    conf = Configuration()
    # A Python operator hands its results back to Java when a bundle ends (or a checkpoint barrier
    # arrives). At low input rates a bundle ends on time, so this bounds the latency the Python
    # steps add to a recommendation; the size limit keeps Flink's default (100k records).
    conf.set_string("python.fn-execution.bundle.time", "200")
    # Keyed state the Python side caches; beyond it, every state access is a round trip to Java.
    conf.set_string("python.state.cache-size", "10000")
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    env.set_parallelism(config.parallelism)
    if config.checkpoint_interval_ms > 0:
        env.enable_checkpointing(config.checkpoint_interval_ms, CheckpointingMode.EXACTLY_ONCE)
    jars = [j if "://" in j else f"file://{j}" for j in config.jar_list]
    if jars:
        env.add_jars(*jars)
    return env


def build_job(config: Config) -> StreamExecutionEnvironment:
    env = create_env(config)
    raw = (
        env.from_source(events_source(config), WatermarkStrategy.no_watermarks(), "kafka-events")
        .uid("kafka-events")
    )
    streams = build_pipeline(env, raw, config, CatalogFromConfig(config))
    streams.dead_letters.sink_to(dead_letter_sink(config)).name("kafka-dlq").uid("kafka-dlq")
    attach_cassandra(streams.recommendations, config)
    return env


def main(argv: Optional[list[str]] = None) -> None:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    config = Config.from_env()
    build_job(config).execute("streamrec")


if __name__ == "__main__":
    main()
