package streamrec.flink;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.runtime.checkpoint.OperatorSubtaskState;
import org.apache.flink.streaming.api.operators.AbstractStreamOperator;
import org.apache.flink.streaming.api.operators.OneInputStreamOperator;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.streaming.util.AbstractStreamOperatorTestHarness;
import org.apache.flink.streaming.util.KeyedOneInputStreamOperatorTestHarness;
import org.apache.flink.types.Row;
import org.junit.jupiter.api.Test;

/**
 * {@code streamrec_users_in_state} (UsersInState) is exact: users come in with their batch, leave
 * when their idle TTL ends (and their state with them), survive a restore and split exactly on
 * rescaling. Both operators that keep it: the fast path's UserStateOperator and the per-event
 * path's UserCount.
 */
class UsersInStateTest {
    private static final long TTL = 1_000L;
    private static final int MAX_PARALLELISM = 128;

    private static Row event(String user, long ts) {
        return Row.of("e-" + user + "-" + ts, user, ts, "view", "p1", null);
    }

    private static UserStateOperator userState() {
        return new UserStateOperator(Set.of("view"), 10, TTL, 1_000_000, 60_000L);
    }

    private static KeyedOneInputStreamOperatorTestHarness<String, Row, byte[]> harness(UserStateOperator op)
            throws Exception {
        return new KeyedOneInputStreamOperatorTestHarness<>(op, new RowKey(1), Types.STRING);
    }

    /** Processing time for the timers and for Flink's TTL alike. */
    private static void at(AbstractStreamOperatorTestHarness<?> h, long time) throws Exception {
        h.setStateTtlProcessingTime(time);
        h.setProcessingTime(time);
    }

    private static void send(KeyedOneInputStreamOperatorTestHarness<?, Row, ?> h, String... users)
            throws Exception {
        for (String u : users) {
            h.processElement(event(u, 1_000L), 0L);
        }
    }

    @Test
    void usersCountWhenTheirBatchGoesOutAndLeaveWithTheirStateWhenTheTtlEnds() throws Exception {
        UserStateOperator op = userState();
        try (KeyedOneInputStreamOperatorTestHarness<String, Row, byte[]> h = harness(op)) {
            at(h, 0L);
            h.open();
            assertThat(op.usersInState()).isZero();
            send(h, "a", "b", "c", "a");
            assertThat(op.usersInState()).isZero(); // their state is written when the batch goes out
            h.prepareSnapshotPreBarrier(1L);
            assertThat(op.usersInState()).isEqualTo(3);
            at(h, 500L);
            send(h, "a");
            h.prepareSnapshotPreBarrier(2L); // a's state written again at 500: expires at 1500
            at(h, 999L);
            assertThat(op.usersInState()).isEqualTo(3);
            at(h, 1_000L);
            assertThat(op.usersInState()).isEqualTo(1);
            assertThat(h.numKeyedStateEntries()).as("a's state and deadline only").isEqualTo(2);
            at(h, 1_499L);
            assertThat(op.usersInState()).isEqualTo(1);
            at(h, 1_500L);
            assertThat(op.usersInState()).isZero();
            assertThat(h.numKeyedStateEntries()).isZero();
            send(h, "b"); // back after the TTL: a new user again
            h.endInput();
            assertThat(op.usersInState()).isEqualTo(1);
        }
    }

    @Test
    void aUserWhoseTimerFiresWhileTheirEventWaitsInTheBatchStays() throws Exception {
        UserStateOperator op = userState();
        try (KeyedOneInputStreamOperatorTestHarness<String, Row, byte[]> h = harness(op)) {
            at(h, 0L);
            h.open();
            send(h, "a");
            h.prepareSnapshotPreBarrier(1L);
            at(h, 900L);
            send(h, "a"); // not sent yet at 1000, when a's first deadline passes
            at(h, 1_000L);
            assertThat(op.usersInState()).isEqualTo(1);
            h.prepareSnapshotPreBarrier(2L);
            at(h, 1_999L);
            assertThat(op.usersInState()).isEqualTo(1);
            assertThat(h.numKeyedStateEntries()).isEqualTo(2);
            at(h, 2_000L);
            assertThat(op.usersInState()).isZero();
            assertThat(h.numKeyedStateEntries()).isZero();
        }
    }

    @Test
    void aRestoredOperatorCountsItsUsersBeforeAnyEventAndExpiresThemOnTime() throws Exception {
        OperatorSubtaskState snapshot;
        try (KeyedOneInputStreamOperatorTestHarness<String, Row, byte[]> h = harness(userState())) {
            at(h, 0L);
            h.open();
            send(h, "a", "b", "c");
            h.prepareSnapshotPreBarrier(1L);
            at(h, 400L);
            send(h, "c");
            h.prepareSnapshotPreBarrier(2L);
            snapshot = h.snapshot(2L, 400L);
        }
        UserStateOperator op = userState();
        try (KeyedOneInputStreamOperatorTestHarness<String, Row, byte[]> h = harness(op)) {
            at(h, 400L);
            h.initializeState(snapshot);
            h.open();
            assertThat(op.usersInState()).isEqualTo(3);
            at(h, 1_000L);
            assertThat(op.usersInState()).isEqualTo(1); // c, written at 400
            at(h, 1_400L);
            assertThat(op.usersInState()).isZero();
            assertThat(h.numKeyedStateEntries()).isZero();
        }
    }

