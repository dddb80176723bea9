"""What `streamrec job submit` ships (streamrec/shipping.py): a Python home with streamrec and its
dependencies, without the Flink jars or the service-only packages. The e2e test on an isolated
TaskManager runs the job from the real archive."""

from __future__ import annotations

import subprocess
import sysconfig
import zipfile
from pathlib import Path

from streamrec import shipping


def test_the_closure_holds_what_the_job_imports_and_not_the_service():
    names = {shipping._key(d.metadata["Name"]) for d in shipping.runtime_distributions()}
    assert {"streamrec", "apache-flink", "pemja", "numpy", "pandas", "cassandra-driver", "kafka-python"} <= names
    assert not {"fastapi", "uvicorn", "matplotlib", "swagger-ui-py", "pytest", "ruff"} & names


def test_the_archive_is_a_python_home_without_flink_jars():
    version = sysconfig.get_config_var("VERSION")
    paths = [rel for rel, _ in shipping.interpreter_files()]
    assert f"bin/python{version}" in paths
    assert f"lib/python{version}/os.py" in paths
    assert not any("/test/" in p or p.endswith(".pyc") for p in paths)
    files = dict(shipping.archive_files(shipping.runtime_distributions()))
    assert "streamrec/jobs/job.py" in files and "pyflink/__init__.py" in files
    assert not any(rel.endswith(".jar") for rel in files)
    assert not any(rel.startswith("../") or "__pycache__" in rel for rel in files)


def test_the_launcher_runs_the_interpreter_next_to_it(tmp_path: Path):
    version = sysconfig.get_config_var("VERSION")
    (tmp_path / "bin").mkdir()
    fake = tmp_path / "bin" / f"python{version}"
    fake.write_text('#!/bin/sh\necho "$LD_LIBRARY_PATH" "$@"\n')
    fake.chmod(0o755)
    launcher = tmp_path / "bin" / "python"
    launcher.write_text(shipping.LAUNCHER.format(binary=fake.name))
    launcher.chmod(0o755)
    out = subprocess.run([str(launcher), "-c", "x"], capture_output=True, text=True, check=True,
                         env={"PATH": "/usr/bin:/bin"}).stdout.split()
    assert out == [str(tmp_path.resolve() / "lib"), "-c", "x"]


def test_flink_run_args_name_the_archive_and_its_interpreter(tmp_path: Path):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w"):
        pass
    args = shipping.flink_run_args(archive, client_python="/venv/bin/python")
    assert args == ["-pyarch", f"{archive}#pyenv", "-pyexec", "pyenv/bin/python", "-pyclientexec", "/venv/bin/python"]
