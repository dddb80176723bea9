"""The Flink standalone session cluster of a profile (the wheel's daemon scripts)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Optional, Sequence

from streamrec.localstack.flinkconf import _write_flink_conf, flink_env, ha_enabled
from streamrec.localstack.isolated import _run_isolated_taskmanagers
from streamrec.localstack.paths import _svc_dir, flink_bin
from streamrec.localstack.processes import (
    _check_ports,
    _read_cmdline,
    _service_lock,
    _service_pids,
    _spawn,
    _stop_service,
    _tail,
    _wait,
)
from streamrec.localstack.profiles import LocalStackError, Profile

log = logging.getLogger("streamrec.localstack")


def _flink_overview(p: Profile) -> dict[str, object] | None:
    """REST /overview of the profile's cluster; None while it does not answer (or not yet with JSON)."""
    from streamrec.flinkrest import FlinkHttpError, FlinkRest
    from streamrec.unreachable import Unreachable

    try:
        data = FlinkRest(p.flink_rest, timeout=2).get("/overview")
    except (FlinkHttpError, Unreachable, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _flink_taskmanagers(p: Profile) -> int:
    overview = _flink_overview(p)
    count = overview.get("taskmanagers", 0) if overview else 0
    return count if isinstance(count, int) else 0


def _flink_pid_files(p: Profile) -> list[Path]:
    pid_dir = _svc_dir(p, "flink") / "pid"
    return sorted(pid_dir.glob("flink-*.pid")) if pid_dir.exists() else []


def _flink_daemon_pids(p: Profile, kind: str) -> list[int]:
    """Live JobManager (``standalonesession``) or TaskManager (``taskexecutor``) JVMs of the profile."""
    entry = {
        "standalonesession": "StandaloneSessionClusterEntrypoint",
        "taskexecutor": "TaskManagerRunner",
    }[kind]
    return [pid for pid in _service_pids(p, "flink") if entry in _read_cmdline(pid)]


def _run_flink_scripts(p: Profile, scripts: Sequence[Sequence[str]]) -> None:
    """Run the wheel's daemon scripts concurrently (each spends ~1 s parsing config in a JVM).

    They background the JVM and exit; ``start_new_session`` detaches that JVM from our session.
    flink-daemon.sh serialises its pid-file updates with flock, so concurrent calls are safe.
    """
    env = flink_env(p)
    out = _svc_dir(p, "flink") / "log" / "scripts.out"
    procs = [_spawn([str(flink_bin(s[0])), *s[1:]], out, cwd=_svc_dir(p, "flink"), env=env) for s in scripts]
    for proc, script in zip(procs, scripts):
        if proc.wait(timeout=120) != 0:
            raise LocalStackError(f"{' '.join(script)} failed (exit {proc.returncode}).\n{_tail(out)}")


def start_flink(
    p: Profile, taskmanagers: int = 2, timeout: float = 90, isolated: bool = False, ha: Optional[bool] = None
) -> None:
    """A standalone session cluster: 1 JobManager and ``taskmanagers`` TaskManagers.

    Idempotent: on a running cluster it only starts the missing TaskManagers (how the fault tests
    bring a killed TaskManager back), and a missing JobManager (how the HA fault test brings a killed
    one back). Returns once REST /overview counts ``taskmanagers``.
    ``isolated``: the TaskManagers it starts run as on another host (:func:`isolated_host`).
    ``ha``: JobManager high availability through the profile's ZooKeeper (flink-conf/ha.yaml), which
    must be running (``ensure(p, ["zookeeper", "flink"], ha=True)``); None keeps the profile's
    current choice, so a restart of a single process never turns it off.
    """
    if ha is None:
        ha = ha_enabled(p)
    started = time.monotonic()
    d = _svc_dir(p, "flink")
    with _service_lock(p, "flink"):
        jm_pids = _flink_daemon_pids(p, "standalonesession")
        scripts: list[list[str]] = []
        if jm_pids:
            log.info("flink (%s) JobManager is already running (pid %s)", p.name, jm_pids[0])
        else:
            _check_ports(p, "flink")
            # A crashed cluster leaves pid files behind; their line count numbers the next log files.
            for pid_file in _flink_pid_files(p):
                pid_file.unlink()
            scripts.append(["jobmanager.sh", "start"])
        _write_flink_conf(p, taskmanagers, ha=ha)
        missing = taskmanagers - len(_flink_daemon_pids(p, "taskexecutor"))
        if not isolated:
            scripts.extend(["taskmanager.sh", "start"] for _ in range(max(0, missing)))
        if scripts:
            _run_flink_scripts(p, scripts)
        if isolated and missing > 0:
            _run_isolated_taskmanagers(p, missing)
    logs = sorted((d / "log").glob("*standalonesession*.log")) + sorted((d / "log").glob("*standalonesession*.out"))
    _wait(
        f"flink ({p.name}) on {p.flink_rest} with {taskmanagers} TaskManagers",
        lambda: _flink_taskmanagers(p) >= taskmanagers,
        lambda: bool(_flink_daemon_pids(p, "standalonesession")),
        timeout,
        logs or [d / "log" / "scripts.out"],
    )
    elapsed = time.monotonic() - started
    log.info("flink (%s) ready on %s with %d TaskManagers after %.1f s", p.name, p.flink_rest, taskmanagers, elapsed)


def stop_flink(p: Profile, grace: float = 15) -> None:
    """Stop the JobManager, the TaskManagers (and their Python workers) and any ``flink`` client of
    this profile, then drop the pid files the scripts keep."""
    _stop_service(p, "flink", grace, _flink_pid_files(p))
