"""How the job finds the jar of the java/ module; the classes themselves are tested with Maven."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from streamrec.connectors import javasupport


def test_the_override_names_the_jar(tmp_path, monkeypatch):
    jar = tmp_path / "support.jar"
    jar.write_bytes(b"PK")
    monkeypatch.setenv(javasupport.SUPPORT_JAR_ENV, str(jar))
    assert javasupport.support_jar() == jar


def test_an_override_that_names_nothing_fails(tmp_path, monkeypatch):
    monkeypatch.setenv(javasupport.SUPPORT_JAR_ENV, str(tmp_path / "missing.jar"))
    with pytest.raises(RuntimeError, match="no such file"):
        javasupport.support_jar()


def test_without_a_build_the_error_says_to_run_make_setup(tmp_path, monkeypatch):
    monkeypatch.delenv(javasupport.SUPPORT_JAR_ENV, raising=False)
    monkeypatch.setattr(javasupport, "_BUILD_DIR", tmp_path)
    (tmp_path / "original-streamrec-flink-0.1.0.jar").write_bytes(b"PK")  # the unshaded one is no substitute
    with pytest.raises(RuntimeError, match="make setup"):
        javasupport.support_jar()


def test_after_a_version_bump_the_newest_build_wins(tmp_path, monkeypatch):
    monkeypatch.delenv(javasupport.SUPPORT_JAR_ENV, raising=False)
    monkeypatch.setattr(javasupport, "_BUILD_DIR", tmp_path)
    old, new = tmp_path / "streamrec-flink-0.1.0.jar", tmp_path / "streamrec-flink-0.2.0.jar"
    for i, jar in enumerate((old, new)):
        jar.write_bytes(b"PK")
        os.utime(jar, (1_000_000 + i, 1_000_000 + i))
    assert javasupport.support_jar() == new


def test_the_build_dir_is_the_modules_target():
    assert javasupport._BUILD_DIR == Path(__file__).resolve().parents[2] / "java" / "target"


def test_the_job_never_imports_the_local_stack_launcher():
    """The job runs on clusters where streamrec/localstack (and its Maven poms) mean nothing."""
    code = (
        "import sys, streamrec.jobs.job, streamrec.jobs.pipeline, streamrec.connectors.javasupport; "
        "print(sorted(m for m in sys.modules if m.startswith('streamrec.localstack')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
