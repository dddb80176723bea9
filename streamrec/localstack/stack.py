"""Whole-stack helpers: all services of a profile at once, their status, and :func:`ensure`, the one
"start it unless it is running, stop only what I started" that the demo and the tests go through."""

from __future__ import annotations

import concurrent.futures
import contextlib
import shutil
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping, Optional, Sequence

from streamrec.localstack.cassandra import start_cassandra, stop_cassandra
from streamrec.localstack.fetch import fetch
from streamrec.localstack.flink import _flink_overview, _flink_taskmanagers, start_flink, stop_flink
from streamrec.localstack.kafka import start_kafka, stop_kafka
from streamrec.localstack.paths import run_dir
from streamrec.localstack.processes import _port_open, _service_pids
from streamrec.localstack.profiles import SERVICES, LocalStackError, Profile
from streamrec.localstack.service import stop_service
from streamrec.localstack.zookeeper import start_zookeeper, stop_zookeeper

_STOPPERS: dict[str, Callable[[Profile], None]] = {
    "kafka": stop_kafka,
    "cassandra": stop_cassandra,
    "flink": stop_flink,
}


def up(p: Profile, services: Sequence[str] = SERVICES, taskmanagers: int = 2) -> dict[str, float]:
    """Start ``services`` at once (threads: each mostly waits on its JVM), return seconds per service.

    Cassandra's start dominates; the others finish while it boots. All failures are reported
    together once every start has finished or failed.
    """
    unknown = [s for s in services if s not in SERVICES]
    if unknown:
        raise LocalStackError(f"unknown service(s) {unknown}; expected some of {list(SERVICES)}")
    fetch()  # once, before the threads, so they do not queue on the lock with a cold cache

    def run(service: str) -> float:
        started = time.monotonic()
        if service == "kafka":
            start_kafka(p)
        elif service == "cassandra":
            start_cassandra(p)
        else:
            start_flink(p, taskmanagers=taskmanagers)
        return time.monotonic() - started

    times: dict[str, float] = {}
    errors: list[str] = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(services)) as pool:
        futures = {pool.submit(run, s): s for s in services}
        for future in concurrent.futures.as_completed(futures):
            try:
                times[futures[future]] = future.result()
            except LocalStackError as exc:
                errors.append(str(exc))
    if errors:
        raise LocalStackError("\n\n".join(errors))
    return times


def down(p: Profile, services: Sequence[str] = SERVICES) -> None:
    """Stop ``services`` of the profile (Flink first: its jobs write to Kafka and Cassandra); a
    recommendation service of the profile goes first of all whenever Kafka or Cassandra go."""
    if "kafka" in services or "cassandra" in services:
        stop_service(p)
    for service in ("flink", "kafka", "cassandra"):
        if service in services:
            _STOPPERS[service](p)


def is_running(p: Profile) -> dict[str, bool]:
    """Which services answer on this profile's ports (cheap: TCP connects and one REST call)."""
    return {
        "kafka": _port_open(p.kafka_port),
        "cassandra": _port_open(p.cassandra_port),
        "flink": _flink_overview(p) is not None,
    }


@dataclass(frozen=True)
class ServiceStatus:
    answering: bool  # accepts connections on the profile's port (REST /overview for Flink)
    pids: list[int]  # this profile's live processes of the service
    ports: dict[str, int]
    taskmanagers: int | None = None  # Flink only, when it answers


def status(p: Profile) -> dict[str, ServiceStatus]:
    """Per service: answering on its port, this profile's pids and its ports (the CLI's ``status``)."""
    answering = is_running(p)
    return {
        service: ServiceStatus(
            answering=answering[service],
            pids=_service_pids(p, service),
            ports=p.ports(service),
            taskmanagers=_flink_taskmanagers(p) if service == "flink" and answering[service] else None,
        )
        for service in SERVICES
    }


def wipe(p: Profile) -> None:
    """Stop the profile's services and delete its run folder: the next start is a fresh node."""
    down(p)
    shutil.rmtree(run_dir(p), ignore_errors=True)


@dataclass(frozen=True)
class Launcher:
    """How :func:`ensure` handles one service: is it answering, start it, stop it.

    ``top_up``: ``start`` also completes a running service (Flink's missing TaskManagers), so it is
    called even when the service answers; a service that answered on entry is never stopped.
    """

    running: Callable[[Profile], bool]
    start: Callable[[Profile], None]
    stop: Callable[[Profile], None]
    top_up: bool = False


def launchers(
    taskmanagers: int = 2, isolated: bool = False, timeout: Optional[float] = None, ha: bool = False
) -> dict[str, Launcher]:
    """The real services' launchers; ``timeout`` replaces each start's own default when given.
    ``ha``: Flink with JobManager high availability (start "zookeeper" before "flink")."""
    waits = {} if timeout is None else {"timeout": timeout}
    return {
        "zookeeper": Launcher(
            lambda p: _port_open(p.zookeeper_port) if p.zookeeper_port else False,
            lambda p: start_zookeeper(p, **waits),
            stop_zookeeper,
        ),
        "kafka": Launcher(lambda p: _port_open(p.kafka_port), lambda p: start_kafka(p, **waits), stop_kafka),
        "cassandra": Launcher(
            lambda p: _port_open(p.cassandra_port), lambda p: start_cassandra(p, **waits), stop_cassandra
        ),
        "flink": Launcher(
            lambda p: _flink_overview(p) is not None,
            lambda p: start_flink(p, taskmanagers=taskmanagers, isolated=isolated, ha=ha, **waits),
            stop_flink,
            top_up=True,
        ),
    }


@dataclass
class Ensured:
    """What :func:`ensure` yields: the profile and the services it started (in order)."""

    profile: Profile
    started: list[str] = field(default_factory=list)
    _stops: contextlib.ExitStack = field(default_factory=contextlib.ExitStack, repr=False)

    def keep(self) -> None:
        """Leave what was started running after the ``with`` block (``make demo --keep``)."""
        self._stops.pop_all()
        self.started.clear()


@contextlib.contextmanager
def ensure(
    p: Profile,
    services: Sequence[str] = ("kafka", "cassandra"),
    *,
    taskmanagers: int = 2,
    isolated: bool = False,
    timeout: Optional[float] = None,
    ha: bool = False,
    using: Optional[Mapping[str, Launcher]] = None,
) -> Iterator[Ensured]:
    """Start those of ``services`` that do not answer, one after the other, in the order given; on
    exit (also on an error or Ctrl-C) stop exactly those, in reverse order.

    A service someone else started (another session, ``make up``) is used and left running. Flink is
    also topped up to ``taskmanagers`` when it runs already (``start_flink`` is idempotent). A start
    that fails stops what this call had started before it and raises. ``using`` replaces the real
    launchers (:func:`launchers`), for tests. ``ha``: a Flink started here has JobManager high
    availability (name "zookeeper" before "flink" in ``services``).
    """
    table = launchers(taskmanagers, isolated, timeout, ha) if using is None else using
    unknown = [s for s in services if s not in table]
    if unknown:
        raise LocalStackError(f"unknown service(s) {unknown}; expected some of {list(table)}")
    handle = Ensured(p)
    with handle._stops:
        for service in services:
            launcher = table[service]
            if launcher.running(p):
                if launcher.top_up:
                    launcher.start(p)
                continue
            launcher.start(p)
            handle.started.append(service)
            handle._stops.callback(launcher.stop, p)
        yield handle
