package streamrec.flink;

import com.datastax.driver.core.BatchStatement;
import com.datastax.driver.core.BoundStatement;
import com.datastax.driver.core.Cluster;
import com.datastax.driver.core.ConsistencyLevel;
import com.datastax.driver.core.PreparedStatement;
import com.datastax.driver.core.ProtocolVersion;
import com.datastax.driver.core.QueryOptions;
import com.datastax.driver.core.ResultSetFuture;
import com.datastax.driver.core.Session;
import com.datastax.driver.core.Statement;
import java.io.IOException;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Date;
import java.util.List;
import org.apache.flink.annotation.VisibleForTesting;
import org.apache.flink.api.common.operators.ProcessingTimeService;
import org.apache.flink.api.connector.sink2.Sink;
import org.apache.flink.api.connector.sink2.SinkWriter;
import org.apache.flink.api.connector.sink2.WriterInitContext;
import org.apache.flink.metrics.Histogram;
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

    @VisibleForTesting final String[] hosts;
    private final int port;
    private final String keyspace;
    private final String username;
    private final String password;
    private final String insertEventCql;
    private final String upsertRecsCql;
    @VisibleForTesting final int batchRows;
    @VisibleForTesting final int maxInFlight;
    @VisibleForTesting final int retries;
    @VisibleForTesting final long lingerMs;
    /** Every write goes at this level (STREAMREC_CASSANDRA_WRITE_CONSISTENCY): LOCAL_ONE for one node,
     *  LOCAL_QUORUM for a cluster. Checked when the job is built, not in the TaskManagers. */
    @VisibleForTesting final ConsistencyLevel writeConsistency;

    /** The two CQL statements come from the Python writer (connectors/cassandra/writers.py), so there is one
     *  copy of them; their bind markers are in the order {@code write} binds. */
    public CassandraRowSink(String hosts, int port, String keyspace, String username, String password,
                            String insertEventCql, String upsertRecsCql, int batchRows, int maxInFlight,
                            int retries, long lingerMs) {
        this(hosts, port, keyspace, username, password, insertEventCql, upsertRecsCql, batchRows, maxInFlight,
                retries, lingerMs, "LOCAL_ONE");
    }

    /** ... and {@code writeConsistency}, the name of a Cassandra consistency level. */
    public CassandraRowSink(String hosts, int port, String keyspace, String username, String password,
                            String insertEventCql, String upsertRecsCql, int batchRows, int maxInFlight,
                            int retries, long lingerMs, String writeConsistency) {
        this.hosts = Arrays.stream(hosts.split(",")).map(String::trim).toArray(String[]::new);
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
        this.writeConsistency = ConsistencyLevel.valueOf(writeConsistency);
    }

    @Override
    public SinkWriter<Row> createWriter(WriterInitContext context) throws IOException {
        // no metric group: a test's bare context; the histogram is then kept but not reported
        Histogram freshness = context.metricGroup() == null ? new WindowHistogram(JobMetrics.HISTOGRAM_WINDOW)
                : JobMetrics.histogram(context.metricGroup(), "freshness_ms");
        return new Writer(context.getProcessingTimeService(), freshness);
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
        private final Histogram freshnessMs; // event time to the row reaching this writer

        Writer(ProcessingTimeService timers, Histogram freshnessMs) throws IOException {
            this.timers = timers;
            this.freshnessMs = freshnessMs;
            Cluster.Builder builder = Cluster.builder()
                    .addContactPoints(hosts)
                    .withPort(port)
                    .withProtocolVersion(ProtocolVersion.V5)
                    .withoutJMXReporting()
                    .withQueryOptions(new QueryOptions().setConsistencyLevel(writeConsistency));
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
            freshnessMs.update(Math.max(0L, System.currentTimeMillis() - ts));
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
