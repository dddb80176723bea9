"""Kafka: the job's source and dead-letter sink, topic admin, and the event producer."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, TextIO

from streamrec.config import Config, KafkaConfig
from streamrec.model.events import BAD_ID, MAX_ID_CHARS, NOT_JSON, OVERSIZED, text_problem

# --- security ---------------------------------------------------------------------------------

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
# The Flink Kafka connector jar shades the Kafka client: its login modules live under this prefix.
_SHADED = "org.apache.flink.kafka.shaded."


def _check_security(config: KafkaConfig) -> tuple[bool, bool]:
    """(uses TLS, uses SASL) for the configured protocol; raises on a setting Kafka would reject."""
    protocol = config.security_protocol.upper()
    if protocol not in SECURITY_PROTOCOLS:
        raise ValueError(f"STREAMREC_KAFKA_SECURITY_PROTOCOL must be one of {', '.join(SECURITY_PROTOCOLS)}, "
                         f"got {config.security_protocol!r}")
    sasl = protocol.startswith("SASL_")
    if sasl and config.sasl_mechanism.upper() not in SASL_MECHANISMS:
        raise ValueError(f"STREAMREC_KAFKA_SASL_MECHANISM must be one of {', '.join(SASL_MECHANISMS)}, "
                         f"got {config.sasl_mechanism!r}")
    if sasl and not (config.sasl_username and config.sasl_password):
        raise ValueError(f"{protocol} needs STREAMREC_KAFKA_SASL_USERNAME and STREAMREC_KAFKA_SASL_PASSWORD "
                         "(or STREAMREC_KAFKA_SASL_PASSWORD_FILE)")
    return protocol.endswith("SSL"), sasl


def client_options(config: KafkaConfig) -> dict[str, Any]:
    """Security arguments for the kafka-python clients (producer, consumer, admin)."""
    tls, sasl = _check_security(config)
    options: dict[str, Any] = {"security_protocol": config.security_protocol.upper()}
    if sasl:
        options.update(sasl_mechanism=config.sasl_mechanism.upper(),
                       sasl_plain_username=config.sasl_username,
                       sasl_plain_password=config.sasl_password)
    if tls:
        if config.tls_ca_file:
            options["ssl_cafile"] = config.tls_ca_file
        if config.tls_client_pem:
            options["ssl_certfile"] = config.tls_client_pem
    return options


def _jaas_quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def java_properties(config: KafkaConfig) -> dict[str, str]:
    """The same settings as Kafka client properties for the job's KafkaSource/KafkaSink.

    The password ends up in ``sasl.jaas.config``, which Kafka's clients print as ``[hidden]``.
    """
    tls, sasl = _check_security(config)
    props = {"security.protocol": config.security_protocol.upper()}
    if sasl:
        mechanism = config.sasl_mechanism.upper()
        module = ("common.security.plain.PlainLoginModule" if mechanism == "PLAIN"
                  else "common.security.scram.ScramLoginModule")
        props["sasl.mechanism"] = mechanism
        props["sasl.jaas.config"] = (
            f"{_SHADED}org.apache.kafka.{module} required username={_jaas_quote(config.sasl_username)} "
            f"password={_jaas_quote(config.sasl_password)};"
        )
    if tls:
        if config.tls_ca_file:
            props.update({"ssl.truststore.type": "PEM", "ssl.truststore.location": config.tls_ca_file})
        if config.tls_client_pem:
            props.update({"ssl.keystore.type": "PEM", "ssl.keystore.location": config.tls_client_pem})
    return props


# --- inside the Flink job ---------------------------------------------------------------------

# Jars the shaded Kafka connector needs beside it: its Kafka client calls zstd-jni unshaded and the
# jar leaves it out, so without it a zstd-compressed batch fails the source with NoClassDefFoundError
# (com/github/luben/zstd/...) on every restart. `make setup` fetches it into the connector's folder
# (streamrec/localstack/maven/flink-connectors.xml); gzip, snappy and lz4 need nothing more.
CONNECTOR_COMPANION_PREFIXES = ("zstd-jni-",)


def with_codec_jars(jars: list[str]) -> list[str]:
    """``jars`` plus, for a Kafka connector jar among them, the codec jars found in its folder (and
    not already listed): STREAMREC_JARS may name the connector alone."""
    out = list(jars)
    named = {Path(j.split("://", 1)[-1]).name for j in jars}
    for jar in jars:
        if "://" in jar and not jar.startswith("file://"):
            continue  # a remote jar has no folder to look in
        path = Path(jar[len("file://"):] if jar.startswith("file://") else jar)
        if not path.name.startswith("flink-sql-connector-kafka-"):
            continue
        for prefix in CONNECTOR_COMPANION_PREFIXES:
            for extra in sorted(path.parent.glob(prefix + "*.jar")):
                if extra.name not in named:
                    out.append(str(extra))
                    named.add(extra.name)
    return out


def events_source(config: KafkaConfig) -> Any:
    """KafkaSource over the events topic (see :func:`string_source`), fetching in batches as
    ``kafka_fetch_min_bytes`` / ``kafka_fetch_max_wait_ms`` say."""
    return string_source(config, config.events_topic, config.start_from_earliest,
                         config.fetch_min_bytes, config.fetch_max_wait_ms)


def products_source(config: KafkaConfig) -> Any:
    """KafkaSource over the products topic, from its start: the topic is compacted, so it holds the
    latest update of every product, and applying an update twice changes nothing.

    Kafka's fetch defaults (1 byte, 500 ms): an update still arrives as soon as it is written, and
    the topic is idle nearly always, where a short wait would only poll it many times a second."""
    return string_source(config, config.products_topic, True, 1, 500)


def string_source(config: KafkaConfig, topic: str, start_from_earliest: bool, fetch_min_bytes: int = 1,
                  fetch_max_wait_ms: int = 500) -> Any:
    """KafkaSource over ``topic``: values as strings, offsets committed on checkpoints, committed
    records only (a transactional producer's aborted records never reach the job).

    Values go through ``NullSafeStringSchema`` (see :mod:`streamrec.connectors.javasupport`): a
    record without a value becomes "" (a NOT_JSON dead letter) instead of failing the source on
    every restart. Its jar must be among the job's jars (``create_env`` adds it).
    """
    from pyflink.common.serialization import DeserializationSchema
    from pyflink.datastream.connectors.kafka import KafkaOffsetResetStrategy, KafkaOffsetsInitializer, KafkaSource

    from streamrec.connectors.javasupport import CLASS_NAME, java_class

    value_schema = DeserializationSchema(java_class(CLASS_NAME)())

    reset = KafkaOffsetResetStrategy.EARLIEST if start_from_earliest else KafkaOffsetResetStrategy.LATEST
    builder = (
        KafkaSource.builder()
        .set_bootstrap_servers(config.bootstrap)
        .set_topics(topic)
        .set_group_id(config.consumer_group)
        .set_starting_offsets(KafkaOffsetsInitializer.committed_offsets(reset))
        .set_value_only_deserializer(value_schema)
        .set_property("partition.discovery.interval.ms", "60000")
        .set_property("fetch.min.bytes", str(fetch_min_bytes))
        .set_property("fetch.max.wait.ms", str(fetch_max_wait_ms))
        .set_property("isolation.level", "read_committed")
    )
    for key, value in java_properties(config).items():
        builder = builder.set_property(key, value)
    return builder.build()


def dead_letter_sink(config: KafkaConfig) -> Any:
    from pyflink.common.serialization import SimpleStringSchema
    from pyflink.datastream.connectors.base import DeliveryGuarantee
    from pyflink.datastream.connectors.kafka import KafkaRecordSerializationSchema, KafkaSink

    builder = KafkaSink.builder()
    for key, value in java_properties(config).items():
        builder = builder.set_property(key, value)
    return (
        builder
        .set_bootstrap_servers(config.bootstrap)
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

def ensure_topics(config: KafkaConfig, partitions: int = 2) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=config.bootstrap, client_id="streamrec-admin",
                             **client_options(config))
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


ID_FIELDS = ("event_id", "user_id", "product_id")


def _precheck(line: str, max_record_bytes: int, max_query_chars: int = 1024) -> tuple[Optional[str], Optional[str]]:
    """(key, None) for a line worth sending, (key, why) for one that can never be a valid event:
    not UTF-8, not JSON, oversized, or an id or query that breaks the parser's text rule (BAD_ID).
    ``why`` names the dead-letter code the job would give. The key is the user id where it passes
    the text rule, else None (a lone surrogate cannot even be encoded as a key)."""
    try:
        size = len(line.encode("utf-8"))
    except UnicodeEncodeError:
        # a file line with bytes that are not UTF-8 (read with surrogateescape), or a str holding a lone surrogate
        return None, f"not UTF-8 text ({NOT_JSON}: JSON text must be UTF-8)"
    if size > max_record_bytes:
        return None, f"over {max_record_bytes} bytes ({OVERSIZED})"
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError) as exc:
        return None, f"not JSON ({NOT_JSON}: {exc})"
    if not isinstance(obj, dict):
        return None, f"not a JSON object ({NOT_JSON})"
    user = obj.get("user_id")
    key = user if isinstance(user, str) and text_problem(user) is None else None
    for name in ID_FIELDS:
        value = obj.get(name)
        if isinstance(value, str):
            problem = text_problem(value, MAX_ID_CHARS)
            if problem is not None:
                return key, f"{BAD_ID}: {name!r} {problem}"
    query = obj.get("query")
    if isinstance(query, str):
        if len(query) > max_query_chars:
            return key, f"query over {max_query_chars} characters ({OVERSIZED})"
        problem = text_problem(query, max_query_chars)
        if problem is not None:
            return key, f"{BAD_ID}: 'query' {problem}"
    return key, None


def _line_bytes(line: str) -> Optional[bytes]:
    """The bytes to send for a line: a file read with surrogateescape gives back its exact bytes;
    None for a str no encoding can send (a lone surrogate that did not come from a byte)."""
    try:
        return line.encode("utf-8", errors="surrogateescape")
    except UnicodeEncodeError:
        return None


def produce_lines(
    lines: Iterable[str],
    config: Config,
    raw: bool = False,
    producer: Any = None,
) -> ProduceReport:
    """Send JSON lines to the events topic, keyed by user_id so a user's events stay in order.

    Lines that cannot be valid events (not UTF-8, not JSON, oversized, an id or query that breaks
    the parser's text rule) are reported with their line number and the dead-letter code, skipped,
    and the rest is sent, unless ``raw`` is set (then every line goes out as it is, byte for byte:
    the job's dead-letter path is the judge; only a line no encoding can send is still refused).
    The producer uses acks=all and idempotence: a retry never doubles a record.
    """
    report = ProduceReport()

    def records() -> Iterator[tuple[int, Optional[str], bytes]]:
        for lineno, line in enumerate(lines, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            key, why = _precheck(line, config.limits.max_record_bytes, config.limits.max_query_chars)
            value = _line_bytes(line)
            if value is None or (why is not None and not raw):
                report.rejected.append((lineno, why or f"not UTF-8 text ({NOT_JSON})"))
                continue
            yield lineno, key, value

    return _send_all(records(), config.kafka.events_topic, config.kafka, config.limits.max_record_bytes, producer,
                     report)


def new_producer(config: KafkaConfig, max_record_bytes: int) -> Any:
    """The producer of the CLI's writers: acks=all and idempotence (a retry never doubles a record),
    the configured security options. ``max_record_bytes``: the largest record it must accept
    (for events: the input limit, ``config.limits.max_record_bytes``)."""
    from kafka import KafkaProducer

    return KafkaProducer(
        bootstrap_servers=config.bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=20,
        max_request_size=max(1024 * 1024, max_record_bytes * 4),
        **client_options(config),
    )


def send_keyed(
    records: Iterable[tuple[int, str, str]],
    topic: str,
    config: KafkaConfig,
    max_record_bytes: int,
    producer: Any = None,
) -> ProduceReport:
    """Send (line number, key, value) records to ``topic`` in order, keyed (a key's records stay in
    one partition, in order), and wait for the broker's answers: a refused or timed-out record is
    reported with its line number and not counted as sent. Same producer as :func:`produce_lines`.
    """
    return _send_all(records, topic, config, max_record_bytes, producer, ProduceReport())


def _send_all(
    records: Iterable[tuple[int, Optional[str], Any]],
    topic: str,
    config: KafkaConfig,
    max_record_bytes: int,
    producer: Any,
    report: ProduceReport,
) -> ProduceReport:
    """The sending loop of produce_lines and send_keyed; ``producer`` None: a new one, closed at the end."""
    from kafka.errors import KafkaError

    own = producer is None
    if own:
        producer = new_producer(config, max_record_bytes)
    pending: list[tuple[int, Any]] = []
    try:
        for lineno, key, value in records:
            try:
                data = value if isinstance(value, bytes) else value.encode("utf-8")
                future = producer.send(topic, key=key.encode("utf-8") if key else None, value=data)
            except KafkaError as exc:  # e.g. larger than the producer's max_request_size (--raw)
                report.rejected.append((lineno, f"not sent ({type(exc).__name__}: {exc})"))
                continue
            pending.append((lineno, future))
            if len(pending) >= _CONFIRM_EVERY:
                _confirm(producer, pending, report)
        _confirm(producer, pending, report)
    finally:
        if own:
            producer.close()
    report.rejected.sort()
    return report


# Records in flight before produce_lines waits for the broker's answers (bounds the memory the
# futures take on a large file; the producer still batches within each chunk).
_CONFIRM_EVERY = 5000


def _confirm(producer: Any, pending: list[tuple[int, Any]], report: ProduceReport) -> None:
    """Wait for every pending record: a record the broker refused (or that timed out) is reported
    with its line number and never counted as sent."""
    producer.flush()
    for lineno, future in pending:
        try:
            future.get(timeout=60)
            report.sent += 1
        except Exception as exc:
            report.rejected.append((lineno, f"failed to send ({type(exc).__name__}: {exc})"))
    pending.clear()


def read_lines(stream: TextIO) -> Iterator[str]:
    yield from stream


def read_topic(config: KafkaConfig, topic: str, timeout_ms: int = 5000) -> list[str]:
    """Every record of a topic from the earliest offset (a bounded read, for tools and tests)."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=config.bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        consumer_timeout_ms=timeout_ms,
        isolation_level="read_committed",  # as the job reads
        **client_options(config),
    )
    try:
        return [m.value.decode("utf-8", errors="replace") for m in consumer]
    finally:
        consumer.close()
