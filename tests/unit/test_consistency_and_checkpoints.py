"""Issue 22, part 6: the Cassandra consistency levels of writes and reads and the checkpoint
failures a job tolerates are settings (documented defaults: LOCAL_ONE for one node, LOCAL_QUORUM
for a cluster), and they reach the drivers: every session reads at the read level, every write
statement (the job's Python writer and its batches, catalog load and publish) goes at the write
level, and the Java sink gets the write level."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from cassandra import ConsistencyLevel
from cassandra.cluster import EXEC_PROFILE_DEFAULT

from streamrec.config import CassandraConfig, Config
from streamrec.connectors import cassandra as cass
from streamrec.model.catalog import Catalog

pytestmark = pytest.mark.unit

CLUSTER = Config(cassandra=CassandraConfig(write_consistency="LOCAL_QUORUM", read_consistency="LOCAL_QUORUM"))


def test_the_defaults_suit_one_node_and_the_env_vars_set_a_cluster():
    c = Config()
    assert (c.cassandra.write_consistency, c.cassandra.read_consistency) == ("LOCAL_ONE", "LOCAL_ONE")
    assert c.job.checkpoint_tolerable_failures == 3
    e = Config.from_env({"STREAMREC_CASSANDRA_WRITE_CONSISTENCY": "LOCAL_QUORUM",
                         "STREAMREC_CASSANDRA_READ_CONSISTENCY": "QUORUM",
                         "STREAMREC_CHECKPOINT_TOLERABLE_FAILURES": "0"})
    assert (e.cassandra.write_consistency, e.cassandra.read_consistency, e.job.checkpoint_tolerable_failures) == (
        "LOCAL_QUORUM", "QUORUM", 0)


@pytest.mark.parametrize("changes, var", [
    ({"cassandra": {"write_consistency": "LOCAL_QUORUMM"}}, "STREAMREC_CASSANDRA_WRITE_CONSISTENCY"),
    ({"cassandra": {"read_consistency": "ANY"}}, "STREAMREC_CASSANDRA_READ_CONSISTENCY"),  # a write-only level
    ({"job": {"checkpoint_tolerable_failures": -1}}, "STREAMREC_CHECKPOINT_TOLERABLE_FAILURES"),
])
def test_settings_that_cannot_work_are_refused_with_their_variable(changes, var):
    with pytest.raises(ValueError, match=var):
        Config().replace(**changes)


class FakeStatement:
    def __init__(self, cql: str) -> None:
        self.cql = cql
        self.consistency_level: Any = None
        self.is_idempotent = False


class FakeSession:
    def __init__(self, profiles: dict[Any, Any]) -> None:
        self.profiles = profiles
        self.prepared: list[FakeStatement] = []
        self.cluster = self

    def prepare(self, cql: str) -> FakeStatement:
        self.prepared.append(FakeStatement(cql))
        return self.prepared[-1]

    def execute(self, statement: Any, *args: Any, **kwargs: Any) -> list[Any]:
        return []  # a keyspace with no columns yet: the writer adds what it needs

    def shutdown(self) -> None:
        pass


@pytest.fixture
def sessions(monkeypatch) -> list[FakeSession]:
    import cassandra.cluster

    made: list[FakeSession] = []

    class FakeCluster:
        def __init__(self, **kwargs: Any) -> None:
            assert "load_balancing_policy" not in kwargs  # the driver refuses it beside execution profiles
            self.profiles = kwargs["execution_profiles"]

        def connect(self, keyspace: Any = None) -> FakeSession:
            made.append(FakeSession(self.profiles))
            return made[-1]

    monkeypatch.setattr(cassandra.cluster, "Cluster", FakeCluster)
    return made


def test_a_session_reads_at_the_read_level(sessions):
    cass.connect(Config(cassandra=CassandraConfig(read_consistency="LOCAL_QUORUM")).cassandra, "ks")
    assert sessions[0].profiles[EXEC_PROFILE_DEFAULT].consistency_level == ConsistencyLevel.LOCAL_QUORUM
    cass.connect(Config().cassandra, "ks")
    assert sessions[1].profiles[EXEC_PROFILE_DEFAULT].consistency_level == ConsistencyLevel.LOCAL_ONE


def test_the_python_writer_writes_rows_and_batches_at_the_write_level(sessions):
    writer = cass.RecommendationWriter(CLUSTER.replace(cassandra={"read_consistency": "ONE"}).cassandra)
    writer.open()
    assert [s.consistency_level for s in sessions[0].prepared] == [ConsistencyLevel.LOCAL_QUORUM] * 2
    from cassandra.query import SimpleStatement

    batch, _ = writer.batch([(SimpleStatement("INSERT 1"), ()), (SimpleStatement("INSERT 2"), ())])
    assert batch.consistency_level == ConsistencyLevel.LOCAL_QUORUM


def test_catalog_publish_writes_at_the_write_level(sessions):
    store = cass.ProductStore(CLUSTER.cassandra)
    stmt = store._statement(("in_stock",))
    assert stmt.consistency_level == ConsistencyLevel.LOCAL_QUORUM


def test_catalog_load_writes_at_the_write_level(sessions, monkeypatch):
    import cassandra.concurrent

    monkeypatch.setattr(cassandra.concurrent, "execute_concurrent_with_args",
                        lambda session, stmt, args, **kw: [(True, None)] * len(args))
    catalog = Catalog(("p1",), np.ones((1, 2), dtype=np.float32))
    assert cass.store_catalog(CLUSTER.cassandra, catalog) == 1
    [insert] = [s for s in sessions[0].prepared if s.cql.startswith("INSERT")]
    assert insert.consistency_level == ConsistencyLevel.LOCAL_QUORUM


def test_the_java_sink_gets_the_write_level(monkeypatch):
    from streamrec.connectors import flink

    seen: list[tuple[Any, ...]] = []
    monkeypatch.setattr(flink, "java_class", lambda name: lambda *args: seen.append(args) or "sink")
    monkeypatch.setattr(flink, "Sink", lambda j: j)
    flink.java_cassandra_sink(CLUSTER)
    assert seen[0][-1] == "LOCAL_QUORUM"
