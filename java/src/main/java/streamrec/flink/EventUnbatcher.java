package streamrec.flink;

import java.nio.charset.StandardCharsets;
import java.util.List;
import org.apache.flink.api.common.functions.FlatMapFunction;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;

/**
 * The Python parser's valid events (one text block per batch, parse_batch in
 * streamrec/model/batch.py) back into one row per event, in order:
 * Row(event_id, user_id, ts, type, product_id, query) as EVENT_FIELDS in streamrec/udfs/operators.py.
 */
public final class EventUnbatcher implements FlatMapFunction<byte[], Row> {
    private static final long serialVersionUID = 1L;

    @Override
    public void flatMap(byte[] block, Collector<Row> out) {
        if (block.length == 0) {
            return;
        }
        for (String line : BatchText.split(new String(block, StandardCharsets.UTF_8), BatchText.RS)) {
            out.collect(toRow(line));
        }
    }

    static Row toRow(String line) {
        List<String> f = BatchText.split(line, BatchText.US);
        if (f.size() != 6) {
            throw new IllegalArgumentException("an event line has " + f.size() + " fields, not 6: " + line);
        }
        String type = f.get(3);
        // a search's query may be empty; other types have none
        String query = "search".equals(type) ? f.get(5) : null;
        return Row.of(f.get(0), f.get(1), Long.parseLong(f.get(2)), type, BatchText.orNull(f.get(4)), query);
    }
}
