"""Real single-node Kafka, Cassandra and a Flink standalone cluster on loopback, without Docker.

Everything comes from Maven Central (Kafka, Cassandra, the Flink Kafka connector) or from the
apache-flink wheel already in the venv (the Flink distribution and its scripts). Each :class:`Profile`
is an independent copy of the stack with its own ports and its own folder under
``<stack_dir>/run/<profile>``, so ``make up`` (dev), ``make demo`` (demo) and the pytest session (test)
never see each other's data or fight over a port.

Processes are started in a new session with their output in log files, so they outlive the
command that started them (``make up`` returns while they keep running). They are found again
through pid files and, as the source of truth, by scanning ``/proc`` for command lines that
mention the profile's run folder: a stop can never hit another profile's (or someone else's)
process, and a process whose pid file was lost is still found.

The modules, in the order they build on each other: ``profiles`` (ports, errors), ``paths``
(checkout, ``.stack``, the Flink wheel, the JDK), ``processes`` (spawn, find, stop, ports, logs),
``fetch`` (the jars), ``kafka``, ``cassandra``, ``flinkconf`` (a profile's Flink config and
environment), ``isolated`` (a TaskManager as on another host), ``flink``, ``service`` (``streamrec
serve``), ``zookeeper`` (JobManager high availability), ``stack`` (the whole stack, its status, and
:func:`ensure`). Everything public is importable from here.
"""

from __future__ import annotations

from streamrec.localstack.cassandra import start_cassandra, stop_cassandra
from streamrec.localstack.fetch import Artifacts, fetch
from streamrec.localstack.flink import start_flink, stop_flink
from streamrec.localstack.flinkconf import _flatten, flink_env
from streamrec.localstack.isolated import isolated_host, isolated_host_dir
from streamrec.localstack.kafka import start_kafka, stop_kafka
from streamrec.localstack.paths import flink_bin, java_home, repo_root, run_dir, stack_dir
from streamrec.localstack.processes import listening_inodes
from streamrec.localstack.profiles import (
    LOOPBACK,
    PROFILES,
    SERVICES,
    LocalStackError,
    PortInUseError,
    Profile,
    get_profile,
)
from streamrec.localstack.service import service_url, start_service, status_of_service, stop_service
from streamrec.localstack.stack import (
    Ensured,
    Launcher,
    ServiceStatus,
    down,
    ensure,
    is_running,
    launchers,
    status,
    up,
    wipe,
)
from streamrec.localstack.zookeeper import start_zookeeper, stop_zookeeper

__all__ = [
    "LOOPBACK",
    "PROFILES",
    "SERVICES",
    "Artifacts",
    "Ensured",
    "Launcher",
    "LocalStackError",
    "PortInUseError",
    "Profile",
    "ServiceStatus",
    "_flatten",
    "down",
    "ensure",
    "fetch",
    "flink_bin",
    "flink_env",
    "get_profile",
    "is_running",
    "isolated_host",
    "isolated_host_dir",
    "java_home",
    "launchers",
    "listening_inodes",
    "repo_root",
    "run_dir",
    "service_url",
    "stack_dir",
    "start_cassandra",
    "start_flink",
    "start_kafka",
    "start_service",
    "start_zookeeper",
    "status",
    "status_of_service",
    "stop_cassandra",
    "stop_flink",
    "stop_kafka",
    "stop_service",
    "stop_zookeeper",
    "up",
    "wipe",
]