    @Test
    void onRescalingTheSubtasksSplitTheUsersExactly() throws Exception {
        List<String> users = new ArrayList<>();
        for (int i = 0; i < 50; i++) {
            users.add("user-" + i);
        }
        OperatorSubtaskState snapshot;
        try (KeyedOneInputStreamOperatorTestHarness<String, Row, byte[]> h = new KeyedOneInputStreamOperatorTestHarness<>(
                userState(), new RowKey(1), Types.STRING, MAX_PARALLELISM, 1, 0)) {
            at(h, 0L);
            h.open();
            send(h, users.toArray(new String[0]));
            h.prepareSnapshotPreBarrier(1L);
            snapshot = h.snapshot(1L, 0L);
        }
        for (int newParallelism : new int[] {2, 3}) {
            long sum = 0;
            for (int i = 0; i < newParallelism; i++) {
                UserStateOperator op = userState();
                try (KeyedOneInputStreamOperatorTestHarness<String, Row, byte[]> h =
                             new KeyedOneInputStreamOperatorTestHarness<>(op, new RowKey(1), Types.STRING,
                                     MAX_PARALLELISM, newParallelism, i)) {
                    at(h, 0L);
                    h.initializeState(AbstractStreamOperatorTestHarness.repartitionOperatorState(
                            snapshot, MAX_PARALLELISM, 1, newParallelism, i));
                    h.open();
                    assertThat(op.usersInState()).as("subtask %d of %d", i, newParallelism).isPositive();
                    assertThat(h.numKeyedStateEntries()).isEqualTo(2 * (int) op.usersInState());
                    sum += op.usersInState();
                    at(h, TTL); // the restored timers of this subtask's key groups free its users
                    assertThat(op.usersInState()).isZero();
                    assertThat(h.numKeyedStateEntries()).isZero();
                }
            }
            assertThat(sum).as("parallelism %d", newParallelism).isEqualTo(users.size());
        }
    }

    /** The user state as a version without the count left it: no deadlines, no timers. */
    static final class UncountedUserState extends AbstractStreamOperator<byte[]>
            implements OneInputStreamOperator<Row, byte[]> {
        private static final long serialVersionUID = 1L;
        private transient ValueState<byte[]> state;

        @Override
        public void open() throws Exception {
            super.open();
            state = getRuntimeContext().getState(UserTtl.descriptor("user", TTL));
        }

        @Override
        public void processElement(StreamRecord<Row> element) throws Exception {
            state.update(new UserHistory().encode());
        }
    }

    @Test
    void usersOfASavepointWithoutTheCountAreCountedAndExpireATtlAfterTheRestore() throws Exception {
        OperatorSubtaskState snapshot;
        try (KeyedOneInputStreamOperatorTestHarness<String, Row, byte[]> h = new KeyedOneInputStreamOperatorTestHarness<>(
                new UncountedUserState(), new RowKey(1), Types.STRING)) {
            at(h, 0L);
            h.open();
            send(h, "a", "b");
            snapshot = h.snapshot(1L, 0L);
        }
        UserStateOperator op = userState();
        try (KeyedOneInputStreamOperatorTestHarness<String, Row, byte[]> h = harness(op)) {
            at(h, 500L);
            h.initializeState(snapshot);
            h.open();
            assertThat(op.usersInState()).isEqualTo(2);
            at(h, 1_499L);
            assertThat(op.usersInState()).isEqualTo(2);
            at(h, 1_500L);
            assertThat(op.usersInState()).isZero();
            assertThat(h.numKeyedStateEntries()).isZero();
        }
    }

    private static KeyedOneInputStreamOperatorTestHarness<Row, Row, Row> userCount(UserCount op) throws Exception {
        // keyed as the Python ranker's input is (PyFlink's key_by): the user id in a one-field Row
        return new KeyedOneInputStreamOperatorTestHarness<>(op, new PyFlinkRowKey(1), Types.ROW(Types.STRING));
    }

    @Test
    void thePerEventPathsCounterCountsUsersWithARowInTheLastTtlAndSurvivesARestore() throws Exception {
        OperatorSubtaskState snapshot;
        UserCount op = new UserCount(TTL);
        try (KeyedOneInputStreamOperatorTestHarness<Row, Row, Row> h = userCount(op)) {
            at(h, 0L);
            h.open();
            send(h, "a", "b", "a");
            assertThat(op.usersInState()).isEqualTo(2);
            assertThat(h.extractOutputValues()).hasSize(3); // rows pass through
            at(h, 600L);
            send(h, "b");
            at(h, 1_000L);
            assertThat(op.usersInState()).isEqualTo(1);
            snapshot = h.snapshot(1L, 1_000L);
        }
        UserCount restored = new UserCount(TTL);
        try (KeyedOneInputStreamOperatorTestHarness<Row, Row, Row> h = userCount(restored)) {
            at(h, 1_000L);
            h.initializeState(snapshot);
            h.open();
            assertThat(restored.usersInState()).isEqualTo(1);
            at(h, 1_600L);
            assertThat(restored.usersInState()).isZero();
            assertThat(h.numKeyedStateEntries()).isZero();
        }
    }
}
