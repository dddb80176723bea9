"""The job's Cassandra writer sends rows a few at a time as one request, keeps requests in flight and
waits for all of them when the bundle ends (the gauge PyFlink reads then); fakes stand in for the
driver and for PyFlink's runtime context."""

from __future__ import annotations

import pytest

from streamrec.config import CassandraConfig, Config, JobConfig
from streamrec.connectors.flink import CassandraWrite


class FakeFuture:
    def __init__(self, log: list, name: str, fails: bool = False) -> None:
        self.log, self.name, self.fails = log, name, fails

    def result(self):
        self.log.append(("acked", self.name))
        if self.fails:
            raise TimeoutError("write timed out")


class FakeWriter:
    """RecommendationWriter's surface: two statements per row, several rows per request, sent
    without waiting. A request is named after the rows it carries, e.g. "r1+r2"."""

    def __init__(self, failing: set[str] = frozenset()) -> None:
        self.log: list = []
        self.failing = failing
        self.retried: list = []

    def open(self):
        pass

    def close(self):
        self.log.append(("closed",))

    def bound(self, row):
        return [("insert_event", (row,)), ("upsert_recs", (row,))]

    def batch(self, pairs):
        rows = []
        for _, (row,) in pairs:
            if row not in rows:
                rows.append(row)
        assert len(pairs) == 2 * len(rows)  # both statements of every row, in one request
        return "batch", ("+".join(rows),)

    def execute_async(self, stmt, values):
        name = values[0]
        self.log.append(("sent", name))
        return FakeFuture(self.log, name, name in self.failing)

    def execute_with_retries(self, stmt, values, first_error):
        self.retried.append((values[0], type(first_error).__name__))

    def write(self, row):
        self.log.append(("written", row))


class FakeGroup:
    def __init__(self) -> None:
        self.gauges = {}

    def gauge(self, name, fn):
        self.gauges[name] = fn


class FakeContext:
    def __init__(self, group) -> None:
        self.group = group

    def get_metrics_group(self):
        return self.group


def writer_op(max_in_flight: int, fake: FakeWriter, batch_rows: int = 1, mode: str = "process") -> CassandraWrite:
    op = CassandraWrite(Config(cassandra=CassandraConfig(max_in_flight=max_in_flight, batch_rows=batch_rows),
                               job=JobConfig(python_execution_mode=mode)))
    op._writer = fake
    return op


def test_rows_stay_in_flight_until_the_bundle_ends_then_all_are_awaited():
    fake, group = FakeWriter(), FakeGroup()
    op = writer_op(100, fake)
    op.open(FakeContext(group))
    for row in ("r1", "r2", "r3"):
        op.process_element(row, None)
    assert not [e for e in fake.log if e[0] == "acked"]  # nothing waited for yet
    drained = group.gauges["cassandraWritesDrained"]()  # what PyFlink calls at the bundle end
    assert drained == 3 and sum(e[0] == "acked" for e in fake.log) == 3 and not op._in_flight


def test_rows_go_out_a_few_per_request_and_the_bundle_end_sends_the_rest():
    fake, group = FakeWriter(), FakeGroup()
    op = writer_op(100, fake, batch_rows=2)
    op.open(FakeContext(group))
    for row in ("r1", "r2", "r3"):
        op.process_element(row, None)
    assert fake.log == [("sent", "r1+r2")]  # r3 waits for a partner or the bundle end
    assert group.gauges["cassandraWritesDrained"]() == 2
    assert fake.log == [("sent", "r1+r2"), ("sent", "r3"), ("acked", "r1+r2"), ("acked", "r3")]


def test_too_many_in_flight_waits_for_the_oldest_half():
    fake = FakeWriter()
    op = writer_op(4, fake)
    op.open(FakeContext(FakeGroup()))
    for row in ("r1", "r2", "r3"):
        op.process_element(row, None)
    for row in ("r4", "r5"):
        op.process_element(row, None)
    acked = [e[1] for e in fake.log if e[0] == "acked"]
    assert acked == ["r1", "r2", "r3"]  # 5 requests > 4 in flight: wait until 2 are left
    assert len(op._in_flight) == 2


