"""Where things live: the checkout, ``.stack``, a profile's run folders, the Flink wheel, the JDK."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from streamrec.localstack.profiles import LocalStackError, Profile

_PKG_DIR = Path(__file__).resolve().parent


def repo_root() -> Path:
    """The checkout this package lives in (override: ``STREAMREC_REPO_ROOT``)."""
    env = os.environ.get("STREAMREC_REPO_ROOT")
    if env:
        return Path(env).resolve()
    candidate = _PKG_DIR.parents[1]
    if (candidate / "setup.py").exists():
        return candidate
    # Installed as a regular (non-editable) package: fall back to the working directory.
    return Path.cwd().resolve()


def stack_dir() -> Path:
    """``<repo>/.stack`` (gitignored): downloaded jars and per-profile run folders.

    Override with ``STREAMREC_STACK_DIR`` (e.g. a faster disk, or a shared jar cache).
    """
    env = os.environ.get("STREAMREC_STACK_DIR")
    return Path(env).resolve() if env else repo_root() / ".stack"


def run_dir(p: Profile) -> Path:
    return stack_dir() / "run" / p.name


def _svc_dir(p: Profile, service: str) -> Path:
    return run_dir(p) / service


def _marker(p: Profile, service: str) -> str:
    # Every process we start carries this path in its command line (config file, log dir); the
    # trailing separator keeps profile "test" from matching "test2".
    return str(_svc_dir(p, service)) + os.sep


def _pyflink_home() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("pyflink")
    if spec is None or spec.origin is None:
        raise LocalStackError("pyflink is not importable: install apache-flink into the venv")
    return Path(spec.origin).resolve().parent


def flink_bin(name: str) -> Path:
    """A script from the apache-flink wheel's ``bin/`` (``flink``, ``taskmanager.sh``, ...)."""
    path = _pyflink_home() / "bin" / name
    if not path.exists():
        raise LocalStackError(f"{path} does not exist (apache-flink wheel incomplete?)")
    return path


def _venv_python() -> Path:
    # The Python that has pyflink and our packages: Flink starts it for the client and the workers.
    venv = repo_root() / ".venv" / "bin" / "python"
    return venv if venv.exists() else Path(sys.executable)


def _java_major(home: Path) -> int | None:
    # The JDK's `release` file says its version without starting a JVM.
    try:
        for line in (home / "release").read_text().splitlines():
            if line.startswith("JAVA_VERSION="):
                version = line.split("=", 1)[1].strip().strip('"')
                head = version.split(".")[0]
                return int(version.split(".")[1]) if head == "1" else int(head)
    except (OSError, ValueError, IndexError):
        pass
    return None


def java_home() -> Path:
    """The JDK for every service: Java 17 (Cassandra 5.0 runs on 11/17 only; never on >= 24).

    ``STREAMREC_JAVA_HOME`` wins, then an installed OpenJDK 17, then ``JAVA_HOME`` / ``java`` on PATH.
    The machine's default ``java`` may be a newer JDK, so it is only the last resort.
    """
    env = os.environ.get("STREAMREC_JAVA_HOME")
    if env:
        return Path(env)
    for candidate in sorted(Path("/usr/lib/jvm").glob("java-17-openjdk*")):
        if (candidate / "bin" / "java").exists():
            return candidate
    if os.environ.get("JAVA_HOME"):
        return Path(os.environ["JAVA_HOME"])
    java = shutil.which("java")
    if java:
        return Path(java).resolve().parents[1]
    raise LocalStackError("no Java found: install OpenJDK 17 or set STREAMREC_JAVA_HOME")


def _java() -> str:
    return str(java_home() / "bin" / "java")
