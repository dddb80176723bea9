package streamrec.flink;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.flink.streaming.util.OneInputStreamOperatorTestHarness;
import org.apache.flink.types.Row;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** The counter's output is what trending reads (streamrec/udfs/operators.py parses it with json.loads). */
class PopularityCounterTest {
    private static final long INTERVAL_MS = 1_000L;
    private static final long MINUTE = 60_000L;
    private static final Map<String, Double> WEIGHTS = Map.of("view", 1.0, "add_to_cart", 3.0, "purchase", 5.0,
            "remove_from_cart", -2.0, "search", 0.0);
    private static final ObjectMapper JSON = new ObjectMapper();

    private OneInputStreamOperatorTestHarness<Row, String> harness;

    @BeforeEach
    void open() throws Exception {
        harness = new OneInputStreamOperatorTestHarness<>(new PopularityCounter(WEIGHTS, INTERVAL_MS));
        harness.setProcessingTime(0L);
        harness.open();
    }

    @AfterEach
    void close() throws Exception {
        if (harness != null) {
            harness.close();
        }
    }

    /** Fields as EVENT_FIELDS in streamrec/udfs/operators.py: event_id, user_id, ts, type, product_id, query. */
    private void event(long ts, String type, String product) throws Exception {
        harness.processElement(Row.of("e" + ts, "u1", ts, type, product, null), ts);
    }

    /** Each emitted record as {product -> [weight, ts]}, in one list entry per product and minute. */
    private List<JsonNode> emitted() throws Exception {
        List<JsonNode> rows = new ArrayList<>();
        for (String out : harness.extractOutputValues()) {
            for (JsonNode row : JSON.readTree(out)) {
                rows.add(row);
            }
        }
        return rows;
    }

    private static String rowText(JsonNode row) {
        return row.get(0).asText() + " " + row.get(1).asDouble() + " " + row.get(2).asLong();
    }

    @Test
    void sumsWeightsPerProductAndMinuteAndKeepsTheNewestTime() throws Exception {
        event(10 * MINUTE + 5, "view", "p1");
        event(10 * MINUTE + 9, "purchase", "p1");
        event(10 * MINUTE + 7, "add_to_cart", "p1"); // older than the newest: the time stays
        event(10 * MINUTE + 1, "view", "p2");
        event(11 * MINUTE, "view", "p1"); // the next minute counts apart

        harness.prepareSnapshotPreBarrier(1L);

        assertThat(harness.extractOutputValues()).hasSize(1);
        assertThat(emitted()).extracting(PopularityCounterTest::rowText).containsExactlyInAnyOrder(
                "p1 9.0 " + (10 * MINUTE + 9), "p2 1.0 " + (10 * MINUTE + 1), "p1 1.0 " + 11 * MINUTE);
    }

    @Test
    void countsOnlyPositiveWeightsButKeepsTheProductsTime() throws Exception {
        event(5, "remove_from_cart", "p1");
        event(6, "search", "p2");
        event(7, "no_such_type", "p3");

        harness.prepareSnapshotPreBarrier(1L);

        assertThat(emitted()).extracting(PopularityCounterTest::rowText)
                .containsExactlyInAnyOrder("p1 0.0 5", "p2 0.0 6", "p3 0.0 7");
    }

    @Test
    void skipsEventsWithoutProductOrTime() throws Exception {
        event(5, "search", null);
        harness.processElement(Row.of("e", "u1", null, "view", "p1", null), 0L);

        harness.prepareSnapshotPreBarrier(1L);

        assertThat(harness.extractOutputValues()).isEmpty();
    }

    @Test
    void emitsBeforeEveryBarrierOnlyWhatCameSinceTheLastOne() throws Exception {
        event(5, "view", "p1");
        harness.prepareSnapshotPreBarrier(1L);
        harness.prepareSnapshotPreBarrier(2L); // nothing new: no empty record
        event(6, "view", "p1");
        harness.prepareSnapshotPreBarrier(3L);

        assertThat(harness.extractOutputValues()).hasSize(2);
        assertThat(emitted()).extracting(PopularityCounterTest::rowText).containsExactly("p1 1.0 5", "p1 1.0 6");
    }

    @Test
    void keepsNoStateSoACheckpointHoldsNoCounts() throws Exception {
        event(5, "view", "p1");
        harness.prepareSnapshotPreBarrier(1L);

        assertThat(harness.snapshot(1L, 1L).getManagedOperatorState()).isEmpty();
        assertThat(harness.snapshot(1L, 1L).getManagedKeyedState()).isEmpty();
    }

    @Test
    void emitsEveryIntervalOfProcessingTime() throws Exception {
        event(5, "view", "p1");
        harness.setProcessingTime(INTERVAL_MS - 1);
        assertThat(harness.extractOutputValues()).isEmpty();

        harness.setProcessingTime(INTERVAL_MS);
        assertThat(emitted()).extracting(PopularityCounterTest::rowText).containsExactly("p1 1.0 5");

        event(6, "view", "p2"); // the timer is registered again after each interval
        harness.setProcessingTime(2 * INTERVAL_MS);
        assertThat(harness.extractOutputValues()).hasSize(2);
    }

    @Test
    void emitsWhatIsLeftAtTheEndOfTheInput() throws Exception {
        event(5, "view", "p1");

        harness.endInput();
        harness.close(); // Flink finishes an operator after its last input; the harness's close does both
        List<JsonNode> rows = emitted();
        harness = null;

        assertThat(rows).extracting(PopularityCounterTest::rowText).containsExactly("p1 1.0 5");
    }

    @Test
    void quotesProductIdsAsJsonStrings() throws Exception {
        String[] odd = {"quote\"d", "back\\slash", "tab\there", "new\nline", "nul\u0000", "ü€😀", "", "[1,2]"};
        for (int i = 0; i < odd.length; i++) {
            event(i, "view", odd[i]);
        }

        harness.prepareSnapshotPreBarrier(1L);

        List<String> ids = new ArrayList<>();
        for (JsonNode row : emitted()) {
            ids.add(row.get(0).textValue());
        }
        assertThat(ids).containsExactlyInAnyOrder(odd);
    }

    @Test
    void quoteEscapesControlCharactersAsUnicodeEscapes() {
        StringBuilder out = new StringBuilder();
        PopularityCounter.quote(out, "a\"b\\c\u0001\n");
        assertThat(out.toString()).isEqualTo("\"a\\\"b\\\\c\\u0001\\u000a\"");
    }

    @Test
    void anIntervalBelowTenMillisecondsIsRaisedToTen() throws Exception {
        harness.close();
        harness = new OneInputStreamOperatorTestHarness<>(new PopularityCounter(WEIGHTS, 0L));
        harness.setProcessingTime(0L);
        harness.open();
        event(5, "view", "p1");

        harness.setProcessingTime(9L);
        assertThat(harness.extractOutputValues()).isEmpty();
        harness.setProcessingTime(10L);
        assertThat(harness.extractOutputValues()).hasSize(1);
    }
}
