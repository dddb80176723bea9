package streamrec.flink;

import org.apache.flink.api.java.functions.KeySelector;
import org.apache.flink.types.Row;

/** A row's string field as its key: the user id (field 1) of the job's event and result rows. A
 *  Java key selector, so that key_by costs no Python call per record. */
public final class RowKey implements KeySelector<Row, String> {
    private static final long serialVersionUID = 1L;

    private final int field;

    public RowKey(int field) {
        this.field = field;
    }

    @Override
    public String getKey(Row row) {
        return (String) row.getField(field);
    }
}
