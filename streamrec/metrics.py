"""The names of every streamrec metric, and reading them back from Prometheus endpoints.

The job's metrics live in a ``streamrec`` group of each operator's Flink metric group (Java:
``JobMetrics``; Python: ``streamrec.udfs.metrics``). Flink's Prometheus reporter prefixes the
operator scope, so on the reporter's endpoint they are named ``flink_taskmanager_job_task_operator_``
+ the names below (``JOB_PREFIX``), one series per subtask; the scrape config in
``docker/prometheus.yml`` renames them to the short names, which the dashboard uses. A labelled
job metric is a key-value metric group, so its label's key is also part of its name
(``streamrec_error_dead_letters{error="NOT_JSON"}``). Flink exports counters as gauges and
histograms as summaries (``{quantile="0.5"}`` ..., ``_count``). The service (``/metrics`` of
``streamrec serve``) uses prometheus-client and the same ``streamrec_`` prefix.

README "Metrics" lists the same names; a unit test keeps the two and the dashboard in step.
"""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Container, Iterable, Optional

GROUP = "streamrec"
JOB_PREFIX = "flink_taskmanager_job_task_operator_"
# Flink's Prometheus reporter factory (the jar ships in the apache-flink wheel's plugins/)
REPORTER_FACTORY = "org.apache.flink.metrics.prometheus.PrometheusReporterFactory"
# The reporter's port range per local profile (JobManager and each TaskManager take the next free
# one): 9249 is the reporter's own default; the demo/test/bench profiles shift it like their other
# ports (19249, 29249 + 100 per STREAMREC_TEST_SLOT, 39249).
REPORTER_PORTS = 10


@dataclass(frozen=True)
class Metric:
    name: str  # as Prometheus shows it after the scrape config's renaming (JOB_PREFIX stripped)
    kind: str  # counter, gauge, histogram (Flink: exported as a summary)
    labels: tuple[str, ...]
    where: str  # the operator (job: fast path's, then the per-event path's if another) or "service"
    help: str
    paths: tuple[str, ...] = ("batch", "per-event")  # the job's hot paths that report it
    # over subtasks: "sum" (a share of the job's figure), or "max" (every ranker instance holds its
    # own copy of the same figure: summing the catalog's size over subtasks would mean nothing)
    over_subtasks: str = "sum"


BATCH_ONLY = ("batch",)


JOB_METRICS: tuple[Metric, ...] = (
    Metric("streamrec_records_in", "counter", (), "batch-records; parse-events",
           "raw records read from the events topic, valid or not"),
    Metric("streamrec_batch_records", "histogram", (), "batch-records",
           "records per batch handed to parse-events (last 1024 batches)", BATCH_ONLY),
    Metric("streamrec_error_dead_letters", "counter", ("error",), "parse-events, rank; parse-events, "
           "update-and-recommend",
           "dead letters by error code (NOT_JSON, MISSING_FIELD, ..., INTERNAL from the ranker)"),
    Metric("streamrec_type_events_in", "counter", ("type",), "user-state; update-and-recommend",
           "valid events by type (view, click, search, add_to_cart, remove_from_cart, purchase)"),
    Metric("streamrec_users_started", "counter", (), "user-state; update-and-recommend",
           "users whose state was empty at their event: new users, or users back after the idle TTL"),
    Metric("streamrec_users_in_state", "gauge", (), "user-state; users-in-state",
           "users whose state the job holds now, exactly (idle users leave when their TTL ends); per subtask, "
           "their sum is the job's"),
    Metric("streamrec_batch_events", "histogram", (), "user-state",
           "events per batch handed to rank (last 1024 batches)", BATCH_ONLY),
    Metric("streamrec_batch_users", "histogram", (), "user-state",
           "users ranked per batch (last 1024 batches)", BATCH_ONLY),
    Metric("streamrec_events_paced", "counter", (), "user-state",
           "events parked by per-user pacing (their user was over STREAMREC_USER_MAX_EVENTS_PER_S)", BATCH_ONLY),
    Metric("streamrec_users_paced", "gauge", (), "user-state",
           "users with events parked by per-user pacing now; per subtask, their sum is the job's", BATCH_ONLY),
    Metric("streamrec_source_recommendation_rows", "counter", ("source",),
           "unbatch-recommendations; update-and-recommend",
           "recommendation lists written, by source (personal, trending)"),
    Metric("streamrec_freshness_ms", "histogram", (), "save-cassandra",
           "event time to the row reaching the Cassandra writer, ms (last 1024 rows)"),
    Metric("streamrec_catalog_products", "gauge", (), "rank; update-and-recommend",
           "products in the catalog the ranker uses (base catalog plus products published since)",
           over_subtasks="max"),
    Metric("streamrec_catalog_version", "gauge", (), "rank; update-and-recommend",
           "product updates applied since the ranker instance started (restored ones included)",
           over_subtasks="max"),
    Metric("streamrec_trending_products", "gauge", (), "rank; update-and-recommend",
           "products in the current trending list", over_subtasks="max"),
    Metric("streamrec_trending_age_ms", "gauge", (), "rank; update-and-recommend",
           "ms since the last trending list reached the ranker instance (-1: none yet)", over_subtasks="max"),
)

