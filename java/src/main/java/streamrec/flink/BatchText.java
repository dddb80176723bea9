package streamrec.flink;

import java.util.ArrayList;
import java.util.List;

/**
 * The text blocks the fast path hands between Java and Python (streamrec/model/batch.py): records
 * separated by RS (0x1E), fields by US (0x1F). No field can hold either: the Python parser
 * dead-letters ids and queries with control characters (BAD_ID).
 */
final class BatchText {
    static final char RS = '\u001e';
    static final char US = '\u001f';

    private BatchText() {}

    /** {@code text} cut at {@code sep} (an empty text is one empty part, as Python's split). */
    static List<String> split(String text, char sep) {
        List<String> out = new ArrayList<>();
        int from = 0;
        while (true) {
            int at = text.indexOf(sep, from);
            if (at < 0) {
                out.add(text.substring(from));
                return out;
            }
            out.add(text.substring(from, at));
            from = at + 1;
        }
    }

    /** "" stands for "none" where a value is never empty (product ids, history queries). */
    static String orNull(String value) {
        return value.isEmpty() ? null : value;
    }
}
