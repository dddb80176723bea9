package streamrec.flink;

import static org.assertj.core.api.Assertions.assertThat;

import org.apache.flink.metrics.HistogramStatistics;
import org.junit.jupiter.api.Test;

class WindowHistogramTest {
    @Test
    void quantilesAreOverTheLastWindowOfValuesAndTheCountOverAll() {
        WindowHistogram h = new WindowHistogram(100);
        for (long v = 1; v <= 1000; v++) {
            h.update(v);
        }
        assertThat(h.getCount()).isEqualTo(1000);
        HistogramStatistics s = h.getStatistics();
        assertThat(s.size()).isEqualTo(100);
        assertThat(s.getMin()).isEqualTo(901);
        assertThat(s.getMax()).isEqualTo(1000);
        assertThat(s.getQuantile(0.5)).isEqualTo(950.0);
        assertThat(s.getQuantile(0.99)).isEqualTo(999.0);
        assertThat(s.getMean()).isEqualTo(950.5);
    }

    @Test
    void anEmptyHistogramReportsZeros() {
        HistogramStatistics s = new WindowHistogram(10).getStatistics();
        assertThat(s.size()).isZero();
        assertThat(s.getQuantile(0.5)).isZero();
        assertThat(s.getMax()).isZero();
        assertThat(s.getStdDev()).isZero();
    }
}
