package streamrec.flink;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.ArrayList;
import java.util.List;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.runtime.checkpoint.OperatorSubtaskState;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.streaming.util.KeyedTwoInputStreamOperatorTestHarness;
import org.apache.flink.types.Row;
import org.junit.jupiter.api.Test;

/** The late catalog's JVM half: vectors/late-catalog.json holds what the Python parser
 *  (parse_batch with a waiting list, streamrec/model/batch.py) hands this operator, written by
 *  tests/unit/test_shared_vectors.py; the operator gives back those events, or their letters. */
class AwaitProductsTest {
    private static final long WAIT = 30_000L;

    private static KeyedTwoInputStreamOperatorTestHarness<String, Row, Row, Row> harness() throws Exception {
        return new KeyedTwoInputStreamOperatorTestHarness<>(AwaitProducts.operator(WAIT),
                new RowKey(4), new RowKey(1), Types.STRING);
    }

    /** The waiting rows of the vectors, as the parser's side output carries them. */
    private static List<Row> waiting() {
        List<Row> out = new ArrayList<>();
        for (JsonNode w : UserHistoryVectorsTest.vectorsUnchecked("late-catalog.json").get("waiting")) {
            out.add(Row.of(w.get(0).asText(), w.get(1).asText(), w.get(2).asLong(), w.get(3).asText(),
                    w.get(4).asText(), w.get(5).isNull() ? null : w.get(5).asText(), w.get(6).asText()));
        }
        return out;
    }

    private static String fields(Row r) {
        List<Object> f = new ArrayList<>();
        for (int i = 0; i < r.getArity(); i++) {
            f.add(r.getField(i));
        }
        return f.toString();
    }

    private static String eventOf(Row waiting) {
        return fields(Row.of(waiting.getField(0), waiting.getField(1), waiting.getField(2), waiting.getField(3),
                waiting.getField(4), waiting.getField(5)));
    }

    private static Row product(String id) {
        return Row.of("product", id, "{\"product_id\": \"" + id + "\"}");
    }

    private static List<String> deadLetters(KeyedTwoInputStreamOperatorTestHarness<String, Row, Row, Row> h) {
        List<String> out = new ArrayList<>();
        var records = h.getSideOutput(AwaitProducts.deadLetters());
        if (records != null) {
            for (StreamRecord<String> r : records) {
                out.add(r.getValue());
            }
        }
        return out;
    }

    @Test
    void theVectorsHoldThreeWaitingEventsAndNeitherAnInvalidOneNorAKnownOne() {
        JsonNode v = UserHistoryVectorsTest.vectorsUnchecked("late-catalog.json");
        assertThat(v.get("waiting")).hasSize(3);
        assertThat(v.get("dead")).hasSize(3); // a future ts, an unknown type, a bad id: never waiting
        assertThat(v.get("events")).hasSize(1);
    }

    @Test
    void anEventWaitsForItsProductAndComesOutAsTheParsersEventWhenItArrives() throws Exception {
        List<Row> w = waiting(); // w1, w2 name "new 漢", w3 names "never"
        try (var h = harness()) {
            h.setProcessingTime(1_000L);
            h.open();
            h.processElement1(w.get(0), 0L);
            h.processElement1(w.get(1), 0L);
            h.processElement1(w.get(2), 0L);
            assertThat(h.extractOutputValues()).isEmpty();
            h.setProcessingTime(20_000L);
            h.processElement2(product("new 漢"), 0L);
            // both, in the order they came, with the parser's event fields
            assertThat(h.extractOutputValues()).extracting(AwaitProductsTest::fields)
                    .containsExactly(eventOf(w.get(0)), eventOf(w.get(1)));
            // the product is known now: a later event for it passes at once
            h.processElement1(w.get(0), 0L);
            assertThat(h.extractOutputValues()).hasSize(3);
            // the wait of "never" ends 30 s after it came: its letter, byte for byte the parser's
            h.setProcessingTime(1_000L + WAIT - 1);
            assertThat(deadLetters(h)).isEmpty();
            h.setProcessingTime(1_000L + WAIT);
            assertThat(deadLetters(h)).containsExactly(w.get(2).getField(6).toString());
            // the released events' timers found nothing: no letter for them
            h.setProcessingTime(1_000_000L);
            assertThat(deadLetters(h)).hasSize(1);
            assertThat(h.extractOutputValues()).hasSize(3);
            // a product that comes after the wait changes nothing for the letter already written
            h.processElement2(product("never"), 0L);
            assertThat(h.extractOutputValues()).hasSize(3);
        }
    }

    @Test
    void atTheEndOfABoundedInputWhatStillWaitsIsDeadLetteredOnceBothInputsEnded() throws Exception {
        List<Row> w = waiting();
        try (var h = harness()) {
            h.setProcessingTime(0L);
            h.open();
            h.processElement1(w.get(0), 0L);
            h.processElement1(w.get(2), 0L);
            h.endInput1();
            assertThat(deadLetters(h)).isEmpty(); // the products may still come
            h.processElement2(product("new 漢"), 0L);
            h.endInput2();
            assertThat(h.extractOutputValues()).extracting(AwaitProductsTest::fields)
                    .containsExactly(eventOf(w.get(0)));
            assertThat(deadLetters(h)).containsExactly(w.get(2).getField(6).toString());
            h.setProcessingTime(10 * WAIT); // the cleared state leaves the timer nothing to write
            assertThat(deadLetters(h)).hasSize(1);
        }
    }

    @Test
    void eachEventWaitsItsOwnTimeFromWhenItCame() throws Exception {
        List<Row> w = waiting();
        try (var h = harness()) {
            h.setProcessingTime(0L);
            h.open();
            h.processElement1(w.get(0), 0L);
            h.setProcessingTime(10_000L);
            h.processElement1(w.get(1), 0L);
            h.setProcessingTime(WAIT);
            assertThat(deadLetters(h)).containsExactly(w.get(0).getField(6).toString());
            h.setProcessingTime(10_000L + WAIT);
            assertThat(deadLetters(h)).containsExactly(w.get(0).getField(6).toString(),
                    w.get(1).getField(6).toString());
            assertThat(h.extractOutputValues()).isEmpty();
        }
    }

    @Test
    void theWaitIsStateAndSurvivesASnapshotAndRestore() throws Exception {
        List<Row> w = waiting();
        OperatorSubtaskState snapshot;
        try (var h = harness()) {
            h.setProcessingTime(1_000L);
            h.open();
            h.processElement1(w.get(0), 0L); // waits for "new 漢"
            h.processElement1(w.get(2), 0L); // waits for "never"
            h.processElement2(product("p-known"), 0L);
            snapshot = h.snapshot(1L, 1_000L);
        }
        try (var h = harness()) {
            h.setProcessingTime(5_000L);
            h.initializeState(snapshot);
            h.open();
            assertThat(h.extractOutputValues()).isEmpty();
            h.processElement2(product("new 漢"), 0L);
            assertThat(h.extractOutputValues()).extracting(AwaitProductsTest::fields)
                    .containsExactly(eventOf(w.get(0)));
            // the restored timer still ends the other wait, at its old deadline
            h.setProcessingTime(1_000L + WAIT);
            assertThat(deadLetters(h)).containsExactly(w.get(2).getField(6).toString());
            // and what was known before the snapshot is known after it
            h.processElement1(Row.of("k", "u", 1L, "view", "p-known", null, "{}"), 0L);
            assertThat(h.extractOutputValues()).hasSize(2);
        }
    }
}
