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
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import yaml  # PyYAML ships with the venv (apache-beam needs it)

log = logging.getLogger("streamrec.localstack")

SERVICES: tuple[str, ...] = ("kafka", "cassandra", "flink")

LOOPBACK = "127.0.0.1"


class LocalStackError(RuntimeError):
    """A service could not be fetched, started or stopped; the message says why (with log tail)."""


class PortInUseError(LocalStackError):
    """A port the profile needs is held by a process that is not this profile's."""


# --------------------------------------------------------------------------------------------
# Profiles
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """One independent instance of the stack: its own ports and its own data folder."""

    name: str
    kafka_port: int
    kafka_controller_port: int
    cassandra_port: int
    cassandra_storage_port: int
    cassandra_jmx_port: int
    flink_rest_port: int
    flink_rpc_port: int
    # `streamrec serve` (started apart from the others, once the job has a catalog: `serve` below)
    service_port: int = 0
    # First port of Flink's Prometheus reporter range (streamrec.metrics.REPORTER_PORTS ports: the
    # JobManager and each TaskManager take the next free one); 0 leaves flink-conf/config.yaml's.
    flink_metrics_port: int = 0
    # Every other Flink port (blob server, TaskManager RPC and data, metrics query service, Python
    # gateways) is left at Flink's default of 0 = an ephemeral port, which can never collide.

    @property
    def kafka_bootstrap(self) -> str:
        return f"{LOOPBACK}:{self.kafka_port}"

    @property
    def metrics_ports(self) -> str:
        """Flink's Prometheus reporter port range, as its config takes it (``9249-9258``)."""
        from streamrec.metrics import REPORTER_PORTS

        return f"{self.flink_metrics_port}-{self.flink_metrics_port + REPORTER_PORTS - 1}"

    @property
    def flink_rest(self) -> str:
        return f"{LOOPBACK}:{self.flink_rest_port}"

    def ports(self, service: str) -> dict[str, int]:
        """The ports ``service`` listens on, by role (used for the 'port already taken' check)."""
        if service == "kafka":
            return {"broker": self.kafka_port, "controller": self.kafka_controller_port}
        if service == "cassandra":
            return {
                "native (CQL)": self.cassandra_port,
                "storage": self.cassandra_storage_port,
                "JMX": self.cassandra_jmx_port,
            }
        if service == "flink":
            return {"REST": self.flink_rest_port, "JobManager RPC": self.flink_rpc_port}
        if service == "service":
            return {"HTTP": self.service_port}
        raise ValueError(f"unknown service {service!r}; expected one of {SERVICES}")

    def config_env(self) -> dict[str, str]:
        """``STREAMREC_*`` variables that point ``streamrec.config.Config.from_env`` at this profile."""
        return {
            "STREAMREC_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "STREAMREC_CASSANDRA_HOSTS": LOOPBACK,
            "STREAMREC_CASSANDRA_PORT": str(self.cassandra_port),
            "STREAMREC_FLINK_REST": self.flink_rest,
        }


