"""A local run's checkpoint folder: fresh per run, gone when the run is (its process exited or was killed)."""

import os
import subprocess
import sys

from streamrec.jobs.job import local_checkpoint_dir


def test_each_local_run_gets_its_own_folder_named_after_its_process(tmp_path):
    first, second = local_checkpoint_dir(tmp_path), local_checkpoint_dir(tmp_path)
    assert first != second and first.is_dir() and second.is_dir()
    assert first.name.startswith(f"{os.getpid()}-") and first.parent == tmp_path


def test_the_folders_of_runs_whose_process_is_gone_are_removed_by_the_next_run(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    left = tmp_path / f"{dead.stdout.strip()}-abc"  # what a killed run leaves
    (left / "chk-1").mkdir(parents=True)
    mine = local_checkpoint_dir(tmp_path)
    assert not left.exists() and mine.exists()


def test_a_run_removes_its_own_folder_when_it_exits(tmp_path):
    code = ("import sys; from pathlib import Path; from streamrec.jobs.job import local_checkpoint_dir; "
            "d = local_checkpoint_dir(Path(sys.argv[1])); (d / 'chk-1').mkdir(); print(d)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True)
    folder = out.stdout.strip()
    assert folder.startswith(str(tmp_path)) and not os.path.exists(folder)
