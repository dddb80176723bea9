"""The real local stack for the e2e tier: Kafka, Cassandra (and a Flink cluster where asked).

Services start once per test session on the `test` profile's own ports and data folder, so a
stack the user runs with `make up` (the `dev` profile) is never touched; whatever this session
started, it stops. Each test gets its own keyspace, topics and consumer group.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from streamrec import localstack
from streamrec.config import CassandraConfig, Config, JobConfig, KafkaConfig, ModelConfig
from streamrec.connectors.cassandra import drop_keyspace, ensure_schema, store_catalog
from streamrec.connectors.kafka import ensure_topics
from streamrec.datasets import read_uci
from streamrec.embeddings import build_catalog
from streamrec.model.catalog import Catalog

REPO = Path(__file__).resolve().parents[2]
UCI = REPO.parent / "shared" / "data" / "uci-online-retail" / "onlineretail.csv.gz"


def _test_profile() -> localstack.Profile:
    """The `test` profile, or a copy shifted by 100 ports per STREAMREC_TEST_SLOT (1, 2, ...) so
    that several test sessions can run side by side on one machine."""
    base = localstack.PROFILES["test"]
    slot = int(os.environ.get("STREAMREC_TEST_SLOT", "0") or 0)
    if slot == 0:
        return base
    ports = {f.name: getattr(base, f.name) + 100 * slot for f in dataclasses.fields(base) if f.name != "name"}
    return dataclasses.replace(base, name=f"test{slot}", **ports)


PROFILE = _test_profile()


@pytest.fixture(scope="session")
def artifacts():
    return localstack.fetch()


@pytest.fixture(scope="session")
def services(artifacts):
    """Kafka + Cassandra on the test profile; stopped at the end if this session started them."""
    with localstack.ensure(PROFILE, ["kafka", "cassandra"]):
        yield PROFILE


@pytest.fixture(scope="session")
def flink_cluster(services):
    """A standalone Flink cluster (1 JobManager, 1 TaskManager) started from the wheel's scripts."""
    with localstack.ensure(PROFILE, ["flink"], taskmanagers=1):
        yield PROFILE


@pytest.fixture(scope="module")
def isolated_flink_cluster(services):
    """A second standalone cluster whose TaskManager runs as on another host (outside the checkout,
    PATH and PYTHONPATH without the repository or its venv: localstack.isolated_host). Its own
    Flink ports (10 above the profile's), so it runs beside `flink_cluster`; Kafka and Cassandra
    are the session's."""
    profile = dataclasses.replace(PROFILE, name=f"{PROFILE.name}-isolated",
                                  flink_rest_port=PROFILE.flink_rest_port + 10,
                                  flink_metrics_port=PROFILE.flink_metrics_port + 10,  # a range of its own
                                  flink_rpc_port=PROFILE.flink_rpc_port + 10)
    stack = None
    try:
        with localstack.ensure(profile, ["flink"], taskmanagers=1, isolated=True) as stack:
            yield profile
    finally:
        if stack is not None and stack.started:
            # its copy of Flink and the unpacked Python of every job it ran (~700 MB), once stopped
            shutil.rmtree(localstack.isolated_host_dir(profile), ignore_errors=True)


@pytest.fixture(scope="session")
def uci_history():
    if not UCI.exists():
        pytest.fail(f"real data missing: {UCI} (the e2e tier reads ../shared/data)")
    return read_uci(UCI)


@pytest.fixture(scope="session")
def uci_catalog(uci_history) -> Catalog:
    # 64 dimensions: enough for title words to carry a search (16 blurs "lantern" into candles)
    return build_catalog(uci_history, dim=64)


@pytest.fixture
def e2e_config(services, artifacts, uci_catalog):
    """A fresh keyspace and topic set on the real services, with the UCI catalog loaded."""
    with fresh_config(artifacts, uci_catalog) as config:
        yield config


@contextlib.contextmanager
def fresh_config(artifacts: localstack.Artifacts, catalog: Catalog) -> Iterator[Config]:
    """e2e_config for any scope (a module whose tests share one job run, too)."""
    tag = uuid.uuid4().hex[:8]
    config = Config(
        kafka=KafkaConfig(bootstrap=f"127.0.0.1:{PROFILE.kafka_port}", events_topic=f"events-{tag}",
                          dlq_topic=f"events-dlq-{tag}", products_topic=f"products-{tag}",
                          consumer_group=f"streamrec-{tag}"),
        cassandra=CassandraConfig(port=PROFILE.cassandra_port, keyspace=f"e2e_{tag}"),
        job=JobConfig(checkpoint_interval_ms=2000, jars=str(artifacts.kafka_connector_jar)),
        model=ModelConfig(top_k=5),
    )
    ensure_topics(config.kafka, partitions=2)
    ensure_schema(config.cassandra)
    store_catalog(config.cassandra, catalog)
    try:
        yield config
    finally:
        drop_keyspace(config.cassandra)
