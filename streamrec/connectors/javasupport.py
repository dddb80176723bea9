"""The few lines of Java the job needs because no Flink built-in does it, compiled once with javac.

``NullSafeStringSchema``: the events source's value deserializer. Flink's ``SimpleStringSchema``
throws a NullPointerException on a record without a value (a Kafka tombstone), the source fails,
and the job restarts forever on the same record: one null record stops the pipeline. This schema
hands it on as an empty string instead, which the parser turns into a ``NOT_JSON`` dead letter
like any other record that is not an event.

The source lives here as a string (no package data to ship); the jar is built on first use into
``<stack dir>/lib/streamrec-java/`` (keyed by a hash of the source and the Flink version) and
given to the job with ``env.add_jars``, so ``flink run`` uploads it with the job.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

CLASS_NAME = "streamrec.flink.NullSafeStringSchema"

SOURCE = """\
package streamrec.flink;

import java.nio.charset.StandardCharsets;
import org.apache.flink.api.common.serialization.AbstractDeserializationSchema;

/** SimpleStringSchema, except that a record without a value (a tombstone) becomes "" instead of
 *  a NullPointerException that fails the source on every restart. */
public final class NullSafeStringSchema extends AbstractDeserializationSchema<String> {
    private static final long serialVersionUID = 1L;

    public NullSafeStringSchema() {
        super(String.class);
    }

    @Override
    public String deserialize(byte[] message) {
        return message == null ? "" : new String(message, StandardCharsets.UTF_8);
    }
}
"""


def _flink_dist() -> Path:
    import pyflink

    jars = sorted((Path(pyflink.__file__).parent / "lib").glob("flink-dist*.jar"))
    if not jars:
        raise RuntimeError("flink-dist*.jar not found in the apache-flink package")
    return jars[0]


def _jdk_tool(name: str) -> str:
    from streamrec.localstack import java_home

    candidates = [java_home() / "bin" / name]
    found = shutil.which(name)
    if found:
        candidates.append(Path(found))
    for c in candidates:
        if c.exists():
            return str(c)
    raise RuntimeError(f"{name} not found: the job's support jar needs a JDK (set STREAMREC_JAVA_HOME)")


def support_jar() -> Path:
    """The compiled support classes (built on first use, then reused)."""
    from streamrec.localstack import stack_dir

    dist = _flink_dist()
    digest = hashlib.sha256((SOURCE + dist.name).encode()).hexdigest()[:12]
    out_dir = stack_dir() / "lib" / "streamrec-java"
    out = out_dir / f"streamrec-flink-{digest}.jar"
    if out.exists():
        return out
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        src = Path(tmp) / "src" / "streamrec" / "flink" / "NullSafeStringSchema.java"
        src.parent.mkdir(parents=True)
        src.write_text(SOURCE)
        classes = Path(tmp) / "classes"
        for cmd in (
            [_jdk_tool("javac"), "--release", "11", "-nowarn", "-cp", str(dist), "-d", str(classes), str(src)],
            [_jdk_tool("jar"), "cf", str(Path(tmp) / "out.jar"), "-C", str(classes), "."],
        ):
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            if proc.returncode != 0:
                raise RuntimeError(f"building the support jar failed: {' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
        os.replace(Path(tmp) / "out.jar", out)  # atomic: concurrent builders end with the same file
    return out
