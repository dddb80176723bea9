package streamrec.flink;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;
import java.util.stream.Stream;
import org.apache.flink.api.common.TaskInfo;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.core.memory.DataOutputSerializer;
import org.apache.flink.metrics.Counter;
import org.apache.flink.metrics.Histogram;
import org.apache.flink.runtime.state.VoidNamespace;
import org.apache.flink.runtime.state.VoidNamespaceSerializer;
import org.apache.flink.streaming.api.operators.InternalTimer;
import org.apache.flink.streaming.api.operators.OneInputStreamOperator;
import org.apache.flink.streaming.api.operators.Triggerable;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.types.Row;

/**
 * The fast path's keyed operator: each user's {@link UserHistory} in Flink keyed state (checkpointed,
 * rescalable, with a processing-time TTL that frees idle users), updated with every event, and the
 * events packed into one byte[] per batch for the Python ranker, which then ranks each user of the
 * batch once, for their newest state.
 *
 * <p>A batch goes out at {@code maxEvents} events, {@code lingerMs} after its first event (longer
 * under load: {@link LingerBatcher}), before
 * every checkpoint barrier and at the end of the input, so no event waits in the buffer across a
 * barrier: a completed checkpoint covers exactly the events whose state it holds and whose batch
 * has gone downstream.
 *
 * <p>With {@link #paceUsers} a user's events beyond a rate wait in keyed state first ({@link UserPacing}),
 * so one hot user's burst does not hold the other users behind it.
 *
 * <p>Batch format (streamrec/model/batch.py, decode_rank_request): int32 length of the events
 * part, the events part (private to the JVM: {@link RecommendationUnbatcher} reads it back after
 * Python passed it through), then the users part as text: per user, in order of first appearance,
 * the fields {@link UserHistory#appendRequest} writes.
 */
