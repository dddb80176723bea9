package streamrec.flink;

import static org.assertj.core.api.Assertions.assertThatCode;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.Set;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.runtime.state.KeyGroupRangeAssignment;
import org.apache.flink.streaming.util.KeyedOneInputStreamOperatorTestHarness;
import org.apache.flink.types.Row;
import org.junit.jupiter.api.Test;

/**
 * The fault tests' failure inside checkpoint completion (STREAMREC_FAULT_FAIL_IN_CHECKPOINT_COMPLETE):
 * user-state throws from notifyCheckpointComplete once, on subtask 0's first attempt, at the first
 * checkpoint completed after N events; never when it is off, never on another subtask.
 */
class FailInCheckpointCompleteTest {
    private static final int MAX_PARALLELISM = 128;

    private static KeyedOneInputStreamOperatorTestHarness<String, Row, byte[]> harness(
            UserStateOperator op, int parallelism, int subtask) throws Exception {
        return new KeyedOneInputStreamOperatorTestHarness<>(op, new RowKey(1), Types.STRING, MAX_PARALLELISM,
                parallelism, subtask);
    }

    private static UserStateOperator userState() {
        return new UserStateOperator(Set.of("view"), 10, 0L, 1_000_000, 60_000L);
    }

    /** {@code events} events of users whose key groups the harness's subtask holds. */
    private static void send(KeyedOneInputStreamOperatorTestHarness<String, Row, byte[]> h, int events,
                             int parallelism, int subtask) throws Exception {
        int sent = 0;
        for (int i = 0; sent < events; i++) {
            String user = "u" + (i % 7);
            if (KeyGroupRangeAssignment.assignKeyToParallelOperator(user, MAX_PARALLELISM, parallelism) == subtask) {
                h.processElement(Row.of("e-" + i, user, 1_000L + i, "view", "p1", null), 0L);
                sent++;
            }
        }
    }

    private static void send(KeyedOneInputStreamOperatorTestHarness<String, Row, byte[]> h, int events)
            throws Exception {
        send(h, events, 1, 0);
    }

    private static void checkpoint(KeyedOneInputStreamOperatorTestHarness<String, Row, byte[]> h, long id)
            throws Exception {
        h.prepareSnapshotPreBarrier(id);
        h.snapshot(id, id);
        h.notifyOfCompletedCheckpoint(id);
    }

    @Test
    void subtaskZeroFailsOnceInTheFirstCheckpointCompletedAfterNEvents() throws Exception {
        try (KeyedOneInputStreamOperatorTestHarness<String, Row, byte[]> h =
                     harness(userState().failInCheckpointComplete(5), 1, 0)) {
            h.open();
            send(h, 4);
            checkpoint(h, 1L); // 4 events: not yet
            send(h, 1);
            h.prepareSnapshotPreBarrier(2L);
            h.snapshot(2L, 2L);
            assertThatThrownBy(() -> h.notifyOfCompletedCheckpoint(2L))
                    .hasMessageContaining("injected failure in notifyCheckpointComplete of checkpoint 2");
            send(h, 10);
            checkpoint(h, 3L); // once only
        }
    }

    @Test
    void neverWhenOffNorOnAnotherSubtask() throws Exception {
        // (attempts after the first: Flink's test harness runs attempt 0 only; the fault tests cover them)
        UserStateOperator[] ops = {userState(), userState().failInCheckpointComplete(1)};
        int[] subtasks = {0, 1};
        for (int i = 0; i < ops.length; i++) {
            try (KeyedOneInputStreamOperatorTestHarness<String, Row, byte[]> h = harness(ops[i], 2, subtasks[i])) {
                h.open();
                send(h, 5, 2, subtasks[i]);
                assertThatCode(() -> checkpoint(h, 1L)).doesNotThrowAnyException();
            }
        }
    }
}
