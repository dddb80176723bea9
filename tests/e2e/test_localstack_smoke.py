"""Smoke test of the local stack: real Kafka, Cassandra and Flink on the `test` profile's ports,
started once per session by conftest.py.
"""

from __future__ import annotations

import json
import socket
import subprocess
import urllib.request
import uuid
from pathlib import Path

import pytest

from streamrec import localstack as ls

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(flink_cluster: ls.Profile) -> ls.Profile:
    """Kafka, Cassandra and a Flink cluster on the test profile (see conftest.py)."""
    return flink_cluster


@pytest.fixture(scope="module")
def topic(stack: ls.Profile) -> str:
    """A fresh topic holding three records (the Flink test reads them back)."""
    from kafka import KafkaAdminClient, KafkaProducer
    from kafka.admin import NewTopic

    name = f"smoke-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    admin.create_topics([NewTopic(name, num_partitions=2, replication_factor=1)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
    for i in range(3):
        producer.send(name, key=f"k{i}".encode(), value=f"{name}-v{i}".encode())
    producer.flush()
    producer.close()
    return name


def test_a_second_fetch_downloads_nothing() -> None:
    first = ls.fetch()
    lib = ls.stack_dir() / "lib"
    def jars() -> dict[Path, int]:
        return {p: p.stat().st_mtime_ns for p in lib.rglob("*.jar")}

    before = jars()
    art = ls.fetch()
    assert art == first
    assert jars() == before and before
    assert art.kafka_connector_jar.name == "flink-sql-connector-kafka-5.0.0-2.2.jar"
    assert art.jamm_jar.exists()


def test_all_services_answer(stack: ls.Profile) -> None:
    assert ls.is_running(stack) == {"kafka": True, "cassandra": True, "flink": True}


def test_kafka_round_trip(stack: ls.Profile, topic: str) -> None:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=stack.kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=f"smoke-{uuid.uuid4().hex[:6]}",
        consumer_timeout_ms=10_000,
    )
    values: list[str] = []
    for message in consumer:  # stops after consumer_timeout_ms without records
        values.append(message.value.decode())
        if len(values) == 3:
            break
    consumer.close()
    values.sort()
    assert values == [f"{topic}-v{i}" for i in range(3)]


def test_cassandra_schema_and_vector_type(stack: ls.Profile) -> None:
    from cassandra.cluster import Cluster

    keyspace = f"smoke_{uuid.uuid4().hex[:8]}"
    cluster = Cluster(["127.0.0.1"], port=stack.cassandra_port, protocol_version=5)
    try:
        session = cluster.connect()
        session.execute(
            f"CREATE KEYSPACE {keyspace} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}"
        )
        session.execute(f"CREATE TABLE {keyspace}.t (id text PRIMARY KEY, v vector<float, 3>)")
        session.execute(f"INSERT INTO {keyspace}.t (id, v) VALUES ('a', [1.0, 2.0, 3.0])")
        row = session.execute(f"SELECT v FROM {keyspace}.t WHERE id = 'a'").one()
        assert list(row.v) == [1.0, 2.0, 3.0]
        session.execute(f"DROP KEYSPACE {keyspace}")
    finally:
        cluster.shutdown()


_KAFKA_JOB = """
import sys
from pyflink.common import WatermarkStrategy
from pyflink.common.serialization import SimpleStringSchema
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.datastream.connectors.kafka import KafkaOffsetsInitializer, KafkaSource

bootstrap, topic, jar = sys.argv[1:4]
env = StreamExecutionEnvironment.get_execution_environment()
env.add_jars(jar)
source = (
    KafkaSource.builder()
    .set_bootstrap_servers(bootstrap)
    .set_topics(topic)
    .set_group_id("smoke-flink")
    .set_starting_offsets(KafkaOffsetsInitializer.earliest())
    .set_bounded(KafkaOffsetsInitializer.latest())
    .set_value_only_deserializer(SimpleStringSchema())
    .build()
)
env.from_source(source, WatermarkStrategy.no_watermarks(), "kafka").map(lambda v: "seen:" + v).print()
env.execute(topic)
"""


def test_pyflink_job_reads_kafka_on_the_cluster(stack: ls.Profile, topic: str, tmp_path: Path) -> None:
    """A Python job with the Kafka connector jar runs to FINISHED on the standalone cluster."""
    job = tmp_path / "kafka_job.py"
    job.write_text(_KAFKA_JOB)
    jar = ls.fetch().kafka_connector_url
    proc = subprocess.run(
        [str(ls.flink_bin("flink")), "run", "-m", stack.flink_rest, "-py", str(job), stack.kafka_bootstrap, topic, jar],
        env=ls.flink_env(stack),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    with urllib.request.urlopen(f"http://{stack.flink_rest}/jobs/overview", timeout=10) as resp:
        jobs = json.load(resp)["jobs"]
    assert [j["state"] for j in jobs if j["name"] == topic] == ["FINISHED"]

    # print() goes to the TaskManagers' .out files in the profile's run folder.
    out = "".join(f.read_text() for f in (ls.run_dir(stack) / "flink" / "log").glob("*taskexecutor*.out"))
    assert sorted(line for line in out.splitlines() if line.startswith(f"seen:{topic}")) == [
        f"seen:{topic}-v{i}" for i in range(3)
    ]


def test_port_taken_by_a_stranger_is_refused() -> None:
    with socket.socket() as stranger:
        stranger.bind(("127.0.0.1", 0))
        stranger.listen()
        port = stranger.getsockname()[1]
        clash = ls.Profile("clash-smoke", port, port + 1, 1, 1, 1, 1, 1)
        with pytest.raises(ls.PortInUseError, match=str(port)):
            ls.start_kafka(clash)
    ls.wipe(clash)