public final class UserStateOperator extends LingerBatcher<byte[]>
        implements OneInputStreamOperator<Row, byte[]>, Triggerable<String, VoidNamespace> {
    private static final long serialVersionUID = 1L;
    /** The keyed state's name since the first release (savepoints restore it by name). */
    private static final String USER_STATE = "user";

    private final HashSet<String> movingTypes;
    private final int historySize;
    private final long ttlMs;
    private final int maxEvents;
    /** Test-only fault injection (failInCheckpointComplete); 0: off. */
    private long failInCheckpointCompleteAfter;
    /** Per-user pacing ({@link UserPacing}, {@link #paceUsers}); 0: off. */
    private int paceMaxPerSecond;
    private long paceMaxParked;

    private transient ValueState<byte[]> state;
    private transient LinkedHashMap<String, Slot> users; // this batch's users, their newest state
    private transient DataOutputSerializer events; // this batch's events part
    private transient DataOutputSerializer stateBytes; // reused to encode one user's state
    private transient int pendingEvents;
    private transient JobMetrics.Labelled eventsIn; // valid events by type
    private transient Counter usersStarted; // users whose state was empty (new, or dropped by the TTL)
    private transient Histogram batchEvents;
    private transient Histogram batchUsers;
    private transient UsersInState usersInState; // the exact count, and the users' expiry (UsersInState)
    private transient boolean failArmed; // failInCheckpointComplete: still to fail in this attempt
    private transient long eventsThisAttempt;
    private transient UserPacing pacing; // null: off

    private static final class Slot {
        final int index;
        final Object key; // the keyed state's key, to write the state back when the batch goes out
        UserHistory state;

        Slot(int index, Object key, UserHistory state) {
            this.index = index;
            this.key = key;
            this.state = state;
        }
    }

    public UserStateOperator(Set<String> movingTypes, int historySize, long ttlMs, int maxEvents, long lingerMs) {
        super(lingerMs);
        this.movingTypes = new HashSet<>(movingTypes);
        this.historySize = Math.max(1, historySize);
        this.ttlMs = Math.max(0L, ttlMs);
        this.maxEvents = Math.max(1, maxEvents);
    }

    /**
     * Test-only fault injection (docs/GUARANTEES.md, reliability target 3; STREAMREC_FAULT_FAIL_IN_CHECKPOINT_COMPLETE):
     * subtask 0 throws from {@link #notifyCheckpointComplete} on its attempt 0 only, once, at the
     * first checkpoint completed after it has processed {@code afterEvents} events. Flink fails the
     * task and restarts the job from that very checkpoint, which is complete although a task never
     * finished acknowledging its completion. 0: off (the default).
     */
    public UserStateOperator failInCheckpointComplete(long afterEvents) {
        this.failInCheckpointCompleteAfter = Math.max(0L, afterEvents);
        return this;
    }

    /**
     * Pace each user to at most {@code maxPerSecond} events a second, parking at most {@code maxParked}
     * of theirs ({@link UserPacing}; STREAMREC_USER_MAX_EVENTS_PER_S, STREAMREC_USER_MAX_PACED_EVENTS).
     * 0 events a second (the default here): no pacing.
     */
    public UserStateOperator paceUsers(int maxPerSecond, long maxParked) {
        this.paceMaxPerSecond = Math.max(0, maxPerSecond);
        this.paceMaxParked = maxParked;
        return this;
    }

    @Override
    public void open() throws Exception {
        super.open();
        TaskInfo task = getRuntimeContext().getTaskInfo();
        failArmed = failInCheckpointCompleteAfter > 0 && task.getAttemptNumber() == 0
                && task.getIndexOfThisSubtask() == 0;
        eventsThisAttempt = 0L;
        state = getRuntimeContext().getState(UserTtl.descriptor(USER_STATE, ttlMs));
        eventsIn = new JobMetrics.Labelled(getMetricGroup(), "type", "events_in");
        usersStarted = JobMetrics.group(getMetricGroup()).counter("users_started");
        batchEvents = JobMetrics.histogram(getMetricGroup(), "batch_events");
        batchUsers = JobMetrics.histogram(getMetricGroup(), "batch_users");
        usersInState = new UsersInState(ttlMs);
        usersInState.open(this, this);
        adoptUncountedUsers();
        reset();
        pacing = paceMaxPerSecond > 0 ? new UserPacing(this, paceMaxPerSecond, paceMaxParked, this::accept) : null;
        if (pacing != null) {
            pacing.open();
        }
    }

    /** Test access: the pacing, or null when it is off. */
    UserPacing pacing() {
        return pacing;
    }

    /** A savepoint of a version without the count holds users but no deadlines: count them. One
     *  more walk over the keys, only when the two key counts differ. */
    private void adoptUncountedUsers() throws Exception {
        long held;
        try (Stream<Object> keys =
                     getKeyedStateBackend().getKeys(USER_STATE, VoidNamespace.INSTANCE)) {
            held = keys.count();
        }
        if (held != usersInState.count()) {
            getKeyedStateBackend().applyToAllKeys(VoidNamespace.INSTANCE, VoidNamespaceSerializer.INSTANCE,
                    UserTtl.descriptor(USER_STATE, ttlMs), (key, s) -> usersInState.adopt());
        }
    }

    /** Test access: the value of the {@code users_in_state} gauge. */
    long usersInState() {
        return usersInState.count();
    }

    @Override
    public void onProcessingTime(InternalTimer<String, VoidNamespace> timer) throws Exception {
        long time = timer.getTimestamp();
        if (users.containsKey(timer.getKey())) {
            usersInState.postpone(time); // in the batch not yet sent: its write comes with emit
        } else if (usersInState.expire(time)) {
            state.clear();
        }
    }

    @Override
    public void onEventTime(InternalTimer<String, VoidNamespace> timer) {}

    private void reset() {
        users = new LinkedHashMap<>();
        if (events == null) {
            events = new DataOutputSerializer(64 * 1024);
            stateBytes = new DataOutputSerializer(4 * 1024);
        }
        events.clear();
        pendingEvents = 0;
    }

    @Override
    public void processElement(StreamRecord<Row> element) throws Exception {
        Row e = element.getValue();
        if (pacing == null || pacing.admit((String) e.getField(1), e)) {
            accept(e);
        }
    }

    /** The event into the user's state and the batch (with the user's key current). */
    private void accept(Row e) throws Exception {
        String eventId = (String) e.getField(0);
        String userId = (String) e.getField(1);
        long ts = (Long) e.getField(2);
        String type = (String) e.getField(3);
        String productId = (String) e.getField(4);
        String query = (String) e.getField(5);

        eventsIn.get(type).inc();
        eventsThisAttempt++;
        Slot slot = users.get(userId);
        UserHistory before;
        if (slot != null) {
            before = slot.state;
        } else {
            byte[] stored = state.value();
            if (stored == null) {
                usersStarted.inc();
            }
            before = UserHistory.decode(stored);
        }
        UserHistory after = before.apply(type, ts, productId, query, movingTypes, historySize, ttlMs);
        // the state is written once per user and batch, when the batch goes out (emit): a user's
        // later events of the batch start from slot.state, and a barrier or the end of the input
        // flushes the batch first, so a checkpoint never misses a write
        if (slot == null) {
            slot = new Slot(users.size(), getCurrentKey(), after);
            users.put(userId, slot);
        } else {
            slot.state = after;
        }

        events.writeInt(slot.index);
        events.writeLong(ts);
        events.writeLong(after.writeUs);
        UserHistory.writeString(events, eventId);
        UserHistory.writeString(events, userId);
        UserHistory.writeString(events, type);
        UserHistory.writeString(events, productId);
        UserHistory.writeString(events, query);
        pendingEvents++;

        added();
    }

    @Override
    public void endInput() throws Exception {
        if (pacing != null) {
            pacing.releaseAll();
        }
        super.endInput();
    }

    @Override
    double fill() {
        return pendingEvents / (double) maxEvents;
    }

    @Override
    public void notifyCheckpointComplete(long checkpointId) throws Exception {
        super.notifyCheckpointComplete(checkpointId);
        if (failArmed && eventsThisAttempt >= failInCheckpointCompleteAfter) {
            failArmed = false;
            throw new IllegalStateException("injected failure in notifyCheckpointComplete of checkpoint " + checkpointId
                    + " (fault_fail_once_after=" + failInCheckpointCompleteAfter + "): " + eventsThisAttempt
                    + " events processed; attempt 0 only");
        }
    }

    @Override
    void emit() throws Exception {
        if (pendingEvents == 0) {
            return;
        }
        StringBuilder text = new StringBuilder(users.size() * 128);
        long until = usersInState.deadlineFromNow(); // before the writes: never after Flink's TTL
        for (Map.Entry<String, Slot> u : users.entrySet()) {
            Slot slot = u.getValue();
            setCurrentKey(slot.key);
            state.update(slot.state.encode(stateBytes));
            usersInState.written(until);
            if (text.length() > 0) {
                text.append(BatchText.RS);
            }
            slot.state.appendRequest(text, u.getKey());
        }
        byte[] userPart = text.toString().getBytes(StandardCharsets.UTF_8);
        int eventLength = events.length();
        ByteBuffer out = ByteBuffer.allocate(4 + eventLength + userPart.length);
        out.putInt(eventLength).put(events.getSharedBuffer(), 0, eventLength).put(userPart);
        output.collect(new StreamRecord<>(out.array()));
        batchEvents.update(pendingEvents);
        batchUsers.update(users.size());
        reset();
    }
}
