package streamrec.flink;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.charset.StandardCharsets;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.util.InstantiationUtil;
import org.junit.jupiter.api.Test;

class NullSafeStringSchemaTest {
    private final NullSafeStringSchema schema = new NullSafeStringSchema();

    @Test
    void aRecordWithoutValueBecomesAnEmptyString() {
        assertThat(schema.deserialize(null)).isEmpty();
    }

    @Test
    void decodesUtf8() {
        assertThat(schema.deserialize("{\"p\":\"ü€😀\"}".getBytes(StandardCharsets.UTF_8))).isEqualTo("{\"p\":\"ü€😀\"}");
        assertThat(schema.deserialize(new byte[0])).isEmpty();
    }

    @Test
    void producesStringsAndNeverEndsTheStream() {
        assertThat(schema.getProducedType()).isEqualTo(Types.STRING);
        assertThat(schema.isEndOfStream("")).isFalse();
    }

    @Test
    void survivesTheTripToTheTaskManagers() throws Exception {
        NullSafeStringSchema copy = InstantiationUtil.clone(schema);
        assertThat(copy.deserialize(null)).isEmpty();
    }
}
