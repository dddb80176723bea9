package streamrec.flink;

import java.io.ByteArrayInputStream;
import java.io.DataInputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.functions.RichFlatMapFunction;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;

/**
 * The Python ranker's answer to a {@link UserStateOperator} batch, back into one row per event in
 * RECOMMENDATION_FIELDS order (streamrec/udfs/operators.py): the event, its write timestamp, and,
 * for the newest event of each user in the batch, the user's recommendations (ids, scores, source);
 * earlier events of the same batch carry no list (the sink then writes the event only) and a null
 * source. The variant is every row's; impressions and hits are left at 0 for {@link HitCounter}.
 * A user whose ranking failed ("error") has no rows: the ranker dead-lettered their events.
 *
 * <p>Answer format (encode_rank_result in streamrec/model/batch.py): int32 length + the events part
 * as the batch carried it, int32 length + per user (the batch's order) "source US variant US n US
 * ids..." records, then every score as little-endian float32.
 */
public final class RecommendationUnbatcher extends RichFlatMapFunction<byte[], Row> {
    private static final long serialVersionUID = 1L;
    /** FAILED in streamrec/model/batch.py: a user whose ranking raised. */
    static final String FAILED = "error";

    private transient JobMetrics.Labelled rowsBySource; // rows that carry a list, by its source

    @Override
    public void open(OpenContext context) throws Exception {
        super.open(context);
        rowsBySource = new JobMetrics.Labelled(getRuntimeContext().getMetricGroup(), "source",
                "recommendation_rows");
    }

    private static final class Result {
        final String source;
        final String variant;
        final String[] ids;
        final Float[] scores;

        Result(String source, String variant, String[] ids, Float[] scores) {
            this.source = source;
            this.variant = variant;
            this.ids = ids;
            this.scores = scores;
        }
    }

    private static final class Event {
        int slot;
        long ts;
        long writeUs;
        String eventId;
        String userId;
        String type;
        String productId;
        String query;
    }

    @Override
    public void flatMap(byte[] answer, Collector<Row> out) throws IOException {
        ByteBuffer buf = ByteBuffer.wrap(answer);
        int eventLen = buf.getInt();
        int eventStart = buf.position();
        buf.position(eventStart + eventLen);
        int textLen = buf.getInt();
        String text = new String(answer, buf.position(), textLen, StandardCharsets.UTF_8);
        ByteBuffer scores = ByteBuffer.wrap(answer, buf.position() + textLen, answer.length - buf.position() - textLen)
                .order(ByteOrder.LITTLE_ENDIAN);
        List<Result> results = new ArrayList<>();
        for (String record : BatchText.split(text, BatchText.RS)) {
            List<String> f = BatchText.split(record, BatchText.US);
            int k = Integer.parseInt(f.get(2));
            String[] ids = new String[k];
            Float[] sc = new Float[k];
            for (int i = 0; i < k; i++) {
                ids[i] = f.get(3 + i);
                sc[i] = scores.getFloat();
            }
            results.add(new Result(f.get(0), f.get(1), ids, sc));
        }

        List<Event> events = new ArrayList<>();
        DataInputStream in = new DataInputStream(new ByteArrayInputStream(answer, eventStart, eventLen));
        int[] newest = new int[results.size()];
        while (in.available() > 0) {
            Event e = new Event();
            e.slot = in.readInt();
            e.ts = in.readLong();
            e.writeUs = in.readLong();
            e.eventId = UserHistory.readString(in);
            e.userId = UserHistory.readString(in);
            e.type = UserHistory.readString(in);
            e.productId = UserHistory.readString(in);
            e.query = UserHistory.readString(in);
            newest[e.slot] = events.size();
            events.add(e);
        }
        String[] none = new String[0];
        Float[] noScores = new Float[0];
        for (int i = 0; i < events.size(); i++) {
            Event e = events.get(i);
            Result r = results.get(e.slot);
            if (FAILED.equals(r.source)) {
                continue; // the ranker dead-lettered this user's events of the batch (INTERNAL)
            }
            boolean ranked = newest[e.slot] == i;
            if (ranked && rowsBySource != null) { // null: called outside a runtime context (unit tests)
                rowsBySource.get(r.source).inc();
            }
            out.collect(Row.of(e.eventId, e.userId, e.ts, e.type, e.productId, e.query, e.writeUs,
                    ranked ? r.ids : none, ranked ? r.scores : noScores, ranked ? r.source : null, r.variant,
                    0L, 0L));
        }
    }
}
