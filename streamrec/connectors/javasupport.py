"""The job's Java classes: where their jar is and how the job gets at them.

The classes live in the Maven module ``java/`` (package ``streamrec.flink``, unit-tested there with
Flink's operator test harnesses); ``make setup`` builds ``java/target/streamrec-flink-<version>.jar``,
one jar with the Cassandra driver shaded in. Set ``STREAMREC_SUPPORT_JAR`` to use a jar built
elsewhere (an installed package, a cluster image). Nothing here compiles Java: a job start only looks
the jar up and gives it to the job with ``env.add_jars``, so ``flink run`` uploads it with the job.

``NullSafeStringSchema``: the events source's value deserializer. Flink's ``SimpleStringSchema``
throws a NullPointerException on a record without a value (a Kafka tombstone), the source fails,
and the job restarts forever on the same record. This schema hands it on as ``""`` instead, which
the parser turns into a ``NOT_JSON`` dead letter like any other record that is not an event.

``CassandraRowSink``: the job's Cassandra writer (no Cassandra connector supports Flink 2). Writing
from the JVM with the DataStax Java driver costs a fraction of what the Python driver costs per
row, and a Sink's ``flush`` runs before every checkpoint barrier, which PyFlink's Python operators
do not offer in thread mode.

``PopularityCounter``: the trending branch's counts per product and minute, one JSON record per
interval instead of one Python call per event.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

CLASS_NAME = "streamrec.flink.NullSafeStringSchema"
SINK_CLASS_NAME = "streamrec.flink.CassandraRowSink"
POPULARITY_CLASS_NAME = "streamrec.flink.PopularityCounter"

SUPPORT_JAR_ENV = "STREAMREC_SUPPORT_JAR"
# where `make java` puts it: <repo>/java/target (this file is <repo>/streamrec/connectors/javasupport.py)
_BUILD_DIR = Path(__file__).resolve().parents[2] / "java" / "target"


def java_class(name: str) -> Any:
    """A class of the job's jars, resolved through the context class loader that ``env.add_jars``
    extended (as PyFlink's own connectors are)."""
    from pyflink.java_gateway import get_gateway

    cls = get_gateway().jvm
    for part in name.split("."):
        cls = getattr(cls, part)
    return cls


def add_support_jar(env: Any) -> None:
    """Give the job the support jar (once: the job's own ``create_env`` and ``build_pipeline``,
    which tests call on a plain environment, both need it)."""
    from pyflink.java_gateway import get_gateway

    uri = support_jar().as_uri()
    jvm = get_gateway().jvm
    config = jvm.org.apache.flink.python.util.PythonConfigUtil.getEnvironmentConfig(env._j_stream_execution_environment)
    if uri not in (config.getString(jvm.org.apache.flink.configuration.PipelineOptions.JARS.key(), None) or ""):
        env.add_jars(uri)


def support_jar() -> Path:
    """The jar of the ``java/`` module: ``$STREAMREC_SUPPORT_JAR``, else the one ``make java`` built."""
    override = os.environ.get(SUPPORT_JAR_ENV)
    if override:
        jar = Path(override).expanduser().resolve()
        if not jar.is_file():
            raise RuntimeError(f"{SUPPORT_JAR_ENV}={override}: no such file")
        return jar
    # The shade plugin leaves the unshaded jar next to it as original-streamrec-flink-*.jar, which
    # the pattern skips; after a version bump the older jar stays until `mvn clean`.
    found = sorted(_BUILD_DIR.glob("streamrec-flink-*.jar"), key=lambda j: j.stat().st_mtime)
    if not found:
        raise RuntimeError(
            f"the job's Java support jar is not built (no streamrec-flink-*.jar in {_BUILD_DIR}): run "
            f"`make setup` (it builds the java/ module with Maven), or set {SUPPORT_JAR_ENV} to a built jar"
        )
    return found[-1]
