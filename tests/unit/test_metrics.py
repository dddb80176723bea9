"""The metric names and labels are a contract (dashboards and alerts query them): they stay as
documented, the operators register exactly them, and `streamrec metrics` reads them back."""

from __future__ import annotations

import http.server
import json
import re
import threading
from pathlib import Path
from typing import Iterator

import pytest
from click.testing import CliRunner

from streamrec import metrics
from streamrec.cli import main

REPO = Path(__file__).resolve().parents[2]
JAVA = REPO / "java" / "src" / "main" / "java" / "streamrec" / "flink"

# Changing one of these breaks every dashboard and alert built on it: add, never rename.
STABLE = {
    "streamrec_records_in": ("counter", ()),
    "streamrec_batch_records": ("histogram", ()),
    "streamrec_error_dead_letters": ("counter", ("error",)),
    "streamrec_type_events_in": ("counter", ("type",)),
    "streamrec_users_started": ("counter", ()),
    "streamrec_users_in_state": ("gauge", ()),
    "streamrec_batch_events": ("histogram", ()),
    "streamrec_batch_users": ("histogram", ()),
    "streamrec_events_paced": ("counter", ()),
    "streamrec_users_paced": ("gauge", ()),
    "streamrec_source_recommendation_rows": ("counter", ("source",)),
    "streamrec_freshness_ms": ("histogram", ()),
    "streamrec_catalog_products": ("gauge", ()),
    "streamrec_catalog_version": ("gauge", ()),
    "streamrec_trending_products": ("gauge", ()),
    "streamrec_trending_age_ms": ("gauge", ()),
    "streamrec_http_requests_total": ("counter", ("route", "method", "status")),
    "streamrec_http_request_duration_seconds": ("histogram", ("route", "method")),
    "streamrec_events_total": ("counter", ("outcome",)),
    "streamrec_recommendation_lookups_total": ("counter", ("result",)),
    "streamrec_served_items_total": ("counter", ("source",)),
    "streamrec_service_catalog_products": ("gauge", ()),
}

# What Flink's Prometheus reporter writes for a Java counter, a Python labelled counter and a
# histogram of two subtasks (names and label layout as seen on a real minicluster).
PREFIX = metrics.JOB_PREFIX
EXPOSITION = f"""\
# HELP {PREFIX}streamrec_error_dead_letters dead_letters (scope: taskmanager_job_task_operator_streamrec_error)
# TYPE {PREFIX}streamrec_error_dead_letters gauge
{PREFIX}streamrec_error_dead_letters{{job_id="j",error="NOT_JSON",subtask_index="0",tm_id="a",}} 3.0
{PREFIX}streamrec_error_dead_letters{{job_id="j",error="NOT_JSON",subtask_index="1",tm_id="b",}} 2.0
{PREFIX}streamrec_error_dead_letters{{job_id="j",error="OVERSIZED",subtask_index="1",tm_id="b",}} 1.0
# HELP {PREFIX}streamrec_records_in records_in (scope: taskmanager_job_task_operator_streamrec)
# TYPE {PREFIX}streamrec_records_in gauge
{PREFIX}streamrec_records_in{{job_id="j",operator_name="batch-records",subtask_index="0",tm_id="a",}} 10.0
{PREFIX}streamrec_records_in{{job_id="j",operator_name="batch-records",subtask_index="1",tm_id="b",}} 7.0
# HELP {PREFIX}streamrec_freshness_ms freshness_ms (scope: taskmanager_job_task_operator_streamrec)
# TYPE {PREFIX}streamrec_freshness_ms summary
{PREFIX}streamrec_freshness_ms{{job_id="j",subtask_index="0",quantile="0.5",}} 120.0
{PREFIX}streamrec_freshness_ms{{job_id="j",subtask_index="1",quantile="0.5",}} 180.0
{PREFIX}streamrec_freshness_ms_count{{job_id="j",subtask_index="0",}} 4.0
{PREFIX}streamrec_freshness_ms_count{{job_id="j",subtask_index="1",}} 6.0
# HELP flink_jobmanager_numRunningJobs numRunningJobs (scope: jobmanager)
# TYPE flink_jobmanager_numRunningJobs gauge
flink_jobmanager_numRunningJobs{{host="localhost",}} 1.0
"""


