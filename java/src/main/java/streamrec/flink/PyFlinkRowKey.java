package streamrec.flink;

import org.apache.flink.api.java.functions.KeySelector;
import org.apache.flink.types.Row;

/**
 * A row's field as PyFlink's {@code key_by} keys a stream: wrapped in a one-field Row (its
 * KeyByKeySelector), whose hash, and so whose key group, differs from the bare field's. A JVM
 * operator reinterpreting the output of a Python operator keyed by {@code key_by} as a keyed stream
 * must use this key, or its records fall into other key groups than their subtask holds.
 */
public final class PyFlinkRowKey implements KeySelector<Row, Row> {
    private static final long serialVersionUID = 1L;

    private final int field;

    public PyFlinkRowKey(int field) {
        this.field = field;
    }

    @Override
    public Row getKey(Row row) {
        Row key = new Row(1); // as KeyByKeySelector builds it (flink-python): kind INSERT, by position
        key.setField(0, row.getField(field));
        return key;
    }
}