PROFILES: dict[str, Profile] = {
    # The products' usual ports: what the README and Config defaults assume.
    "dev": Profile("dev", 9092, 9093, 9042, 7000, 7199, 8081, 6123, 8000, 9249),
    # Same layout shifted by 10000 / 20000: distinct from dev and from each other, and below the
    # Linux ephemeral range (32768+) so an outgoing connection never grabs one of them.
    "demo": Profile("demo", 19092, 19093, 19042, 17000, 17199, 18081, 16123, 18000, 19249),
    "test": Profile("test", 29092, 29093, 29042, 27000, 27199, 28081, 26123, 28000, 29249),
    # `make bench` / `streamrec bench`: measurements never share a broker or a node with a test run.
    "bench": Profile("bench", 39092, 39093, 39042, 37000, 37199, 38081, 36123, 38000, 39249),
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise LocalStackError(f"unknown profile {name!r}; known: {', '.join(PROFILES)}") from None


# --------------------------------------------------------------------------------------------
# Paths and tools
# --------------------------------------------------------------------------------------------

_PKG_DIR = Path(__file__).resolve().parent


def repo_root() -> Path:
    """The checkout this package lives in (override: ``STREAMREC_REPO_ROOT``)."""
    env = os.environ.get("STREAMREC_REPO_ROOT")
    if env:
        return Path(env).resolve()
    candidate = _PKG_DIR.parents[1]
    if (candidate / "setup.py").exists():
        return candidate
    # Installed as a regular (non-editable) package: fall back to the working directory.
    return Path.cwd().resolve()


def stack_dir() -> Path:
    """``<repo>/.stack`` (gitignored): downloaded jars and per-profile run folders.

    Override with ``STREAMREC_STACK_DIR`` (e.g. a faster disk, or a shared jar cache).
    """
    env = os.environ.get("STREAMREC_STACK_DIR")
    return Path(env).resolve() if env else repo_root() / ".stack"


def run_dir(p: Profile) -> Path:
    return stack_dir() / "run" / p.name


def _svc_dir(p: Profile, service: str) -> Path:
    return run_dir(p) / service


def _marker(p: Profile, service: str) -> str:
    # Every process we start carries this path in its command line (config file, log dir); the
    # trailing separator keeps profile "test" from matching "test2".
    return str(_svc_dir(p, service)) + os.sep


def _pyflink_home() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("pyflink")
    if spec is None or spec.origin is None:
        raise LocalStackError("pyflink is not importable: install apache-flink into the venv")
    return Path(spec.origin).resolve().parent


def flink_bin(name: str) -> Path:
    """A script from the apache-flink wheel's ``bin/`` (``flink``, ``taskmanager.sh``, ...)."""
    path = _pyflink_home() / "bin" / name
    if not path.exists():
        raise LocalStackError(f"{path} does not exist (apache-flink wheel incomplete?)")
    return path


def _venv_python() -> Path:
    # The Python that has pyflink and our packages: Flink starts it for the client and the workers.
    venv = repo_root() / ".venv" / "bin" / "python"
    return venv if venv.exists() else Path(sys.executable)


def _java_major(home: Path) -> int | None:
    # The JDK's `release` file says its version without starting a JVM.
    try:
        for line in (home / "release").read_text().splitlines():
            if line.startswith("JAVA_VERSION="):
                version = line.split("=", 1)[1].strip().strip('"')
                head = version.split(".")[0]
                return int(version.split(".")[1]) if head == "1" else int(head)
    except (OSError, ValueError, IndexError):
        pass
    return None


def java_home() -> Path:
    """The JDK for every service: Java 17 (Cassandra 5.0 runs on 11/17 only; never on >= 24).

    ``STREAMREC_JAVA_HOME`` wins, then an installed OpenJDK 17, then ``JAVA_HOME`` / ``java`` on PATH.
    The machine's default ``java`` may be a newer JDK, so it is only the last resort.
    """
    env = os.environ.get("STREAMREC_JAVA_HOME")
    if env:
        return Path(env)
    for candidate in sorted(Path("/usr/lib/jvm").glob("java-17-openjdk*")):
        if (candidate / "bin" / "java").exists():
            return candidate
    if os.environ.get("JAVA_HOME"):
        return Path(os.environ["JAVA_HOME"])
    java = shutil.which("java")
    if java:
        return Path(java).resolve().parents[1]
    raise LocalStackError("no Java found: install OpenJDK 17 or set STREAMREC_JAVA_HOME")


def _java() -> str:
    return str(java_home() / "bin" / "java")


# --------------------------------------------------------------------------------------------
# fetch(): the jars, from Maven Central through Maven
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Artifacts:
    kafka_classpath: list[Path]
    cassandra_classpath: list[Path]
    jamm_jar: Path
    kafka_connector_jar: Path

    @property
    def kafka_connector_url(self) -> str:
        """The connector as a ``file://`` URL, the form ``env.add_jars`` / ``pipeline.jars`` take."""
        return self.kafka_connector_jar.as_uri()


# name of the folder under <stack>/lib -> the pom in streamrec/localstack/maven that fills it
_POMS: dict[str, str] = {
    "kafka": "kafka.xml",
    "cassandra": "cassandra.xml",
    "flink-connectors": "flink-connectors.xml",
    # the Flink Kubernetes Operator's CRDs, for the offline check of deploy/k8s (no service runs it)
    "k8s-operator": "k8s-operator.xml",
}
_COMPLETE = ".complete"


def _jars(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.jar"))


def _one(folder: Path, prefix: str) -> Path:
    found = [j for j in _jars(folder) if j.name.startswith(prefix)]
    if len(found) != 1:
        raise LocalStackError(f"expected one {prefix}*.jar in {folder}, found {[j.name for j in found]}")
    return found[0]


def fetch() -> Artifacts:
    """Download the runtime jars once; later calls only check a marker file (no Maven, ~ms).

    Each folder ``<stack>/lib/<name>`` is complete when its ``.complete`` marker holds the hash of
    the pom that filled it: editing a pom (a version bump) refetches just that folder. Maven writes
    into a temporary folder that is renamed at the end, so an interrupted fetch leaves nothing
    half-done; a file lock makes concurrent callers (parallel test sessions) wait for each other.
    """
    lib = stack_dir() / "lib"
    lib.mkdir(parents=True, exist_ok=True)
    with _locked(lib / ".lock"):
        for name, pom_name in _POMS.items():
            pom = _PKG_DIR / "maven" / pom_name
            digest = hashlib.sha256(pom.read_bytes()).hexdigest()
            out = lib / name
            marker = out / _COMPLETE
            if marker.exists() and marker.read_text().strip() == digest:
                continue
            _mvn_copy_dependencies(pom, out, digest)
    kafka_dir, cassandra_dir = lib / "kafka", lib / "cassandra"
    return Artifacts(
        kafka_classpath=_jars(kafka_dir),
        cassandra_classpath=_jars(cassandra_dir),
        jamm_jar=_one(cassandra_dir, "jamm-"),
        kafka_connector_jar=_one(lib / "flink-connectors", "flink-sql-connector-kafka-"),
    )


def _mvn_copy_dependencies(pom: Path, out: Path, digest: str) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise LocalStackError("mvn not found on PATH: install Maven 3.8+ to fetch the service jars")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    log.info("fetching %s jars with Maven (%s) ...", out.name, pom.name)
    started = time.monotonic()
    cmd = [mvn, "-B", "-q", "-f", str(pom), "dependency:copy-dependencies", f"-DoutputDirectory={tmp}"]
    env = {**os.environ, "JAVA_HOME": str(java_home())}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise LocalStackError(
            f"Maven failed to fetch {out.name} (exit {proc.returncode}): {' '.join(cmd)}\n"
            + _tail_text(proc.stdout + proc.stderr, 40)
        )
    (tmp / _COMPLETE).write_text(digest + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    log.info("fetched %d jars into %s in %.1f s", len(_jars(out)), out, time.monotonic() - started)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# --------------------------------------------------------------------------------------------
# Processes, ports, logs
# --------------------------------------------------------------------------------------------


def _render(template: str, dest: Path, **values: object) -> Path:
    """Fill ``@@name@@`` placeholders (chosen because log4j/logback/YAML all use ``${...}``)."""
    text = (_PKG_DIR / "templates" / template).read_text()
    for key, value in values.items():
        text = text.replace(f"@@{key}@@", str(value))
    if "@@" in text:
        raise LocalStackError(f"template {template}: unfilled placeholder near {text[text.index('@@') :][:40]!r}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(text)
    return dest


def _read_cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def _is_alive(pid: int) -> bool:
    """True for a running process; a zombie (dead, not yet reaped by its parent) counts as dead."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state letter follows the command name, which is in parentheses and may contain spaces.
    state = stat.rsplit(")", 1)[1].split()[0]
    # Not reaped here on purpose: a caller's Popen would then lose the exit status.
    return state not in ("Z", "X")


def _all_pids() -> Iterator[int]:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            yield int(entry.name)


def _service_pids(p: Profile, service: str) -> list[int]:
    """Live processes of this profile's service: command line mentions its run folder."""
    marker = _marker(p, service)
    me = os.getpid()
    return sorted(pid for pid in _all_pids() if pid != me and marker in _read_cmdline(pid) and _is_alive(pid))


def _descendants(roots: Iterable[int]) -> list[int]:
    """All live descendants of ``roots`` (Flink's Python workers are children of the TaskManager)."""
    children: dict[int, list[int]] = {}
    for pid in _all_pids():
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(pid)
    found: list[int] = []
    todo = list(roots)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.append(child)
                todo.append(child)
    return found


def _terminate(pids: Sequence[int], what: str, grace: float) -> None:
    """SIGTERM (lets the JVMs run their shutdown hooks), SIGKILL whatever is left after ``grace``."""
    targets = list(dict.fromkeys([*pids, *_descendants(pids)]))
    if not targets:
        return
    log.info("stopping %s (pids %s)", what, " ".join(map(str, targets)))
    for pid in targets:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_is_alive(pid) for pid in targets):
        time.sleep(0.2)
    survivors = [pid for pid in targets if _is_alive(pid)]
    if survivors:
        log.warning("%s did not stop within %.0f s; killing pids %s", what, grace, survivors)
        for pid in survivors:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_is_alive(pid) for pid in survivors):
            time.sleep(0.1)


def _port_open(port: int, host: str = LOOPBACK, timeout: float = 0.5) -> bool:
    """Something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _port_free(port: int) -> bool:
    """We could listen on 127.0.0.1:port (catches wildcard and IPv6 dual-stack listeners too)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # ignore TIME_WAIT leftovers
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def listening_inodes(port: int) -> set[str]:
    """Socket inodes of the listeners on ``port`` (from /proc/net/tcp and tcp6)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def _port_owner(port: int) -> str:
    """Best effort 'pid N: cmdline' of the listener on ``port`` (via /proc/net/tcp inodes)."""
    inodes = listening_inodes(port)
    for pid in _all_pids():
        fd_dir = Path(f"/proc/{pid}/fd")
        try:
            links = [os.readlink(fd_dir / fd) for fd in os.listdir(fd_dir)]
        except OSError:
            continue  # not ours to inspect, or gone
        if any(link.startswith("socket:[") and link[8:-1] in inodes for link in links):
            return f"pid {pid}: {_read_cmdline(pid)[:160]}"
    return "an unknown process (not visible to this user)"


def _check_ports(p: Profile, service: str) -> None:
    taken = [(role, port) for role, port in p.ports(service).items() if not _port_free(port)]
    if taken:
        lines = [f"  {role} port {port} is held by {_port_owner(port)}" for role, port in taken]
        raise PortInUseError(
            f"cannot start {service} for profile {p.name!r}: its ports are taken by something that is "
            f"not this profile's {service}:\n" + "\n".join(lines) + "\nStop that process, or use "
            f"another profile (--profile {' / '.join(n for n in PROFILES if n != p.name)})."
        )


def _tail_text(text: str, lines: int) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _tail(path: Path, lines: int = 40) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64 * 1024))
            text = fh.read().decode(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return f"--- last lines of {path} ---\n{_tail_text(text, lines)}"


def _spawn(cmd: Sequence[str], out: Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start a long-running process that outlives us: new session, output to a file, no stdin."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "ab") as fh:
        fh.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(cmd)}\n".encode())
        fh.flush()
        return subprocess.Popen(
            list(cmd),
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # no SIGHUP/SIGINT from the shell or make that started us
            close_fds=True,
        )


def _wait(
    what: str,
    ready: Callable[[], bool],
    alive: Callable[[], bool],
    timeout: float,
    logs: Sequence[Path],
    proc: subprocess.Popen[bytes] | None = None,
) -> float:
    """Poll ``ready`` until it holds; fail early (with the logs' tails) when the process died.

    An exception from ``ready`` counts as "not yet"; the last one is quoted if time runs out, so
    a readiness check that can never succeed (a client misconfiguration) is visible. A process is
    only declared dead after two negative looks a second apart.
    """
    started = time.monotonic()
    deadline = started + timeout
    last_error = ""

    def check() -> bool:
        nonlocal last_error
        try:
            return ready()
        except Exception as exc:  # the clients raise many kinds of "not yet"
            last_error = f"{type(exc).__name__}: {exc}"
            log.debug("%s not ready: %s", what, last_error)
            return False

    dead_looks = 0
    while True:
        if check():
            return time.monotonic() - started
        dead_looks = 0 if alive() else dead_looks + 1
        if dead_looks >= 2:
            code = f" with exit code {proc.returncode}" if proc is not None and proc.returncode is not None else ""
            raise LocalStackError(f"{what} exited during start-up{code}.\n" + "\n".join(_tail(f) for f in logs))
        if time.monotonic() > deadline:
            reason = f" Last readiness check: {last_error}." if last_error else ""
            raise LocalStackError(
                f"{what} did not become ready within {timeout:.0f} s (it is still running; "
                f"`down` stops it).{reason}\n" + "\n".join(_tail(f) for f in logs)
            )
        time.sleep(0.5)


def _alive_check(proc: subprocess.Popen[bytes] | None, p: Profile, service: str) -> Callable[[], bool]:
    """Our own child: its exit status (exact). Started by an earlier call: the /proc scan."""
    if proc is not None:
        return lambda: proc.poll() is None
    return lambda: bool(_service_pids(p, service))


def _write_pid(path: Path, pid: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{pid}\n")


@contextlib.contextmanager
def _service_lock(p: Profile, service: str) -> Iterator[None]:
    """Serialise start/stop of one service of one profile across processes.

    Several sessions share a checkout (a developer's shell, pytest, `make demo`): without it two
    starts could both see no process and both launch one, and the loser dies on a taken port.
    """
    path = run_dir(p) / f".{service}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path):
        yield


def _stop_service(p: Profile, service: str, grace: float, pid_files: Iterable[Path]) -> None:
    with _service_lock(p, service):
        _stop_service_locked(p, service, grace, pid_files)


def _stop_service_locked(p: Profile, service: str, grace: float, pid_files: Iterable[Path]) -> None:
    pids = set(_service_pids(p, service))
    for pid_file in pid_files:
        with contextlib.suppress(OSError, ValueError):
            for line in pid_file.read_text().split():
                pid = int(line)
                # A pid file can outlive its process and the pid be reused: trust it only when the
                # command line still names this profile's folder.
                if _is_alive(pid) and _marker(p, service) in _read_cmdline(pid):
                    pids.add(pid)
    _terminate(sorted(pids), f"{service} ({p.name})", grace)
    for pid_file in pid_files:
        pid_file.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------
# Kafka
# --------------------------------------------------------------------------------------------


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
    d = _svc_dir(p, "kafka")
    proc: subprocess.Popen[bytes] | None = None
    with _service_lock(p, "kafka"):
        if _service_pids(p, "kafka"):
            log.info("kafka (%s) is already running; waiting until it answers", p.name)
        else:
            _check_ports(p, "kafka")
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
            proc = _spawn([*jvm, "kafka.Kafka", str(props)], logs / "kafka.out", cwd=d)
            _write_pid(d / "kafka.pid", proc.pid)
    _wait(
        f"kafka ({p.name}) on {p.kafka_bootstrap}",
        lambda: _kafka_ready(p),
        _alive_check(proc, p, "kafka"),
        timeout,
        [d / "logs" / "kafka.out", d / "logs" / "server.log"],
        proc,
    )
    log.info("kafka (%s) ready on %s after %.1f s", p.name, p.kafka_bootstrap, time.monotonic() - started)


def stop_kafka(p: Profile, grace: float = 30) -> None:
    _stop_service(p, "kafka", grace, [_svc_dir(p, "kafka") / "kafka.pid"])


# --------------------------------------------------------------------------------------------
# Cassandra
# --------------------------------------------------------------------------------------------

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
    started = time.monotonic()
    art = fetch()
    d = _svc_dir(p, "cassandra")
    proc: subprocess.Popen[bytes] | None = None
    with _service_lock(p, "cassandra"):
        if _service_pids(p, "cassandra"):
            log.info("cassandra (%s) is already running; waiting until it answers", p.name)
        else:
            home = java_home()
            major = _java_major(home)
            if major is not None and major not in (11, 17):
                raise LocalStackError(
                    f"Cassandra 5.0 runs on Java 11 or 17 only; {home} is Java {major}. "
                    "Set STREAMREC_JAVA_HOME to a JDK 17."
                )
            _check_ports(p, "cassandra")
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
            proc = _spawn(cmd, logs / "cassandra.out", cwd=d)
            _write_pid(d / "cassandra.pid", proc.pid)
    _wait(
        f"cassandra ({p.name}) on {LOOPBACK}:{p.cassandra_port}",
        lambda: _cassandra_ready(p),
        _alive_check(proc, p, "cassandra"),
        timeout,
        [d / "logs" / "cassandra.out", d / "logs" / "system.log"],
        proc,
    )
    elapsed = time.monotonic() - started
    log.info("cassandra (%s) ready on %s:%d after %.1f s", p.name, LOOPBACK, p.cassandra_port, elapsed)


def stop_cassandra(p: Profile, grace: float = 30) -> None:
    _stop_service(p, "cassandra", grace, [_svc_dir(p, "cassandra") / "cassandra.pid"])


# --------------------------------------------------------------------------------------------
# Flink standalone cluster (the wheel's distribution and scripts)
# --------------------------------------------------------------------------------------------


def _flatten(tree: object, prefix: str = "") -> dict[str, object]:
    """Nested YAML -> Flink's dotted keys (``{a: {b: 1}}`` -> ``{"a.b": 1}``), as Flink itself does."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    flat: dict[str, object] = {}
    for key, value in tree.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            flat.update(_flatten(value, name))
        else:
            flat[name] = value
    return flat


def _flink_conf_dir(p: Profile) -> Path:
    return _svc_dir(p, "flink") / "conf"


def _write_flink_conf(p: Profile, taskmanagers: int) -> Path:
    """``<run>/flink/conf``: the wheel's conf/, our flink-conf/config.yaml on top, then the profile.

    The result is written with flat dotted keys (Flink's config.yaml accepts both forms), so a
    later layer replaces an earlier value however either one was nested.
    """
    d = _svc_dir(p, "flink")
    conf = _flink_conf_dir(p)
    wheel_conf = _pyflink_home() / "conf"
    conf.mkdir(parents=True, exist_ok=True)
    for src in wheel_conf.iterdir():
        if src.is_file() and src.name != "config.yaml":
            shutil.copy2(src, conf / src.name)

    merged = _flatten(yaml.safe_load((wheel_conf / "config.yaml").read_text()) or {})
    ours = repo_root() / "flink-conf" / "config.yaml"
    if ours.exists():
        merged.update(_flatten(yaml.safe_load(ours.read_text()) or {}))
    else:
        log.warning("%s not found; using the wheel's Flink defaults", ours)
    home = java_home()
    python = str(_venv_python())
    merged.update(
        {
            "jobmanager.rpc.address": LOOPBACK,
            "jobmanager.bind-host": LOOPBACK,
            "jobmanager.rpc.port": p.flink_rpc_port,
            "taskmanager.bind-host": LOOPBACK,
            "taskmanager.host": LOOPBACK,
            "rest.address": LOOPBACK,
            "rest.bind-address": LOOPBACK,
            "rest.port": p.flink_rest_port,
            # Logs, pid files, scratch space and uploaded jars inside the run folder: the defaults
            # (the venv's pyflink/log, /tmp) would be shared by every profile.
            "env.log.dir": str(d / "log"),
            "env.pid.dir": str(d / "pid"),
            "env.java.home": str(home),
            "io.tmp.dirs": str(d / "tmp"),
            "web.tmpdir": str(d / "web"),
            "execution.checkpointing.dir": (d / "checkpoints").as_uri(),
            "execution.checkpointing.savepoint-dir": (d / "savepoints").as_uri(),
            # The venv's Python (it has pyflink and our code) for the client and the workers, so
            # `flink run -py job.py` needs no -pyexec/-pyclientexec.
            "python.executable": python,
            "python.client.executable": python,
        }
    )
    if p.flink_metrics_port:
        merged["metrics.reporter.prom.port"] = p.metrics_ports
    for sub in ("log", "pid", "tmp", "web", "checkpoints", "savepoints"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    header = (
        f"# Generated by streamrec.localstack for profile {p.name}: the apache-flink wheel's config.yaml,\n"
        "# then flink-conf/config.yaml, then this profile's ports and folders. Edit flink-conf/config.yaml.\n"
    )
    body = yaml.safe_dump(dict(sorted(merged.items())), default_flow_style=False, width=100000, sort_keys=False)
    (conf / "config.yaml").write_text(header + body)
    # Only read by start-cluster.sh / stop-cluster.sh, kept consistent for anyone who uses them.
    (conf / "workers").write_text("localhost\n" * taskmanagers)
    (conf / "masters").write_text(f"{LOOPBACK}:{p.flink_rest_port}\n")
    return conf


def _flink_lib_dir(p: Profile) -> Path:
    """The cluster's lib folder: links to the wheel's lib/ jars plus its opt/flink-python jar.

    With flink-python on the TaskManagers' own class path (and pemja loaded parent-first, see
    flink-conf/config.yaml), thread-mode Python loads its native library once per TaskManager
    instead of once per job, which a JVM refuses the second time."""
    lib = _svc_dir(p, "flink") / "lib"
    lib.mkdir(parents=True, exist_ok=True)
    home = _pyflink_home()
    jars = [*sorted((home / "lib").glob("*.jar")), *sorted((home / "opt").glob("flink-python*.jar"))]
    wanted = {j.name: j for j in jars}
    for old in lib.iterdir():
        if old.name not in wanted or not old.exists():
            old.unlink()
    for name, target in wanted.items():
        link = lib / name
        if not link.exists():
            link.symlink_to(target)
    return lib


def flink_env(p: Profile) -> dict[str, str]:
    """A complete environment for the wheel's Flink scripts against this profile's cluster.

    Use it as ``subprocess.run([flink_bin("flink"), "run", ...], env=flink_env(p))``. It is
    ``os.environ`` plus FLINK_CONF_DIR / FLINK_LOG_DIR / FLINK_PID_DIR of the profile, JAVA_HOME
    (Java 17), a stable FLINK_IDENT_STRING (pid and log file names), and the venv first on PATH.
    """
    d = _svc_dir(p, "flink")
    if not (_flink_conf_dir(p) / "config.yaml").exists():
        _write_flink_conf(p, taskmanagers=2)
    home = java_home()
    venv_bin = str(_venv_python().parent)
    env = dict(os.environ)
    env.update(
        {
            "FLINK_LIB_DIR": str(_flink_lib_dir(p)),
            "FLINK_CONF_DIR": str(_flink_conf_dir(p)),
            "FLINK_LOG_DIR": str(d / "log"),
            "FLINK_PID_DIR": str(d / "pid"),
            "FLINK_IDENT_STRING": f"streamrec-{p.name}",
            "JAVA_HOME": str(home),
            "PATH": os.pathsep.join([venv_bin, str(home / "bin"), env.get("PATH", "")]),
        }
    )
    # A JVM_ARGS / FLINK_ENV_JAVA_OPTS from the caller's shell would replace the config's options.
    for key in ("FLINK_ENV_JAVA_OPTS", "FLINK_ENV_JAVA_OPTS_JM", "FLINK_ENV_JAVA_OPTS_TM"):
        env.pop(key, None)
    return env


def _flink_overview(p: Profile) -> dict[str, object] | None:
    try:
        with urllib.request.urlopen(f"http://{p.flink_rest}/overview", timeout=2) as resp:
            data = json.load(resp)
            return data if isinstance(data, dict) else None
    except (OSError, urllib.error.URLError, ValueError):
        return None


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


def isolated_host_dir(p: Profile) -> Path:
    """The folder an isolated TaskManager runs from: outside the checkout (the system's temp folder)."""
    return Path(tempfile.gettempdir()).resolve() / f"streamrec-host-{p.name}"


def _inside(path: str, folders: Sequence[Path]) -> bool:
    try:
        resolved = Path(path).resolve()
    except OSError:
        return False
    return any(resolved == f or f in resolved.parents for f in folders)


def isolated_host(p: Profile) -> tuple[Path, dict[str, str]]:
    """(folder, environment) for a TaskManager that cannot see this checkout, as on another host.

    The folder (:func:`isolated_host_dir`) gets its own copy of the Flink distribution (``bin/``,
    ``lib/`` as hard links to the wheel's jars and its flink-python jar, ``conf/`` from the
    cluster's, with scratch space there and no ``python.executable`` of the venv); the environment
    is built from nothing: PATH less every folder in the checkout or its venv, no PYTHONPATH,
    VIRTUAL_ENV or PYTHONHOME. Only its log and pid files stay in the profile's run folder, so that
    ``stop_flink`` finds and stops it with the rest of the cluster. A job runs there only with
    the Python it ships (``streamrec job submit`` without ``--python``).
    """
    host = isolated_host_dir(p)
    home = host / "flink"
    d = _svc_dir(p, "flink")
    for sub in ("bin", "lib", "conf", "plugins", "tmp"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    shutil.copytree(_pyflink_home() / "bin", home / "bin", dirs_exist_ok=True)
    wanted = {link.name: link.resolve() for link in _flink_lib_dir(p).iterdir()}
    for old in (home / "lib").iterdir():
        if old.name not in wanted:
            old.unlink()
    for name, target in wanted.items():
        dest = home / "lib" / name
        if dest.exists() and dest.stat().st_size == target.stat().st_size:
            continue
        dest.unlink(missing_ok=True)
        try:
            os.link(target, dest)  # same filesystem: no copy of ~300 MB
        except OSError:
            shutil.copy2(target, dest)
    conf_dir = _flink_conf_dir(p)
    for src in conf_dir.iterdir():
        if src.is_file() and src.name != "config.yaml":
            shutil.copy2(src, home / "conf" / src.name)
    conf = yaml.safe_load((conf_dir / "config.yaml").read_text()) or {}
    # No interpreter of this checkout: `python3` is whatever the host has on its PATH, and the job
    # names its own (-pyexec) anyway.
    conf.update({"python.executable": "python3", "python.client.executable": "python3",
                 "io.tmp.dirs": str(home / "tmp")})
    (home / "conf" / "config.yaml").write_text(
        f"# Generated by streamrec.localstack: profile {p.name}'s config for a TaskManager on an isolated host\n"
        + yaml.safe_dump(conf, default_flow_style=False, width=100000, sort_keys=True))
    hidden = [repo_root(), _venv_python().parent.parent.resolve()]
    java = java_home()
    path = [str(java / "bin")] + [x for x in os.environ.get("PATH", "").split(os.pathsep)
                                  if x and not _inside(x, hidden)]
    env = {
        "PATH": os.pathsep.join(dict.fromkeys(path)),
        "HOME": os.environ.get("HOME", str(host)),
        "LANG": "C.UTF-8",
        "JAVA_HOME": str(java),
        "FLINK_HOME": str(home),
        "FLINK_CONF_DIR": str(home / "conf"),
        "FLINK_LIB_DIR": str(home / "lib"),
        "FLINK_PLUGINS_DIR": str(home / "plugins"),
        "FLINK_LOG_DIR": str(d / "log"),
        "FLINK_PID_DIR": str(d / "pid"),
        "FLINK_IDENT_STRING": f"streamrec-{p.name}",
    }
    return host, env


def _run_isolated_taskmanagers(p: Profile, count: int) -> None:
    host, env = isolated_host(p)
    out = _svc_dir(p, "flink") / "log" / "scripts.out"
    script = str(host / "flink" / "bin" / "taskmanager.sh")
    procs = [_spawn([script, "start"], out, cwd=host, env=env) for _ in range(count)]
    for proc in procs:
        if proc.wait(timeout=120) != 0:
            raise LocalStackError(f"isolated taskmanager.sh start failed (exit {proc.returncode}).\n{_tail(out)}")


def start_flink(p: Profile, taskmanagers: int = 2, timeout: float = 90, isolated: bool = False) -> None:
    """A standalone session cluster: 1 JobManager and ``taskmanagers`` TaskManagers.

    Idempotent: on a running cluster it only starts the missing TaskManagers (how the fault tests
    bring a killed TaskManager back). Returns once REST /overview counts ``taskmanagers``.
    ``isolated``: the TaskManagers it starts run as on another host (:func:`isolated_host`).
    """
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
        _write_flink_conf(p, taskmanagers)
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


# --------------------------------------------------------------------------------------------
# The recommendation service (`streamrec serve`)
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Whole-stack helpers
# --------------------------------------------------------------------------------------------

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


__all__ = [
    "PROFILES",
    "SERVICES",
    "Artifacts",
    "LocalStackError",
    "PortInUseError",
    "Profile",
    "ServiceStatus",
    "down",
    "fetch",
    "flink_bin",
    "flink_env",
    "get_profile",
    "is_running",
    "isolated_host",
    "isolated_host_dir",
    "java_home",
    "repo_root",
    "run_dir",
    "service_url",
    "stack_dir",
    "start_cassandra",
    "start_flink",
    "start_kafka",
    "start_service",
    "status",
    "status_of_service",
    "stop_cassandra",
    "stop_flink",
    "stop_kafka",
    "stop_service",
    "up",
    "wipe",
]
