package streamrec.flink;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.runtime.checkpoint.OperatorSubtaskState;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.flink.streaming.util.KeyedOneInputStreamOperatorTestHarness;
import org.apache.flink.types.Row;
import org.junit.jupiter.api.Test;

/**
 * The JVM's copy of the user-state rule does what the Python reference does (apply_event in
 * streamrec/model/model.py): vectors/user-state.json is written by tests/unit/test_shared_vectors.py.
 */
class UserHistoryVectorsTest {
    private static final ObjectMapper JSON = new ObjectMapper();

    static JsonNode vectors(String name) throws Exception {
        try (InputStream in = UserHistoryVectorsTest.class.getResourceAsStream("/vectors/" + name)) {
            return JSON.readTree(in);
        }
    }

    static JsonNode vectorsUnchecked(String name) {
        try {
            return vectors(name);
        } catch (Exception e) {
            throw new IllegalStateException(e);
        }
    }

    private static String text(JsonNode n) {
        return n == null || n.isNull() ? null : n.asText();
    }

    private static Set<String> movingTypes(JsonNode c) {
        Set<String> out = new HashSet<>();
        c.get("moving_types").forEach(t -> out.add(t.asText()));
        return out;
    }

    private static List<String> strings(JsonNode list) {
        List<String> out = new ArrayList<>();
        list.forEach(x -> out.add(x.asText()));
        return out;
    }

    @Test
    void everyEventChangesTheStateAsThePythonRuleDoes() throws Exception {
        for (JsonNode c : vectors("user-state.json").get("cases")) {
            Set<String> moving = movingTypes(c);
            int size = c.get("history_size").asInt();
            long ttl = c.get("ttl_ms").asLong();
            UserHistory state = new UserHistory();
            int i = 0;
            for (JsonNode e : c.get("events")) {
                state = state.apply(e.get(3).asText(), e.get(2).asLong(), text(e.get(4)), text(e.get(5)), moving, size,
                        ttl);
                state = UserHistory.decode(state.encode()); // and the state survives its own encoding
                JsonNode want = c.get("after").get(i++);
                String where = c.get("name").asText() + ", event " + i;
                assertThat(state.seq).as(where).isEqualTo(want.get("seq").asLong());
                assertThat(state.maxTs).as(where).isEqualTo(want.get("max_ts").asLong());
                assertThat(state.writeUs).as(where).isEqualTo(want.get("write_us").asLong());
                assertThat(state.purchased).as(where).isEqualTo(strings(want.get("purchased")));
                assertThat(state.cart).as(where).isEqualTo(strings(want.get("cart")));
                List<String> history = new ArrayList<>();
                for (UserHistory.Entry h : state.history) {
                    history.add(h.type + "|" + h.ts + "|" + h.productId + "|" + h.query);
                }
                List<String> wantHistory = new ArrayList<>();
                for (JsonNode h : want.get("history")) {
                    wantHistory.add(h.get(0).asText() + "|" + h.get(1).asLong() + "|" + text(h.get(2)) + "|"
                            + text(h.get(3)));
                }
                assertThat(history).as(where).isEqualTo(wantHistory);
            }
        }
    }

    @Test
    void theOperatorKeepsTheStateInFlinkAndSendsTheUsersNewestStateWithEachBatch() throws Exception {
        for (JsonNode c : vectors("user-state.json").get("cases")) {
            UserStateOperator op = new UserStateOperator(movingTypes(c), c.get("history_size").asInt(),
                    c.get("ttl_ms").asLong(), 1_000_000, 60_000L);
            try (KeyedOneInputStreamOperatorTestHarness<String, Row, byte[]> h =
                         new KeyedOneInputStreamOperatorTestHarness<>(op, new RowKey(1), Types.STRING)) {
                h.setProcessingTime(0L);
                h.open();
                int n = 0;
                for (JsonNode e : c.get("events")) {
                    h.processElement(Row.of(e.get(0).asText(), e.get(1).asText(), e.get(2).asLong(), e.get(3).asText(),
                            text(e.get(4)), text(e.get(5))), 0L);
                    if (++n % 97 == 0) {
                        h.prepareSnapshotPreBarrier(n); // a barrier: the batch so far goes out first
                        assertThat(h.extractOutputValues()).hasSize(n / 97);
                    }
                }
                h.endInput();
                List<byte[]> out = h.extractOutputValues();
                byte[] last = out.get(out.size() - 1);
                int eventsLen = ByteBuffer.wrap(last).getInt();
                String users = new String(last, 4 + eventsLen, last.length - 4 - eventsLen, StandardCharsets.UTF_8);
                assertThat(users).isEqualTo(c.get("request_users_text").asText());
            }
        }
    }

    @Test
    void aJobRestoredFromACheckpointTakenMidStreamSendsWhatOneThatRanThroughSends() throws Exception {
        // the operator writes each user's state when their batch goes out, not per event: the
        // barrier's flush must write it before the snapshot, or the restored job forgets events
        for (JsonNode c : vectors("user-state.json").get("cases")) {
            List<JsonNode> events = new ArrayList<>();
            c.get("events").forEach(events::add);
            int cut = events.size() / 2 + 1;
            byte[] ranThrough;
            try (KeyedOneInputStreamOperatorTestHarness<String, Row, byte[]> h = stateHarness(c)) {
                h.setProcessingTime(0L);
                h.open();
                feed(h, events.subList(0, cut));
                h.prepareSnapshotPreBarrier(1L);
                feed(h, events.subList(cut, events.size()));
                h.endInput();
                List<byte[]> out = h.extractOutputValues();
                assertThat(out).hasSize(2);
                ranThrough = out.get(1);
            }
            OperatorSubtaskState snapshot;
            try (KeyedOneInputStreamOperatorTestHarness<String, Row, byte[]> h = stateHarness(c)) {
                h.setProcessingTime(0L);
                h.open();
                feed(h, events.subList(0, cut));
                h.prepareSnapshotPreBarrier(1L);
                snapshot = h.snapshot(1L, 0L);
            }
            try (KeyedOneInputStreamOperatorTestHarness<String, Row, byte[]> h = stateHarness(c)) {
                h.setProcessingTime(0L);
                h.initializeState(snapshot);
                h.open();
                feed(h, events.subList(cut, events.size()));
                h.endInput();
                List<byte[]> out = h.extractOutputValues();
                assertThat(out).hasSize(1);
                assertThat(new String(out.get(0), StandardCharsets.ISO_8859_1)).as(c.get("name").asText())
                        .isEqualTo(new String(ranThrough, StandardCharsets.ISO_8859_1));
            }
        }
    }

    private static KeyedOneInputStreamOperatorTestHarness<String, Row, byte[]> stateHarness(JsonNode c)
            throws Exception {
        UserStateOperator op = new UserStateOperator(movingTypes(c), c.get("history_size").asInt(),
                c.get("ttl_ms").asLong(), 1_000_000, 60_000L);
        return new KeyedOneInputStreamOperatorTestHarness<>(op, new RowKey(1), Types.STRING);
    }

    private static void feed(KeyedOneInputStreamOperatorTestHarness<String, Row, byte[]> h, List<JsonNode> events)
            throws Exception {
        for (JsonNode e : events) {
            h.processElement(row(e), 0L);
        }
    }

    private static Row row(JsonNode e) {
        return Row.of(e.get(0).asText(), e.get(1).asText(), e.get(2).asLong(), e.get(3).asText(),
                text(e.get(4)), text(e.get(5)));
    }
}
