"""fetch(): the jars, from Maven Central through Maven."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from streamrec.localstack.paths import _PKG_DIR, java_home, stack_dir
from streamrec.localstack.processes import _locked, _tail_text
from streamrec.localstack.profiles import LocalStackError

log = logging.getLogger("streamrec.localstack")


@dataclass(frozen=True)
class Artifacts:
    kafka_classpath: list[Path]
    cassandra_classpath: list[Path]
    jamm_jar: Path
    kafka_connector_jar: Path
    zookeeper_classpath: list[Path]

    @property
    def kafka_connector_url(self) -> str:
        """The connector as a ``file://`` URL, the form ``env.add_jars`` / ``pipeline.jars`` take."""
        return self.kafka_connector_jar.as_uri()


# name of the folder under <stack>/lib -> the pom in streamrec/localstack/maven that fills it
_POMS: dict[str, str] = {
    "kafka": "kafka.xml",
    "cassandra": "cassandra.xml",
    "flink-connectors": "flink-connectors.xml",
    # for the JobManager high availability of a local cluster (start_flink(..., ha=True))
    "zookeeper": "zookeeper.xml",
    # the Flink Kubernetes Operator's CRDs, for the offline check of deploy/k8s (no service runs it)
    "k8s-operator": "k8s-operator.xml",
}
_COMPLETE = ".complete"


def _jars(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.jar"))


def _one(folder: Path, prefix: str) -> Path:
    found = [j for j in _jars(folder) if j.name.startswith(prefix)]
    if len(found) != 1:
        raise LocalStackError(f"expected one {prefix}*.jar in {folder}, found {[j.name for j in found]}")
    return found[0]


def fetch() -> Artifacts:
    """Download the runtime jars once; later calls only check a marker file (no Maven, ~ms).

    Each folder ``<stack>/lib/<name>`` is complete when its ``.complete`` marker holds the hash of
    the pom that filled it: editing a pom (a version bump) refetches just that folder. Maven writes
    into a temporary folder that is renamed at the end, so an interrupted fetch leaves nothing
    half-done; a file lock makes concurrent callers (parallel test sessions) wait for each other.
    """
    lib = stack_dir() / "lib"
    lib.mkdir(parents=True, exist_ok=True)
    with _locked(lib / ".lock"):
        for name, pom_name in _POMS.items():
            pom = _PKG_DIR / "maven" / pom_name
            digest = hashlib.sha256(pom.read_bytes()).hexdigest()
            out = lib / name
            marker = out / _COMPLETE
            if marker.exists() and marker.read_text().strip() == digest:
                continue
            _mvn_copy_dependencies(pom, out, digest)
    kafka_dir, cassandra_dir = lib / "kafka", lib / "cassandra"
    return Artifacts(
        kafka_classpath=_jars(kafka_dir),
        cassandra_classpath=_jars(cassandra_dir),
        jamm_jar=_one(cassandra_dir, "jamm-"),
        kafka_connector_jar=_one(lib / "flink-connectors", "flink-sql-connector-kafka-"),
        zookeeper_classpath=_jars(lib / "zookeeper"),
    )


def _mvn_copy_dependencies(pom: Path, out: Path, digest: str) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise LocalStackError("mvn not found on PATH: install Maven 3.8+ to fetch the service jars")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    log.info("fetching %s jars with Maven (%s) ...", out.name, pom.name)
    started = time.monotonic()
    cmd = [mvn, "-B", "-q", "-f", str(pom), "dependency:copy-dependencies", f"-DoutputDirectory={tmp}"]
    env = {**os.environ, "JAVA_HOME": str(java_home())}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise LocalStackError(
            f"Maven failed to fetch {out.name} (exit {proc.returncode}): {' '.join(cmd)}\n"
            + _tail_text(proc.stdout + proc.stderr, 40)
        )
    (tmp / _COMPLETE).write_text(digest + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    log.info("fetched %d jars into %s in %.1f s", len(_jars(out)), out, time.monotonic() - started)