def test_metric_names_and_labels_are_stable():
    assert {m.name: (m.kind, m.labels) for m in metrics.ALL_METRICS} == STABLE
    assert len({m.name for m in metrics.ALL_METRICS}) == len(metrics.ALL_METRICS)


# the operators of each hot path that register metrics (Python, then the JVM's)
PATH_SOURCES = {
    "batch": ["streamrec/udfs/batch.py", "streamrec/udfs/control.py", "streamrec/udfs/metrics.py", *(
        f"{JAVA.relative_to(REPO)}/{name}.java" for name in (
            "RecordBatcher", "UserStateOperator", "UsersInState", "UserPacing", "RecommendationUnbatcher",
            "CassandraRowSink", "JobMetrics"))],
    "per-event": ["streamrec/udfs/operators.py", "streamrec/udfs/control.py", "streamrec/udfs/metrics.py", *(
        f"{JAVA.relative_to(REPO)}/{name}.java" for name in ("UserCount", "UsersInState", "CassandraRowSink",
                                                             "JobMetrics"))],
}


@pytest.mark.parametrize("hot_path", sorted(PATH_SOURCES))
@pytest.mark.parametrize("metric", metrics.JOB_METRICS, ids=lambda m: m.name)
def test_every_job_metric_is_registered_by_an_operator_of_its_hot_paths_under_its_documented_name(metric,
                                                                                                   hot_path):
    if hot_path not in metric.paths:
        pytest.skip(f"{metric.name}: not on the {hot_path} path")
    sources = "".join((REPO / p).read_text() for p in PATH_SOURCES[hot_path])
    # the reporter's name is the group path: streamrec [_ label key] _ metric name
    short = metric.name[len("streamrec_"):]
    if metric.labels:
        (key,) = metric.labels
        assert short.startswith(key + "_")
        local = short[len(key) + 1:]
        pattern = rf'"{key}",\s*"{local}"'
    else:
        pattern = rf'(counter|histogram|gauge|settable|count)\([^;"]*"{short}"'
    assert re.search(pattern, sources), f"{metric.name}: no {hot_path} operator registers {pattern}"


def test_the_service_registers_its_documented_metrics():
    from streamrec.service.app import Metrics

    registry = Metrics().registry
    # prometheus-client names a counter's family without the _total its samples get
    families = {family.name: family.type for family in registry.collect()}
    for m in metrics.SERVICE_METRICS:
        assert families.get(m.name.removesuffix("_total")) == m.kind, m.name


def test_the_reporters_exposition_is_read_back_with_the_job_prefix_stripped_and_summed_over_subtasks():
    samples = metrics.parse_exposition(EXPOSITION)
    assert {s.name for s in samples} == {"streamrec_error_dead_letters", "streamrec_records_in",
                                         "streamrec_freshness_ms", "streamrec_freshness_ms_count"}
    assert metrics.counts_by(samples, "streamrec_error_dead_letters", "error") == {"NOT_JSON": 5, "OVERSIZED": 1}
    rows = {(r["name"], tuple(r["labels"].items())): r["value"] for r in metrics.summary(samples)}
    assert rows == {
        ("streamrec_error_dead_letters", (("error", "NOT_JSON"),)): 5,
        ("streamrec_error_dead_letters", (("error", "OVERSIZED"),)): 1,
        ("streamrec_records_in", ()): 17,
        ("streamrec_freshness_ms", (("quantile", "0.5"),)): 180,  # the worst subtask's
        ("streamrec_freshness_ms_count", ()): 10,
    }


def test_port_ranges():
    assert metrics.port_range("9249") == [9249]
    assert metrics.port_range("9249-9251") == [9249, 9250, 9251]
    with pytest.raises(ValueError):
        metrics.port_range("9251-9249")


