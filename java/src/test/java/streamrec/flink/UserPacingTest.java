package streamrec.flink;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.ByteArrayInputStream;
import java.io.DataInputStream;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.stream.Collectors;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.runtime.checkpoint.OperatorSubtaskState;
import org.apache.flink.streaming.util.KeyedOneInputStreamOperatorTestHarness;
import org.apache.flink.types.Row;
import org.junit.jupiter.api.Test;

/**
 * A hot user is paced (UserPacing in UserStateOperator): beyond its rate a user's events wait in keyed
 * state and go on, in order, at that rate, while every other user's events go on at once; nothing is
 * lost or doubled across a checkpoint and restore, the parked events are capped, and the end of a
 * bounded input sends every parked event on.
 */
class UserPacingTest {
    /** 100 events a second: 10 per 100 ms tick. */
    private static final int RATE = 100;
    private static final int PER_TICK = 10;

    private static UserStateOperator paced(long maxParked) {
        return new UserStateOperator(Set.of("view"), 10, 0L, 1_000_000, 60_000L).paceUsers(RATE, maxParked);
    }

    private static KeyedOneInputStreamOperatorTestHarness<String, Row, byte[]> harness(UserStateOperator op)
            throws Exception {
        KeyedOneInputStreamOperatorTestHarness<String, Row, byte[]> h =
                new KeyedOneInputStreamOperatorTestHarness<>(op, new RowKey(1), Types.STRING);
        h.setProcessingTime(0L);
        return h;
    }

    private static void send(KeyedOneInputStreamOperatorTestHarness<String, Row, byte[]> h, String user, int from,
                             int count) throws Exception {
        for (int i = from; i < from + count; i++) {
            h.processElement(Row.of(user + "-" + i, user, 1_000L + i, "view", "p1", null), 0L);
        }
    }

    /** The event ids of every batch the operator sent, in order (the events part of the batch format). */
    private static List<String> sentIds(KeyedOneInputStreamOperatorTestHarness<String, Row, byte[]> h)
            throws Exception {
        h.prepareSnapshotPreBarrier(0L); // the batch still lingering goes out
        List<String> ids = new ArrayList<>();
        for (byte[] batch : h.extractOutputValues()) {
            int length = ByteBuffer.wrap(batch).getInt();
            DataInputStream in = new DataInputStream(new ByteArrayInputStream(batch, 4, length));
            while (in.available() > 0) {
                in.readInt(); // slot
                in.readLong(); // ts
                in.readLong(); // write time
                ids.add(UserHistory.readString(in));
                for (int f = 0; f < 4; f++) {
                    UserHistory.readString(in); // user, type, product, query
                }
            }
        }
        h.getOutput().clear();
        return ids;
    }

    private static List<String> ids(String user, int from, int count) {
        List<String> out = new ArrayList<>();
        for (int i = from; i < from + count; i++) {
            out.add(user + "-" + i);
        }
        return out;
    }

    private static long parked(UserStateOperator op, String user) throws Exception {
        op.setCurrentKey(user);
        return op.pacing().parkedOfCurrentUser();
    }

    @Test
    void aBurstGoesOnAtTheUsersRateInOrderWhileOtherUsersGoOnAtOnce() throws Exception {
        UserStateOperator op = paced(1_000L);
        try (KeyedOneInputStreamOperatorTestHarness<String, Row, byte[]> h = harness(op)) {
            h.open();
            send(h, "hot", 0, 35);
            send(h, "calm", 0, 3);
            List<String> first = sentIds(h);
            assertThat(first).containsExactlyElementsOf(concat(ids("hot", 0, PER_TICK), ids("calm", 0, 3)));
            assertThat(parked(op, "hot")).isEqualTo(35 - PER_TICK);
            send(h, "hot", 35, 1); // while parked, a new event queues behind the parked ones
            assertThat(parked(op, "hot")).isEqualTo(26);

            h.setProcessingTime(100L);
            assertThat(sentIds(h)).containsExactlyElementsOf(ids("hot", PER_TICK, PER_TICK));
            send(h, "calm", 3, 1); // still at once
            assertThat(sentIds(h)).containsExactly("calm-3");
            h.setProcessingTime(200L);
            h.setProcessingTime(300L);
            assertThat(sentIds(h)).containsExactlyElementsOf(ids("hot", 2 * PER_TICK, 16));
            assertThat(parked(op, "hot")).isZero();
            assertThat(h.numKeyedStateEntries()).as("two users' state and deadline: nothing parked").isEqualTo(4);

            h.setProcessingTime(400L); // a new tick: the user is under the rate again
            send(h, "hot", 36, PER_TICK);
            assertThat(sentIds(h)).containsExactlyElementsOf(ids("hot", 36, PER_TICK));
        }
    }

