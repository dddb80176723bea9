"""localstack.ensure: starts what does not answer, stops on exit exactly what it started.

The services here are fakes that record their starts and stops; no JVM, no port.
"""

from __future__ import annotations

from typing import Optional

import pytest

from streamrec import localstack
from streamrec.localstack import Launcher

PROFILE = localstack.PROFILES["test"]


class FakeService:
    """A service that only records what ensure asks of it (into a log shared by all fakes)."""

    def __init__(self, name: str, log: list[str], running: bool = False, fail_start: bool = False) -> None:
        self.name = name
        self.log = log
        self.up = running
        self.fail_start = fail_start

    def start(self, p: localstack.Profile) -> None:
        assert p is PROFILE
        self.log.append(f"start {self.name}")
        if self.fail_start:
            raise localstack.LocalStackError(f"{self.name} did not start")
        self.up = True

    def stop(self, p: localstack.Profile) -> None:
        assert p is PROFILE
        self.log.append(f"stop {self.name}")
        self.up = False

    def launcher(self, top_up: bool = False) -> Launcher:
        return Launcher(running=lambda p: self.up, start=self.start, stop=self.stop, top_up=top_up)


def fake_stack(log: list[str], running: Optional[set[str]] = None, failing: Optional[set[str]] = None,
               top_up: Optional[set[str]] = None) -> tuple[dict[str, FakeService], dict[str, Launcher]]:
    fakes = {n: FakeService(n, log, running=n in (running or set()), fail_start=n in (failing or set()))
             for n in ("kafka", "cassandra", "flink")}
    return fakes, {n: f.launcher(top_up=n in (top_up or set())) for n, f in fakes.items()}


def test_starts_what_is_missing_in_order_and_stops_it_in_reverse() -> None:
    log: list[str] = []
    fakes, using = fake_stack(log)
    with localstack.ensure(PROFILE, ["kafka", "cassandra", "flink"], using=using) as stack:
        assert stack.started == ["kafka", "cassandra", "flink"]
        assert log == ["start kafka", "start cassandra", "start flink"]
    assert log[3:] == ["stop flink", "stop cassandra", "stop kafka"]
    assert not any(f.up for f in fakes.values())


def test_leaves_alone_what_was_running_on_entry() -> None:
    log: list[str] = []
    fakes, using = fake_stack(log, running={"kafka"})
    with localstack.ensure(PROFILE, ["kafka", "cassandra"], using=using) as stack:
        assert stack.started == ["cassandra"]
    assert log == ["start cassandra", "stop cassandra"]
    assert fakes["kafka"].up


def test_only_the_services_asked_for() -> None:
    log: list[str] = []
    _fakes, using = fake_stack(log)
    with localstack.ensure(PROFILE, ["flink"], using=using):
        pass
    assert log == ["start flink", "stop flink"]


def test_a_running_service_with_top_up_is_started_again_but_never_stopped() -> None:
    log: list[str] = []
    fakes, using = fake_stack(log, running={"flink"}, top_up={"flink"})
    with localstack.ensure(PROFILE, ["flink"], using=using) as stack:
        assert stack.started == []
    assert log == ["start flink"]
    assert fakes["flink"].up


def test_stops_what_it_started_when_the_block_raises() -> None:
    log: list[str] = []
    _fakes, using = fake_stack(log)
    with pytest.raises(KeyboardInterrupt), localstack.ensure(PROFILE, ["kafka", "cassandra"], using=using):
        raise KeyboardInterrupt
    assert log == ["start kafka", "start cassandra", "stop cassandra", "stop kafka"]


def test_a_failed_start_stops_what_was_started_before_it() -> None:
    log: list[str] = []
    _fakes, using = fake_stack(log, failing={"cassandra"})
    with pytest.raises(localstack.LocalStackError, match="cassandra did not start"):
        with localstack.ensure(PROFILE, ["kafka", "cassandra", "flink"], using=using):
            pytest.fail("the block must not run")
    assert log == ["start kafka", "start cassandra", "stop kafka"]


def test_keep_leaves_everything_running() -> None:
    log: list[str] = []
    fakes, using = fake_stack(log)
    with localstack.ensure(PROFILE, ["kafka", "cassandra"], using=using) as stack:
        stack.keep()
        assert stack.started == []
    assert log == ["start kafka", "start cassandra"]
    assert fakes["kafka"].up and fakes["cassandra"].up


def test_an_unknown_service_is_refused_before_anything_starts() -> None:
    log: list[str] = []
    _fakes, using = fake_stack(log)
    with pytest.raises(localstack.LocalStackError, match="unknown service"):
        with localstack.ensure(PROFILE, ["kafka", "zookeeper"], using=using):
            pass
    assert log == []


def test_the_real_launchers_cover_every_service_and_top_up_only_flink() -> None:
    table = localstack.launchers(taskmanagers=1, timeout=5)
    # and ZooKeeper, which only a cluster with JobManager high availability asks for
    assert set(table) == {*localstack.SERVICES, "zookeeper"}
    assert [n for n, launcher in table.items() if launcher.top_up] == ["flink"]
