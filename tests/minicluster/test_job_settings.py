"""The job's environment carries the checkpoint settings of the configuration (issue 22, part 6)."""

import pytest

from streamrec.config import Config, JobConfig

pytestmark = pytest.mark.minicluster


@pytest.mark.parametrize("tolerable", [3, 0])
def test_the_job_tolerates_the_configured_checkpoint_failures_in_a_row(tolerable, tmp_path):
    from streamrec.jobs.job import create_env

    env = create_env(Config(job=JobConfig(checkpoint_dir=tmp_path.as_uri(), checkpoint_tolerable_failures=tolerable)))
    checkpoints = env.get_checkpoint_config()
    assert checkpoints.is_checkpointing_enabled()
    assert checkpoints.get_tolerable_checkpoint_failure_number() == tolerable
