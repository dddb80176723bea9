"""Single-node Cassandra 5.0 of a profile, on Java 17."""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
from pathlib import Path

from streamrec.localstack.fetch import fetch
from streamrec.localstack.paths import _java, _java_major, _svc_dir, java_home
from streamrec.localstack.processes import (
    _port_open,
    _render,
    _spawn,
    _start_service,
    _stop_service,
)
from streamrec.localstack.profiles import LOOPBACK, LocalStackError, Profile

log = logging.getLogger("streamrec.localstack")


# Cassandra 5.0's conf/jvm17-server.options (JPMS section): Cassandra reflects into these JDK
# internals (jamm, Chronicle, off-heap buffers, JMX). Without them it dies with
# InaccessibleObjectException on Java 17. java.nio is from the newer copy of the file.
_CASSANDRA_JPMS = [
    "-Djdk.attach.allowAttachSelf=true",
    "--add-exports", "java.base/jdk.internal.misc=ALL-UNNAMED",
    "--add-exports", "java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED",
    "--add-exports", "java.rmi/sun.rmi.registry=ALL-UNNAMED",
    "--add-exports", "java.rmi/sun.rmi.server=ALL-UNNAMED",
    "--add-exports", "java.sql/java.sql=ALL-UNNAMED",
    "--add-exports", "java.base/java.lang.ref=ALL-UNNAMED",
    "--add-exports", "jdk.unsupported/sun.misc=ALL-UNNAMED",
    "--add-exports", "jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED",
    "--add-exports", "jdk.attach/sun.tools.attach=ALL-UNNAMED",
    "--add-opens", "java.base/java.lang.module=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.loader=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.ref=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.reflect=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.math=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.module=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.util.jar=ALL-UNNAMED",
    "--add-opens", "jdk.management/com.sun.management.internal=ALL-UNNAMED",
    "--add-opens", "java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-opens", "java.base/java.io=ALL-UNNAMED",
    "--add-opens", "java.base/java.lang.reflect=ALL-UNNAMED",
    "--add-opens", "jdk.compiler/com.sun.tools.javac=ALL-UNNAMED",
    "--add-opens", "java.base/java.lang=ALL-UNNAMED",
    "--add-opens", "java.base/java.util=ALL-UNNAMED",
    "--add-opens", "java.base/java.nio=ALL-UNNAMED",
]  # fmt: skip

# The rest of jvm-server.options / jvm17-server.options that matter on a small machine.
_CASSANDRA_JVM = [
    # Cassandra's shipped options enable assertions (except in Chronicle, which runs out of memory
    # with them by design).
    "-ea",
    "-da:net.openhft...",
    "-XX:+UseThreadPriorities",
    "-Xss256k",
    "-XX:+PerfDisableSharedMem",
    "-Djava.net.preferIPv4Stack=true",
    # G1 as in jvm17-server.options. -XX:+AlwaysPreTouch is left out on purpose: touching the
    # whole heap up front slows the start and commits memory a development node never uses.
    "-XX:+UseG1GC",
    "-XX:+ParallelRefProcEnabled",
    "-XX:MaxTenuringThreshold=1",
    "-XX:G1HeapRegionSize=16m",
    "-XX:G1RSetUpdatingPauseTimePercent=5",
    "-XX:MaxGCPauseMillis=300",
    "-XX:InitiatingHeapOccupancyPercent=70",
    "-Dio.netty.tryReflectionSetAccessible=true",
    "-Dio.netty.allocator.useCacheForAllThreads=true",
    "-Dio.netty.allocator.maxOrder=11",
    "-Xms1g",
    "-Xmx1g",
]

# Start-up speed for a single node that is its own seed: nothing to gossip with, so do not wait
# for gossip to settle or for the ring delay (30 s by default), and skip the 10 s superuser delay.
_CASSANDRA_FAST_START = [
    "-Dcassandra.skip_wait_for_gossip_to_settle=0",
    "-Dcassandra.ring_delay_ms=100",
    "-Dcassandra.superuser_setup_delay_ms=0",
]


