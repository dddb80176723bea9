package streamrec.flink;

import java.io.DataInput;
import java.io.DataOutput;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import org.apache.flink.core.memory.DataInputDeserializer;
import org.apache.flink.core.memory.DataOutputSerializer;

/**
 * What the fast path keeps per user in Flink keyed state: the newest moving events, purchases,
 * cart, and the counters of the write-time clock. The vector is not kept: Python folds the
 * history into it when it ranks (streamrec/model/history.py).
 *
 * <p>{@link #apply} is the JVM copy of the Python reference rule (apply_event / update_user /
 * remember in streamrec/model/model.py, without the vector and the A/B counts); the shared test
 * vectors (java/src/test/resources/vectors/user-state.json, written by the Python reference)
 * prove the two agree.
 */
final class UserHistory {
    static final int MAX_PURCHASES = 1000; // MAX_REMEMBERED_PURCHASES in model.py
    static final int MAX_CART = 200; // MAX_CART in model.py
    private static final byte FORMAT = 1;

    /** One remembered event: query only for a search without a product. */
    static final class Entry {
        final String type;
        final long ts;
        final String productId;
        final String query;

        Entry(String type, long ts, String productId, String query) {
            this.type = type;
            this.ts = ts;
            this.productId = productId;
            this.query = query;
        }
    }

    long seq;
    long maxTs;
    long writeUs = -1L;
    final List<Entry> history = new ArrayList<>();
    final List<String> purchased = new ArrayList<>();
    final List<String> cart = new ArrayList<>();

    /** Apply one event (in place); returns the state to keep (a fresh one after an idle gap). */
    UserHistory apply(String type, long ts, String productId, String query, Set<String> movingTypes,
                      int historySize, long ttlMs) {
        UserHistory s = this;
        if (ttlMs > 0 && seq > 0 && ts - maxTs > ttlMs) {
            // a fresh user, except for the write timestamp: the rows written before must stay older
            s = new UserHistory();
            s.writeUs = writeUs;
        }
        if (s.writeUs < 0 && s.seq > 0) {
            s.writeUs = s.maxTs * 1000L + 999L; // the Python rule's legacy stamp (never true for new state)
        }
        s.seq += 1;
        s.maxTs = Math.max(s.maxTs, ts);
        s.writeUs = Math.max(s.maxTs * 1000L, s.writeUs + 1);
        if (movingTypes.contains(type)) {
            if (productId != null) {
                s.remember(new Entry(type, ts, productId, null), historySize);
            } else if ("search".equals(type) && query != null && !query.isEmpty()) {
                s.remember(new Entry(type, ts, null, query), historySize);
            }
        }
        if (productId == null) {
            return s;
        }
        if ("purchase".equals(type) && !s.purchased.contains(productId)) {
            s.purchased.add(productId);
            trim(s.purchased, MAX_PURCHASES);
        }
        if ("add_to_cart".equals(type) && !s.cart.contains(productId)) {
            s.cart.add(productId);
            trim(s.cart, MAX_CART);
        } else if (("remove_from_cart".equals(type) || "purchase".equals(type))) {
            s.cart.remove(productId);
        }
        return s;
    }

    private void remember(Entry e, int size) {
        history.add(e);
        trim(history, size);
    }

    private static <T> void trim(List<T> list, int size) {
        if (list.size() > size) {
            list.subList(0, list.size() - size).clear();
        }
    }

    /** This user as the rank batch carries it (decode_rank_request in streamrec/model/batch.py). */
    void appendRequest(StringBuilder out, String userId) {
        out.append(userId).append(BatchText.US).append(history.size());
        for (Entry e : history) {
            out.append(BatchText.US).append(e.type).append(BatchText.US).append(e.ts).append(BatchText.US)
                    .append(e.productId == null ? "" : e.productId).append(BatchText.US)
                    .append(e.query == null ? "" : e.query);
        }
        out.append(BatchText.US).append(purchased.size());
        for (String p : purchased) {
            out.append(BatchText.US).append(p);
        }
        out.append(BatchText.US).append(cart.size());
        for (String p : cart) {
            out.append(BatchText.US).append(p);
        }
    }

    byte[] encode() {
        return encode(new DataOutputSerializer(64 + 32 * (history.size() + purchased.size())));
    }

    /** The state's bytes, built in {@code out} (cleared first; an operator reuses one: Flink's
     *  serializer is unsynchronized, where every write of a DataOutputStream over a
     *  ByteArrayOutputStream takes a lock). */
    byte[] encode(DataOutputSerializer out) {
        out.clear();
        try {
            out.writeByte(FORMAT);
            out.writeLong(seq);
            out.writeLong(maxTs);
            out.writeLong(writeUs);
            out.writeInt(history.size());
            for (Entry e : history) {
                writeString(out, e.type);
                out.writeLong(e.ts);
                writeString(out, e.productId);
                writeString(out, e.query);
            }
            writeStrings(out, purchased);
            writeStrings(out, cart);
            return out.getCopyOfBuffer();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    static UserHistory decode(byte[] data) {
        UserHistory s = new UserHistory();
        if (data == null) {
            return s;
        }
        try {
            DataInputDeserializer in = new DataInputDeserializer(data);
            byte format = in.readByte();
            if (format != FORMAT) {
                throw new IllegalStateException("user state of an unknown format " + format);
            }
            s.seq = in.readLong();
            s.maxTs = in.readLong();
            s.writeUs = in.readLong();
            int n = in.readInt();
            for (int i = 0; i < n; i++) {
                String type = readString(in);
                long ts = in.readLong();
                s.history.add(new Entry(type, ts, readString(in), readString(in)));
            }
            readStrings(in, s.purchased);
            readStrings(in, s.cart);
            return s;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    static void writeString(DataOutput out, String s) throws IOException {
        if (s == null) {
            out.writeInt(-1);
            return;
        }
        byte[] b = s.getBytes(StandardCharsets.UTF_8);
        out.writeInt(b.length);
        out.write(b);
    }

    static String readString(DataInput in) throws IOException {
        int n = in.readInt();
        if (n < 0) {
            return null;
        }
        byte[] b = new byte[n];
        in.readFully(b);
        return new String(b, StandardCharsets.UTF_8);
    }

    private static void writeStrings(DataOutput out, List<String> list) throws IOException {
        out.writeInt(list.size());
        for (String s : list) {
            writeString(out, s);
        }
    }

    private static void readStrings(DataInput in, List<String> into) throws IOException {
        int n = in.readInt();
        for (int i = 0; i < n; i++) {
            into.add(readString(in));
        }
    }
}
