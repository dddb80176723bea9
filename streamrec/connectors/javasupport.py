"""The few lines of Java the job needs because no Flink built-in does it, compiled once with javac.

``NullSafeStringSchema``: the events source's value deserializer. Flink's ``SimpleStringSchema``
throws a NullPointerException on a record without a value (a Kafka tombstone), the source fails,
and the job restarts forever on the same record: one null record stops the pipeline. This schema
hands it on as an empty string instead, which the parser turns into a ``NOT_JSON`` dead letter
like any other record that is not an event.

``CassandraRowSink``: the job's Cassandra writer (no Cassandra connector supports Flink 2). Writing
from the JVM with the DataStax Java driver costs a fraction of what the Python driver costs per
row, and a Sink's ``flush`` runs before every checkpoint barrier, which PyFlink's Python operators
do not offer in thread mode. It uses the driver jars that come with Cassandra
(``<stack dir>/lib/flink-connectors``, see ``streamrec/localstack/maven/flink-connectors.xml``).

The sources live here as strings (no package data to ship); the jar is built on first use into
``<stack dir>/lib/streamrec-java/`` (keyed by a hash of the sources and the Flink version) and
given to the job with ``env.add_jars``, so ``flink run`` uploads it with the job.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

CLASS_NAME = "streamrec.flink.NullSafeStringSchema"
SINK_CLASS_NAME = "streamrec.flink.CassandraRowSink"
POPULARITY_CLASS_NAME = "streamrec.flink.PopularityCounter"

# jars of the Java Cassandra driver (file name prefixes in <stack dir>/lib/flink-connectors)
DRIVER_JARS = ("cassandra-driver-core-", "guava-", "failureaccess-", "metrics-core-")

NULL_SAFE_SOURCE = """\
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