def _cassandra_ready(p: Profile) -> bool:
    """CQL answers (raises with the reason when it does not, yet)."""
    if not _port_open(p.cassandra_port):
        return False
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import RoundRobinPolicy

    # Explicit protocol version and policy: otherwise the driver logs warnings on every attempt.
    cluster = Cluster(
        [LOOPBACK],
        port=p.cassandra_port,
        protocol_version=5,
        connect_timeout=5,
        control_connection_timeout=5,
        execution_profiles={
            EXEC_PROFILE_DEFAULT: ExecutionProfile(load_balancing_policy=RoundRobinPolicy(), request_timeout=5)
        },
    )
    try:
        session = cluster.connect()
        return session.execute("SELECT release_version FROM system.local").one() is not None
    finally:
        cluster.shutdown()


def start_cassandra(p: Profile, timeout: float = 180) -> None:
    """Cassandra 5.0 on Java 17; returns once CQL answers ``SELECT release_version``."""
    art = fetch()

    def launch(d: Path) -> subprocess.Popen[bytes]:
        home = java_home()
        major = _java_major(home)
        if major is not None and major not in (11, 17):
            raise LocalStackError(
                f"Cassandra 5.0 runs on Java 11 or 17 only; {home} is Java {major}. "
                "Set STREAMREC_JAVA_HOME to a JDK 17."
            )
        logs, conf = d / "logs", d / "conf"
        for sub in ("data", "commitlog", "saved_caches", "hints", "cdc_raw", "triggers", "logs", "conf"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        yaml_path = _render(
            "cassandra.yaml",
            conf / "cassandra.yaml",
            profile=p.name,
            dir=d,
            storage_port=p.cassandra_storage_port,
            native_port=p.cassandra_port,
        )
        logback = _render("cassandra-logback.xml", conf / "logback.xml")
        cmd = [
            _java(),
            *_CASSANDRA_JVM,
            # after the defaults, so that they win (HotSpot takes the last of a repeated option)
            *shlex.split(os.environ.get("STREAMREC_CASSANDRA_JVM_OPTS", "")),
            *_CASSANDRA_JPMS,
            *_CASSANDRA_FAST_START,
            # jamm measures object sizes for memtable accounting; Cassandra refuses to run without it.
            f"-javaagent:{art.jamm_jar}",
            f"-Dcassandra.config={yaml_path.as_uri()}",
            # Keep stdout/stderr open (they go to cassandra.out); otherwise it closes them as a daemon.
            "-Dcassandra-foreground=yes",
            f"-Dcassandra.storagedir={d}",
            f"-Dcassandra.logdir={logs}",
            f"-Dlogback.configurationFile={logback.as_uri()}",
            # JMX bound to localhost on this profile's port (nodetool -p <port>); the RMI server
            # port stays ephemeral.
            f"-Dcassandra.jmx.local.port={p.cassandra_jmx_port}",
            # Cassandra's start-up check asks for this: an OutOfMemoryError must stop the node rather
            # than leave it running in an unknown state.
            "-XX:+ExitOnOutOfMemoryError",
            # An empty triggers folder in the run dir silences a warning every minute.
            f"-Dcassandra.triggers_dir={d / 'triggers'}",
            "-cp",
            str(art.cassandra_classpath[0].parent / "*"),
            "org.apache.cassandra.service.CassandraDaemon",
        ]
        return _spawn(cmd, logs / "cassandra.out", cwd=d)

    _start_service(p, "cassandra", f"{LOOPBACK}:{p.cassandra_port}", launch, lambda: _cassandra_ready(p), timeout,
                   ["logs/cassandra.out", "logs/system.log"])


def stop_cassandra(p: Profile, grace: float = 30) -> None:
    _stop_service(p, "cassandra", grace, [_svc_dir(p, "cassandra") / "cassandra.pid"])
