"""`streamrec job submit` runs the job on a standalone Flink cluster (started from the wheel's
scripts) with `flink run`; its results appear in the real Cassandra. The job ships its own Python
(streamrec/shipping.py), so it also runs on a TaskManager that cannot see this checkout."""

from __future__ import annotations

import os
import time
import urllib.request
from pathlib import Path

from streamrec import localstack
from streamrec.runner import wait_for

from .helpers import cluster_jobs, count_events, produce, read_store, submit_to_cluster, uci_slice

REPO = Path(__file__).resolve().parents[2]


def _submit_and_check(profile, e2e_config, uci_history) -> None:
    """Submit with `streamrec job submit`, produce real purchases, check what Cassandra holds."""
    events = uci_slice(uci_history, users=5, per_user=20)
    started = time.monotonic()
    submit = submit_to_cluster(profile, e2e_config)
    assert submit.returncode == 0, submit.stdout + submit.stderr
    assert "-pyarch" in submit.stderr, submit.stderr  # the job shipped its Python
    # a figure for the README (`pytest -s`), not a limit
    print(f"\nsubmit to {profile.name}: {time.monotonic() - started:.1f} s until RUNNING; "
          + next((line for line in submit.stderr.splitlines() if line.startswith("shipping")), ""))
    try:
        running = wait_for(lambda: [j for j in cluster_jobs(profile) if j["state"] == "RUNNING"], timeout=120,
                           what="the submitted job to run")
        assert running[0]["name"] == "streamrec"
        produce(e2e_config, events, malformed=False)
        wait_for(lambda: count_events(e2e_config) >= len(events), timeout=240,
                 what=f"{len(events)} events in Cassandra", interval=2)
        store = read_store(e2e_config)
        assert sorted(e[1] for e in store.events) == sorted(e.event_id for e in events)
        assert set(store.recommendations) == {e.user_id for e in events}
        assert all(len(items) == e2e_config.model.top_k * e2e_config.model.query_overfetch
                   for items, _, _ in store.recommendations.values())
    finally:
        for j in cluster_jobs(profile):
            if j["state"] == "RUNNING":
                req = urllib.request.Request(
                    f"http://127.0.0.1:{profile.flink_rest_port}/jobs/{j['jid']}?mode=cancel", method="PATCH")
                urllib.request.urlopen(req, timeout=10).close()


def test_flink_run_on_a_standalone_cluster_writes_recommendations(flink_cluster, e2e_config, uci_history):
    _submit_and_check(flink_cluster, e2e_config, uci_history)


def _taskmanager_pids(profile) -> list[int]:
    marker = str(localstack.run_dir(profile) / "flink") + os.sep
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError):
            continue
        if marker in cmdline and "TaskManagerRunner" in cmdline:
            pids.append(int(entry.name))
    return pids


def test_the_job_ships_to_a_taskmanager_that_cannot_see_the_checkout(isolated_flink_cluster, e2e_config,
                                                                     uci_history):
    profile = isolated_flink_cluster
    pids = _taskmanager_pids(profile)
    assert len(pids) == 1
    # the TaskManager is "on another host": nothing of this checkout on its PATH or PYTHONPATH, and
    # it runs from a folder outside it
    environ = dict(line.split("=", 1) for line in
                   Path(f"/proc/{pids[0]}/environ").read_bytes().decode().split("\0") if "=" in line)
    assert "PYTHONPATH" not in environ and "VIRTUAL_ENV" not in environ
    assert not any(p == REPO or REPO in p.parents for p in
                   (Path(x).resolve() for x in environ["PATH"].split(os.pathsep) if x))
    cwd = Path(os.readlink(f"/proc/{pids[0]}/cwd"))
    assert REPO not in cwd.parents and cwd != REPO
    _submit_and_check(profile, e2e_config, uci_history)
    # and its Python came from the shipped archive (Flink logs where the embedded interpreter came from)
    logs = "".join(p.read_text(errors="replace")
                   for p in (localstack.run_dir(profile) / "flink" / "log").glob("*taskexecutor*.log"))
    assert "python exec from archives" in logs