@pytest.fixture
def reporter() -> Iterator[int]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = EXPOSITION.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_streamrec_metrics_json_is_the_summary_on_stdout_and_nothing_else(reporter):
    result = CliRunner().invoke(main, ["metrics", "--ports", str(reporter), "--service", "",
                                                       "-o", "json"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["endpoints"] == [{"url": f"http://127.0.0.1:{reporter}/metrics", "error": None}]
    assert {"name": "streamrec_records_in", "labels": {}, "value": 17} in answer["metrics"]


def test_streamrec_metrics_table_and_no_endpoint(reporter):
    result = CliRunner().invoke(main, ["metrics", "--ports", str(reporter), "--service", ""])
    assert result.exit_code == 0 and "streamrec_error_dead_letters" in result.stdout and "NOT_JSON" in result.stdout
    # nobody listens on the port after the fixture's: exit 1, the reason on stderr, stdout empty
    result = CliRunner().invoke(main, ["metrics", "--ports", "1", "--service", "", "-o", "json"])
    assert result.exit_code == 1 and "no metrics endpoint answered" in result.stderr
    assert json.loads(result.stdout) == {"endpoints": [], "metrics": [], "compact": []}


# --- `streamrec metrics`' compact view, on a captured scrape -------------------------------------

# A real reporter's text: the job's minicluster at the end of the fast path's e2e metrics test
# (tests/e2e/test_metrics_on_real_stack.py writes each scrape it checks), streamrec_ families kept.
CAPTURED = Path(__file__).parent / "fixtures" / "reporter-batch.txt"


@pytest.fixture
def captured_scrape() -> str:
    return CAPTURED.read_text()


def test_the_compact_view_has_one_line_per_metric_and_label_set_with_full_names(captured_scrape):
    samples = metrics.parse_exposition(captured_scrape)
    rows = metrics.compact(samples)
    keys = [(r["name"], tuple(r["labels"].items())) for r in rows]
    assert len(keys) == len(set(keys)) == 29
    by_key = {k: r for k, r in zip(keys, rows)}
    # counters and gauges: one value, the e2e test's exact figures
    assert by_key[("streamrec_records_in", ())]["value"] == 129
    assert by_key[("streamrec_users_in_state", ())]["value"] == 6
    assert by_key[("streamrec_type_events_in", (("type", "view"),))]["value"] == 35
    assert by_key[("streamrec_error_dead_letters", (("error", "NOT_JSON"),))]["value"] == 1
    # histograms: count / p50 / p99 / max, never a line per quantile
    assert {k: v for k, v in by_key[("streamrec_batch_events", ())].items() if k not in ("name", "labels")} == {
        "kind": "histogram", "count": 1, "p50": 120, "p99": 120, "max": 120}
    assert by_key[("streamrec_freshness_ms", ())]["count"] == 120
    assert not any(name.endswith(("_count", "_max")) for name, _ in keys)
    # every documented job metric of the fast path, under its own name
    assert {m.name for m in metrics.JOB_METRICS if "batch" in m.paths} == {name for name, _ in keys}

    lines = metrics.render_compact(rows)
    assert len(lines) == len(rows)
    assert lines[0].split() == ["streamrec_batch_events", "count=1", "p50=120", "p99=120", "max=120"]
    assert 'streamrec_source_recommendation_rows{source="personal"}  6' in "\n".join(lines)
    assert "quantile" not in "\n".join(lines) and "…" not in "\n".join(lines)
    # the figures line up after the longest name
    assert {re.match(r"\S+\s+", line).end() for line in lines} == {max(len(line.split()[0]) for line in lines) + 2}


def test_the_compact_view_sums_counters_over_subtasks_and_takes_the_worst_subtasks_quantiles():
    rows = {(r["name"], tuple(r["labels"].items())): r for r in metrics.compact(metrics.parse_exposition(EXPOSITION))}
    assert rows[("streamrec_records_in", ())]["value"] == 17
    assert rows[("streamrec_error_dead_letters", (("error", "NOT_JSON"),))]["value"] == 5
    freshness = rows[("streamrec_freshness_ms", ())]
    assert (freshness["count"], freshness["p50"], freshness["p99"], freshness["max"]) == (10, 180, None, None)
    assert metrics.render_compact([freshness]) == ["streamrec_freshness_ms  count=10  p50=180  p99=-  max=-"]


def test_the_compact_view_takes_the_largest_subtasks_copy_of_a_rankers_figure():
    # two rank subtasks, each with the whole catalog: 3659 products, not 7318
    text = "\n".join(f'{PREFIX}streamrec_catalog_products{{operator_name="rank",subtask_index="{i}",}} 3659.0'
                     for i in (0, 1)) + "\n"
    [row] = metrics.compact(metrics.parse_exposition(text))
    assert row["value"] == 3659
    assert {m.name for m in metrics.JOB_METRICS if m.over_subtasks == "max"} == {
        "streamrec_catalog_products", "streamrec_catalog_version", "streamrec_trending_products",
        "streamrec_trending_age_ms"}


def test_the_compact_view_reads_the_services_prometheus_histograms_from_their_buckets():
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    registry = CollectorRegistry()
    h = Histogram("streamrec_http_request_duration_seconds", "latency", ["route"], buckets=(0.1, 0.5, 1.0),
                  registry=registry)
    for v in (0.05, 0.05, 0.3, 0.3):
        h.labels(route="/v1/x").observe(v)
    [row] = metrics.compact(metrics.parse_exposition(generate_latest(registry).decode()))
    assert row["labels"] == {"route": "/v1/x"} and row["count"] == 4 and row["max"] is None
    # Prometheus's histogram_quantile: linear within the bucket the rank falls in
    assert row["p50"] == pytest.approx(0.1) and row["p99"] == pytest.approx(0.1 + 0.4 * (3.96 - 2) / 2)


@pytest.fixture
def captured_reporter(captured_scrape) -> Iterator[int]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = captured_scrape.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_streamrec_metrics_prints_the_compact_view_and_full_and_json_keep_every_series(captured_reporter,
                                                                                        captured_scrape):
    args = ["metrics", "--ports", str(captured_reporter), "--service", ""]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    title, *lines = result.stdout.splitlines()
    assert title == "streamrec metrics (1 endpoint)"
    samples = metrics.parse_exposition(captured_scrape)
    assert lines == metrics.render_compact(metrics.compact(samples))
    full = CliRunner().invoke(main, [*args, "--full"]).stdout
    assert 'streamrec_freshness_ms{quantile="0.999"}' in full and "streamrec_freshness_ms_count" in full
    answer = json.loads(CliRunner().invoke(main, [*args, "-o", "json"]).stdout)
    assert answer["metrics"] == metrics.summary(samples)  # as before: every series
    assert answer["compact"] == metrics.compact(samples)


# --- the dashboard and the scrape config (docker/: compose itself is untested here) ----------------

DOCKER = REPO / "docker"


def _documented(name: str) -> bool:
    if name in metrics.FLINK_METRICS:
        return True
    kinds = {m.name: m.kind for m in metrics.ALL_METRICS}
    if name in kinds:
        return True
    for suffix in ("_bucket", "_count", "_sum", "_max"):  # a histogram's (or summary's) series
        if name.endswith(suffix) and kinds.get(name[: -len(suffix)]) == "histogram":
            return True
    return False


def test_every_dashboard_panel_queries_documented_metrics_only():
    dash = json.loads((DOCKER / "grafana" / "dashboards" / "streamrec.json").read_text())
    assert dash["uid"] and dash["title"] and dash["panels"]
    seen: set[str] = set()
    for panel in dash["panels"]:
        assert panel["title"] and panel["description"] and panel["type"] == "timeseries"
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["refId"] and target["datasource"]["uid"] == "prometheus"
            names = re.findall(r"\b(?:streamrec|flink)_[A-Za-z0-9_]+", target["expr"])
            assert names, target["expr"]
            for name in names:
                assert _documented(name), f"panel {panel['title']!r} queries {name}, not a documented metric"
            seen.update(names)
    # every job metric has a panel
    for m in metrics.JOB_METRICS:
        assert m.name in seen, m.name
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])


