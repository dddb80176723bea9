"""JobManager high availability (issue 16, part 2): the JobManager of a standalone cluster with
ZooKeeper HA is killed twice while events flow and started again, as a cluster's supervisor would;
the job comes back from ZooKeeper and its latest checkpoint each time, and `streamrec verify` finds
nothing lost or doubled."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import time

import pytest

from streamrec import localstack
from streamrec.localstack.flink import _flink_daemon_pids
from streamrec.localstack.processes import _service_pids
from streamrec.runner import wait_for
from tests.e2e.helpers import uci_slice

from .conftest import PROFILE
from .helpers import (
    Figures,
    FlinkRest,
    PacedProducer,
    count_events,
    flink_log_problems,
    flink_run,
    verify_cli,
    wait_progress,
)
from .test_faults import VERIFY_WAIT, assert_consistent, lines_of, varied

pytestmark = pytest.mark.faults

# A Flink cluster of its own beside the session's (its ports 50 above the test profile's, its own run
# folder and ZooKeeper), on the session's Kafka and Cassandra. One TaskManager of two slots: the fault
# here is the JobManager.
HA_PROFILE = dataclasses.replace(
    PROFILE,
    name=f"{PROFILE.name}-ha",
    flink_rest_port=PROFILE.flink_rest_port + 50,
    flink_rpc_port=PROFILE.flink_rpc_port + 50,
    flink_metrics_port=PROFILE.flink_metrics_port + 50,
    service_port=PROFILE.service_port + 50,
)
KILLS = 2


@pytest.fixture
def ha_cluster(services):
    """ZooKeeper and the HA cluster, from a clean slate: ZooKeeper's data and the HA store of an earlier
    session hold that session's jobs, which a new JobManager would recover."""
    if not _service_pids(HA_PROFILE, "flink") and not _service_pids(HA_PROFILE, "zookeeper"):
        shutil.rmtree(localstack.run_dir(HA_PROFILE), ignore_errors=True)
    with localstack.ensure(HA_PROFILE, ["zookeeper", "flink"], taskmanagers=1, timeout=180, ha=True):
        rest = FlinkRest(HA_PROFILE.flink_rest)
        rest.cancel_all()
        yield HA_PROFILE, rest
        # a cancelled job leaves ZooKeeper and the HA store: nothing for the next JobManager to recover
        # (after a failed test the JobManager may be down: the next session then starts from a clean slate)
        with contextlib.suppress(Exception):
            rest.cancel_all()


def _kill_jobmanager(profile: localstack.Profile) -> int:
    pids = _flink_daemon_pids(profile, "standalonesession")
    assert len(pids) == 1, f"expected one JobManager of {profile.name}, found {pids}"
    os.kill(pids[0], signal.SIGKILL)
    wait_for(lambda: not _flink_daemon_pids(profile, "standalonesession"), timeout=30, what="the JobManager to die",
             interval=0.2)
    return pids[0]


def test_jobmanager_killed_twice_while_events_flow_the_job_resumes_from_zookeeper(ha_cluster, e2e_config,
                                                                                  uci_history):
    profile, rest = ha_cluster
    started = time.monotonic()
    config = e2e_config
    figures = Figures("JobManager kill -9 x2 (ZooKeeper HA, p=2)")
    lines = lines_of(varied(uci_slice(uci_history, users=30, per_user=50)))
    jid = flink_run(profile, config, parallelism=2)
    wait_for(lambda: rest.all_running(jid), timeout=240, what="the job to run")
    producer = PacedProducer(config, lines, per_second=8)
    producer.start()

    def diagnose() -> str:
        return flink_log_problems(profile)

    try:
        seen = 0
        for round_ in range(KILLS):
            seen = wait_progress(config, seen, timeout=300, what=f"progress before kill {round_ + 1}")
            # a completed checkpoint since the start (or the last recovery): the new leader resumes from it
            time.sleep(2 * config.job.checkpoint_interval_ms / 1000)
            t0 = time.monotonic()
            _kill_jobmanager(profile)
            assert producer.is_alive(), "events stopped flowing before this kill: produce more slowly"
            # what a supervisor (systemd, Kubernetes) does: start the JobManager again on the same host,
            # retrying while the killed one's REST port is not free yet (its connections linger in the
            # kernel for a moment)
            wait_for(lambda: localstack.start_flink(profile, taskmanagers=1, timeout=180) or True, timeout=120,
                     what=f"the JobManager to start again after kill {round_ + 1}", interval=1.0)
            wait_for(lambda: jid in rest.running_jobs() and rest.all_running(jid), timeout=300,
                     what=f"the job to come back after JobManager kill {round_ + 1}", interval=0.5,
                     on_timeout=diagnose)
            figures.recovery_s.append(time.monotonic() - t0)
            seen = wait_progress(config, count_events(config), timeout=300,
                                 what=f"progress after JobManager kill {round_ + 1}")
    finally:
        producer.finish()
    report = verify_cli(config, wait=VERIFY_WAIT)
    assert_consistent(report)
    assert rest.state(jid) == "RUNNING"
    # the same job (id) came back both times: recovered from ZooKeeper, not submitted again
    assert rest.running_jobs() == [jid]
    figures.restarts = KILLS + rest.restarts(jid)
    figures.notes = ("restarts = JobManager kills + job restarts under the last JobManager; recovery = "
                     "kill -> JobManager started again -> the same job RUNNING with every subtask RUNNING")
    figures.seconds = time.monotonic() - started
    figures.record(report)
