"""The fault tier reuses the e2e tier's session services (Kafka and Cassandra on the `test`
profile, shifted by STREAMREC_TEST_SLOT) and its per-test keyspace and topics, and adds a
standalone Flink cluster with two TaskManagers (two slots each) so that a job at parallelism 2
survives the loss of one of them."""

from __future__ import annotations

import json

import pytest

from streamrec import localstack
from tests.e2e.conftest import (  # noqa: F401  (fixtures, re-exported for this tier)
    PROFILE,
    artifacts,
    e2e_config,
    services,
    uci_catalog,
    uci_history,
)

from .helpers import FIGURES, FlinkRest

TASKMANAGERS = 2


@pytest.fixture(scope="session")
def fault_cluster(services):  # noqa: F811
    """1 JobManager + 2 TaskManagers on the test profile; stopped at the end if this session started it."""
    with localstack.ensure(PROFILE, ["flink"], taskmanagers=TASKMANAGERS, timeout=180):
        yield PROFILE


@pytest.fixture
def cluster(fault_cluster):
    """The cluster with both TaskManagers and no job left running, before and after the test."""
    rest = FlinkRest(fault_cluster.flink_rest)
    localstack.start_flink(fault_cluster, taskmanagers=TASKMANAGERS, timeout=180)
    rest.cancel_all()
    yield fault_cluster, rest
    rest.cancel_all()


def pytest_terminal_summary(terminalreporter):
    if not FIGURES:
        return
    tr = terminalreporter
    tr.section("fault tests: figures")
    tr.write_line(f"{'test':<42} {'produced':>8} {'valid':>6} {'found':>6} {'dlq':>4} {'restarts':>8} "
                  f"{'recovery s':<22} {'total s':>7}")
    for f in FIGURES:
        rec = ", ".join(f"{x:.0f}" for x in f["recovery_s"]) or "-"
        tr.write_line(f"{f['test']:<42} {f['produced']:>8} {f['valid']:>6} {f['found']:>6} {f['dead_letters']:>4} "
                      f"{f['restarts']:>8} {rec:<22} {f['seconds']:>7.0f}")
        if f["notes"]:
            tr.write_line(f"    {f['notes']}")
    out = localstack.stack_dir() / f"faults-{PROFILE.name}.json"
    out.write_text(json.dumps(FIGURES, indent=1))
    tr.write_line(f"(also in {out})")
