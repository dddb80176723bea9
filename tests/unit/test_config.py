"""Configuration: sections with defaults from the contract, every field from its STREAMREC_* variable."""

import dataclasses
import json
from pathlib import Path

import pytest

from streamrec.config import Config, FaultInjection, JobConfig, KafkaConfig, ModelConfig, ServiceConfig, env_name


def test_defaults_match_the_local_contract():
    c = Config()
    assert (c.kafka.bootstrap, c.cassandra.hosts, c.cassandra.port, c.job.flink_rest) == (
        "127.0.0.1:9092", "127.0.0.1", 9042, "127.0.0.1:8081")
    assert (c.kafka.events_topic, c.kafka.products_topic, c.kafka.dlq_topic, c.cassandra.keyspace) == (
        "events", "products", "events-dlq", "streamrec")


def test_every_kind_of_field_reads_from_the_environment():
    c = Config.from_env({
        "STREAMREC_KAFKA_BOOTSTRAP": "k:1", "STREAMREC_CASSANDRA_PORT": "19042", "STREAMREC_HALF_LIFE_EVENTS": "3.5",
        "STREAMREC_EXCLUDE_PURCHASED": "false", "STREAMREC_EVENT_WEIGHTS": '{"view": 0.5}',
    })
    assert c.kafka.bootstrap == "k:1" and c.cassandra.port == 19042 and c.model.half_life_events == 3.5
    assert c.model.exclude_purchased is False and c.model.event_weights == {"view": 0.5}


def test_explicit_values_win_over_the_environment():
    assert Config.from_env({"STREAMREC_TOP_K": "5"}, model={"top_k": 7}).model.top_k == 7


def test_a_bad_value_names_the_variable():
    with pytest.raises(ValueError, match="STREAMREC_CASSANDRA_PORT"):
        Config.from_env({"STREAMREC_CASSANDRA_PORT": "lots"})
    with pytest.raises(ValueError, match="STREAMREC_EXCLUDE_PURCHASED"):
        Config.from_env({"STREAMREC_EXCLUDE_PURCHASED": "maybe"})


def test_config_is_frozen_and_round_trips_through_json():
    c = Config(model=ModelConfig(top_k=4))
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.model.top_k = 5  # type: ignore[misc]
    assert Config.from_json(c.to_json()) == c


def test_an_unknown_execution_mode_or_writer_is_refused_with_the_variable_named():
    with pytest.raises(ValueError, match="STREAMREC_PYTHON_EXECUTION_MODE: 'threads' is not one of process, thread"):
        Config.from_env({"STREAMREC_PYTHON_EXECUTION_MODE": "threads"})
    with pytest.raises(ValueError, match="STREAMREC_CASSANDRA_WRITER: 'jvm' is not one of java, python"):
        Config.from_env({"STREAMREC_CASSANDRA_WRITER": "jvm"})
    assert Config.from_env({"STREAMREC_PYTHON_EXECUTION_MODE": "thread"}).job.python_execution_mode == "thread"


def test_parallelism_is_left_to_flink_unless_set_and_negative_counts_are_refused():
    assert Config().job.parallelism == 0  # `flink run -p N` or the cluster's default decides
    assert Config.from_env({"STREAMREC_PARALLELISM": "4"}).job.parallelism == 4
    with pytest.raises(ValueError, match="STREAMREC_PARALLELISM: -1 is negative"):
        Config.from_env({"STREAMREC_PARALLELISM": "-1"})
    with pytest.raises(ValueError, match="STREAMREC_BLAS_THREADS: -2 is negative"):
        Config(job=JobConfig(blas_threads=-2))


def test_a_partial_cassandra_batch_waits_at_most_the_linger_and_a_negative_linger_is_refused():
    assert Config().cassandra.batch_linger_ms == 20
    assert Config.from_env({"STREAMREC_CASSANDRA_BATCH_LINGER_MS": "5"}).cassandra.batch_linger_ms == 5
    with pytest.raises(ValueError, match="STREAMREC_CASSANDRA_BATCH_LINGER_MS: -1 is negative"):
        Config.from_env({"STREAMREC_CASSANDRA_BATCH_LINGER_MS": "-1"})


