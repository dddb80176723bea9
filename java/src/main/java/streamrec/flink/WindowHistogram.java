package streamrec.flink;

import java.util.Arrays;
import org.apache.flink.metrics.Histogram;
import org.apache.flink.metrics.HistogramStatistics;

/**
 * A histogram over the last {@code window} values (flink-metrics-core has the interface only, and
 * flink-runtime's implementation is not on the job's compile path). Updated by the task thread and
 * read by the reporter's thread, hence the locks; an uncontended lock per update is a few ns.
 */
final class WindowHistogram implements Histogram {
    private final long[] values;
    private long count;

    WindowHistogram(int window) {
        this.values = new long[Math.max(1, window)];
    }

    @Override
    public synchronized void update(long value) {
        values[(int) (count % values.length)] = value;
        count++;
    }

    @Override
    public synchronized long getCount() {
        return count;
    }

    @Override
    public HistogramStatistics getStatistics() {
        long[] copy;
        synchronized (this) {
            copy = Arrays.copyOf(values, (int) Math.min(count, values.length));
        }
        Arrays.sort(copy);
        return new Stats(copy);
    }

    private static final class Stats extends HistogramStatistics {
        private final long[] sorted;

        Stats(long[] sorted) {
            this.sorted = sorted;
        }

        @Override
        public double getQuantile(double quantile) {
            if (sorted.length == 0) {
                return 0.0;
            }
            // nearest rank: the value below which `quantile` of the window lies
            int rank = (int) Math.ceil(quantile * sorted.length) - 1;
            return sorted[Math.max(0, Math.min(sorted.length - 1, rank))];
        }

        @Override
        public long[] getValues() {
            return sorted.clone();
        }

        @Override
        public int size() {
            return sorted.length;
        }

        @Override
        public double getMean() {
            if (sorted.length == 0) {
                return 0.0;
            }
            double sum = 0;
            for (long v : sorted) {
                sum += v;
            }
            return sum / sorted.length;
        }

        @Override
        public double getStdDev() {
            if (sorted.length < 2) {
                return 0.0;
            }
            double mean = getMean();
            double sq = 0;
            for (long v : sorted) {
                sq += (v - mean) * (v - mean);
            }
            return Math.sqrt(sq / (sorted.length - 1));
        }

        @Override
        public long getMax() {
            return sorted.length == 0 ? 0 : sorted[sorted.length - 1];
        }

        @Override
        public long getMin() {
            return sorted.length == 0 ? 0 : sorted[0];
        }
    }
}
