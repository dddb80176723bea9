"""Running the job as a background process and waiting for its results (demo, tests, tools)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any, Callable, Optional, TypeVar

from streamrec.config import Config

T = TypeVar("T")


def config_env(config: Config, base: Optional[dict[str, str]] = None) -> dict[str, str]:
    """The environment that makes ``Config.from_env()`` in a child process equal ``config``."""
    env = dict(os.environ if base is None else base)
    env.update(config.to_env())
    return env


def wait_for(check: Callable[[], Optional[T]], timeout: float, what: str, interval: float = 1.0,
             on_timeout: Optional[Callable[[], str]] = None) -> T:
    """Call ``check`` until it returns something truthy; raise TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    last_error: Optional[BaseException] = None
    while True:
        try:
            result = check()
            if result:
                return result
        except Exception as exc:  # a service still starting: try again until the deadline
            last_error = exc
        if time.monotonic() > deadline:
            detail = on_timeout() if on_timeout else ""
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}"
                               + (f" (last error: {last_error})" if last_error else "")
                               + (f"\n{detail}" if detail else ""))
        time.sleep(interval)


class BackgroundJob:
    """The streamrec job on a local minicluster, in its own process group.

    The PyFlink client starts a JVM of its own; killing the whole group makes sure no
    minicluster outlives the demo or the test that started it.
    """

    def __init__(self, config: Config, log_path: Path) -> None:
        self.config = config
        self.log_path = log_path
        self._proc: Optional[subprocess.Popen[bytes]] = None
        self._log: Optional[IO[bytes]] = None

    def start(self) -> BackgroundJob:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "streamrec.jobs.job"],
            env=config_env(self.config),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace: float = 15.0) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if proc is not None:
            # the JVM child may still be exiting after the Python parent is gone
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self._log is not None:
            self._log.close()
            self._log = None
        self._proc = None

    def __enter__(self) -> BackgroundJob:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
