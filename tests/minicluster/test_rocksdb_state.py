"""The users' state in RocksDB (the cluster's default backend, issue 16 part 1): the fast path's JVM
operators keep each user's history in RocksDB across batches and checkpoints exactly as on the heap,
and the job carries the backend setting to Flink."""

import json
import sys
from collections import defaultdict

import numpy as np
import pytest

from streamrec.config import Config, JobConfig, ModelConfig
from streamrec.connectors.catalog import CatalogFromConfig
from streamrec.jobs.pipeline import build_pipeline, model_params
from streamrec.model.catalog import Catalog
from streamrec.model.model import UserState, apply_event, write_timestamp_us
from streamrec.udfs.operators import RECOMMENDATION_FIELDS
from tests.minicluster.collected import product_ids, random_events, unit_vectors

pytestmark = pytest.mark.minicluster


def test_the_job_asks_flink_for_the_configured_backend_and_incremental_checkpoints(tmp_path):
    from streamrec.jobs.job import create_env

    env = create_env(Config(job=JobConfig(checkpoint_dir=tmp_path.as_uri(), state_backend="rocksdb",
                                          state_incremental=True)))
    conf = env._j_stream_execution_environment.getConfiguration()
    assert conf.toMap().get("state.backend.type") == "rocksdb"
    assert conf.toMap().get("execution.checkpointing.incremental") == "true"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from pyflink.common import Configuration, Types
    from pyflink.datastream import CheckpointingMode, StreamExecutionEnvironment

    from streamrec.bench.state import cluster_state_settings

    catalog = Catalog(product_ids(40), unit_vectors(np.random.default_rng(3), 40))
    path = tmp_path_factory.mktemp("catalog") / "catalog.npz"
    catalog.save(path)
    # small batches: a user's events span many batches, so their state is read back from RocksDB
    config = Config(model=ModelConfig(catalog_path=str(path), top_k=5), job=JobConfig(parallelism=2, hot_path="batch",
                                                                                      batch_max_events=8))

    valid = random_events(600, users=30, products=40, types=["view", "click", "add_to_cart", "purchase"], seed=11)
    checkpoints = tmp_path_factory.mktemp("checkpoints")
    local = tmp_path_factory.mktemp("rocksdb")
    conf = (
        Configuration()
        .set_string("python.executable", sys.executable)
        .set_string("state.backend.type", "rocksdb")
        .set_string("execution.checkpointing.incremental", "true")
        .set_string("execution.checkpointing.dir", checkpoints.as_uri())
    )
    # the cluster's RocksDB options (flink-conf/config.yaml: partitioned index and filter blocks, bloom
    # filters) and one cluster slot's managed memory, as `streamrec bench state` runs them
    for key, value in cluster_state_settings(str(local)).items():
        conf.set_string(key, value)
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    env.set_parallelism(2)
    # checkpoints while the events flow: RocksDB snapshots are taken between batches
    env.enable_checkpointing(200, CheckpointingMode.EXACTLY_ONCE)
    streams = build_pipeline(env, env.from_collection([e.to_json() for e in valid], type_info=Types.STRING()),
                             config, CatalogFromConfig(config),
                             env.from_collection([json.dumps({"product_id": "p1", "title": "lamp"})],
                                                 type_info=Types.STRING()))
    with streams.recommendations.map(lambda row: json.dumps(list(row)), Types.STRING()).execute_and_collect() as rows:
        recs = [dict(zip(RECOMMENDATION_FIELDS, json.loads(v))) for v in rows]
    return catalog, config, valid, recs, checkpoints


def test_every_event_comes_out_once_with_state_kept_in_rocksdb(run):
    _, _, valid, recs, _ = run
    assert sorted(r["event_id"] for r in recs) == sorted(e.event_id for e in valid)


def test_each_users_state_grows_event_by_event_as_the_offline_model_computes_it(run):
    catalog, config, valid, recs, _ = run
    params = model_params(config)
    by_id = {e.event_id: e for e in valid}
    per_user = defaultdict(list)
    for r in recs:
        per_user[r["user_id"]].append(r)
    for user, rows in per_user.items():
        rows.sort(key=lambda r: r["write_ts"])  # grows with every event of a user: processing order
        state = UserState()
        for row in rows:
            state = apply_event(state, by_id[row["event_id"]], catalog, params, config.model.user_ttl_ms)
            assert row["write_ts"] == write_timestamp_us(state), (user, row["event_id"])
