"""The one client of Flink's REST API: the CLI (`streamrec job ...`), the local stack's readiness
check, the benchmark's metrics and the fault tests all talk to a JobManager through it.

Two ways a call fails, kept apart because callers act differently on them: nothing answers at the
address (:class:`~streamrec.unreachable.Unreachable`, which the CLI prints as one line with exit
status 3), or Flink answers with an HTTP error (:class:`FlinkHttpError`: an unknown job, a failed
trigger), whose message is Flink's own first line.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any, Optional


class FlinkHttpError(RuntimeError):
    """Flink answered ``status`` to ``path``; ``errors``: the first line of each of its messages."""

    def __init__(self, address: str, path: str, status: int, errors: list[str], reason: str = "") -> None:
        self.address, self.path, self.status, self.errors = address, path, status, errors
        super().__init__(f"Flink at {address} answered {status} to {path}: " + ("; ".join(errors) or reason))


class FlinkRest:
    """The REST API of the JobManager at ``address`` (``host:port``)."""

    def __init__(self, address: str, timeout: float = 10) -> None:
        self.address = address
        self.timeout = timeout

    def call(self, path: str, body: Optional[dict[str, Any]] = None, method: Optional[str] = None,
             timeout: Optional[float] = None) -> Any:
        """``method`` (GET, or POST when there is a ``body``, sent as JSON) ``path``; the JSON answer,
        None for an empty one."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"http://{self.address}{path}", data=data,
                                     method=method or ("GET" if body is None else "POST"),
                                     headers={} if body is None else {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout if timeout is None else timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:  # before OSError: Flink answered
            raise FlinkHttpError(self.address, path, exc.code, _error_lines(exc), str(exc.reason)) from exc
        except OSError as exc:
            from streamrec.unreachable import Unreachable

            raise Unreachable("Flink", self.address, str(getattr(exc, "reason", "") or exc)) from exc
        return json.loads(raw) if raw.strip() else None

    def get(self, path: str, timeout: Optional[float] = None) -> Any:
        return self.call(path, timeout=timeout)

    def overview(self, timeout: Optional[float] = None) -> dict[str, Any]:
        """The cluster: TaskManagers, slots, job counts (``/overview``)."""
        return dict(self.get("/overview", timeout=timeout))

    def jobs(self, timeout: Optional[float] = None) -> list[dict[str, Any]]:
        """Every job the cluster knows, finished ones too: ``jid``, ``name``, ``state``, ..."""
        return list(self.get("/jobs/overview", timeout=timeout)["jobs"])

    def job(self, jid: str) -> dict[str, Any]:
        """One job's details: ``state`` and its ``vertices`` (``parallelism``, ``status``, ``tasks``)."""
        return dict(self.get(f"/jobs/{jid}"))

    def taskmanagers(self) -> list[dict[str, Any]]:
        return list(self.get("/taskmanagers")["taskmanagers"])

    def cancel(self, jid: str) -> None:
        self.call(f"/jobs/{jid}?mode=cancel", method="PATCH")


def _error_lines(exc: urllib.error.HTTPError) -> list[str]:
    """The first line of each message in Flink's ``{"errors": [...]}`` (the rest is a Java stack)."""
    try:
        return [str(e).strip().splitlines()[0][:300] for e in json.load(exc).get("errors", []) if str(e).strip()]
    except (ValueError, AttributeError):
        return []
