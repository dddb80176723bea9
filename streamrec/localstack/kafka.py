"""Single-node Kafka (KRaft) of a profile."""

from __future__ import annotations

import base64
import logging
import subprocess
import time
import uuid
from pathlib import Path

from streamrec.localstack.fetch import fetch
from streamrec.localstack.paths import _java, _svc_dir
from streamrec.localstack.processes import (
    _port_open,
    _render,
    _spawn,
    _start_service,
    _stop_service,
    _tail_text,
)
from streamrec.localstack.profiles import LocalStackError, Profile

log = logging.getLogger("streamrec.localstack")


def _kafka_ready(p: Profile) -> bool:
    """The broker answers a metadata request (raises with the reason when it does not, yet)."""
    if not _port_open(p.kafka_port):
        return False
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(
        bootstrap_servers=p.kafka_bootstrap, request_timeout_ms=5000, client_id="streamrec-localstack"
    )
    try:
        admin.list_topics()
        return True
    finally:
        admin.close()


def _kafka_cluster_id() -> str:
    # What `kafka.tools.StorageTool random-uuid` prints (Kafka's Uuid.randomUuid: a version-4 UUID,
    # URL-safe base64 without padding, never starting with '-'), without paying for a JVM start.
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def start_kafka(p: Profile, timeout: float = 90) -> None:
    """Single-node KRaft broker+controller; returns once it answers a metadata request."""
    started = time.monotonic()
    art = fetch()

    def launch(d: Path) -> subprocess.Popen[bytes]:
        data, logs, conf = d / "data", d / "logs", d / "conf"
        for folder in (data, logs, conf):
            folder.mkdir(parents=True, exist_ok=True)
        props = _render(
            "kafka-server.properties",
            conf / "server.properties",
            profile=p.name,
            kafka_port=p.kafka_port,
            controller_port=p.kafka_controller_port,
            data_dir=data,
        )
        log4j = _render("kafka-log4j2.properties", conf / "log4j2.properties", log_dir=logs)
        # A folder wildcard instead of 46 jar paths keeps `ps` output and the logs readable.
        classpath = str(art.kafka_classpath[0].parent / "*")
        jvm = [
            _java(),
            "-Xms256m",
            "-Xmx512m",
            # Kafka's own launcher defaults (kafka-run-class.sh): short G1 pauses.
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:InitiatingHeapOccupancyPercent=35",
            "-XX:+ExplicitGCInvokesConcurrent",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={log4j.as_uri()}",
            f"-Dkafka.logs.dir={logs}",
            "-cp",
            classpath,
        ]
        if not (data / "meta.properties").exists():
            # KRaft needs its storage formatted once with a cluster id.
            cmd = [*jvm, "kafka.tools.StorageTool", "format", "-t", _kafka_cluster_id(), "-c", str(props)]
            fmt = subprocess.run(cmd, cwd=d, capture_output=True, text=True, timeout=120)
            if fmt.returncode != 0:
                raise LocalStackError(
                    f"formatting Kafka storage failed (exit {fmt.returncode}):\n"
                    + _tail_text(fmt.stdout + fmt.stderr, 30)
                )
            log.info("formatted kafka storage in %.1f s", time.monotonic() - started)
        return _spawn([*jvm, "kafka.Kafka", str(props)], logs / "kafka.out", cwd=d)

    _start_service(p, "kafka", p.kafka_bootstrap, launch, lambda: _kafka_ready(p), timeout,
                   ["logs/kafka.out", "logs/server.log"])


def stop_kafka(p: Profile, grace: float = 30) -> None:
    _stop_service(p, "kafka", grace, [_svc_dir(p, "kafka") / "kafka.pid"])
