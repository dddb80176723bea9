"""Issue 16, parts 1 and 2: the state backend setting and the local cluster's JobManager high
availability configuration (no process is started here)."""

import dataclasses

import pytest
import yaml

from streamrec import localstack
from streamrec.config import Config, JobConfig
from streamrec.localstack.flinkconf import _write_flink_conf, ha_enabled


def test_the_state_backend_is_the_clusters_unless_a_job_names_one():
    assert Config().job.state_backend == ""
    config = Config.from_env({"STREAMREC_STATE_BACKEND": "hashmap", "STREAMREC_STATE_INCREMENTAL": "false"})
    assert (config.job.state_backend, config.job.state_incremental) == ("hashmap", False)
    with pytest.raises(ValueError, match="STREAMREC_STATE_BACKEND"):
        Config(job=JobConfig(state_backend="forst-typo"))


def test_the_cluster_configuration_keeps_users_in_rocksdb_with_incremental_checkpoints():
    conf = localstack._flatten(yaml.safe_load((localstack.repo_root() / "flink-conf" / "config.yaml").read_text()))
    assert conf["state.backend.type"] == "rocksdb"
    assert conf["execution.checkpointing.incremental"] is True


def test_a_job_that_picks_rocksdb_itself_gets_the_clusters_rocksdb_options():
    from streamrec.jobs.job import state_backend_settings

    conf = localstack._flatten(yaml.safe_load((localstack.repo_root() / "flink-conf" / "config.yaml").read_text()))
    cluster = {k: str(v).lower() for k, v in conf.items() if k.startswith("state.backend.rocksdb.")}
    rocksdb = state_backend_settings(Config(job=JobConfig(state_backend="rocksdb")))
    assert {k: v for k, v in rocksdb.items() if k.startswith("state.backend.rocksdb.")} == cluster
    assert rocksdb["state.backend.type"] == "rocksdb"
    heap = state_backend_settings(Config(job=JobConfig(state_backend="hashmap", state_incremental=False)))
    assert heap == {"state.backend.type": "hashmap", "execution.checkpointing.incremental": "false"}
    assert state_backend_settings(Config()) == {}  # the cluster's


@pytest.fixture
def profile(tmp_path, monkeypatch):
    monkeypatch.setenv("STREAMREC_STACK_DIR", str(tmp_path))
    return dataclasses.replace(localstack.PROFILES["test"], name="unit-ha", zookeeper_port=22999)


def _written(p) -> dict:
    return yaml.safe_load((localstack.run_dir(p) / "flink" / "conf" / "config.yaml").read_text())


def test_an_ha_cluster_elects_its_jobmanager_in_the_profiles_zookeeper(profile):
    _write_flink_conf(profile, taskmanagers=1, ha=True)
    conf = _written(profile)
    assert conf["high-availability.type"] == "zookeeper"
    assert conf["high-availability.zookeeper.quorum"] == "127.0.0.1:22999"
    assert conf["high-availability.cluster-id"] == "/streamrec-unit-ha"
    assert conf["high-availability.storageDir"] == (localstack.run_dir(profile) / "flink" / "ha").as_uri()
    assert ha_enabled(profile)


def test_a_cluster_without_ha_has_no_zookeeper_settings(profile):
    _write_flink_conf(profile, taskmanagers=1)
    assert not any(key.startswith("high-availability") for key in _written(profile))
    assert not ha_enabled(profile)


def test_the_state_bench_table_names_the_figures_of_the_sizing_table():
    from streamrec.bench.state import table

    record = {"users": 1000, "backend": "rocksdb", "bytes_per_user": 150.4, "process_rss_mib": 900,
              "rocksdb_disk_mib": 0.5, "events_per_s_per_core": 8000.0,
              "checkpoint_full": {"uploaded_bytes": 150_400, "duration_ms": 300},
              "checkpoint_incremental": {"uploaded_bytes": 20_000, "duration_ms": 120}}
    lines = table([record])
    assert lines[0].startswith("| users | backend | bytes/user")
    assert lines[2] == "| 1,000 | rocksdb | 150 | 900 MiB | 0.5 MiB | 0.1 MiB, 0.3 s | 0.0 MiB, 0.1 s | 8,000 |"


def test_the_state_bench_runs_rocksdb_as_a_cluster_slot_would():
    from streamrec.bench.state import cluster_slot_managed_bytes, cluster_state_settings

    settings = cluster_state_settings("/data/rocksdb")
    # the cluster's RocksDB options travel to the bench's minicluster, which reads no config.yaml
    assert settings["state.backend.rocksdb.memory.partitioned-index-filters"] == "true"
    assert settings["state.backend.rocksdb.use-bloom-filter"] == "true"
    assert settings["state.backend.rocksdb.localdir"] == "/data/rocksdb"
    # a 1536m TaskManager with 2 slots: (1536 - 256 metaspace - 192 overhead) * 0.4 / 2 = 217.6 MiB
    assert settings["taskmanager.memory.managed.size"] == "217m"
    assert cluster_slot_managed_bytes({"taskmanager.memory.process.size": "4g",
                                       "taskmanager.numberOfTaskSlots": 1}) == int((4096 - 256 - 409.6) * 0.4 * 2**20)
