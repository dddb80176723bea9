package streamrec.flink;

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
