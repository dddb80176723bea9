"""The recommendation service (`streamrec serve`) of a profile."""

from __future__ import annotations

import logging
import os
import subprocess
import time
import urllib.error
import urllib.request

from streamrec.localstack.paths import _svc_dir, _venv_python, repo_root
from streamrec.localstack.processes import (
    _alive_check,
    _port_free,
    _port_owner,
    _service_lock,
    _service_pids,
    _spawn,
    _stop_service,
    _wait,
    _write_pid,
)
from streamrec.localstack.profiles import LOOPBACK, PortInUseError, Profile

log = logging.getLogger("streamrec.localstack")


def service_url(p: Profile) -> str:
    return f"http://{LOOPBACK}:{p.service_port}/"


def _service_ready(p: Profile) -> bool:
    """/readyz answers 200: Cassandra and Kafka reachable, the catalog loaded."""
    try:
        with urllib.request.urlopen(f"http://{LOOPBACK}:{p.service_port}/readyz", timeout=2) as resp:
            return bool(resp.status == 200)
    except urllib.error.HTTPError:
        return False


def start_service(p: Profile, timeout: float = 90) -> str:
    """`streamrec serve` on the profile's service port, pointed at the profile's Kafka and
    Cassandra; returns its URL once /readyz says yes. Start it after the catalog is loaded."""
    started = time.monotonic()
    d = _svc_dir(p, "service")
    proc: subprocess.Popen[bytes] | None = None
    with _service_lock(p, "service"):
        if _service_pids(p, "service"):
            log.info("service (%s) is already running; waiting until it is ready", p.name)
        else:
            if not _port_free(p.service_port):
                raise PortInUseError(f"port {p.service_port} (service HTTP) is taken by {_port_owner(p.service_port)}")
            env = {**os.environ, **p.config_env()}
            # the run folder in the command line is how `down` finds the process again (_marker)
            cmd = [str(_venv_python()), "-m", "streamrec.service", "--url-file", str(d / "url"), "--host", LOOPBACK,
                   "--port", str(p.service_port)]
            proc = _spawn(cmd, d / "service.out", cwd=repo_root(), env=env)
            _write_pid(d / "service.pid", proc.pid)
    _wait(f"service ({p.name}) on {service_url(p)}", lambda: _service_ready(p), _alive_check(proc, p, "service"),
          timeout, [d / "service.out"], proc)
    log.info("service (%s) ready on %s after %.1f s", p.name, service_url(p), time.monotonic() - started)
    return service_url(p)


def stop_service(p: Profile, grace: float = 15) -> None:
    _stop_service(p, "service", grace, [_svc_dir(p, "service") / "service.pid"])


def status_of_service(p: Profile) -> list[int]:
    """The live pids of the profile's recommendation service (found by its run folder)."""
    return _service_pids(p, "service")
