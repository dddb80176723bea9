package streamrec.flink;

import java.util.HashMap;
import java.util.Map;
import org.apache.flink.metrics.Counter;
import org.apache.flink.metrics.Gauge;
import org.apache.flink.metrics.MetricGroup;

/**
 * The job's own metrics, all under one {@code streamrec} group of the operator's metric group, so
 * that Flink's Prometheus reporter names them {@code flink_taskmanager_job_task_operator_streamrec_*}
 * (README, "Metrics"; streamrec/metrics.py holds the same names). A labelled counter is a
 * key-value group: the key becomes part of the name and the value the Prometheus label.
 */
final class JobMetrics {
    static final String GROUP = "streamrec";
    /** Values kept per histogram: recent enough to follow a change of load, small enough to sort per scrape. */
    static final int HISTOGRAM_WINDOW = 1024;

    private JobMetrics() {}

    static MetricGroup group(MetricGroup operator) {
        return operator.addGroup(GROUP);
    }

    /** A histogram, and beside it the gauge {@code <name>_max}: Flink's reporter exports a
     *  histogram's count and quantiles only, and the largest value is what one looks for first. */
    static WindowHistogram histogram(MetricGroup operator, String name) {
        MetricGroup group = group(operator);
        WindowHistogram histogram = group.histogram(name, new WindowHistogram(HISTOGRAM_WINDOW));
        group.gauge(name + "_max", (Gauge<Long>) () -> histogram.getStatistics().getMax());
        return histogram;
    }

    /** Counters by the value of one label, registered on first use (the label values are few: event
     *  types, sources), so counting costs one hash lookup. */
    static final class Labelled {
        private final MetricGroup keyGroup;
        private final String key;
        private final String name;
        private final Map<String, Counter> counters = new HashMap<>();

        Labelled(MetricGroup operator, String key, String name) {
            this.keyGroup = group(operator);
            this.key = key;
            this.name = name;
        }

        Counter get(String value) {
            String v = value == null ? "none" : value;
            Counter c = counters.get(v);
            if (c == null) {
                c = keyGroup.addGroup(key, v).counter(name);
                counters.put(v, c);
            }
            return c;
        }
    }
}
