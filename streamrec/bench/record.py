"""The one result record builder of `streamrec bench`: a line of ``bench/results.jsonl`` per system
(``streamrec bench report`` and the plots read these fields)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from streamrec.bench import results
from streamrec.bench.freshness import Freshness
from streamrec.bench.phases import FreshnessPhases, ThroughputPhase, _round
from streamrec.bench.prepare import Prepared
from streamrec.bench.watch import steady_rate

if TYPE_CHECKING:
    from streamrec.bench.e2e import BenchOptions

log = logging.getLogger("streamrec.bench")


def _freshness_record(fr: Freshness) -> dict[str, Any]:
    return {
        "rate_target": round(fr.target_rate, 1), "rate_achieved": round(fr.achieved_rate, 1),
        "seconds": round(fr.seconds, 1), "probes": fr.probes, "missing": fr.missing,
        "max_ms": round(max(fr.latencies_ms), 1) if fr.latencies_ms else None,
        "kept_up": fr.kept_up(),
        "latencies_ms": [round(x) for x in fr.latencies_ms],  # probes in send order
        "probe_at_s": [round(t - fr.started, 2) for t in fr.probe_sent],  # when each was sent, into the phase
    }


def build_record(name: str, prep: Prepared, opts: BenchOptions, tp: ThroughputPhase, fp: FreshnessPhases,
                 flink: Any) -> dict[str, Any]:
    """One line of ``bench/results.jsonl``: the system's figures of this run (the one record
    builder; ``streamrec bench report`` and the plots read these fields)."""
    eps = tp.events_per_s
    own = tp.cores[name]
    record: dict[str, Any] = {
        "name": name,
        "date": results.today(),
        "time": results.now_iso(),
        "catalog": opts.catalog,
        "catalog_size": len(prep.catalog),
        "transitions": 0 if prep.catalog.transitions is None else round(
            prep.catalog.transitions.nnz / max(1, len(prep.catalog))),  # successors per product
        "dim": prep.catalog.dim,
        "events": len(prep.events),
        "users": opts.users,
        "partitions": opts.partitions,
        "parallelism": opts.parallelism if name == "streamrec" else 1,
        "checkpoint_interval_ms": opts.checkpoint_interval_ms if name == "streamrec" else None,
        "startup_s": round(tp.startup_s, 1),
        "warmup_events": len(prep.warm_events),
        "jit_warmup": tp.jit_warmup.as_record() if tp.jit_warmup is not None else None,
        "seconds": round(tp.window.seconds, 2),
        "events_per_s": round(eps, 1),
        "events_per_s_steady": _round(steady_rate(tp.window.timeline)),
        "cores_used": own,
        "cores": tp.cores,
        "cores_by_process": tp.cores_by_process,
        "events_per_s_per_core": round(eps / max(own, 1e-9), 1),
        "events_per_s_per_core_with_stores": round(
            eps / max(own + tp.cores["kafka"] + tp.cores["cassandra"], 1e-9), 1),
        "freshness_ms": results.percentiles(fp.main.latencies_ms),
        "freshness": {**_freshness_record(fp.main), "rate_target": round(fp.rate, 1),
                      "cores_used": fp.cores[name], "cores": fp.cores, "checkpoints": fp.checkpoints},
        "kept_up": fp.main.kept_up(),
        # the maximum the freshness rate is a fraction of: stored while produced live
        "live_max": fp.live_max.as_record() if fp.live_max is not None else None,
        # Cassandra's JIT compiler threads over this system's measured throughput phase:
        # near 0 once warmed up (warmup.py)
        "cassandra_jit_cores": round(tp.cassandra_jit_cores, 3),
        # the system's own JIT compiler threads over the same window (0 for a Python service)
        "jit_cores": round(tp.system_jit_cores, 3),
        "cassandra_warmup": prep.cassandra_warmup.as_record() if prep.cassandra_warmup is not None else None,
        "stored_events": fp.stored,
        "stored_events_expected": fp.want,
        "fresh_lead_in_s": opts.fresh_lead_in,
        "paced_warmup": fp.trickle.as_record() if fp.trickle is not None else None,
        "profiled": opts.profile,
        "blas_threads": opts.blas_threads or None,
        "python_worker_mode": (opts.python_worker_mode or "loopback") if name == "streamrec" else None,
        "machine": prep.machine,
        "note": opts.note,
    }
    if fp.low is not None:
        record["freshness_low_ms"] = results.percentiles(fp.low.latencies_ms)
        record["freshness_low"] = _freshness_record(fp.low)
    if flink is not None:
        record["flink"] = {"vertices": flink.summary(), "checkpoints": tp.checkpoints}
    record.update(opts.extra)
    return record
