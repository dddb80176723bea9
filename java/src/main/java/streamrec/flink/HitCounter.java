package streamrec.flink;

import java.util.Arrays;
import java.util.HashMap;
import java.util.HashSet;
import java.util.Map;
import java.util.Set;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.core.memory.DataInputDeserializer;
import org.apache.flink.core.memory.DataOutputSerializer;
import org.apache.flink.streaming.api.operators.AbstractStreamOperator;
import org.apache.flink.streaming.api.operators.OneInputStreamOperator;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.types.Row;

/**
 * Online A/B counts per user (keyed by user, after the ranker): an event that follows a shown
 * personal list is an impression, and a view, click, cart or purchase of a product of that list is a
 * hit (HIT_TYPES and remember_shown in streamrec/model/model.py). The list shown is the first
 * top_k (of the user's variant) of the newest personal list written before the event; a ranked row
 * with a trending or empty list clears it, an unranked row (an earlier event of a batch) keeps it.
 * An idle gap longer than the TTL (event time) starts the counts afresh, as the user state does.
 */
public final class HitCounter extends AbstractStreamOperator<Row> implements OneInputStreamOperator<Row, Row> {
    private static final long serialVersionUID = 1L;
    private static final Set<String> HIT_TYPES = new HashSet<>(Arrays.asList("view", "click", "add_to_cart", "purchase"));

    private final HashMap<String, Integer> topK;
    private final long ttlMs;
    private transient ValueState<byte[]> state;
    // reused for every row: Flink's (unsynchronized) serializers, not a locking DataOutputStream
    private transient DataInputDeserializer in;
    private transient DataOutputSerializer out;

    public HitCounter(Map<String, Integer> topKByVariant, long ttlMs) {
        this.topK = new HashMap<>(topKByVariant);
        this.ttlMs = Math.max(0L, ttlMs);
    }

    @Override
    public void open() throws Exception {
        super.open();
        state = getRuntimeContext().getState(UserTtl.descriptor("hits", ttlMs));
        in = new DataInputDeserializer();
        out = new DataOutputSerializer(256);
    }

    @Override
    public void processElement(StreamRecord<Row> element) throws Exception {
        Row row = element.getValue();
        long ts = (Long) row.getField(2);
        String type = (String) row.getField(3);
        String productId = (String) row.getField(4);
        String source = (String) row.getField(9);

        long seq = 0;
        long maxTs = 0;
        long impressions = 0;
        long hits = 0;
        String[] shown = new String[0];
        byte[] raw = state.value();
        if (raw != null) {
            in.setBuffer(raw);
            seq = in.readLong();
            maxTs = in.readLong();
            impressions = in.readLong();
            hits = in.readLong();
            shown = new String[in.readInt()];
            for (int i = 0; i < shown.length; i++) {
                shown[i] = UserHistory.readString(in);
            }
        }
        if (ttlMs > 0 && seq > 0 && ts - maxTs > ttlMs) {
            impressions = 0;
            hits = 0;
            shown = new String[0];
        }
        if (shown.length > 0) {
            impressions++;
            if (HIT_TYPES.contains(type) && productId != null && Arrays.asList(shown).contains(productId)) {
                hits++;
            }
        }
        seq++;
        maxTs = Math.max(maxTs, ts);
        if (source != null) { // a ranked row: what the user is shown from now on
            String[] ids = (String[]) row.getField(7);
            int k = topK.getOrDefault((String) row.getField(10), ids.length);
            shown = "personal".equals(source) ? Arrays.copyOf(ids, Math.min(k, ids.length)) : new String[0];
        }
        out.clear();
        out.writeLong(seq);
        out.writeLong(maxTs);
        out.writeLong(impressions);
        out.writeLong(hits);
        out.writeInt(shown.length);
        for (String s : shown) {
            UserHistory.writeString(out, s);
        }
        state.update(out.getCopyOfBuffer());
        row.setField(11, impressions);
        row.setField(12, hits);
        output.collect(element.replace(row));
    }
}