SINK_SOURCE = """\
package streamrec.flink;

import com.datastax.driver.core.BatchStatement;
import com.datastax.driver.core.BoundStatement;
import com.datastax.driver.core.Cluster;
import com.datastax.driver.core.PreparedStatement;
import com.datastax.driver.core.ProtocolVersion;
import com.datastax.driver.core.ResultSetFuture;
import com.datastax.driver.core.Session;
import com.datastax.driver.core.Statement;
import java.io.IOException;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Date;
import java.util.List;
import org.apache.flink.api.connector.sink2.Sink;
import org.apache.flink.api.connector.sink2.SinkWriter;
import org.apache.flink.api.connector.sink2.WriterInitContext;
import org.apache.flink.api.common.operators.ProcessingTimeService;
import org.apache.flink.types.Row;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Writes the job's recommendation rows to Cassandra from the JVM: the events insert and the
 * recommendations upsert of each row, a few rows per unlogged batch, many batches in flight.
 *
 * <p>A batch goes out when it holds {@code batchRows} rows or {@code lingerMs} after its first row,
 * whichever comes first: at a trickle of events a row must not wait for nine more (or for the next
 * checkpoint) before its recommendation is readable.
 *
 * <p>Flink calls {@link SinkWriter#flush} before every checkpoint barrier passes this sink, and
 * flush waits for every write in flight (retrying failed ones), so a completed checkpoint never
 * covers a row that is not stored. Every statement is idempotent and carries its own event-time
 * write timestamp (computed in Python), so a replay after a failure rewrites identical cells.
 * Field positions follow RECOMMENDATION_FIELDS in streamrec/udfs/operators.py.
 */
public final class CassandraRowSink implements Sink<Row> {
    private static final long serialVersionUID = 1L;

    private final String[] hosts;
    private final int port;
    private final String keyspace;
    private final String username;
    private final String password;
    private final String insertEventCql;
    private final String upsertRecsCql;
    private final int batchRows;
    private final int maxInFlight;
    private final int retries;
    private final long lingerMs;

    /** The two CQL statements come from the Python writer (connectors/cassandra.py), so there is one
     *  copy of them; their bind markers are in the order {@code write} binds. */
    public CassandraRowSink(String hosts, int port, String keyspace, String username, String password,
                            String insertEventCql, String upsertRecsCql, int batchRows, int maxInFlight,
                            int retries, long lingerMs) {
        this.hosts = hosts.split(",");
        this.port = port;
        this.keyspace = keyspace;
        this.username = username;
        this.password = password;
        this.insertEventCql = insertEventCql;
        this.upsertRecsCql = upsertRecsCql;
        this.batchRows = Math.max(1, batchRows);
        this.maxInFlight = Math.max(1, maxInFlight);
        this.retries = Math.max(0, retries);
        this.lingerMs = Math.max(0L, lingerMs);
    }

    @Override
    public SinkWriter<Row> createWriter(WriterInitContext context) throws IOException {
        return new Writer(context.getProcessingTimeService());
    }

    private final class Writer implements SinkWriter<Row> {
        private final Logger log = LoggerFactory.getLogger(CassandraRowSink.class);
        private final Cluster cluster;
        private final Session session;
        private final PreparedStatement insertEvent;
        private final PreparedStatement upsertRecs;
        private final ArrayDeque<Object[]> inFlight = new ArrayDeque<>(); // {statement, future}
        private BatchStatement pending = new BatchStatement(BatchStatement.Type.UNLOGGED);
        private int pendingRows = 0;
        private final ProcessingTimeService timers;
        private long lingerTimerAt = -1L; // when the pending batch goes out anyway; -1: no timer

        Writer(ProcessingTimeService timers) throws IOException {
            this.timers = timers;
            Cluster.Builder builder = Cluster.builder()
                    .addContactPoints(Arrays.stream(hosts).map(String::trim).toArray(String[]::new))
                    .withPort(port)
                    .withProtocolVersion(ProtocolVersion.V5)
                    .withoutJMXReporting();
            if (username != null && !username.isEmpty()) {
                builder = builder.withCredentials(username, password);
            }
            cluster = builder.build();
            try {
                session = cluster.connect(keyspace);
                insertEvent = session.prepare(insertEventCql);
                insertEvent.setIdempotent(true);
                upsertRecs = session.prepare(upsertRecsCql);
                upsertRecs.setIdempotent(true);
            } catch (RuntimeException e) {
                cluster.close();
                throw new IOException("cannot connect to Cassandra keyspace " + keyspace, e);
            }
        }

        @Override
        public void write(Row row, Context context) throws IOException {
            String userId = (String) row.getField(1);
            long ts = (Long) row.getField(2);
            BoundStatement event = insertEvent.bind(userId, new Date(ts), row.getField(0), row.getField(3),
                    row.getField(4), row.getField(5), ts * 1000L);
            // A bound null is stored as a tombstone, and every event lacks either a product or a query;
            // the row is new, so there is nothing to delete: leave the column unset.
            if (row.getField(4) == null) {
                event.unset(4); // product_id (insert_event_cql's 5th marker)
            }
            if (row.getField(5) == null) {
                event.unset(5); // query
            }
            pending.add(event);
            Object[] ids = (Object[]) row.getField(7);
            if (ids != null && ids.length > 0) { // an empty list would hide the previous, useful one
                Object[] scores = (Object[]) row.getField(8);
                List<String> idList = new ArrayList<>(ids.length);
                for (Object id : ids) {
                    idList.add((String) id);
                }
                List<Float> scoreList = new ArrayList<>(scores.length);
                for (Object s : scores) {
                    scoreList.add(((Number) s).floatValue());
                }
                long writeTs = (Long) row.getField(6);
                pending.add(upsertRecs.bind(userId, idList, scoreList, row.getField(9), row.getField(0),
                        new Date(ts), new Date(writeTs / 1000L), row.getField(10), row.getField(11),
                        row.getField(12), writeTs));
            }
            if (++pendingRows >= batchRows) {
                sendAndBound();
            } else if (pendingRows == 1 && lingerTimerAt < 0) {
                // the callback runs in the task's mailbox thread, like write(): no locking needed
                lingerTimerAt = timers.getCurrentProcessingTime() + lingerMs;
                timers.registerTimer(lingerTimerAt, time -> onLinger());
            }
        }

        private void onLinger() throws IOException {
            lingerTimerAt = -1L;
            if (pendingRows > 0) {
                sendAndBound();
            }
        }

        private void sendAndBound() throws IOException {
            send();
            if (inFlight.size() > maxInFlight) {
                await(inFlight.size() - maxInFlight / 2);
            }
        }

        private void send() {
            if (pendingRows > 0) {
                Statement statement = pending.size() == 1 ? pending.getStatements().iterator().next() : pending;
                statement.setIdempotent(true);
                inFlight.add(new Object[] {statement, session.executeAsync(statement)});
            }
            pending = new BatchStatement(BatchStatement.Type.UNLOGGED);
            pendingRows = 0;
        }

        private void await(int count) throws IOException {
            for (int i = 0; i < count && !inFlight.isEmpty(); i++) {
                Object[] sent = inFlight.poll();
                try {
                    ((ResultSetFuture) sent[1]).getUninterruptibly();
                } catch (RuntimeException first) {
                    retry((Statement) sent[0], first);
                }
            }
        }

        private void retry(Statement statement, RuntimeException first) throws IOException {
            RuntimeException last = first;
            for (int attempt = 0; attempt < retries; attempt++) {
                long delayMs = Math.min(8000L, 500L << attempt);
                log.warn("Cassandra write failed ({}); retry {}/{} in {} ms", last.toString(), attempt + 1, retries,
                        delayMs);
                try {
                    Thread.sleep(delayMs);
                    session.execute(statement);
                    return;
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    throw new IOException("interrupted while retrying a Cassandra write", e);
                } catch (RuntimeException again) {
                    last = again;
                }
            }
            throw new IOException("Cassandra write failed after " + retries + " retries", last);
        }

        @Override
        public void flush(boolean endOfInput) throws IOException {
            send();
            await(inFlight.size());
        }

        /** Releases the driver only. Flink flushes before every checkpoint and at the end of a bounded
         *  input; a close without that flush follows a failure or a cancellation, and what is still in
         *  flight then is replayed from the last checkpoint. Waiting or retrying here would throw from
         *  the task's failure handling, which Flink treats as fatal to the whole TaskManager. */
        @Override
        public void close() {
            for (Object[] sent : inFlight) {
                ((ResultSetFuture) sent[1]).cancel(true);
            }
            inFlight.clear();
            try {
                cluster.closeAsync().force(); // in-flight requests are cancelled above; do not wait
            } catch (RuntimeException e) {
                log.warn("closing the Cassandra driver failed", e);
            }
        }
    }
}
"""

