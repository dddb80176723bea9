package streamrec.flink;

import java.io.IOException;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.stream.Stream;
import org.apache.flink.api.common.state.MapState;
import org.apache.flink.api.common.state.MapStateDescriptor;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.PrimitiveArrayTypeInfo;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.core.memory.DataInputDeserializer;
import org.apache.flink.core.memory.DataOutputSerializer;
import org.apache.flink.metrics.Counter;
import org.apache.flink.metrics.Gauge;
import org.apache.flink.metrics.MetricGroup;
import org.apache.flink.runtime.state.VoidNamespace;
import org.apache.flink.runtime.state.VoidNamespaceSerializer;
import org.apache.flink.streaming.api.operators.AbstractStreamOperator;
import org.apache.flink.streaming.api.operators.InternalTimer;
import org.apache.flink.streaming.api.operators.InternalTimerService;
import org.apache.flink.streaming.api.operators.Triggerable;
import org.apache.flink.types.Row;

/**
 * Per-user pacing in front of {@link UserStateOperator}'s batches (docs/GUARANTEES.md, "Hot users and
 * wide partitions"): a user whose events arrive faster than {@code maxPerSecond} (processing time,
 * counted per {@link #TICK_MS}) has the excess parked in keyed state and released, in order, at that
 * rate by a keyed timer; their later events queue behind the parked ones. So one user's burst costs
 * ranking and the Cassandra writes at most {@code maxPerSecond} events a second, and the source reads
 * on past it: the other users, those on the hot user's own Kafka partition too, do not wait behind
 * its backlog. A normal user (a few events a second, or a replayed backlog of a few hundred) never
 * notices.
 *
 * <p>Parked events and their release timers are keyed state: checkpointed, restored and split by key
 * group on rescaling, so nothing is lost or doubled. At most {@code maxParked} events wait per user:
 * beyond that each new one first sends the user's oldest on at once, which is the backpressure the job
 * had without pacing, so the state stays bounded. At the end of a bounded input every parked event
 * goes on.
 */
final class UserPacing implements Triggerable<String, VoidNamespace> {
    static final long TICK_MS = 100L;
    static final String EVENTS = "paced-events";
    static final String RANGE = "paced-range";
    static final String TIMERS = "paced-release";

    /** Where an event goes on: the operator's own processing of an admitted event. */
    interface Next {
        void accept(Row event) throws Exception;
    }

    private final int perTick;
    private final long maxParked;
    private final AbstractStreamOperator<?> operator;
    private final Next next;

    private MapState<Long, byte[]> parked; // per user: sequence number -> encoded event
    private ValueState<long[]> range; // per user: {oldest, next} sequence numbers; absent: none parked
    private InternalTimerService<VoidNamespace> timers;
    private final HashSet<String> parkedUsers = new HashSet<>(); // this subtask's users with parked events
    private final HashMap<String, int[]> counts = new HashMap<>(); // events admitted per user this tick
    private long tickEnd = Long.MIN_VALUE;
    private final DataOutputSerializer out = new DataOutputSerializer(256);
    private final DataInputDeserializer in = new DataInputDeserializer();
    private Counter eventsPaced;

    /** {@code maxPerSecond} > 0 (a caller with pacing off keeps no UserPacing). */
    UserPacing(AbstractStreamOperator<?> operator, int maxPerSecond, long maxParked, Next next) {
        this.operator = operator;
        this.perTick = Math.max(1, (int) (maxPerSecond * TICK_MS / 1000L));
        this.maxParked = Math.max(1L, maxParked);
        this.next = next;
    }

    /** In the operator's open (after its restore): the state, the timers, the users still parked, the metrics. */
    void open() throws Exception {
        parked = operator.getRuntimeContext().getMapState(
                new MapStateDescriptor<>(EVENTS, Types.LONG, PrimitiveArrayTypeInfo.BYTE_PRIMITIVE_ARRAY_TYPE_INFO));
        range = operator.getRuntimeContext().getState(
                new ValueStateDescriptor<>(RANGE, PrimitiveArrayTypeInfo.LONG_PRIMITIVE_ARRAY_TYPE_INFO));
        timers = operator.getInternalTimerService(TIMERS, VoidNamespaceSerializer.INSTANCE, this);
        try (Stream<Object> keys = operator.getKeyedStateBackend().getKeys(RANGE, VoidNamespace.INSTANCE)) {
            keys.forEach(k -> parkedUsers.add((String) k));
        }
        MetricGroup group = JobMetrics.group(operator.getMetricGroup());
        eventsPaced = group.counter("events_paced");
        group.gauge("users_paced", (Gauge<Integer>) parkedUsers::size);
    }

