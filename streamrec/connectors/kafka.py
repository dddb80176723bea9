"""Kafka: the job's source and dead-letter sink, topic admin, and the event producer."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Optional, TextIO

from streamrec.config import Config

# --- inside the Flink job ---------------------------------------------------------------------

def events_source(config: Config) -> Any:
    """KafkaSource over the events topic: values as strings, offsets committed on checkpoints."""
    from pyflink.common.serialization import SimpleStringSchema
    from pyflink.datastream.connectors.kafka import KafkaOffsetResetStrategy, KafkaOffsetsInitializer, KafkaSource

    reset = KafkaOffsetResetStrategy.EARLIEST if config.start_from_earliest else KafkaOffsetResetStrategy.LATEST
    return (
        KafkaSource.builder()
        .set_bootstrap_servers(config.kafka_bootstrap)
        .set_topics(config.events_topic)
        .set_group_id(config.consumer_group)
        .set_starting_offsets(KafkaOffsetsInitializer.committed_offsets(reset))
        .set_value_only_deserializer(SimpleStringSchema())
        .set_property("partition.discovery.interval.ms", "60000")
        .build()
    )


def dead_letter_sink(config: Config) -> Any:
    from pyflink.common.serialization import SimpleStringSchema
    from pyflink.datastream.connectors.base import DeliveryGuarantee
    from pyflink.datastream.connectors.kafka import KafkaRecordSerializationSchema, KafkaSink

    return (
        KafkaSink.builder()
        .set_bootstrap_servers(config.kafka_bootstrap)
        .set_record_serializer(
            KafkaRecordSerializationSchema.builder()
            .set_topic(config.dlq_topic)
            .set_value_serialization_schema(SimpleStringSchema())
            .build()
        )
        # A dead letter may be written twice after a restart, never lost.
        .set_delivery_guarantee(DeliveryGuarantee.AT_LEAST_ONCE)
        .build()
    )


# --- admin ------------------------------------------------------------------------------------

def ensure_topics(config: Config, partitions: int = 2) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=config.kafka_bootstrap, client_id="streamrec-admin")
    try:
        existing = set(admin.list_topics())
        wanted = [
            NewTopic(config.events_topic, partitions, 1),
            NewTopic(config.dlq_topic, 1, 1),
            # The catalog topic is a changelog keyed by product: compaction keeps the latest state.
            NewTopic(config.products_topic, 1, 1, topic_configs={"cleanup.policy": "compact"}),
        ]
        missing = [t for t in wanted if t.name not in existing]
        if missing:
            try:
                admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass
    finally:
        admin.close()


# --- producing --------------------------------------------------------------------------------

@dataclass
class ProduceReport:
    sent: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (line number, why)


def _precheck(line: str, max_record_bytes: int) -> tuple[Optional[str], Optional[str]]:
    """(key, None) for a line worth sending, (None, why) for one that can never be a valid event."""
    if len(line.encode("utf-8")) > max_record_bytes:
        return None, f"over {max_record_bytes} bytes"
    try:
        obj = json.loads(line)
    except ValueError as exc:
        return None, f"not JSON ({exc})"
    if not isinstance(obj, dict):
        return None, "not a JSON object"
    user = obj.get("user_id")
    return (user if isinstance(user, str) else None), None


def produce_lines(
    lines: Iterable[str],
    config: Config,
    raw: bool = False,
    producer: Any = None,
) -> ProduceReport:
    """Send JSON lines to the events topic, keyed by user_id so a user's events stay in order.

    Lines that cannot be valid events (not JSON, oversized) are reported with their line number
    and not sent, unless ``raw`` is set (then every line goes out as it is: the job's dead-letter
    path is the judge). The producer uses acks=all and idempotence: a retry never doubles a record.
    """
    from kafka import KafkaProducer

    own = producer is None
    if own:
        producer = KafkaProducer(
            bootstrap_servers=config.kafka_bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=20,
            max_request_size=max(1024 * 1024, config.max_record_bytes * 4),
        )
    report = ProduceReport()
    try:
        for lineno, line in enumerate(lines, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            key, why = _precheck(line, config.max_record_bytes)
            if why is not None and not raw:
                report.rejected.append((lineno, why))
                continue
            producer.send(
                config.events_topic,
                key=key.encode("utf-8") if key else None,
                value=line.encode("utf-8"),
            )
            report.sent += 1
        producer.flush()
    finally:
        if own:
            producer.close()
    return report


def read_lines(stream: TextIO) -> Iterator[str]:
    yield from stream


def read_topic(config: Config, topic: str, timeout_ms: int = 5000) -> list[str]:
    """Every record of a topic from the earliest offset (a bounded read, for tools and tests)."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=config.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        consumer_timeout_ms=timeout_ms,
    )
    try:
        return [m.value.decode("utf-8", errors="replace") for m in consumer]
    finally:
        consumer.close()
