package streamrec.flink;

import java.time.Duration;
import org.apache.flink.api.common.state.StateTtlConfig;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.PrimitiveArrayTypeInfo;

/** The per-user state of the fast path's keyed operators: one byte[] per user, freed after the
 *  idle-user TTL (processing time). The rules reset an idle user by event time themselves, so a
 *  replay resets the same users; Flink's TTL only frees the memory of users who never come back. */
final class UserTtl {
    private UserTtl() {}

    static ValueStateDescriptor<byte[]> descriptor(String name, long ttlMs) {
        ValueStateDescriptor<byte[]> descriptor =
                new ValueStateDescriptor<>(name, PrimitiveArrayTypeInfo.BYTE_PRIMITIVE_ARRAY_TYPE_INFO);
        if (ttlMs > 0) {
            descriptor.enableTimeToLive(StateTtlConfig.newBuilder(Duration.ofMillis(ttlMs))
                    .setUpdateType(StateTtlConfig.UpdateType.OnCreateAndWrite)
                    .setStateVisibility(StateTtlConfig.StateVisibility.ReturnExpiredIfNotCleanedUp)
                    .cleanupFullSnapshot()
                    .build());
        }
        return descriptor;
    }
}