    @Test
    void parkedEventsSurviveARestoreAndGoOnOnceEach() throws Exception {
        OperatorSubtaskState snapshot;
        List<String> before;
        try (KeyedOneInputStreamOperatorTestHarness<String, Row, byte[]> h = harness(paced(1_000L))) {
            h.open();
            send(h, "hot", 0, 30);
            before = sentIds(h); // the barrier's flush: the first tick's events went on
            snapshot = h.snapshot(1L, 0L);
            h.setProcessingTime(100L); // after the checkpoint, lost with the failure
        }
        UserStateOperator op = paced(1_000L);
        try (KeyedOneInputStreamOperatorTestHarness<String, Row, byte[]> h = harness(op)) {
            h.initializeState(snapshot);
            h.open();
            assertThat(parked(op, "hot")).isEqualTo(20);
            h.setProcessingTime(100L);
            h.setProcessingTime(200L);
            List<String> after = sentIds(h);
            assertThat(concat(before, after)).containsExactlyElementsOf(ids("hot", 0, 30));
            assertThat(parked(op, "hot")).isZero();
        }
    }

    @Test
    void atTheCapTheOldestParkedEventGoesOnAtOnceSoStateStaysBounded() throws Exception {
        UserStateOperator op = paced(5L);
        try (KeyedOneInputStreamOperatorTestHarness<String, Row, byte[]> h = harness(op)) {
            h.open();
            send(h, "hot", 0, 40);
            assertThat(parked(op, "hot")).isEqualTo(5);
            List<String> sent = sentIds(h);
            h.setProcessingTime(100L);
            sent.addAll(sentIds(h));
            assertThat(sent).containsExactlyElementsOf(ids("hot", 0, 40));
        }
    }

    @Test
    void theEndOfABoundedInputSendsEveryParkedEventOn() throws Exception {
        UserStateOperator op = paced(1_000L);
        try (KeyedOneInputStreamOperatorTestHarness<String, Row, byte[]> h = harness(op)) {
            h.open();
            send(h, "hot", 0, 50);
            send(h, "other", 0, 50);
            h.endInput();
            List<String> sent = sentIds(h);
            assertThat(sent).hasSize(100);
            assertThat(sent.stream().filter(id -> id.startsWith("hot-")).collect(Collectors.toList()))
                    .containsExactlyElementsOf(ids("hot", 0, 50));
            assertThat(sent.stream().filter(id -> id.startsWith("other-")).collect(Collectors.toList()))
                    .containsExactlyElementsOf(ids("other", 0, 50));
            assertThat(parked(op, "hot") + parked(op, "other")).isZero();
        }
    }

    @Test
    void withoutPacingAUsersEventsAllGoOnAtOnce() throws Exception {
        UserStateOperator op = new UserStateOperator(Set.of("view"), 10, 0L, 1_000_000, 60_000L);
        try (KeyedOneInputStreamOperatorTestHarness<String, Row, byte[]> h = harness(op)) {
            h.open();
            send(h, "hot", 0, 500);
            assertThat(sentIds(h)).containsExactlyElementsOf(ids("hot", 0, 500));
            assertThat(op.pacing()).isNull();
        }
    }

    private static List<String> concat(List<String> a, List<String> b) {
        List<String> out = new ArrayList<>(a);
        out.addAll(b);
        return out;
    }
}