SERVICE_METRICS: tuple[Metric, ...] = (
    Metric("streamrec_http_requests_total", "counter", ("route", "method", "status"), "service",
           "HTTP requests per route template"),
    Metric("streamrec_http_request_duration_seconds", "histogram", ("route", "method"), "service",
           "HTTP request latency per route template"),
    Metric("streamrec_events_total", "counter", ("outcome",), "service",
           "events posted to POST /v1/events, by outcome (sent, rejected, failed)"),
    Metric("streamrec_recommendation_lookups_total", "counter", ("result",), "service",
           "recommendation lookups in Cassandra, by result (row; no_row: answered from trending)"),
    Metric("streamrec_served_items_total", "counter", ("source",), "service",
           "recommended items served, by source (personal, trending)"),
    Metric("streamrec_service_catalog_products", "gauge", (), "service", "products in the catalog the service holds"),
)

ALL_METRICS = JOB_METRICS + SERVICE_METRICS

# Flink's own metrics the dashboard shows (as its Prometheus reporter names them)
FLINK_METRICS: tuple[str, ...] = (
    "flink_jobmanager_job_lastCheckpointDuration",
    "flink_jobmanager_job_lastCheckpointSize",
    "flink_jobmanager_job_numberOfFailedCheckpoints",
    "flink_jobmanager_job_numRestarts",
    "flink_taskmanager_job_task_backPressuredTimeMsPerSecond",
    "flink_taskmanager_job_task_operator_pendingRecords",
)


def reporter_jar() -> Optional[Path]:
    """The Prometheus reporter jar of the apache-flink wheel, or None."""
    import pyflink

    found = sorted((Path(pyflink.__file__).parent / "plugins" / "metrics-prometheus").glob("*.jar"))
    return found[0] if found else None


def reporter_config(port: str) -> dict[str, str]:
    """Flink configuration for the Prometheus reporter on ``port`` (one port or a range ``a-b``)."""
    return {"metrics.reporter.prom.factory.class": REPORTER_FACTORY, "metrics.reporter.prom.port": port}


@dataclass(frozen=True)
class Sample:
    name: str  # short name (JOB_PREFIX stripped)
    labels: dict[str, str]
    value: float


def parse_exposition(text: str) -> list[Sample]:
    """The ``streamrec_`` samples of a Prometheus text exposition, job prefix stripped."""
    from prometheus_client.parser import text_string_to_metric_families

    out = []
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            name = s.name[len(JOB_PREFIX):] if s.name.startswith(JOB_PREFIX) else s.name
            if name.startswith(GROUP + "_"):
                out.append(Sample(name, dict(s.labels), float(s.value)))
    return out


