package streamrec.flink;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.datastax.driver.core.ConsistencyLevel;
import java.io.IOException;
import java.lang.reflect.Proxy;
import java.net.ServerSocket;
import org.apache.flink.api.connector.sink2.WriterInitContext;
import org.apache.flink.util.InstantiationUtil;
import org.junit.jupiter.api.Test;

/** What the sink does before it talks to Cassandra; its writes are tested on a real Cassandra by
 *  the Python e2e and fault tiers (tests/e2e, tests/faults). */
class CassandraRowSinkTest {
    private static CassandraRowSink sink(String hosts, int port, int batchRows, int maxInFlight, int retries,
                                         long lingerMs) {
        return new CassandraRowSink(hosts, port, "streamrec", "", "", "INSERT ...", "UPDATE ...", batchRows,
                maxInFlight, retries, lingerMs);
    }

    @Test
    void keepsItsSettingsWithinWorkableBounds() {
        CassandraRowSink s = sink("h", 9042, 0, -3, -1, -5L);
        assertThat(s.batchRows).isEqualTo(1);
        assertThat(s.maxInFlight).isEqualTo(1);
        assertThat(s.retries).isZero();
        assertThat(s.lingerMs).isZero();

        CassandraRowSink t = sink("h", 9042, 10, 64, 5, 20L);
        assertThat(new long[] {t.batchRows, t.maxInFlight, t.retries, t.lingerMs}).containsExactly(10, 64, 5, 20);
    }

    @Test
    void writesAtTheConfiguredConsistencyLevelAndRefusesAnUnknownOne() {
        assertThat(sink("h", 9042, 1, 1, 0, 0L).writeConsistency).isEqualTo(ConsistencyLevel.LOCAL_ONE);
        CassandraRowSink cluster = new CassandraRowSink("h", 9042, "streamrec", "", "", "INSERT ...", "UPDATE ...",
                10, 64, 4, 20L, "LOCAL_QUORUM");
        assertThat(cluster.writeConsistency).isEqualTo(ConsistencyLevel.LOCAL_QUORUM);
        assertThatThrownBy(() -> new CassandraRowSink("h", 9042, "streamrec", "", "", "INSERT ...", "UPDATE ...",
                10, 64, 4, 20L, "LOCAL_QUORUMM")).isInstanceOf(IllegalArgumentException.class);
    }

    @Test
    void splitsTheContactPointsOnCommasAndTrimsThem() {
        assertThat(sink("10.0.0.1, 10.0.0.2 ,cass-3", 9042, 1, 1, 0, 0L).hosts)
                .containsExactly("10.0.0.1", "10.0.0.2", "cass-3");
    }

    @Test
    void survivesTheTripToTheTaskManagers() throws Exception {
        CassandraRowSink copy = InstantiationUtil.clone(sink("a,b", 9042, 10, 64, 5, 20L));
        assertThat(copy.hosts).containsExactly("a", "b");
        assertThat(copy.batchRows).isEqualTo(10);
        assertThat(copy.lingerMs).isEqualTo(20L);
        assertThat(copy.writeConsistency).isEqualTo(ConsistencyLevel.LOCAL_ONE);
    }

    /** A writer that cannot connect fails its task with an IOException (Flink restarts the job),
     *  naming the keyspace, instead of a driver exception from deep inside the task. */
    @Test
    void aWriterThatCannotConnectFailsWithAnIoException() throws Exception {
        int closedPort;
        try (ServerSocket socket = new ServerSocket(0)) {
            closedPort = socket.getLocalPort();
        }
        // the writer asks its context for nothing but the timer service before it connects
        WriterInitContext context = (WriterInitContext) Proxy.newProxyInstance(getClass().getClassLoader(),
                new Class<?>[] {WriterInitContext.class}, (proxy, method, args) -> null);

        assertThatThrownBy(() -> sink("127.0.0.1", closedPort, 10, 64, 0, 20L).createWriter(context))
                .isInstanceOf(IOException.class)
                .hasMessageContaining("streamrec");
    }
}
