"""What the e2e tests produce and how they read the results back."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from collections import Counter
from dataclasses import dataclass

from streamrec import localstack
from streamrec.config import Config
from streamrec.connectors.cassandra import connect, datetime_to_ms
from streamrec.connectors.kafka import produce_lines, read_topic
from streamrec.datasets import History
from streamrec.model.events import Event
from streamrec.runner import config_env

# One record of every bad-input class the contract names, with the code it must get (INTERNAL has
# no record that causes it: tests/minicluster/test_poison_records.py provokes it).
MALFORMED = [
    ("NOT_JSON", "this is not json"),
    ("MISSING_FIELD", json.dumps({"event_id": "bad-2", "ts": 1, "type": "view", "product_id": "85123A"})),
    ("WRONG_TYPE", json.dumps({"event_id": "bad-3", "user_id": 17850, "ts": 1, "type": "view",
                               "product_id": "85123A"})),
    ("UNKNOWN_TYPE", json.dumps({"event_id": "bad-4", "user_id": "u", "ts": 1, "type": "like",
                                 "product_id": "85123A"})),
    ("UNKNOWN_PRODUCT", json.dumps({"event_id": "bad-5", "user_id": "u", "ts": 1, "type": "view",
                                    "product_id": "NO-SUCH-PRODUCT"})),
    ("OVERSIZED", json.dumps({"event_id": "bad-6", "user_id": "u", "ts": 1, "type": "view",
                              "product_id": "85123A", "pad": "x" * 70_000})),
    ("NON_FINITE", '{"event_id": "bad-7", "user_id": "u", "ts": NaN, "type": "view", "product_id": "85123A"}'),
    # a lone surrogate escape: valid JSON, but no string the JVM takes (it once put the job in a restart loop)
    ("BAD_ID", '{"event_id": "bad-8", "user_id": "\\ud800x", "ts": 1, "type": "view", "product_id": "85123A"}'),
]


def uci_slice(history: History, users: int, per_user: int) -> list[Event]:
    """The first `per_user` purchases of the `users` most active customers of December 2010."""
    december = [e for e in history.events if e.ts < 1293840000000]  # before 2011-01-01
    top = [u for u, _ in Counter(e.user_id for e in december).most_common(users)]
    taken: Counter[str] = Counter()
    out = []
    for e in december:
        if e.user_id in top and taken[e.user_id] < per_user:
            out.append(e)
            taken[e.user_id] += 1
    return out


def produce(config: Config, events: list[Event], malformed: bool = True) -> int:
    lines = [e.to_json() for e in events]
    if malformed:
        lines[len(lines) // 2:len(lines) // 2] = [raw for _, raw in MALFORMED]
    report = produce_lines(lines, config, raw=True)
    assert report.sent == len(lines) and not report.rejected
    return report.sent


@dataclass
class Stored:
    events: list[tuple[str, str, int, str, str]]  # (user_id, event_id, ts, type, product_id)
    recommendations: dict[str, tuple[list[str], list[float], str]]


def read_store(config: Config) -> Stored:
    session = connect(config.cassandra, config.cassandra.keyspace)
    try:
        events = [(r.user_id, r.event_id, datetime_to_ms(r.ts), r.type, r.product_id)
                  for r in session.execute("SELECT user_id, event_id, ts, type, product_id FROM events")]
        recs = {r.user_id: (list(r.product_ids), list(r.scores), r.source)
                for r in session.execute("SELECT user_id, product_ids, scores, source FROM recommendations")}
    finally:
        session.cluster.shutdown()
    return Stored(events, recs)


def dead_letters(config: Config) -> list[dict]:
    return [json.loads(x) for x in read_topic(config.kafka, config.kafka.dlq_topic, timeout_ms=3000)]


def count_events(config: Config) -> int:
    session = connect(config.cassandra, config.cassandra.keyspace)
    try:
        return int(session.execute("SELECT COUNT(*) FROM events").one()[0])
    finally:
        session.cluster.shutdown()


def tombstones_read(config: Config, user_id: str) -> tuple[int, int]:
    """(live rows, tombstone cells) Cassandra reports reading for one user's events: a traced query."""
    session = connect(config.cassandra, config.cassandra.keyspace)
    try:
        result = session.execute("SELECT * FROM events WHERE user_id = %s", (user_id,), trace=True)
        rows = list(result)
        for event in result.get_query_trace(max_wait_sec=10).events:
            found = re.search(r"Read (\d+) live rows and (\d+) tombstone cells", event.description)
            if found:
                return int(found.group(1)), int(found.group(2))
        raise AssertionError(f"no read summary in the trace of {len(rows)} rows")
    finally:
        session.cluster.shutdown()


def cluster_jobs(profile: localstack.Profile) -> list[dict]:
    """The jobs of the profile's standalone cluster (REST /jobs/overview)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{profile.flink_rest_port}/jobs/overview", timeout=5) as r:
        return json.load(r)["jobs"]


def submit_to_cluster(profile: localstack.Profile, config: Config) -> subprocess.CompletedProcess[str]:
    """`streamrec job submit` to the profile's standalone cluster, as a user runs it (it ships its Python)."""
    return subprocess.run(
        [sys.executable, "-m", "streamrec.cli", "job", "submit", "-m", f"127.0.0.1:{profile.flink_rest_port}",
         "--flink", str(localstack.flink_bin("flink"))],
        env={**config_env(config), **localstack.flink_env(profile)},
        capture_output=True, text=True, timeout=600,
    )