def test_the_prometheus_config_scrapes_the_reporters_and_the_service_and_keeps_the_short_names():
    import yaml

    conf = yaml.safe_load((DOCKER / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in conf["scrape_configs"]}
    assert set(jobs) == {"flink", "streamrec-service"}
    assert jobs["flink"]["static_configs"][0]["targets"] == ["jobmanager:9249", "taskmanager:9249"]
    [rule] = jobs["flink"]["metric_relabel_configs"]
    renamed = re.sub(rule["regex"].replace("$1", ""), rule["replacement"].replace("$1", r"\1"),
                     metrics.JOB_PREFIX + "streamrec_records_in")
    assert renamed == "streamrec_records_in" and rule["target_label"] == "__name__"
    assert "flink_jobmanager_job_numRestarts" == re.sub(rule["regex"], r"\1", "flink_jobmanager_job_numRestarts")
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    assert {"prometheus", "grafana"} <= set(compose["services"])
    for svc in ("jobmanager", "taskmanager"):
        assert "metrics.reporter.prom.port: 9249" in compose["services"][svc]["environment"]["FLINK_PROPERTIES"]
    datasource = yaml.safe_load((DOCKER / "grafana" / "provisioning" / "datasources" / "prometheus.yaml").read_text())
    assert datasource["datasources"][0]["uid"] == "prometheus"


def test_the_cluster_config_enables_the_reporter_on_the_documented_ports():
    import yaml

    from streamrec.localstack import PROFILES, _flatten

    flat = _flatten(yaml.safe_load((REPO / "flink-conf" / "config.yaml").read_text()))
    assert flat["metrics.reporter.prom.factory.class"] == metrics.REPORTER_FACTORY
    assert flat["metrics.reporter.prom.port"] == PROFILES["dev"].metrics_ports == "9249-9258"
    assert metrics.reporter_jar() is not None  # the wheel ships it in plugins/
    # the profiles' ranges never overlap their other ports, nor each other
    ranges = [set(metrics.port_range(p.metrics_ports)) for p in PROFILES.values()]
    for p, r in zip(PROFILES.values(), ranges):
        others = {p.kafka_port, p.kafka_controller_port, p.cassandra_port, p.cassandra_storage_port,
                  p.cassandra_jmx_port, p.flink_rest_port, p.flink_rpc_port, p.service_port}
        assert not r & others
    assert sum(len(r) for r in ranges) == len(set().union(*ranges))


def test_readme_lists_every_metric_and_the_ports():
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Metrics"):readme.index("## Guarantees")]
    for m in metrics.ALL_METRICS:
        assert f"| `{m.name}` | {m.kind} |" in section, m.name
    for name in metrics.FLINK_METRICS:
        assert name.rsplit("_", 1)[-1] in section, name
    assert "9249-9258" in section and "29249-29258" in section


def test_the_service_counts_lookups_and_served_items_by_source():
    from fastapi.testclient import TestClient

    from streamrec.config import Config
    from streamrec.service.app import create_app
    from tests.unit.test_service import backend as fake_backend

    backend = fake_backend.__wrapped__()  # the service tests' fake with a stored row for u1
    client = TestClient(create_app(Config(), backend))
    served: dict[str, int] = {}
    for user in ("u1", "u1", "newbie"):
        for item in client.get(f"/v1/users/{user}/recommendations", params={"k": 3}).json()["items"]:
            served[item["source"]] = served.get(item["source"], 0) + 1
    samples = metrics.parse_exposition(client.get("/metrics").text)
    assert metrics.counts_by(samples, "streamrec_recommendation_lookups_total", "result") == {"row": 2, "no_row": 1}
    assert metrics.counts_by(samples, "streamrec_served_items_total", "source") == served
    assert served.get("personal") == 6  # u1's three stored items, twice
    [catalog] = [s.value for s in samples if s.name == "streamrec_service_catalog_products"]
    assert catalog == len(backend.catalog())


class FakeJvmCounter:
    """Stands in for the JVM counter PyFlink hands a Python operator (named as a fake: unit tier)."""

    def __init__(self) -> None:
        self.count = 0
        self.calls: list[int] = []

    def inc(self, n: int = 1) -> None:
        self.calls.append(n)
        self.count += n


def test_a_settable_gauge_reads_what_was_set_last_without_a_python_callback():
    from streamrec.udfs.metrics import SettableGauge

    counter = FakeJvmCounter()
    gauge = SettableGauge(counter)
    for value in (3659, 3660, 3660, -1, 12):
        gauge.set(value)
        assert counter.count == value  # what the JVM reports is the value last set
    assert counter.calls == [3659, 1, -3661, 13]  # nothing sent when the value did not move