def test_a_busy_batch_may_linger_up_to_100_ms_and_a_negative_longer_linger_is_refused():
    c = Config()
    assert (c.job.batch_linger_ms, c.job.batch_max_linger_ms) == (25, 100)
    assert Config.from_env({"STREAMREC_BATCH_MAX_LINGER_MS": "25"}).job.batch_max_linger_ms == 25  # a fixed linger
    with pytest.raises(ValueError, match="STREAMREC_BATCH_MAX_LINGER_MS: -1 is negative"):
        Config.from_env({"STREAMREC_BATCH_MAX_LINGER_MS": "-1"})


def test_the_events_source_fetches_in_batches_unless_told_otherwise_and_negative_settings_are_refused():
    c = Config()
    assert (c.kafka.fetch_min_bytes, c.kafka.fetch_max_wait_ms) == (16_384, 25)
    per_record = Config.from_env({"STREAMREC_KAFKA_FETCH_MIN_BYTES": "1", "STREAMREC_KAFKA_FETCH_MAX_WAIT_MS": "500"})
    assert (per_record.kafka.fetch_min_bytes, per_record.kafka.fetch_max_wait_ms) == (1, 500)  # Kafka's own
    with pytest.raises(ValueError, match="STREAMREC_KAFKA_FETCH_MIN_BYTES: -1 is negative"):
        Config.from_env({"STREAMREC_KAFKA_FETCH_MIN_BYTES": "-1"})


def test_only_the_events_source_batches_its_fetches_the_idle_products_source_keeps_kafkas_defaults(monkeypatch):
    import streamrec.connectors.kafka as kafka

    built: dict[str, tuple] = {}
    # a fake of string_source (building the real KafkaSource needs a JVM): records what each source asks for
    monkeypatch.setattr(kafka, "string_source", lambda config, topic, earliest, min_bytes, max_wait:
                        built.setdefault(topic, (min_bytes, max_wait)))
    config = Config(kafka=KafkaConfig(events_topic="ev", products_topic="pr", fetch_min_bytes=4096,
                                      fetch_max_wait_ms=10))
    kafka.events_source(config.kafka)
    kafka.products_source(config.kafka)
    assert built == {"ev": (4096, 10), "pr": (1, 500)}


def test_the_readme_lists_every_setting_with_its_variable_field_and_default():
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    for section, f in Config.settings():
        row = f"| `{env_name(f)}`"
        assert row in readme, f"README's settings table lacks {env_name(f)}"
        line = next(line for line in readme.splitlines() if line.startswith(row))
        assert f"| `{section}.{f.name}` |" in line, line
        value = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        shown = ("(empty)" if value == "" else json.dumps(value, separators=(",", ":")) if isinstance(value, dict)
                 else str(value).lower() if isinstance(value, bool) else str(value))
        assert line.endswith(f"| {shown} |") or line.endswith(f"| `{shown}` |"), line


def test_every_setting_reads_from_its_variable_and_travels_to_a_child_process_unchanged():
    changed = Config(kafka=KafkaConfig(bootstrap="k:1", sasl_password="pw"), model=ModelConfig(top_k=3),
                     faults=FaultInjection(fail_times=2), service=ServiceConfig(port=1))
    assert Config.from_env(changed.to_env()) == changed
    assert Config.from_env({"STREAMREC_FAULT_FAIL_TIMES": "4"}).faults.fail_times == 4


def test_sections_are_replaced_by_a_mapping_of_their_fields_and_unknown_sections_are_refused():
    c = Config().replace(cassandra={"keyspace": "ks"}, job=JobConfig(parallelism=2))
    assert (c.cassandra.keyspace, c.cassandra.port, c.job.parallelism) == ("ks", 9042, 2)
    with pytest.raises(TypeError, match="no section"):
        Config.from_env({}, kafak={"bootstrap": "x"})
