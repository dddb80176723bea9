"""A job run for test_poison_records.py, in a process of its own: thread mode embeds Python in the
JVM, whose interpreter must find this venv first on PATH when the JVM starts (as the job's
create_env arranges), which a JVM already started by another test of the session may not have.

The model raises for users named ``boom-...`` (:class:`PoisonedVariants`, shipped to the Flink
workers by value), so one record's own processing fails inside the update-and-recommend operator.
Prints one JSON line per output: ["rec", row] or ["dlq", dead letter].
"""

from __future__ import annotations

import json
import sys

import numpy as np

from streamrec.config import Config, JobConfig, ModelConfig
from streamrec.connectors.catalog import CatalogFromConfig
from streamrec.model.catalog import Catalog
from streamrec.model.model import ModelParams
from streamrec.model.variants import Variants

POISONED = "boom-"


class PoisonedVariants(Variants):
    def for_user(self, user_id: str) -> tuple[str, ModelParams]:
        if user_id.startswith(POISONED):
            raise ValueError(f"model failure for {user_id} \ud800")  # a lone surrogate in the text, too
        return super().for_user(user_id)


def main(records_path: str, catalog_path: str) -> None:
    import cloudpickle
    from pyflink.common import Configuration, Types
    from pyflink.datastream import StreamExecutionEnvironment

    import streamrec.jobs.pipeline as pipeline
    from tests.minicluster import poison

    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(20, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    Catalog(tuple(f"p{i}" for i in range(20)), vectors).save(catalog_path)
    # the per-event operator (Recommend); the batch path ranks in RankBatch, which has tests of its own
    config = Config(model=ModelConfig(catalog_path=catalog_path, top_k=3), job=JobConfig(parallelism=1,
                                                                                         hot_path="per-event"))
    with open(records_path, encoding="utf-8") as fh:
        raw = json.load(fh)

    cloudpickle.register_pickle_by_value(poison)
    pipeline.Variants = poison.PoisonedVariants  # type: ignore[misc]  # build_pipeline makes its own
    conf = Configuration().set_string("python.executable", sys.executable)
    conf.set_string("python.execution-mode", "thread")
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    env.set_parallelism(1)
    streams = pipeline.build_pipeline(env, env.from_collection(raw, type_info=Types.STRING()), config,
                                      CatalogFromConfig(config))
    tagged = streams.recommendations.map(lambda row: json.dumps(["rec", list(row)]), Types.STRING()).union(
        streams.dead_letters.map(lambda s: json.dumps(["dlq", s]), Types.STRING()))
    with tagged.execute_and_collect() as results:
        for line in results:
            print(line, flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