def scrape(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode("utf-8")


# the labels that tell subtasks, attempts and processes apart: summed over
_INSTANCE_LABELS = {"job_id", "job_name", "task_id", "task_attempt_id", "task_attempt_num", "host", "tm_id",
                    "operator_id", "operator_name", "task_name", "subtask_index", "instance"}


def totals(samples: Iterable[Sample]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Sum over instances (subtasks, TaskManagers): (name, the metric's own labels) -> value."""
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for s in samples:
        own = tuple(sorted((k, v) for k, v in s.labels.items() if k not in _INSTANCE_LABELS))
        out[(s.name, own)] = out.get((s.name, own), 0.0) + s.value
    return out


def counts_by(samples: Iterable[Sample], name: str, label: str) -> dict[str, int]:
    """A labelled counter summed over instances: label value -> count."""
    out: dict[str, int] = {}
    for s in samples:
        if s.name == name and label in s.labels:
            out[s.labels[label]] = out.get(s.labels[label], 0) + int(s.value)
    return out


def port_range(spec: str) -> list[int]:
    """``9249`` or ``9249-9258`` -> the ports."""
    first, _, last = spec.partition("-")
    lo = int(first)
    hi = int(last) if last else lo
    if not 0 < lo <= hi < 65536:
        raise ValueError(f"not a port or port range: {spec!r}")
    return list(range(lo, hi + 1))


@dataclass(frozen=True)
class Endpoint:
    url: str
    error: Optional[str]  # None: scraped


def collect(job_ports: Iterable[int], service_url: Optional[str], host: str = "127.0.0.1",
            timeout: float = 2.0) -> tuple[list[Endpoint], list[Sample]]:
    """Scrape every reporter port that answers (the JobManager and each TaskManager take one of the
    range; a port nobody listens on is skipped quietly) and the service's /metrics."""
    endpoints: list[Endpoint] = []
    samples: list[Sample] = []
    for port in job_ports:
        url = f"http://{host}:{port}/metrics"
        try:
            samples.extend(parse_exposition(scrape(url, timeout)))
        except ConnectionRefusedError:
            continue
        except OSError as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, ConnectionRefusedError):
                continue
            endpoints.append(Endpoint(url, str(reason)))
            continue
        endpoints.append(Endpoint(url, None))
    if service_url:
        url = service_url.rstrip("/") + "/metrics"
        try:
            samples.extend(parse_exposition(scrape(url, timeout)))
            endpoints.append(Endpoint(url, None))
        except OSError as exc:
            endpoints.append(Endpoint(url, str(getattr(exc, "reason", exc))))
    return endpoints, samples


def summary(samples: Iterable[Sample]) -> list[dict[str, Any]]:
    """One row per metric and label set, over every instance: counters and gauges summed, a
    quantile the largest of the instances' (the worst subtask), sorted by name."""
    rows: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for s in samples:
        own = tuple(sorted((k, v) for k, v in s.labels.items() if k not in _INSTANCE_LABELS))
        key = (s.name, own)
        if "quantile" in s.labels:
            rows[key] = max(rows.get(key, s.value), s.value)
        else:
            rows[key] = rows.get(key, 0.0) + s.value
    out: list[dict[str, Any]] = []
    for (name, own), value in sorted(rows.items()):
        if value != value:  # NaN: a summary with no observations yet
            continue
        out.append({"name": name, "labels": dict(own), "value": int(value) if value.is_integer() else value})
    return out


# A histogram's series besides its quantiles: Flink's summary (_count) with the job's own _max gauge
# beside it (JobMetrics.histogram); prometheus-client's histogram (_bucket, _count, _sum, _created).
_HISTOGRAM_PARTS = ("_count", "_max", "_bucket", "_sum", "_created")


def _histograms(samples: list[Sample]) -> set[str]:
    """The histogram names among ``samples``: those with quantiles (Flink) or buckets (service)."""
    out = set()
    for s in samples:
        if "quantile" in s.labels:
            out.add(s.name)
        elif s.name.endswith("_bucket") and "le" in s.labels:
            out.add(s.name[: -len("_bucket")])
    return out


def _bucket_quantile(q: float, buckets: dict[float, float]) -> Optional[float]:
    """Prometheus's histogram_quantile over cumulative buckets (upper bound -> count): linear
    interpolation in the bucket the rank falls in; the last finite bound if it falls in +Inf."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if bound == float("inf"):
                return lower
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return None


_SeriesKey = tuple[str, tuple[tuple[str, str], ...]]  # (metric name, its labels but the instance's)


def compact(samples: Iterable[Sample]) -> list[dict[str, Any]]:
    """`streamrec metrics`' default view: one row per metric and label set, sorted by name.
    Counters and gauges: ``value``, summed over subtasks (the largest subtask's for a metric whose
    ``over_subtasks`` is "max": the rankers' copies of the catalog and trending figures).
    Histograms: ``count`` (summed), ``p50`` and ``p99`` (Flink: the worst subtask's; the service:
    over its buckets) and ``max`` (Flink: the largest subtask's ``_max``; None where not exported)."""
    samples = list(samples)
    histograms = _histograms(samples)
    largest = {m.name for m in ALL_METRICS if m.over_subtasks == "max"}
    values: dict[_SeriesKey, float] = {}
    hist: dict[_SeriesKey, dict[str, Any]] = {}
    buckets: dict[_SeriesKey, dict[float, float]] = {}
    for s in samples:
        if s.name.endswith("_created"):  # prometheus-client's creation timestamps: not a figure
            continue
        own = tuple(sorted((k, v) for k, v in s.labels.items()
                           if k not in _INSTANCE_LABELS and k not in ("quantile", "le")))
        name, part = _histogram_part(s.name, histograms)
        if name not in histograms:
            if name in largest:
                values[(name, own)] = max(values.get((name, own), s.value), s.value)
            else:
                values[(name, own)] = values.get((name, own), 0.0) + s.value
            continue
        h = hist.setdefault((name, own), {"count": 0.0, "p50": None, "p99": None, "max": None})
        _add_to_histogram(h, buckets, (name, own), part, s)
    for key, b in buckets.items():
        hist[key]["p50"] = _bucket_quantile(0.5, b)
        hist[key]["p99"] = _bucket_quantile(0.99, b)
    return _compact_rows(values, hist)


def _histogram_part(name: str, histograms: Container[str]) -> tuple[str, str]:
    """(histogram, part) for a sample of a histogram (part "" for a quantile), else (name, "")."""
    for part in _HISTOGRAM_PARTS:
        if name.endswith(part) and name[: -len(part)] in histograms:
            return name[: -len(part)], part
    return name, ""


def _add_to_histogram(h: dict[str, Any], buckets: dict[_SeriesKey, dict[float, float]], key: _SeriesKey,
                      part: str, s: Sample) -> None:
    """One sample of a histogram series: its count, max, bucket or quantile (the worst subtask's)."""
    value = s.value
    if part == "_count":
        h["count"] += value
    elif part == "_max":
        h["max"] = value if h["max"] is None else max(h["max"], value)
    elif part == "_bucket":
        b = buckets.setdefault(key, {})
        bound = float(s.labels["le"])
        b[bound] = b.get(bound, 0.0) + value
    elif part == "" and value == value:  # a quantile; NaN: that subtask has no values yet
        figure = {"0.5": "p50", "0.99": "p99"}.get(s.labels.get("quantile", ""))
        if figure is not None:
            h[figure] = value if h[figure] is None else max(h[figure], value)


def _compact_rows(values: dict[_SeriesKey, float], hist: dict[_SeriesKey, dict[str, Any]]) -> list[dict[str, Any]]:
    def number(v: Optional[float]) -> Any:
        return None if v is None else int(v) if float(v).is_integer() else round(v, 6)

    out: list[dict[str, Any]] = []
    for (name, own), value in values.items():
        if value == value:
            out.append({"name": name, "labels": dict(own), "kind": "value", "value": number(value)})
    for (name, own), h in hist.items():
        out.append({"name": name, "labels": dict(own), "kind": "histogram",
                    **{k: number(v) for k, v in h.items()}})
    out.sort(key=lambda r: (r["name"], sorted(r["labels"].items())))
    return out


def _short(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def render_compact(rows: list[dict[str, Any]]) -> list[str]:
    """The rows of :func:`compact` as text lines: the full name with its labels, then the value or
    ``count p50 p99 max``; names are never cut (a narrow terminal wraps the line instead)."""
    def label(r: dict[str, Any]) -> str:
        if not r["labels"]:
            return r["name"]
        return r["name"] + "{" + ",".join(f'{k}="{v}"' for k, v in r["labels"].items()) + "}"

    names = [label(r) for r in rows]
    width = max((len(n) for n in names), default=0)
    lines = []
    for name, r in zip(names, rows):
        if r["kind"] == "histogram":
            figures = "  ".join(f"{k}={_short(r[k])}" for k in ("count", "p50", "p99", "max"))
        else:
            figures = _short(r["value"])
        lines.append(f"{name.ljust(width)}  {figures}")
    return lines
