"""Flink REST metrics of a running job, also of a local minicluster (whose REST port is random).

A PyFlink minicluster listens on an ephemeral port; :func:`find_rest` reads it from the minicluster's
log, so the job needs no configuration change to be observed. The calls go through the one REST
client, :class:`streamrec.flinkrest.FlinkRest`.
"""

from __future__ import annotations

import re
import statistics
from pathlib import Path
from typing import Any, Optional

from streamrec.flinkrest import FlinkRest

METRICS = (
    "busyTimeMsPerSecond",
    "backPressuredTimeMsPerSecond",
    "idleTimeMsPerSecond",
    "numRecordsInPerSecond",
    "numRecordsOutPerSecond",
)


_REST_LINE = re.compile(r"Rest endpoint listening at ([^\s:]+):(\d+)")


def find_rest(log_dir: Path) -> Optional[str]:
    """``127.0.0.1:port`` of the REST endpoint a PyFlink minicluster logged into ``log_dir``, if any.

    The job's client JVM logs into ``$FLINK_LOG_DIR`` (the venv's ``pyflink/log`` by default, shared
    by every job started from that venv); the benchmark points it at a folder of its own.
    """
    for path in sorted(log_dir.glob("*.log")):
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        m = _REST_LINE.search(text)
        if m:
            return f"127.0.0.1:{m.group(2)}"
    return None


class FlinkMetrics:
    """Samples per-vertex busy/back-pressure/idle time and record rates of the first running job."""

    def __init__(self, rest: str) -> None:
        self.rest = rest
        self.api = FlinkRest(rest, timeout=2.0)
        self.jid: Optional[str] = None
        self.vertices: dict[str, str] = {}  # id -> name
        self.samples: dict[str, dict[str, list[float]]] = {}  # vertex name -> metric -> values

    def _job(self) -> Optional[str]:
        if self.jid is None:
            jobs = self.api.get("/jobs/overview").get("jobs", [])
            running = [j for j in jobs if j.get("state") == "RUNNING"]
            if running:
                self.jid = running[0]["jid"]
                detail = self.api.job(self.jid)
                self.vertices = {v["id"]: v["name"] for v in detail.get("vertices", [])}
        return self.jid

    def sample(self) -> None:
        jid = self._job()
        if jid is None:
            return
        for vid, name in self.vertices.items():
            rows = self.api.get(f"/jobs/{jid}/vertices/{vid}/subtasks/metrics?get={','.join(METRICS)}")
            per = self.samples.setdefault(name, {})
            for row in rows:
                try:
                    per.setdefault(row["id"], []).append(float(row["sum"]))
                except (KeyError, TypeError, ValueError):
                    continue

    def summary(self) -> dict[str, dict[str, float]]:
        """vertex name -> metric -> median of the samples (sum over subtasks)."""
        return {
            name: {m: round(statistics.median(v), 1) for m, v in per.items() if v}
            for name, per in self.samples.items()
        }

    def checkpoints(self) -> dict[str, Any]:
        jid = self._job()
        if jid is None:
            return {}
        data = self.api.get(f"/jobs/{jid}/checkpoints")
        counts = data.get("counts", {})
        summary = data.get("summary", {})
        e2e = summary.get("end_to_end_duration", {})
        size = summary.get("checkpointed_size", summary.get("state_size", {}))
        return {
            "completed": counts.get("completed"),
            "failed": counts.get("failed"),
            "duration_ms": {k: e2e.get(k) for k in ("min", "avg", "p99", "max") if k in e2e},
            "size_bytes_max": size.get("max"),
            # the newest ones (Flink keeps ~10): when each was triggered and how long it took, to lay
            # beside the freshness probes' send times
            "history": [
                {"trigger_ms": h.get("trigger_timestamp"), "duration_ms": h.get("end_to_end_duration"),
                 "status": h.get("status"), "size_bytes": h.get("checkpointed_size", h.get("state_size"))}
                for h in data.get("history", [])
            ],
        }
