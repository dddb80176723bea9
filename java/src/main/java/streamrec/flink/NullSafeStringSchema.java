package streamrec.flink;

import java.nio.charset.StandardCharsets;
import org.apache.flink.api.common.serialization.AbstractDeserializationSchema;

/** SimpleStringSchema, except that a record without a value (a tombstone) becomes "" instead of
 *  a NullPointerException that fails the source on every restart. */
public final class NullSafeStringSchema extends AbstractDeserializationSchema<String> {
    private static final long serialVersionUID = 1L;

    public NullSafeStringSchema() {
        super(String.class);
    }

    @Override
    public String deserialize(byte[] message) {
        return message == null ? "" : new String(message, StandardCharsets.UTF_8);
    }
}
