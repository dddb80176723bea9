package streamrec.flink;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import org.apache.flink.streaming.util.OneInputStreamOperatorTestHarness;
import org.junit.jupiter.api.Test;

/** When a batch goes out: at its linger when the stream is quiet, full (or at the longer linger)
 *  when it is busy, never late for a batch started after an earlier one went out. */
class LingerBatcherTest {
    /** Batches of at most 8 records, a 10 ms linger, up to 40 ms under load: a batch with at least
     *  2 records (a quarter) at 10 ms arrives fast enough to fill by 40 ms. */
    private static OneInputStreamOperatorTestHarness<String, byte[]> batcher() throws Exception {
        RecordBatcher op = new RecordBatcher(8, 1 << 20, 10L);
        op.lingerUpTo(40L);
        return opened(op);
    }

    /** The harness, opened at processing time 0. */
    private static OneInputStreamOperatorTestHarness<String, byte[]> opened(RecordBatcher op) throws Exception {
        OneInputStreamOperatorTestHarness<String, byte[]> h = new OneInputStreamOperatorTestHarness<>(op);
        h.setProcessingTime(0L);
        h.open();
        return h;
    }

    private static List<Integer> sizes(OneInputStreamOperatorTestHarness<String, byte[]> h) {
        List<Integer> out = new ArrayList<>();
        for (byte[] b : h.extractOutputValues()) {
            out.add(ByteBuffer.wrap(b).getInt());
        }
        return out;
    }

    private static void add(OneInputStreamOperatorTestHarness<String, byte[]> h, int n) throws Exception {
        for (int i = 0; i < n; i++) {
            h.processElement("r" + i, 0L);
        }
    }

    @Test
    void aQuietStreamsBatchGoesOutAtTheShortLinger() throws Exception {
        try (OneInputStreamOperatorTestHarness<String, byte[]> h = batcher()) {
            add(h, 1);
            h.setProcessingTime(9L);
            assertThat(sizes(h)).isEmpty();
            h.setProcessingTime(10L);
            assertThat(sizes(h)).containsExactly(1);
        }
    }

    @Test
    void aBusyStreamsBatchLingersUntilFullOrTheLongLinger() throws Exception {
        try (OneInputStreamOperatorTestHarness<String, byte[]> h = batcher()) {
            add(h, 2); // a quarter full at 10 ms: it lingers on
            h.setProcessingTime(10L);
            assertThat(sizes(h)).isEmpty();
            add(h, 6);
            assertThat(sizes(h)).containsExactly(8); // full

            h.setProcessingTime(100L);
            add(h, 3);
            h.setProcessingTime(110L);
            h.setProcessingTime(139L);
            assertThat(sizes(h)).containsExactly(8);
            h.setProcessingTime(140L); // the long linger ends, full or not
            assertThat(sizes(h)).containsExactly(8, 3);
        }
    }

    @Test
    void aBatchStartedAfterAFullOneKeepsItsOwnLinger() throws Exception {
        try (OneInputStreamOperatorTestHarness<String, byte[]> h = batcher()) {
            add(h, 8); // full at once; its timer at 10 ms belongs to it alone
            h.setProcessingTime(5L);
            add(h, 1);
            h.setProcessingTime(10L);
            assertThat(sizes(h)).containsExactly(8);
            h.setProcessingTime(15L);
            assertThat(sizes(h)).containsExactly(8, 1);
        }
    }

    @Test
    void aBarrierTakesTheLingeringBatchAndItsTimersGoStale() throws Exception {
        try (OneInputStreamOperatorTestHarness<String, byte[]> h = batcher()) {
            add(h, 3);
            h.setProcessingTime(10L); // lingers on to 40 ms
            h.prepareSnapshotPreBarrier(1L);
            assertThat(sizes(h)).containsExactly(3);
            h.setProcessingTime(35L);
            add(h, 1);
            h.setProcessingTime(40L); // the first batch's long linger: not this batch's
            assertThat(sizes(h)).containsExactly(3);
            h.setProcessingTime(45L);
            assertThat(sizes(h)).containsExactly(3, 1);
        }
    }

    @Test
    void withoutALongerLingerTheLingerIsFixed() throws Exception {
        try (OneInputStreamOperatorTestHarness<String, byte[]> h = opened(new RecordBatcher(8, 1 << 20, 10L))) {
            add(h, 7);
            h.setProcessingTime(10L);
            assertThat(sizes(h)).containsExactly(7);
        }
    }
}