def test_a_failed_write_is_retried_before_the_bundle_may_end():
    fake, group = FakeWriter(failing={"r2"}), FakeGroup()
    op = writer_op(100, fake)
    op.open(FakeContext(group))
    op.process_element("r1", None)
    op.process_element("r2", None)
    group.gauges["cassandraWritesDrained"]()
    assert fake.retried == [("r2", "TimeoutError")]


def test_a_write_that_keeps_failing_fails_the_bundle():
    fake, group = FakeWriter(failing={"r1"}), FakeGroup()

    def give_up(stmt, values, first_error):
        raise first_error

    fake.execute_with_retries = give_up
    op = writer_op(100, fake)
    op.open(FakeContext(group))
    op.process_element("r1", None)
    with pytest.raises(TimeoutError):
        group.gauges["cassandraWritesDrained"]()


def test_without_python_metrics_every_row_is_awaited_at_once():
    fake = FakeWriter()
    op = writer_op(100, fake)
    op.open(FakeContext(None))
    op.process_element("r1", None)
    assert fake.log == [("written", "r1")]


def test_in_thread_mode_every_row_is_awaited_at_once():
    # thread mode has no bundle end before a checkpoint barrier: nothing may stay in flight
    fake = FakeWriter()
    op = writer_op(100, fake, batch_rows=10, mode="thread")
    op.open(FakeContext(FakeGroup()))
    op.process_element("r1", None)
    assert fake.log == [("written", "r1")]


class GivingUpWriter(FakeWriter):
    """Cassandra is gone: every retry of a failed write runs out."""

    def execute_with_retries(self, stmt, values, first_error):
        raise first_error


def test_close_after_a_failure_never_raises_and_always_releases_the_driver(caplog):
    # In thread mode an exception from close (which also runs while a task fails or is cancelled)
    # shuts the whole TaskManager down; the rows are replayed from the last checkpoint instead.
    fake, group = GivingUpWriter(failing={"r1"}), FakeGroup()
    op = writer_op(100, fake)
    op.open(FakeContext(group))
    op.process_element("r1", None)
    op.close()
    assert ("closed",) in fake.log
    assert "were not stored (the restart replays them)" in caplog.text


def test_a_missing_product_or_query_is_left_unset_not_stored_as_a_tombstone():
    from cassandra.query import UNSET_VALUE
    from pyflink.common import Row

    from streamrec.connectors.cassandra import RecommendationWriter
    from streamrec.udfs.operators import RECOMMENDATION_FIELDS

    writer = RecommendationWriter(Config().cassandra)
    writer._insert_event, writer._upsert_recs = "insert_event", "upsert_recs"  # prepared on open() otherwise

    def row(event_id, etype, product_id, query):
        r = Row(event_id, "u1", 1_700_000_000_000, etype, product_id, query, 1_700_000_000_000_001,
                ["p1"], [0.5], "personal", None, 0, 0)
        r.set_field_names(RECOMMENDATION_FIELDS)
        return r

    (_, view), _ = writer.bound(row("e1", "view", "p9", None))
    (_, search), _ = writer.bound(row("e2", "search", None, "red lamp"))
    assert view[4:6] == ("p9", UNSET_VALUE)
    assert search[4:6] == (UNSET_VALUE, "red lamp")
    # the recommendations row is rewritten in place: a None there must still clear the old value
    (_, _), (_, recs) = writer.bound(row("e1", "view", "p9", None))
    assert recs[7] is None


def test_a_stored_timestamp_reads_back_as_the_same_millisecond_up_to_the_year_3000():
    from cassandra.util import datetime_from_timestamp

    from streamrec.connectors.cassandra import datetime_to_ms

    # the driver turns a timestamp into a datetime through float seconds: late dates land just below
    for ms in (0, 1_700_000_000_123, 31220835644905, 32503679999999):
        assert datetime_to_ms(datetime_from_timestamp(ms / 1000.0)) == ms
