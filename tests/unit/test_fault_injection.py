"""The test-only fail-once hook (reliability target 3) without a JVM: it fires once, on attempt 0 of
subtask 0 only, after N records and a completed checkpoint; it is off by default."""

from __future__ import annotations

import pytest

from streamrec.config import Config
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


def test_it_fails_once_after_n_records_and_a_completed_checkpoint(tmp_path):
    hook = FailOnce(3, tmp_path.as_uri())
    hook.open(Context())
    for _ in range(5):
        hook.record()  # no checkpoint yet: nothing happens
    _complete_checkpoint(tmp_path)
    hook._next_look = 0.0  # do not wait for the next directory look
    with pytest.raises(RuntimeError, match="injected failure"):
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


def test_off_by_default_and_refused_without_a_checkpoint_dir():
    assert fail_once(Config()) is None
    assert Config.from_env({"STREAMREC_FAULT_FAIL_ONCE_AFTER": "60"}).fault_fail_once_after == 60
    with pytest.raises(ValueError, match="checkpoint_dir"):
        fail_once(Config(fault_fail_once_after=5))
    assert isinstance(fail_once(Config(fault_fail_once_after=5, checkpoint_dir="/tmp/x")), FailOnce)
