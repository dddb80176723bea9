package streamrec.flink;

import org.apache.flink.runtime.state.VoidNamespace;
import org.apache.flink.streaming.api.operators.AbstractStreamOperator;
import org.apache.flink.streaming.api.operators.InternalTimer;
import org.apache.flink.streaming.api.operators.OneInputStreamOperator;
import org.apache.flink.streaming.api.operators.Triggerable;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.types.Row;

/**
 * The per-event hot path's {@code streamrec_users_in_state}: keyed by user right after the Python
 * ranker (whose output stays in the subtask of its keys, so no shuffle), it passes each
 * recommendation row on and counts the users with a row in the last TTL of processing time (keyed
 * as the ranker is, by {@link PyFlinkRowKey}, never by the bare user id). The
 * ranker writes a user's state (with Flink's TTL, OnCreateAndWrite) for exactly the events it emits
 * a row for, so this counts the users whose Python state has not expired, up to the time a row
 * takes from the ranker's state write to here (one Python bundle at most). Python has no access to
 * its keyed state's keys, hence a JVM operator that can recount on restore (see
 * {@link UsersInState}).
 */
public final class UserCount extends AbstractStreamOperator<Row>
        implements OneInputStreamOperator<Row, Row>, Triggerable<Object, VoidNamespace> {
    private static final long serialVersionUID = 1L;

    private final long ttlMs;
    private transient UsersInState usersInState;

    public UserCount(long ttlMs) {
        this.ttlMs = Math.max(0L, ttlMs);
    }

    @Override
    public void open() throws Exception {
        super.open();
        usersInState = new UsersInState(ttlMs);
        usersInState.open(this, this);
    }

    /** Test access: the value of the {@code users_in_state} gauge. */
    long usersInState() {
        return usersInState.count();
    }

    @Override
    public void processElement(StreamRecord<Row> element) throws Exception {
        usersInState.written(usersInState.deadlineFromNow());
        output.collect(element);
    }

    @Override
    public void onProcessingTime(InternalTimer<Object, VoidNamespace> timer) throws Exception {
        usersInState.expire(timer.getTimestamp());
    }

    @Override
    public void onEventTime(InternalTimer<Object, VoidNamespace> timer) {}
}
