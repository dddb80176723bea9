package streamrec.flink;

import org.apache.flink.streaming.api.operators.AbstractStreamOperator;
import org.apache.flink.streaming.api.operators.BoundedOneInput;

/**
 * What the fast path's batching operators share: a batch goes out when the subclass says it is full,
 * {@code lingerMs} after its first element, before every checkpoint barrier and at the end of the
 * input. So nothing waits in a buffer across a barrier, and a completed checkpoint covers exactly
 * the elements whose batch has gone downstream.
 */
abstract class LingerBatcher<OUT> extends AbstractStreamOperator<OUT> implements BoundedOneInput {
    private static final long serialVersionUID = 1L;

    private final long lingerMs;
    private transient long timerAt;

    LingerBatcher(long lingerMs) {
        this.lingerMs = Math.max(0L, lingerMs);
    }

    @Override
    public void open() throws Exception {
        super.open();
        timerAt = -1L;
    }

    /** Hand the pending batch on (nothing when empty). */
    abstract void emit() throws Exception;

    /** Call after adding an element: emits a full batch, or makes sure the linger timer runs. */
    final void added(boolean full) throws Exception {
        if (full) {
            emit();
        } else if (timerAt < 0) {
            // the callback runs in the task's mailbox thread, like processElement: no locking needed
            timerAt = getProcessingTimeService().getCurrentProcessingTime() + lingerMs;
            getProcessingTimeService().registerTimer(timerAt, t -> {
                timerAt = -1L;
                emit();
            });
        }
    }

    @Override
    public void prepareSnapshotPreBarrier(long checkpointId) throws Exception {
        super.prepareSnapshotPreBarrier(checkpointId);
        emit();
    }

    @Override
    public void endInput() throws Exception {
        emit();
    }

    @Override
    public void finish() throws Exception {
        emit();
        super.finish();
    }
}
