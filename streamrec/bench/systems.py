"""The systems `make bench` measures (the streamrec job on a minicluster, the baselines), each as
one process tree, and the harness's messages on stderr."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

from streamrec.bench.procstat import descendants, process_table
from streamrec.config import Config
from streamrec.runner import BackgroundJob, config_env

log = logging.getLogger("streamrec.bench")

WORKER_MODE_ENV = "_python_worker_execution_mode"  # read by PyFlink's client (loopback | process)


def restore_env(key: str, value: Optional[str]) -> None:
    if value is None:
        os.environ.pop(key, None)
    else:
        os.environ[key] = value


def say(msg: str) -> None:
    print(f"==> {msg}", file=sys.stderr, flush=True)


class _Job(BackgroundJob):
    @property
    def pid(self) -> Optional[int]:
        proc = self._proc
        return None if proc is None else proc.pid


class System:
    """The streamrec job (minicluster, the real job code) or the baseline, as one process tree."""

    def __init__(self, name: str, config: Config, log_path: Path, worker_mode: str = "") -> None:
        self.name = name
        self.worker_mode = worker_mode
        self.config = config
        self.log_path = log_path
        self._job: Optional[_Job] = None
        self._proc: Optional[subprocess.Popen[bytes]] = None
        self._log: Any = None
        self.flink_log_dir = log_path.with_suffix(".flink-log")

    def start(self) -> System:
        if self.name == "streamrec":
            # The minicluster's own log (where it says its REST port) in a folder of this run: by
            # default it goes to the venv's pyflink/log, shared by every job started from the venv.
            self.flink_log_dir.mkdir(parents=True, exist_ok=True)
            old = os.environ.get("FLINK_LOG_DIR")
            os.environ["FLINK_LOG_DIR"] = str(self.flink_log_dir)
            if self.worker_mode:
                old_mode = os.environ.get(WORKER_MODE_ENV)
                os.environ[WORKER_MODE_ENV] = self.worker_mode
            try:
                self._job = _Job(self.config, self.log_path)
                self._job.start()
            finally:
                restore_env("FLINK_LOG_DIR", old)
                if self.worker_mode:
                    restore_env(WORKER_MODE_ENV, old_mode)
        else:
            mode = "batched" if self.name == "baseline-batched" else "naive"
            self._log = open(self.log_path, "wb")
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "streamrec.bench.baseline", "--mode", mode],
                env=config_env(self.config), stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        return self

    @property
    def pid(self) -> Optional[int]:
        if self._job is not None:
            return self._job.pid
        return None if self._proc is None else self._proc.pid

    def pids(self) -> list[int]:
        pid = self.pid
        return [] if pid is None else [pid]

    def tree(self) -> list[int]:
        return sorted(descendants(process_table(), self.pids()))

    def alive(self) -> bool:
        if self._job is not None:
            return self._job.alive()
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self._job is not None:
            self._job.stop()
            self._job = None
        if self._proc is not None:
            if self._proc.poll() is None:
                try:
                    os.killpg(self._proc.pid, signal.SIGTERM)
                    self._proc.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(self._proc.pid, signal.SIGKILL)
                    self._proc.wait(10)
                except ProcessLookupError:
                    pass
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