POPULARITY_SOURCE = r"""package streamrec.flink;

import java.util.HashMap;
import java.util.Map;
import org.apache.flink.streaming.api.operators.AbstractStreamOperator;
import org.apache.flink.streaming.api.operators.OneInputStreamOperator;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.types.Row;

/**
 * The trending branch's counting, in the JVM: per product and minute of event time, the summed
 * positive event weights and the newest event time, handed on as one JSON string
 * {@code [["product_id", weight, ts], ...]} every {@code intervalMs} of processing time.
 *
 * <p>Counting in Python (or in SQL behind a DataStream-to-Table conversion) cost ~150 us per event
 * plus the interpreter lock it took from the ranking operator; here it is a map update, and the
 * Python side gets one record per interval instead of one per product.
 *
 * <p>It keeps no state: the counts go downstream before every checkpoint barrier
 * ({@link #prepareSnapshotPreBarrier}) and at the end of the input, so a checkpoint covers exactly
 * the events whose counts it has passed on, and a replay counts the rest once.
 * Field positions follow EVENT_FIELDS in streamrec/udfs/operators.py (ts 2, type 3, product_id 4).
 */
public final class PopularityCounter extends AbstractStreamOperator<String>
        implements OneInputStreamOperator<Row, String> {
    private static final long serialVersionUID = 1L;

    private final HashMap<String, Double> weights;
    private final long intervalMs;
    private transient HashMap<String, double[]> counts; // "minute\u0000product" -> {weight, newest ts}

    public PopularityCounter(Map<String, Double> weights, long intervalMs) {
        this.weights = new HashMap<>(weights);
        this.intervalMs = Math.max(10L, intervalMs);
    }

    @Override
    public void open() throws Exception {
        super.open();
        counts = new HashMap<>();
        schedule();
    }

    private void schedule() {
        long now = getProcessingTimeService().getCurrentProcessingTime();
        getProcessingTimeService().registerTimer(now + intervalMs, t -> {
            emit();
            schedule();
        });
    }

    @Override
    public void processElement(StreamRecord<Row> element) {
        Row event = element.getValue();
        Object product = event.getField(4);
        Object ts = event.getField(2);
        if (product == null || ts == null) {
            return;
        }
        Double w = weights.get((String) event.getField(3));
        double weight = w == null || w <= 0 ? 0.0 : w;
        long t = ((Number) ts).longValue();
        String key = Math.floorDiv(t, 60_000L) + "\u0000" + product;
        double[] c = counts.get(key);
        if (c == null) {
            counts.put(key, new double[] {weight, t});
        } else {
            c[0] += weight;
            c[1] = Math.max(c[1], t);
        }
    }

    @Override
    public void prepareSnapshotPreBarrier(long checkpointId) throws Exception {
        super.prepareSnapshotPreBarrier(checkpointId);
        emit();
    }

    @Override
    public void finish() throws Exception {
        emit();
        super.finish();
    }

    private void emit() {
        if (counts.isEmpty()) {
            return;
        }
        StringBuilder out = new StringBuilder(counts.size() * 32).append('[');
        for (Map.Entry<String, double[]> e : counts.entrySet()) {
            String key = e.getKey();
            if (out.length() > 1) {
                out.append(',');
            }
            out.append('[');
            quote(out, key.substring(key.indexOf('\u0000') + 1));
            out.append(',').append(e.getValue()[0]).append(',').append((long) e.getValue()[1]).append(']');
        }
        counts.clear();
        output.collect(new StreamRecord<>(out.append(']').toString()));
    }

    /** A JSON string literal (product ids are free text). */
    static void quote(StringBuilder out, String s) {
        out.append('"');
        for (int i = 0; i < s.length(); i++) {
            char ch = s.charAt(i);
            if (ch == '"' || ch == '\\') {
                out.append('\\').append(ch);
            } else if (ch < 0x20) {
                out.append(String.format("\\u%04x", (int) ch));
            } else {
                out.append(ch);
            }
        }
        out.append('"');
    }
}
"""

