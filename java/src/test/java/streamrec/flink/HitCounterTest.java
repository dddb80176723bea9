package streamrec.flink;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.List;
import java.util.Map;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.streaming.util.KeyedOneInputStreamOperatorTestHarness;
import org.apache.flink.types.Row;
import org.junit.jupiter.api.Test;

/** A/B counts as remember_shown and apply_event count them (streamrec/model/model.py): the list a
 *  user was shown is the first top_k of the newest personal list written before the event. */
class HitCounterTest {
    private static final long DAY = 86_400_000L;

    /** A RECOMMENDATION_FIELDS row; {@code source} null: an unranked row (an earlier event of a batch). */
    private static Row row(String id, long ts, String type, String product, String source, String... ids) {
        Float[] scores = new Float[ids.length];
        for (int i = 0; i < ids.length; i++) {
            scores[i] = 1.0f - i * 0.1f;
        }
        return Row.of(id, "u1", ts, type, product, null, ts * 1000L, ids, scores, source, "B", 0L, 0L);
    }

    @Test
    void eventsTouchingTheShownListAreHitsAndANewListReplacesIt() throws Exception {
        HitCounter counter = new HitCounter(Map.of("A", 5, "B", 2), 30 * DAY);
        try (KeyedOneInputStreamOperatorTestHarness<String, Row, Row> h =
                     new KeyedOneInputStreamOperatorTestHarness<>(counter, new RowKey(1), Types.STRING)) {
            h.open();
            h.processElement(row("e1", 1, "view", "p9", "personal", "p1", "p2", "p3"), 0L); // nothing shown yet
            h.processElement(row("e2", 2, "click", "p2", null), 0L); // p2 was shown: a hit
            h.processElement(row("e3", 3, "view", "p3", null), 0L); // p3 is beyond top_k (2) of variant B
            h.processElement(row("e4", 4, "remove_from_cart", "p1", "trending", "p7"), 0L); // not a hit type
            h.processElement(row("e5", 5, "view", "p7", null), 0L); // a trending list shows nothing personal
            h.processElement(row("e6", 6, "purchase", "p7", "personal", "p4"), 0L);
            h.processElement(row("e7", 6 + 31 * DAY, "view", "p4", null), 0L); // idle past the TTL: afresh
            List<Row> out = h.extractOutputValues();
            assertThat(out).extracting(r -> r.getField(0) + " " + r.getField(11) + "/" + r.getField(12))
                    .containsExactly("e1 0/0", "e2 1/1", "e3 2/1", "e4 3/1", "e5 3/1", "e6 3/1", "e7 0/0");
        }
    }
}
