"""The test-only fault injection hook (reliability target 3) without a JVM: subtask 0 fails once per
attempt on its first N attempts, each time after M records and a checkpoint newer than the one the
attempt started from; it is off by default."""

from __future__ import annotations

import pytest

from streamrec.config import Config, FaultInjection, JobConfig
from streamrec.jobs.pipeline import fail_once
from streamrec.udfs.operators import FailOnce


class Context:
    def __init__(self, attempt: int = 0, subtask: int = 0) -> None:
        self.attempt, self.subtask = attempt, subtask

    def get_attempt_number(self) -> int:
        return self.attempt

    def get_index_of_this_subtask(self) -> int:
        return self.subtask


class ThreadModeContext:
    """What PyFlink's thread mode hands over: its own getters call Java methods Flink 2 removed, the
    Java context's TaskInfo still answers."""

    class _Info:
        def getAttemptNumber(self) -> int:
            return 1

        def getIndexOfThisSubtask(self) -> int:
            return 0

    class _Java:
        def getTaskInfo(self):
            return ThreadModeContext._Info()

    _runtime_context = _Java()

    def get_attempt_number(self) -> int:
        raise AttributeError("'pemja.PyJObject' object has no attribute 'getAttemptNumber'")

    def get_index_of_this_subtask(self) -> int:
        raise AttributeError("'pemja.PyJObject' object has no attribute 'getIndexOfThisSubtask'")


def _complete_checkpoint(root, n: int = 1) -> None:
    chk = root / "0123abcd" / f"chk-{n}"
    chk.mkdir(parents=True)
    (chk / "_metadata").write_bytes(b"x")


def _look_now(hook: FailOnce) -> None:
    hook._next_look = 0.0  # do not wait for the next directory look


def test_it_fails_once_after_n_records_and_a_completed_checkpoint(tmp_path):
    hook = FailOnce(3, tmp_path.as_uri())
    hook.open(Context())
    for _ in range(5):
        hook.record()  # no checkpoint yet: nothing happens
    _complete_checkpoint(tmp_path)
    _look_now(hook)
    with pytest.raises(RuntimeError, match="injected failure 1 of 1"):
        hook.record()
    for _ in range(5):
        hook.record()  # once only


@pytest.mark.parametrize("context", [Context(attempt=1), Context(subtask=1), ThreadModeContext()])
def test_only_the_first_attempt_of_subtask_0_fails(tmp_path, context):
    _complete_checkpoint(tmp_path)
    hook = FailOnce(1, str(tmp_path))
    hook.open(context)
    for _ in range(5):
        hook.record()


def test_it_fails_n_times_each_attempt_after_a_checkpoint_newer_than_its_restore(tmp_path):
    """Five failures in a row: attempts 0-4 each fail once, and only after the checkpoint the attempt
    restored from has been followed by a newer one (so every failure comes after progress)."""
    failures = []
    for attempt in range(7):
        hook = FailOnce(2, str(tmp_path), times=5)
        hook.open(Context(attempt=attempt))  # restarted from chk-<attempt> (none on attempt 0)
        for _ in range(3):
            hook.record()  # 3 records, but no newer checkpoint yet: nothing happens
        _complete_checkpoint(tmp_path, attempt + 1)
        _look_now(hook)
        try:
            hook.record()
        except RuntimeError as exc:
            failures.append(str(exc))
    assert [f.split(" (")[0] for f in failures] == [f"injected failure {i} of 5" for i in range(1, 6)]


def test_the_ranker_leaves_attempt_0_to_the_failure_in_checkpoint_completion(tmp_path):
    config = Config(faults=FaultInjection(fail_once_after=5, fail_times=3, fail_in_checkpoint_complete=True),
                    job=JobConfig(checkpoint_dir=str(tmp_path)))
    _complete_checkpoint(tmp_path)
    for attempt, fails in ((0, False), (1, True), (2, True), (3, False)):
        hook = fail_once(config)
        assert hook is not None
        hook.open(Context(attempt=attempt))
        hook._started_from = -1  # a checkpoint newer than the restored one has completed
        _look_now(hook)
        if fails:
            with pytest.raises(RuntimeError, match=f"injected failure {attempt + 1} of 3"):
                hook.record(5)
        else:
            hook.record(5)
    with pytest.raises(ValueError, match="fast path"):
        fail_once(config.replace(job={"hot_path": "per-event"}))


def test_settings_from_the_environment():
    config = Config.from_env({"STREAMREC_FAULT_FAIL_ONCE_AFTER": "40", "STREAMREC_FAULT_FAIL_TIMES": "5",
                              "STREAMREC_FAULT_FAIL_IN_CHECKPOINT_COMPLETE": "true"})
    assert (config.faults.fail_once_after, config.faults.fail_times, config.faults.fail_in_checkpoint_complete) == (
        40, 5, True)
    assert Config().faults.fail_times == 1 and not Config().faults.fail_in_checkpoint_complete


def test_off_by_default_and_refused_without_a_checkpoint_dir():
    assert fail_once(Config()) is None
    assert Config.from_env({"STREAMREC_FAULT_FAIL_ONCE_AFTER": "60"}).faults.fail_once_after == 60
    with pytest.raises(ValueError, match="checkpoint_dir"):
        fail_once(Config(faults=FaultInjection(fail_once_after=5)))
    assert isinstance(fail_once(Config(faults=FaultInjection(fail_once_after=5),
                                       job=JobConfig(checkpoint_dir="/tmp/x"))), FailOnce)
