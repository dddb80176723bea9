"""Standalone ZooKeeper of a profile: the leader election and job metadata store of Flink's JobManager
high availability (``start_flink(..., ha=True)``, ``flink-conf/ha.yaml``)."""

from __future__ import annotations

import logging
import socket
import subprocess
from pathlib import Path

from streamrec.localstack.fetch import fetch
from streamrec.localstack.paths import _java, _svc_dir
from streamrec.localstack.processes import (
    _spawn,
    _start_service,
    _stop_service,
)
from streamrec.localstack.profiles import LOOPBACK, LocalStackError, Profile

log = logging.getLogger("streamrec.localstack")

# ZooKeeper's smallest session timeout is 2 ticks: 1 s ticks let Flink ask for the few seconds after
# which a killed JobManager's leadership is given up (flink-conf/ha.yaml), instead of 4 s at least.
TICK_MS = 1000


def _zookeeper_ready(p: Profile) -> bool:
    """The server answers the ``srvr`` four-letter command (whitelisted below) with its mode."""
    with socket.create_connection((LOOPBACK, p.zookeeper_port), timeout=2) as s:
        s.sendall(b"srvr")
        reply = b""
        while chunk := s.recv(4096):
            reply += chunk
    return b"Mode:" in reply


def start_zookeeper(p: Profile, timeout: float = 60) -> None:
    """A standalone ZooKeeper server on the profile's ``zookeeper_port``; returns once it answers."""
    if not p.zookeeper_port:
        raise LocalStackError(f"profile {p.name!r} has no zookeeper_port")
    art = fetch()

    def launch(d: Path) -> subprocess.Popen[bytes]:
        data, logs = d / "data", d / "logs"
        for folder in (data, logs):
            folder.mkdir(parents=True, exist_ok=True)
        conf = d / "zoo.cfg"
        conf.write_text(
            f"tickTime={TICK_MS}\n"
            f"dataDir={data}\n"
            f"clientPort={p.zookeeper_port}\n"
            f"clientPortAddress={LOOPBACK}\n"
            "maxClientCnxns=0\n"
            # no AdminServer (an HTTP server on 8080 by default, which would collide across profiles)
            "admin.enableServer=false\n"
            "4lw.commands.whitelist=srvr,ruok\n"
            # the local stack keeps no history: snapshots and logs of a test run are purged
            "autopurge.purgeInterval=1\n"
        )
        # logback's default without a file is DEBUG on the console: INFO to the .out file instead
        logback = d / "logback.xml"
        logback.write_text(
            '<configuration><appender name="OUT" class="ch.qos.logback.core.ConsoleAppender"><encoder>'
            "<pattern>%d{ISO8601} %-5level [%thread] %logger{36} - %msg%n</pattern></encoder></appender>"
            '<root level="INFO"><appender-ref ref="OUT"/></root></configuration>\n'
        )
        classpath = str(art.zookeeper_classpath[0].parent / "*")
        cmd = [
            _java(),
            "-Xms64m",
            "-Xmx256m",
            "-Djava.awt.headless=true",
            f"-Dzookeeper.log.dir={logs}",
            f"-Dlogback.configurationFile={logback}",
            "-cp",
            classpath,
            "org.apache.zookeeper.server.quorum.QuorumPeerMain",
            str(conf),
        ]
        return _spawn(cmd, logs / "zookeeper.out", cwd=d)

    _start_service(p, "zookeeper", f"{LOOPBACK}:{p.zookeeper_port}", launch, lambda: _zookeeper_ready(p), timeout,
                   ["logs/zookeeper.out"])


def stop_zookeeper(p: Profile, grace: float = 15) -> None:
    _stop_service(p, "zookeeper", grace, [_svc_dir(p, "zookeeper") / "zookeeper.pid"])
