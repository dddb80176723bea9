package streamrec.flink;

import java.util.ArrayList;
import java.util.List;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.state.ListState;
import org.apache.flink.api.common.state.ListStateDescriptor;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.runtime.state.VoidNamespace;
import org.apache.flink.runtime.state.VoidNamespaceSerializer;
import org.apache.flink.streaming.api.functions.co.KeyedCoProcessFunction;
import org.apache.flink.streaming.api.operators.BoundedMultiInput;
import org.apache.flink.streaming.api.operators.co.KeyedCoProcessOperator;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;
import org.apache.flink.util.OutputTag;

/**
 * The late catalog (docs/GUARANTEES.md, "Events for a product not yet known"): an event whose
 * product the parser did not know yet waits here, keyed by product id, until the product arrives
 * on the products stream or {@code waitMs} of processing time have passed.
 *
 * <p>Input 1: the parser's pending rows, {@code event_id, user_id, ts, type, product_id, query,
 * dead_letter} (the event, then the exact UNKNOWN_PRODUCT dead letter the parser would have
 * written: Java never builds a letter itself, so it stays byte for byte the parser's). Input 2:
 * the parsed product updates ({@code kind, key, payload}, keyed by {@code key}). Output: the event
 * rows ({@code EVENT_FIELDS}), in the order their events arrived; the letters of events whose wait
 * ended go to {@link #deadLetters()}.
 *
 * <p>Everything lives in keyed state (the waiting events with their deadlines, and whether the
 * product is known) and processing-time timers, so a checkpoint holds them and a restore resumes
 * the wait. A known product stays known: an event that reaches this operator after its product
 * (the parser and this operator learn of products through different channels) passes at once.
 *
 * <p>Run it as {@link #operator(long)}: at the end of a bounded input Flink fires no pending
 * processing-time timer, so the operator dead-letters what still waits once both inputs have ended
 * (no product can come any more), as the timers would have.
 */
public final class AwaitProducts extends KeyedCoProcessFunction<String, Row, Row, Row> {
    private static final long serialVersionUID = 1L;

    /** Fields of an event row; the pending row adds the dead letter after them. */
    static final int EVENT_FIELDS = 6;
    static final int DEAD_LETTER = EVENT_FIELDS;
    /** The code of every letter this operator writes (the parser's, carried with the event). */
    static final String UNKNOWN_PRODUCT = "UNKNOWN_PRODUCT";
    /** A waiting event in state: the pending row's fields, then its deadline (processing time, ms). */
    static final TypeInformation<Row> WAITING = Types.ROW(Types.STRING, Types.STRING, Types.LONG, Types.STRING,
            Types.STRING, Types.STRING, Types.STRING, Types.LONG);

    private static final OutputTag<String> DEAD_LETTERS = new OutputTag<>("dead-letters", Types.STRING);
    private static final ListStateDescriptor<Row> WAITING_STATE = new ListStateDescriptor<>("waiting", WAITING);

    private final long waitMs;
    private transient ValueState<Boolean> known;
    private transient ListState<Row> waiting;
    /** streamrec_error_dead_letters{error="UNKNOWN_PRODUCT"}, as the parser counts its letters (JobMetrics). */
    private transient JobMetrics.Labelled deadLetterCount;

    public AwaitProducts(long waitMs) {
        if (waitMs <= 0) {
            throw new IllegalArgumentException("waitMs must be positive (0 means: no operator, dead-letter at once)");
        }
        this.waitMs = waitMs;
    }

    /** The side output of the dead letters of events whose product never came within the wait. */
    public static OutputTag<String> deadLetters() {
        return DEAD_LETTERS;
    }

    @Override
    public void open(OpenContext context) throws Exception {
        known = getRuntimeContext().getState(new ValueStateDescriptor<>("known", Types.BOOLEAN));
        waiting = getRuntimeContext().getListState(WAITING_STATE);
        deadLetterCount = new JobMetrics.Labelled(getRuntimeContext().getMetricGroup(), "error", "dead_letters");
    }

    @Override
    public void processElement1(Row pending, Context ctx, Collector<Row> out) throws Exception {
        if (Boolean.TRUE.equals(known.value())) {
            out.collect(event(pending));
            return;
        }
        long deadline = ctx.timerService().currentProcessingTime() + waitMs;
        Row entry = Row.withPositions(EVENT_FIELDS + 2);
        for (int i = 0; i <= DEAD_LETTER; i++) {
            entry.setField(i, pending.getField(i));
        }
        entry.setField(DEAD_LETTER + 1, deadline);
        waiting.add(entry);
        // one timer per millisecond at most: Flink deduplicates timers of the same key and time
        ctx.timerService().registerProcessingTimeTimer(deadline);
    }

    @Override
    public void processElement2(Row product, Context ctx, Collector<Row> out) throws Exception {
        if (!Boolean.TRUE.equals(known.value())) {
            known.update(true);
        }
        Iterable<Row> all = waiting.get();
        if (all == null) {
            return;
        }
        boolean any = false;
        for (Row entry : all) {
            any = true;
            out.collect(event(entry));
            ctx.timerService().deleteProcessingTimeTimer((Long) entry.getField(DEAD_LETTER + 1));
        }
        if (any) {
            waiting.clear();
        }
    }

    @Override
    public void onTimer(long timestamp, OnTimerContext ctx, Collector<Row> out) throws Exception {
        Iterable<Row> all = waiting.get();
        if (all == null) {
            return;
        }
        List<Row> keep = new ArrayList<>();
        boolean expired = false;
        for (Row entry : all) {
            if ((Long) entry.getField(DEAD_LETTER + 1) <= timestamp) {
                ctx.output(DEAD_LETTERS, (String) entry.getField(DEAD_LETTER));
                deadLetterCount.get(UNKNOWN_PRODUCT).inc();
                expired = true;
            } else {
                keep.add(entry);
            }
        }
        if (expired) {
            waiting.update(keep);
        }
    }

    /** The operator to run: this function, plus the end of a bounded input (see the class comment). */
    public static KeyedCoProcessOperator<String, Row, Row, Row> operator(long waitMs) {
        return new Operator(new AwaitProducts(waitMs));
    }

    static final class Operator extends KeyedCoProcessOperator<String, Row, Row, Row> implements BoundedMultiInput {
        private static final long serialVersionUID = 1L;
        private int ended;

        Operator(AwaitProducts function) {
            super(function);
        }

        @Override
        public void endInput(int inputId) throws Exception {
            if (++ended < 2) {
                return;
            }
            List<String> keys;
            try (Stream<String> all = this.<String>getKeyedStateBackend()
                    .getKeys(WAITING_STATE.getName(), VoidNamespace.INSTANCE)) {
                keys = all.collect(Collectors.toList()); // collected first: the loop below clears state
            }
            for (String key : keys) {
                setCurrentKey(key);
                ListState<Row> state = getPartitionedState(
                        VoidNamespace.INSTANCE, VoidNamespaceSerializer.INSTANCE, WAITING_STATE);
                Iterable<Row> entries = state.get();
                if (entries != null) {
                    for (Row entry : entries) {
                        output.collect(DEAD_LETTERS, new StreamRecord<>((String) entry.getField(DEAD_LETTER)));
                        ((AwaitProducts) userFunction).deadLetterCount.get(UNKNOWN_PRODUCT).inc();
                    }
                }
                state.clear();
            }
        }
    }

    private static Row event(Row pending) {
        Row row = Row.withPositions(EVENT_FIELDS);
        for (int i = 0; i < EVENT_FIELDS; i++) {
            row.setField(i, pending.getField(i));
        }
        return row;
    }
}
