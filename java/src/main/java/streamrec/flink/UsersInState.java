package streamrec.flink;

import java.io.IOException;
import java.util.stream.Stream;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.metrics.Gauge;
import org.apache.flink.runtime.state.VoidNamespace;
import org.apache.flink.runtime.state.VoidNamespaceSerializer;
import org.apache.flink.streaming.api.operators.AbstractStreamOperator;
import org.apache.flink.streaming.api.operators.InternalTimerService;
import org.apache.flink.streaming.api.operators.Triggerable;

/**
 * The exact number of users a keyed operator holds state for, as the gauge
 * {@code streamrec_users_in_state} (one series per subtask; their sum is the job's users).
 *
 * <p>Flink's state TTL frees an idle user silently (on access, in a full snapshot, in the heap
 * backend's incremental cleanup), so a count kept beside it would drift. Here a user's expiry is
 * this class's own: each write sets the user's deadline (processing time, write + TTL) in a small
 * keyed state, and one keyed processing-time timer per user, re-armed lazily when it fires early,
 * tells the operator to drop the user. The count changes only where that state is created or
 * cleared, and on restore it is recounted from the keys of that state, which Flink has already split
 * by key group: exact after a restore and after rescaling, at the cost of one walk over this
 * subtask's users per (re)start. Flink's TTL stays on the user state as a backstop (and keeps
 * savepoints of earlier versions compatible); the deadline is taken before the user state is
 * written, so it never lies after Flink's.
 */
final class UsersInState {
    static final String STATE = "user-expires";
    static final String TIMERS = "user-expiry";

    private final long ttlMs;
    private ValueState<Long> deadline; // per user: when their state expires (Long.MAX_VALUE: no TTL)
    private InternalTimerService<VoidNamespace> timers;
    private long count;

    UsersInState(long ttlMs) {
        this.ttlMs = Math.max(0L, ttlMs);
    }

    /** In the operator's open (after its restore): the state, the timers, the recount, the gauge. */
    void open(AbstractStreamOperator<?> operator, Triggerable<?, VoidNamespace> onExpiry) throws Exception {
        deadline = operator.getRuntimeContext().getState(new ValueStateDescriptor<>(STATE, Types.LONG));
        timers = operator.getInternalTimerService(TIMERS, VoidNamespaceSerializer.INSTANCE, onExpiry);
        try (Stream<Object> keys = operator.getKeyedStateBackend().getKeys(STATE, VoidNamespace.INSTANCE)) {
            count = keys.count();
        }
        JobMetrics.group(operator.getMetricGroup()).gauge("users_in_state", (Gauge<Long>) this::count);
    }

    long count() {
        return count;
    }

    /** The deadline a write now would get: take it before writing the user's state (see above). */
    long deadlineFromNow() {
        return ttlMs > 0 ? timers.currentProcessingTime() + ttlMs : Long.MAX_VALUE;
    }

    /** The current key's state was written with {@code until} from {@link #deadlineFromNow}. */
    void written(long until) throws IOException {
        Long before = deadline.value();
        if (before == null) {
            count++;
            if (until != Long.MAX_VALUE) {
                timers.registerProcessingTimeTimer(VoidNamespace.INSTANCE, until);
            }
        } else if (before == until) {
            return; // no TTL, or a second write in the same millisecond
        }
        deadline.update(until);
    }

    /**
     * A timer of the current key fired at {@code time}: true when the user's state is to be dropped
     * now (then they are no longer counted); false when written since, and the timer is re-armed for
     * the newer deadline.
     */
    boolean expire(long time) throws IOException {
        Long until = deadline.value();
        if (until == null) {
            return false;
        }
        if (until > time) {
            timers.registerProcessingTimeTimer(VoidNamespace.INSTANCE, until);
            return false;
        }
        deadline.clear();
        count--;
        return true;
    }

    /** Keep the current key's user past a timer at {@code time} (their newer write is on its way). */
    void postpone(long time) throws IOException {
        long until = time + Math.max(1L, ttlMs);
        deadline.update(until);
        timers.registerProcessingTimeTimer(VoidNamespace.INSTANCE, until);
    }

    /** Users of an earlier version's savepoint (state but no deadline): counted, and expiring a TTL from now. */
    void adopt() throws IOException {
        if (deadline.value() == null) {
            written(deadlineFromNow());
        }
    }
}
