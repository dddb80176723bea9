"""The job's Prometheus metrics on the real stack: a known mix of events (every type) and bad
records (every dead-letter code a record can cause) goes into Kafka, and the reporter endpoint of
the job's minicluster must count exactly what was sent, per type and per error code, on both hot
paths; the users in state must be exactly the users sent."""

from __future__ import annotations

import json
import urllib.request
from collections import Counter

import pytest

from streamrec.config import HOT_PATHS
from streamrec.connectors.kafka import produce_lines
from streamrec.metrics import (
    JOB_METRICS,
    REPORTER_PORTS,
    Sample,
    collect,
    counts_by,
    parse_exposition,
    port_range,
    scrape,
    totals,
)
from streamrec.model.events import FUTURE_TS, Event
from streamrec.runner import BackgroundJob, wait_for

from .conftest import PROFILE
from .helpers import MALFORMED, cluster_jobs, count_events, produce, submit_to_cluster, uci_slice

TYPES = ["view", "click", "add_to_cart", "view", "purchase", "remove_from_cart", "search"]
# well past the ranges of the session's two standalone clusters (the profile's, and +10 for the isolated one; clear of
# every port of the other test slots)
PORT = PROFILE.flink_metrics_port + 5 * REPORTER_PORTS


def mixed_events(history) -> list[Event]:
    """UCI customers and products, every event type, in a known proportion."""
    out = []
    for i, e in enumerate(uci_slice(history, users=6, per_user=20)):
        etype = TYPES[i % len(TYPES)]
        if etype == "search":
            out.append(Event(f"m-{i}", e.user_id, e.ts, "search", None, "lantern"))
        else:
            out.append(Event(f"m-{i}", e.user_id, e.ts, etype, e.product_id))
    return out


def job_samples() -> list[Sample]:
    return parse_exposition(scrape(f"http://127.0.0.1:{PORT}/metrics"))


@pytest.mark.parametrize("hot_path", HOT_PATHS)
def test_the_reporter_counts_exactly_what_was_sent_per_type_and_per_error_code(e2e_config, uci_history,
                                                                                uci_catalog, tmp_path, hot_path):
    events = mixed_events(uci_history)
    future = json.dumps({"event_id": "bad-future", "user_id": "u", "ts": 32503680000000, "type": "view",
                         "product_id": "85123A"})  # the year 3000
    want_types = Counter(e.type for e in events)
    want_errors = Counter(code for code, _ in MALFORMED) + Counter({FUTURE_TS: 1})
    assert len(want_types) == 6  # every type

    config = e2e_config.replace(job={"metrics_port": str(PORT), "hot_path": hot_path})
    with BackgroundJob(config, tmp_path / "job.log") as job:
        sent = produce(e2e_config, events)  # the valid events with MALFORMED in the middle
        assert produce_lines([future], e2e_config, raw=True).sent == 1
        wait_for(lambda: count_events(e2e_config) >= len(events), timeout=240,
                 what=f"{len(events)} events in Cassandra", interval=2, on_timeout=job.log_tail)

        def settled():
            # Python operators hand their counters to the JVM at each bundle end: wait for the last one
            try:
                samples = job_samples()
            except OSError:
                return None
            errors = counts_by(samples, "streamrec_error_dead_letters", "error")
            return samples if sum(errors.values()) >= sum(want_errors.values()) else None

        samples = wait_for(settled, timeout=90, what="the dead-letter counters", interval=1, on_timeout=job.log_tail)
        # one more scrape after the counts settled: a later bundle must not add to them
        raw = scrape(f"http://127.0.0.1:{PORT}/metrics")
        samples = parse_exposition(raw)
        (tmp_path / f"reporter-{hot_path}.txt").write_text(raw)  # what tests/unit/fixtures/ captured
        assert job.alive(), job.log_tail()

    assert counts_by(samples, "streamrec_type_events_in", "type") == dict(want_types)
    assert counts_by(samples, "streamrec_error_dead_letters", "error") == dict(want_errors)
    total = totals(samples)
    assert total[("streamrec_records_in", ())] == sent + 1
    users = {e.user_id for e in events}
    assert total[("streamrec_users_started", ())] == len(users)
    # every user sent is held (the TTL is days): exactly, summed over the user-state subtasks
    assert total[("streamrec_users_in_state", ())] == len(users)
    # a user is ranked once per batch, for their newest event: at least once each, at most per event
    rows = counts_by(samples, "streamrec_source_recommendation_rows", "source")
    assert set(rows) <= {"personal", "trending"} and len(users) <= sum(rows.values()) <= len(events)
    # one row per valid event reaches the Cassandra writer; histograms come out as summaries
    assert total[("streamrec_freshness_ms_count", ())] == len(events)
    assert max(s.value for s in samples if s.name == "streamrec_freshness_ms_max") > 0
    if hot_path == "batch":
        assert total[("streamrec_batch_records_count", ())] >= 1
        # 20 events a user, far below STREAMREC_USER_MAX_EVENTS_PER_S: none waited
        assert total[("streamrec_events_paced", ())] == 0 and total[("streamrec_users_paced", ())] == 0
    # each ranker subtask holds the whole catalog
    assert {s.value for s in samples if s.name == "streamrec_catalog_products"} == {len(uci_catalog.product_ids)}
    # every documented job metric is on the endpoint
    names = {s.name for s in samples}
    for m in JOB_METRICS:
        if hot_path in m.paths:
            assert m.name in names or f"{m.name}_count" in names, m.name
    print(f"\nmetrics e2e ({hot_path}): {sent + 1} records sent, by type {dict(sorted(want_types.items()))}, "
          f"dead letters by code {dict(sorted(want_errors.items()))}, users {len(users)} started and in "
          f"state, recommendation rows {rows}")


