package streamrec.flink;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import org.apache.flink.metrics.Counter;
import org.apache.flink.metrics.Histogram;
import org.apache.flink.streaming.api.operators.OneInputStreamOperator;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;

/**
 * Packs raw records (the events source's strings) into one byte[] per batch, so that the Python
 * parser is called once per batch instead of once per record (FAST-PATH.md). A batch goes out at
 * {@code maxRecords} records, {@code maxBytes} bytes, {@code lingerMs} after its first record
 * (longer under load: {@link LingerBatcher}), before every checkpoint barrier and at the end of the input: no record waits in this buffer
 * across a barrier, so the operator keeps no state and a checkpoint covers exactly the records
 * handed on.
 *
 * <p>Format (decode_raw_batch in streamrec/model/batch.py): int32 count, an int32 length per
 * record, then the records' UTF-8 bytes; all big-endian.
 */
public final class RecordBatcher extends LingerBatcher<byte[]> implements OneInputStreamOperator<String, byte[]> {
    private static final long serialVersionUID = 1L;

    private final int maxRecords;
    private final int maxBytes;
    private transient List<byte[]> pending;
    private transient int pendingBytes;
    private transient Counter recordsIn;
    private transient Histogram batchRecords;

    public RecordBatcher(int maxRecords, int maxBytes, long lingerMs) {
        super(lingerMs);
        this.maxRecords = Math.max(1, maxRecords);
        this.maxBytes = Math.max(1, maxBytes);
    }

    @Override
    public void open() throws Exception {
        super.open();
        pending = new ArrayList<>();
        pendingBytes = 0;
        recordsIn = JobMetrics.group(getMetricGroup()).counter("records_in");
        batchRecords = JobMetrics.histogram(getMetricGroup(), "batch_records");
    }

    @Override
    public void processElement(StreamRecord<String> element) throws Exception {
        String value = element.getValue();
        byte[] bytes = value == null ? new byte[0] : value.getBytes(StandardCharsets.UTF_8);
        pending.add(bytes);
        pendingBytes += bytes.length;
        added();
    }

    @Override
    double fill() {
        return Math.max(pending.size() / (double) maxRecords, pendingBytes / (double) maxBytes);
    }

    @Override
    void emit() {
        if (pending.isEmpty()) {
            return;
        }
        output.collect(new StreamRecord<>(encode(pending)));
        recordsIn.inc(pending.size());
        batchRecords.update(pending.size());
        pending = new ArrayList<>();
        pendingBytes = 0;
    }

    static byte[] encode(List<byte[]> records) {
        int size = 4 + 4 * records.size();
        for (byte[] r : records) {
            size += r.length;
        }
        ByteBuffer out = ByteBuffer.allocate(size);
        out.putInt(records.size());
        for (byte[] r : records) {
            out.putInt(r.length);
        }
        for (byte[] r : records) {
            out.put(r);
        }
        return out.array();
    }
}
