"""Processes, ports and logs: starting detached JVMs, finding them again by run folder, stopping them."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from streamrec.localstack.paths import _PKG_DIR, _marker, _svc_dir, run_dir
from streamrec.localstack.profiles import LOOPBACK, PROFILES, LocalStackError, PortInUseError, Profile

log = logging.getLogger("streamrec.localstack")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


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


def _start_service(p: Profile, service: str, where: str, launch: Callable[[Path], subprocess.Popen[bytes]],
                   ready: Callable[[], bool], timeout: float, logs: Sequence[str]) -> None:
    """Start ``service`` of profile ``p`` unless it runs, and return once ``ready`` holds. Under the
    service's lock: a running one is only waited for; else its ports must be free, ``launch(folder)``
    spawns it and its pid is recorded. ``where``: its address in messages; ``logs``: the files of its
    folder whose tails a failed start shows."""
    started = time.monotonic()
    d = _svc_dir(p, service)
    proc: subprocess.Popen[bytes] | None = None
    with _service_lock(p, service):
        if _service_pids(p, service):
            log.info("%s (%s) is already running; waiting until it answers", service, p.name)
        else:
            _check_ports(p, service)
            proc = launch(d)
            _write_pid(d / f"{service}.pid", proc.pid)
    _wait(f"{service} ({p.name}) on {where}", ready, _alive_check(proc, p, service), timeout,
          [d / name for name in logs], proc)
    log.info("%s (%s) ready on %s after %.1f s", service, p.name, where, time.monotonic() - started)


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