def test_a_standalone_cluster_reports_the_job_metrics_on_the_profiles_reporter_ports(flink_cluster, e2e_config,
                                                                                      uci_history):
    """What `make up` does (flink-conf/config.yaml's reporter, `streamrec job submit`), on the test
    profile's range: the TaskManager that runs the job reports its counters, the JobManager Flink's."""
    profile = flink_cluster
    events = mixed_events(uci_history)[:60]
    want_types = Counter(e.type for e in events)
    want_errors = Counter(code for code, _ in MALFORMED)
    submit = submit_to_cluster(profile, e2e_config)
    assert submit.returncode == 0, submit.stdout + submit.stderr
    try:
        [job] = wait_for(lambda: [j for j in cluster_jobs(profile) if j["state"] == "RUNNING"], timeout=120,
                         what="the submitted job to run")
        sent = produce(e2e_config, events)
        wait_for(lambda: count_events(e2e_config) >= len(events), timeout=240,
                 what=f"{len(events)} events in Cassandra", interval=2)
        ports = port_range(profile.metrics_ports)

        def mine() -> tuple[list, list[Sample]]:
            # another cluster of the session (tests/e2e/conftest.py) may report on the same range
            endpoints, samples = collect(ports, None)
            return endpoints, [s for s in samples if s.labels.get("job_id") == job["jid"]]

        def settled():
            _, samples = mine()
            errors = counts_by(samples, "streamrec_error_dead_letters", "error")
            return samples if sum(errors.values()) >= len(MALFORMED) else None

        wait_for(settled, timeout=90, what="the dead-letter counters", interval=1)
        endpoints, samples = mine()
    finally:
        for j in cluster_jobs(profile):
            if j["state"] == "RUNNING":
                req = urllib.request.Request(
                    f"http://127.0.0.1:{profile.flink_rest_port}/jobs/{j['jid']}?mode=cancel", method="PATCH")
                urllib.request.urlopen(req, timeout=10).close()
    # the JobManager and the TaskManager, each on a port of the range
    assert len([e for e in endpoints if e.error is None]) >= 2, endpoints
    assert counts_by(samples, "streamrec_type_events_in", "type") == dict(want_types)
    assert counts_by(samples, "streamrec_error_dead_letters", "error") == dict(want_errors)
    assert totals(samples)[("streamrec_records_in", ())] == sent
    print(f"\ncluster metrics e2e: {sent} records on {[e.url for e in endpoints]}, by type "
          f"{dict(sorted(want_types.items()))}, dead letters {dict(sorted(want_errors.items()))}")
