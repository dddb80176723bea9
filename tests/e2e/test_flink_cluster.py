"""`streamrec job submit` runs the job on a standalone Flink cluster (started from the wheel's
scripts) with `flink run`; its results appear in the real Cassandra."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

from streamrec import localstack
from streamrec.runner import config_env, wait_for

from .helpers import count_events, produce, read_store, uci_slice


def _jobs(profile) -> list[dict]:
    with urllib.request.urlopen(f"http://127.0.0.1:{profile.flink_rest_port}/jobs/overview", timeout=5) as r:
        return json.load(r)["jobs"]


def test_flink_run_on_a_standalone_cluster_writes_recommendations(flink_cluster, e2e_config, uci_history):
    profile = flink_cluster
    events = uci_slice(uci_history, users=5, per_user=20)
    submit = subprocess.run(
        [sys.executable, "-m", "streamrec.cli", "job", "submit", "-m", f"127.0.0.1:{profile.flink_rest_port}",
         "--flink", str(localstack.flink_bin("flink"))],
        env={**config_env(e2e_config), **localstack.flink_env(profile)},
        capture_output=True, text=True, timeout=300,
    )
    assert submit.returncode == 0, submit.stdout + submit.stderr
    try:
        running = wait_for(lambda: [j for j in _jobs(profile) if j["state"] == "RUNNING"], timeout=120,
                           what="the submitted job to run")
        assert running[0]["name"] == "streamrec"
        produce(e2e_config, events, malformed=False)
        wait_for(lambda: count_events(e2e_config) >= len(events), timeout=240,
                 what=f"{len(events)} events in Cassandra", interval=2)
        store = read_store(e2e_config)
        assert sorted(e[1] for e in store.events) == sorted(e.event_id for e in events)
        assert set(store.recommendations) == {e.user_id for e in events}
        assert all(len(items) == e2e_config.top_k * e2e_config.query_overfetch
                   for items, _, _ in store.recommendations.values())
    finally:
        for j in _jobs(profile):
            if j["state"] == "RUNNING":
                req = urllib.request.Request(
                    f"http://127.0.0.1:{profile.flink_rest_port}/jobs/{j['jid']}?mode=cancel", method="PATCH")
                urllib.request.urlopen(req, timeout=10).close()
