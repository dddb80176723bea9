package streamrec.flink;

import org.apache.flink.streaming.api.operators.AbstractStreamOperator;
import org.apache.flink.streaming.api.operators.BoundedOneInput;

/**
 * What the fast path's batching operators share: a batch goes out when it is full, {@code lingerMs}
 * after its first element, before every checkpoint barrier and at the end of the input. So nothing
 * waits in a buffer across a barrier, and a completed checkpoint covers exactly the elements whose
 * batch has gone downstream.
 *
 * <p>Under load a batch may linger longer, up to {@code maxLingerMs} ({@link #lingerUpTo}): when it
 * is full enough at {@code lingerMs} to fill by {@code maxLingerMs} at the rate it filled so far
 * ({@code fill * maxLingerMs >= lingerMs}). A quiet stream keeps the short linger (freshness); a busy
 * one gets full batches, as at its maximum rate, instead of smaller ones that cost more per element
 * (each batch is a call into Python, and the ranker ranks each user once per batch): `streamrec bench
 * pieces` measured the ranker at ~60 us per event in batches of 150 events and ~40 us in batches of
 * 350-512 (BENCHMARKS.md, "Batch size and CPU per event").
 */
abstract class LingerBatcher<OUT> extends AbstractStreamOperator<OUT> implements BoundedOneInput {
    private static final long serialVersionUID = 1L;

    private final long lingerMs;
    private long maxLingerMs;
    /** The pending batch's number; a timer of an earlier batch (gone full or at a barrier) sees another. */
    private transient long batch;
    private transient boolean pending;

    LingerBatcher(long lingerMs) {
        this.lingerMs = Math.max(0L, lingerMs);
        this.maxLingerMs = this.lingerMs;
    }

    /** Let a busy batch linger up to {@code maxLingerMs} (see the class comment); at most
     *  {@code lingerMs} (the default) keeps the linger fixed. */
    public LingerBatcher<OUT> lingerUpTo(long maxLingerMs) {
        this.maxLingerMs = Math.max(lingerMs, maxLingerMs);
        return this;
    }

    @Override
    public void open() throws Exception {
        super.open();
        batch = 0L;
        pending = false;
    }

    /** Hand the pending batch on (nothing when empty). */
    abstract void emit() throws Exception;

    /** How full the pending batch is: 1 or more is full. */
    abstract double fill();

    /** Call after adding an element: emits a full batch, or starts the linger of a new one. */
    final void added() throws Exception {
        if (!pending) {
            pending = true;
            long mine = batch;
            long start = getProcessingTimeService().getCurrentProcessingTime();
            // the callbacks run in the task's mailbox thread, like processElement: no locking needed
            getProcessingTimeService().registerTimer(start + lingerMs, t -> lingered(mine, start));
        }
        if (fill() >= 1.0) {
            flush();
        }
    }

    private void lingered(long mine, long start) throws Exception {
        if (mine != batch) {
            return; // that batch has gone already
        }
        if (maxLingerMs > lingerMs && fill() * maxLingerMs >= lingerMs) {
            getProcessingTimeService().registerTimer(start + maxLingerMs, t -> {
                if (mine == batch) {
                    flush();
                }
            });
            return;
        }
        flush();
    }

    private void flush() throws Exception {
        if (pending) {
            pending = false;
            batch++;
        }
        emit();
    }

    @Override
    public void prepareSnapshotPreBarrier(long checkpointId) throws Exception {
        super.prepareSnapshotPreBarrier(checkpointId);
        flush();
    }

    @Override
    public void endInput() throws Exception {
        flush();
    }

    @Override
    public void finish() throws Exception {
        flush();
        super.finish();
    }
}