SOURCES = {"NullSafeStringSchema": NULL_SAFE_SOURCE, "CassandraRowSink": SINK_SOURCE,
           "PopularityCounter": POPULARITY_SOURCE}


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


def driver_jars() -> list[Path]:
    """The Java Cassandra driver and what it needs beyond Flink (fetched by the setup)."""
    from streamrec.localstack import fetch, stack_dir

    folder = stack_dir() / "lib" / "flink-connectors"
    found = [j for p in DRIVER_JARS for j in sorted(folder.glob(p + "*.jar"))]
    if len(found) < len(DRIVER_JARS):
        fetch()  # first use on this machine, or an older fetch without the driver
        found = [j for p in DRIVER_JARS for j in sorted(folder.glob(p + "*.jar"))]
    missing = [p for p in DRIVER_JARS if not any(j.name.startswith(p) for j in found)]
    if missing:
        raise RuntimeError(f"Java Cassandra driver jars missing in {folder}: {missing} (run `make setup`)")
    return found


def support_jar() -> Path:
    """The compiled support classes (built on first use, then reused)."""
    from streamrec.localstack import stack_dir

    dist = _flink_dist()
    drivers = driver_jars()
    digest = hashlib.sha256("".join([*SOURCES.values(), dist.name, *(j.name for j in drivers)]).encode()
                            ).hexdigest()[:12]
    out_dir = stack_dir() / "lib" / "streamrec-java"
    out = out_dir / f"streamrec-flink-{digest}.jar"
    if out.exists():
        return out
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        files = []
        for name, text in SOURCES.items():
            src = Path(tmp) / "src" / "streamrec" / "flink" / f"{name}.java"
            src.parent.mkdir(parents=True, exist_ok=True)
            src.write_text(text)
            files.append(str(src))
        classes = Path(tmp) / "classes"
        classpath = os.pathsep.join(str(j) for j in [dist, *drivers])
        for cmd in (
            [_jdk_tool("javac"), "--release", "11", "-nowarn", "-cp", classpath, "-d", str(classes), *files],
            [_jdk_tool("jar"), "cf", str(Path(tmp) / "out.jar"), "-C", str(classes), "."],
        ):
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            if proc.returncode != 0:
                raise RuntimeError(f"building the support jar failed: {' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
        os.replace(Path(tmp) / "out.jar", out)  # atomic: concurrent builders end with the same file
    return out