    /** Test access: how many events the current key has parked. */
    long parkedOfCurrentUser() throws IOException {
        long[] r = range.value();
        return r == null ? 0L : r[1] - r[0];
    }

    /**
     * With the user's key current: true when the event goes on now; false when it was parked (and, at
     * the cap, the user's oldest parked event has gone on instead).
     */
    boolean admit(String userId, Row event) throws Exception {
        long now = operator.getProcessingTimeService().getCurrentProcessingTime();
        if (now >= tickEnd) {
            counts.clear();
            tickEnd = now + TICK_MS;
        }
        if (!parkedUsers.contains(userId)) {
            int[] n = counts.computeIfAbsent(userId, u -> new int[1]);
            if (n[0] < perTick) {
                n[0]++;
                return true;
            }
        }
        park(userId, event, now);
        return false;
    }

    private void park(String userId, Row event, long now) throws Exception {
        long[] r = range.value();
        if (r == null) {
            r = new long[] {0L, 0L};
            parkedUsers.add(userId);
            timers.registerProcessingTimeTimer(VoidNamespace.INSTANCE, now + TICK_MS);
        }
        parked.put(r[1]++, encode(event));
        eventsPaced.inc();
        Row oldest = null;
        if (r[1] - r[0] > maxParked) {
            oldest = decode(parked.get(r[0]));
            parked.remove(r[0]++);
        }
        range.update(r);
        if (oldest != null) {
            next.accept(oldest); // last: it may send a batch, which moves the current key
        }
    }

    @Override
    public void onProcessingTime(InternalTimer<String, VoidNamespace> timer) throws Exception {
        release(timer.getKey(), perTick, timer.getTimestamp() + TICK_MS);
    }

    @Override
    public void onEventTime(InternalTimer<String, VoidNamespace> timer) {}

    /** With the user's key current: up to {@code max} of their oldest parked events go on; the
     *  rest wait for a timer at {@code nextAt}. */
    private void release(String userId, long max, long nextAt) throws Exception {
        long[] r = range.value();
        if (r == null) {
            parkedUsers.remove(userId);
            return;
        }
        List<Row> going = new ArrayList<>();
        while (r[0] < r[1] && going.size() < max) {
            going.add(decode(parked.get(r[0])));
            parked.remove(r[0]++);
        }
        if (r[0] < r[1]) {
            range.update(r);
            timers.registerProcessingTimeTimer(VoidNamespace.INSTANCE, nextAt);
        } else {
            range.clear();
            parkedUsers.remove(userId);
        }
        for (Row e : going) {
            operator.setCurrentKey(userId); // an event going on may send a batch, which moves the key
            next.accept(e);
        }
    }

    /** The end of a bounded input: every parked event goes on now. */
    void releaseAll() throws Exception {
        for (String userId : new ArrayList<>(parkedUsers)) {
            operator.setCurrentKey(userId);
            release(userId, Long.MAX_VALUE, Long.MAX_VALUE);
        }
    }

    private byte[] encode(Row e) throws IOException {
        out.clear();
        UserHistory.writeString(out, (String) e.getField(0));
        UserHistory.writeString(out, (String) e.getField(1));
        out.writeLong((Long) e.getField(2));
        for (int i = 3; i < 6; i++) {
            UserHistory.writeString(out, (String) e.getField(i));
        }
        return out.getCopyOfBuffer();
    }

    private Row decode(byte[] b) throws IOException {
        in.setBuffer(b);
        String eventId = UserHistory.readString(in);
        String userId = UserHistory.readString(in);
        long ts = in.readLong();
        return Row.of(eventId, userId, ts, UserHistory.readString(in), UserHistory.readString(in),
                UserHistory.readString(in));
    }
}
