package streamrec.flink;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.Map;
import org.apache.flink.api.common.functions.util.ListCollector;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode;
import org.apache.flink.streaming.util.KeyedOneInputStreamOperatorTestHarness;
import org.apache.flink.streaming.util.OneInputStreamOperatorTestHarness;
import org.apache.flink.types.Row;
import org.junit.jupiter.api.Test;

/** The batch formats read and written as the Python side (streamrec/model/batch.py) writes and reads
 *  them: vectors/batch-format.json is written by tests/unit/test_shared_vectors.py. */
class BatchFormatVectorsTest {
    private static final Base64.Decoder B64 = Base64.getDecoder();

    @Test
    void theRecordBatcherWritesWhatPythonDecodesAndFlushesBySizeBarrierTimeAndEnd() throws Exception {
        JsonNode v = UserHistoryVectorsTest.vectors("batch-format.json");
        List<String> records = new ArrayList<>();
        for (JsonNode r : v.get("raw_records")) {
            // the source hands the job strings (NullSafeStringSchema decodes UTF-8, replacing bad bytes)
            records.add(new String(B64.decode(r.asText()), StandardCharsets.UTF_8));
        }
        try (OneInputStreamOperatorTestHarness<String, byte[]> h =
                     new OneInputStreamOperatorTestHarness<>(new RecordBatcher(3, 1 << 20, 50L))) {
            h.setProcessingTime(0L);
            h.open();
            for (String r : records.subList(0, 3)) {
                h.processElement(r, 0L);
            }
            assertThat(h.extractOutputValues()).hasSize(1); // full at 3 records
            h.processElement(records.get(3), 0L);
            h.setProcessingTime(49L);
            assertThat(h.extractOutputValues()).hasSize(1);
            h.setProcessingTime(50L); // the linger ends
            assertThat(h.extractOutputValues()).hasSize(2);
            h.processElement("late", 60L);
            h.prepareSnapshotPreBarrier(1L);
            assertThat(h.extractOutputValues()).hasSize(3);
            h.processElement("last", 70L);
            h.endInput();
            assertThat(h.extractOutputValues()).hasSize(4);
            List<String> all = new ArrayList<>(records.subList(0, 3));
            byte[] first = h.extractOutputValues().get(0);
            List<byte[]> firstThree = new ArrayList<>();
            for (String r : all) {
                firstThree.add(r.getBytes(StandardCharsets.UTF_8));
            }
            assertThat(first).isEqualTo(RecordBatcher.encode(firstThree));
        }
        // byte for byte what Python's encode_raw_batch makes of the same (valid UTF-8) values
        List<byte[]> valid = new ArrayList<>();
        for (JsonNode r : v.get("raw_records")) {
            valid.add(B64.decode(r.asText()));
        }
        assertThat(RecordBatcher.encode(valid)).isEqualTo(B64.decode(v.get("raw_batch").asText()));
    }

    @Test
    void theEventUnbatcherReadsThePythonParsersBlock() {
        JsonNode v = UserHistoryVectorsTest.vectorsUnchecked("batch-format.json");
        List<Row> rows = new ArrayList<>();
        new EventUnbatcher().flatMap(v.get("event_lines").asText().getBytes(StandardCharsets.UTF_8),
                new ListCollector<>(rows));
        assertThat(rows).hasSize(v.get("events").size());
        for (int i = 0; i < rows.size(); i++) {
            JsonNode e = v.get("events").get(i);
            Row want = Row.of(e.get(0).asText(), e.get(1).asText(), e.get(2).asLong(), e.get(3).asText(),
                    e.get(4).isNull() ? null : e.get(4).asText(), e.get(5).isNull() ? null : e.get(5).asText());
            assertThat(rows.get(i)).isEqualTo(want);
        }
    }

    @Test
    void theRecommendationUnbatcherReadsThePythonRankersAnswer() throws Exception {
        JsonNode v = UserHistoryVectorsTest.vectors("batch-format.json");
        byte[] answer = B64.decode(v.get("rank_answer").asText());
        // the JVM's events part for three users (slots 0..2), user 0 twice
        UserStateOperator op = new UserStateOperator(java.util.Set.of("view"), 12, 0L, 1000, 1000L);
        byte[] batch;
        try (KeyedOneInputStreamOperatorTestHarness<String, Row, byte[]> h =
                     new KeyedOneInputStreamOperatorTestHarness<>(op, new RowKey(1), Types.STRING)) {
            h.open();
            for (JsonNode e : v.get("event_part_events")) {
                h.processElement(Row.of(e.get(0).asText(), e.get(1).asText(), e.get(2).asLong(), e.get(3).asText(),
                        e.get(4).isNull() ? null : e.get(4).asText(), e.get(5).isNull() ? null : e.get(5).asText()), 0L);
            }
            h.endInput();
            batch = h.extractOutputValues().get(0);
        }
        int eventsLen = java.nio.ByteBuffer.wrap(batch).getInt();
        // the events part, byte for byte as Python's reference (encode_event_part) writes it
        byte[] part = java.util.Arrays.copyOfRange(batch, 4, 4 + eventsLen);
        assertThat(part).isEqualTo(B64.decode(v.get("event_part").asText()));
        int textLen = java.nio.ByteBuffer.wrap(answer).getInt(4 + java.nio.ByteBuffer.wrap(answer).getInt());
        int pythonEventsLen = java.nio.ByteBuffer.wrap(answer).getInt();
        byte[] merged = java.nio.ByteBuffer.allocate(4 + eventsLen + answer.length - 4 - pythonEventsLen)
                .putInt(eventsLen).put(batch, 4, eventsLen)
                .put(answer, 4 + pythonEventsLen, answer.length - 4 - pythonEventsLen).array();
        assertThat(textLen).isPositive();
        List<Row> rows = new ArrayList<>();
        new RecommendationUnbatcher().flatMap(merged, new ListCollector<>(rows));
        assertThat(rows).extracting(r -> r.getField(0)).containsExactly("a1", "b1", "a2", "c1");
        Map<String, JsonNode> want = Map.of("b1", v.get("rank_results").get(1), "a2", v.get("rank_results").get(0),
                "c1", v.get("rank_results").get(2));
        for (Row r : rows) {
            JsonNode w = want.get((String) r.getField(0));
            if (w == null) { // a1: an earlier event of user ua in this batch, not ranked
                assertThat((Object[]) r.getField(7)).isEmpty();
                assertThat(r.getField(9)).isNull();
                assertThat(r.getField(10)).isEqualTo("A");
                continue;
            }
            assertThat(r.getField(10)).isEqualTo(w.get(0).asText());
            assertThat(r.getField(9)).isEqualTo(w.get(1).asText());
            List<String> ids = new ArrayList<>();
            w.get(2).forEach(x -> ids.add(x.asText()));
            assertThat((String[]) r.getField(7)).containsExactlyElementsOf(ids);
            List<Float> scores = new ArrayList<>();
            w.get(3).forEach(x -> scores.add((float) x.asDouble()));
            assertThat((Float[]) r.getField(8)).containsExactlyElementsOf(scores);
        }
        Row a2 = rows.get(2);
        assertThat(a2.getField(6)).isEqualTo(12_000L); // the write timestamp: newest event time in us
    }
}
