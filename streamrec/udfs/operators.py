"""Thin PyFlink wrappers around the pure functions of this package.

Each class only adapts Flink's calling convention (rows, state, side outputs, Arrow batches) to
the plain functions in :mod:`streamrec.model.events` and :mod:`streamrec.model.model`. Importing
this module needs pyflink but starts no JVM.
"""

from __future__ import annotations

import json
import pickle
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from pyflink.common import Row, Types
from pyflink.common.time import Time
from pyflink.datastream import KeyedProcessFunction, OutputTag, ProcessFunction, RuntimeContext
from pyflink.datastream.functions import BroadcastProcessFunction, KeyedBroadcastProcessFunction
from pyflink.datastream.state import ListStateDescriptor, MapStateDescriptor, StateTtlConfig, ValueStateDescriptor

from streamrec.model.catalog import Catalog
from streamrec.model.events import (
    BadRecord,
    Event,
    guarded,
    internal_dead_letter,
    latest_ts,
    parse_guarded,
    waiting_event,
)
from streamrec.model.live import LiveCatalog
from streamrec.model.model import (
    UserState,
    apply_event,
    recommend_users,
    remember_shown,
    write_timestamp_us,
)
from streamrec.model.products import parse_product_update
from streamrec.model.trending import DecayedPopularity, popularity_rows
from streamrec.model.variants import Variants
from streamrec.udfs.control import CatalogControl
from streamrec.udfs.metrics import OperatorMetrics

CatalogLoader = Callable[[], Catalog]

# Shapes of the streams between operators (field names are the Table API column names too).
EVENT_FIELDS = ["event_id", "user_id", "ts", "type", "product_id", "query"]
EVENT_TYPES = [Types.STRING(), Types.STRING(), Types.LONG(), Types.STRING(), Types.STRING(), Types.STRING()]
EVENT_ROW = Types.ROW_NAMED(EVENT_FIELDS, EVENT_TYPES)

# An event plus what the job stores for the user after it.
RECOMMENDATION_FIELDS = [
    *EVENT_FIELDS,
    "write_ts",  # Cassandra write timestamp (microseconds, from event time)
    "product_ids", "scores", "source",  # the user's recommendations after this event
    "variant", "impressions", "hits",  # the user's A/B variant and online hit counts
]
RECOMMENDATION_ROW = Types.ROW_NAMED(
    RECOMMENDATION_FIELDS,
    [*EVENT_TYPES, Types.LONG(), Types.BASIC_ARRAY(Types.STRING()), Types.BASIC_ARRAY(Types.FLOAT()), Types.STRING(),
     Types.STRING(), Types.LONG(), Types.LONG()],
)

DLQ_TAG = OutputTag("dead-letters", Types.STRING())

# The late catalog: an event valid but for its unknown product, and the UNKNOWN_PRODUCT letter it
# gets if the product does not come in time (the parser's, byte for byte). The JVM operator
# await-products (java/.../AwaitProducts.java) holds it in keyed state until then.
WAITING_FIELDS = [*EVENT_FIELDS, "dead_letter"]
WAITING_ROW = Types.ROW_NAMED(WAITING_FIELDS, [*EVENT_TYPES, Types.STRING()])
WAITING_TAG = OutputTag("waiting-for-product", WAITING_ROW)


def event_to_row(e: Event) -> Row:
    return Row(e.event_id, e.user_id, e.ts, e.type, e.product_id, e.query)


def row_to_event(r: Row) -> Event:
    # by position (EVENT_FIELDS order): a Row's access by name searches its field names, ~5 us an event
    return Event(*r)


def waiting_row(e: Event, letter: BadRecord) -> Row:
    return Row(e.event_id, e.user_id, e.ts, e.type, e.product_id, e.query, letter.to_json())


class ParseEvents(ProcessFunction):
    """raw JSON string -> EVENT_ROW; bad input -> DLQ_TAG as a JSON dead letter. ``max_ts_lead_ms``:
    how far an event's ts may lead this TaskManager's clock (0: no limit; see events.latest_ts).
    ``hold_unknown``: an event valid but for its unknown product goes to WAITING_TAG instead of the
    dead-letter topic (the late catalog; the pipeline sets it only where await-products follows)."""

    def __init__(self, catalog_loader: CatalogLoader, max_record_bytes: int, max_query_chars: int,
                 max_ts_lead_ms: int = 0, hold_unknown: bool = False) -> None:
        self._load = catalog_loader
        self._max_record_bytes = max_record_bytes
        self._max_query_chars = max_query_chars
        self._max_ts_lead_ms = max_ts_lead_ms
        self._hold_unknown = hold_unknown
        self.known: set[str] = set()  # product ids events may name

    _metrics: Optional[OperatorMetrics] = None  # set in open (tests call parse without it)

    def open(self, runtime_context: RuntimeContext) -> None:
        self.known = set(self._load().product_ids)
        self._metrics = OperatorMetrics(runtime_context)

    def max_ts(self) -> Optional[int]:
        """The clock rule's bound now (processing time: the wall clock of the parsing TaskManager)."""
        return latest_ts(int(time.time() * 1000), self._max_ts_lead_ms)

    def parse(self, value: Any) -> Iterable[Any]:
        # the per-event path's counts (ParseBatch has its own parse; the JVM counts its records)
        if self._metrics is not None:
            self._metrics.count("records_in")
        max_ts = self.max_ts()
        parsed = parse_guarded(value, self.known, self._max_record_bytes, self._max_query_chars, max_ts)
        if isinstance(parsed, BadRecord):
            late = waiting_event(value, parsed, self._max_record_bytes, self._max_query_chars, max_ts) \
                if self._hold_unknown else None
            if late is not None:
                yield WAITING_TAG, waiting_row(late, parsed)
            else:
                if self._metrics is not None:
                    self._metrics.dead_letters((parsed,))
                yield DLQ_TAG, parsed.to_json()
        else:
            yield event_to_row(parsed)

    def process_element(self, value: Any, ctx: ProcessFunction.Context) -> Iterable[Any]:
        return self.parse(value)


# Product ids added through the products topic since the job started: the parser's broadcast state.
KNOWN_PRODUCTS_STATE = MapStateDescriptor("known-products", Types.STRING(), Types.BOOLEAN())


class ParseEventsLive(BroadcastProcessFunction):
    """A parser (ParseEvents, or the fast path's ParseBatch) that also knows the products published
    while the job runs (the broadcast side), so that events naming a new product are not
    dead-lettered as UNKNOWN_PRODUCT."""

    def __init__(self, parser: ParseEvents) -> None:
        self._parser = parser
        self._synced = False

    def open(self, runtime_context: RuntimeContext) -> None:
        self._parser.open(runtime_context)
        self._synced = False

    def process_element(self, value: Any, ctx: BroadcastProcessFunction.ReadOnlyContext) -> Iterable[Any]:
        if not self._synced:  # after a restore: the products added before the checkpoint
            self._parser.known.update(k for k, _ in ctx.get_broadcast_state(KNOWN_PRODUCTS_STATE).items())
            self._synced = True
        return self._parser.parse(value)

    def process_broadcast_element(self, value: Row, ctx: BroadcastProcessFunction.Context) -> Iterable[Any]:
        if value.kind == "product" and value.key not in self._parser.known:
            ctx.get_broadcast_state(KNOWN_PRODUCTS_STATE).put(value.key, True)
            self._parser.known.add(value.key)
        return []


def task_attempt_and_index(runtime_context: Any) -> tuple[int, int]:
    """(attempt number, subtask index) of the running task.

    PyFlink 2.2's thread mode forwards these two to RuntimeContext methods that Flink 2 removed
    (``AttributeError: 'pemja.PyJObject' object has no attribute 'getAttemptNumber'``); the
    TaskInfo of the Java context has them."""
    try:
        return runtime_context.get_attempt_number(), runtime_context.get_index_of_this_subtask()
    except AttributeError:
        info = runtime_context._runtime_context.getTaskInfo()
        return int(info.getAttemptNumber()), int(info.getIndexOfThisSubtask())


class FailOnce:
    """Fault injection for the tests (reliability target 3), off unless ``after_records`` > 0.

    Subtask 0 raises once per attempt, on attempts ``first_attempt`` to ``times - 1``, at the first
    record after it has processed ``after_records`` records in this attempt and a checkpoint newer
    than the one it started from has completed (a ``chk-N/_metadata`` file with a greater N under
    ``checkpoint_dir``). Flink restarts the job from that checkpoint each time, so every failure
    comes after progress, and the job fails ``times - first_attempt`` times in a row.
    """

    def __init__(self, after_records: int, checkpoint_dir: str, times: int = 1, first_attempt: int = 0) -> None:
        self._after = after_records
        self._dir = checkpoint_dir[len("file://"):] if checkpoint_dir.startswith("file://") else checkpoint_dir
        self._times = times
        self._first_attempt = first_attempt
        self._armed = False
        self._attempt = 0
        self._seen = 0
        self._started_from = -1
        self._next_look = 0.0

    def open(self, runtime_context: RuntimeContext) -> None:
        attempt, subtask = task_attempt_and_index(runtime_context)
        self._attempt = attempt
        self._armed = self._after > 0 and subtask == 0 and self._first_attempt <= attempt < self._times
        self._seen = 0
        self._started_from = self.newest_checkpoint() if self._armed else -1

    def newest_checkpoint(self) -> int:
        """The number of the newest completed checkpoint (-1: none)."""
        return max((int(p.parent.name[4:]) for p in Path(self._dir).glob("*/chk-*/_metadata")), default=-1)

    def checkpoint_completed(self) -> bool:
        return self.newest_checkpoint() > self._started_from

    def record(self, n: int = 1) -> None:
        """``n`` more records processed (a batch operator counts its batch's events)."""
        if not self._armed:
            return
        self._seen += n
        now = time.monotonic()
        if self._seen < self._after or now < self._next_look:
            return
        self._next_look = now + 0.2  # a directory listing at most five times a second
        if self.checkpoint_completed():
            self._armed = False
            raise RuntimeError(f"injected failure {self._attempt + 1} of {self._times} (fault_fail_once_after="
                               f"{self._after}): {self._seen} records processed and a checkpoint completed "
                               f"on attempt {self._attempt}")


# The broadcast state of the control stream: "product:<id>" -> the product's merged update (JSON),
# "trending" -> the latest trending list (JSON [[product_id, score], ...]).
CONTROL_STATE = MapStateDescriptor("control", Types.STRING(), Types.STRING())
CONTROL_FIELDS = ["kind", "key", "payload"]  # kind: "product" or "trending"
CONTROL_ROW = Types.ROW_NAMED(CONTROL_FIELDS, [Types.STRING(), Types.STRING(), Types.STRING()])


class ParseProducts(ProcessFunction):
    """raw JSON product update -> CONTROL_ROW; bad input -> DLQ_TAG (same codes as events)."""

    def __init__(self, catalog_loader: CatalogLoader, max_record_bytes: int) -> None:
        self._load = catalog_loader
        self._max_record_bytes = max_record_bytes
        self._dim: Optional[int] = None

    def open(self, runtime_context: RuntimeContext) -> None:
        self._dim = self._load().dim

    def process_element(self, value: str, ctx: ProcessFunction.Context) -> Iterable[Any]:
        parsed = guarded(parse_product_update, value, self._dim, self._max_record_bytes)
        if isinstance(parsed, BadRecord):
            yield DLQ_TAG, parsed.to_json()
        else:
            yield Row("product", parsed.product_id, parsed.to_json())


class TrendingMerge(KeyedProcessFunction):
    """One key: merges the popularity counts of all parallel instances (JSON batches
    ``[[product_id, weight, ts], ...]``, see ``popularity_counts`` in the pipeline) into decayed
    popularity and broadcasts the best ``size`` products every ``interval_ms`` of processing time
    (when changed).

    A batch is only appended to a list state; the popularity (one value for all products) is read
    and written once per interval, not once per batch.
    """

    def __init__(self, half_life_ms: float, size: int, interval_ms: int) -> None:
        self._half_life_ms = half_life_ms
        self._size = size
        self._interval_ms = interval_ms
        self._timer_at = 0

    def open(self, runtime_context: RuntimeContext) -> None:
        self._state = runtime_context.get_state(ValueStateDescriptor("popularity", Types.PICKLED_BYTE_ARRAY()))
        self._pending = runtime_context.get_list_state(ListStateDescriptor("pending", Types.PICKLED_BYTE_ARRAY()))
        self._timer_at = 0

    def process_element(self, value: str, ctx: KeyedProcessFunction.Context) -> Iterable[Row]:
        self._pending.add(value)
        at = ctx.timer_service().current_processing_time()
        if self._timer_at <= at:
            self._timer_at = at + self._interval_ms
            ctx.timer_service().register_processing_time_timer(self._timer_at)
        return []

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterable[Row]:
        batches = list(self._pending.get() or [])
        if not batches:
            return
        raw = self._state.value()
        pop, now = (DecayedPopularity(self._half_life_ms), 0) if raw is None else pickle.loads(raw)
        for product_id, weight, ts in popularity_rows(batches):
            pop.add(product_id, ts, weight)
            now = max(now, ts)
        self._pending.clear()
        self._state.update(pickle.dumps((pop, now), protocol=pickle.HIGHEST_PROTOCOL))
        top = [[pid, round(score, 6)] for pid, score in pop.top(self._size, now)]
        yield Row("trending", "", json.dumps(top, separators=(",", ":")))


class Recommend(CatalogControl, KeyedBroadcastProcessFunction):
    """Keyed by user: moves the user's embedding (Flink keyed state) with every event and ranks
    the catalog for the user right away; the broadcast side brings product updates and the
    trending list to every parallel instance.

    One Python stage does both: a separate top-k stage (a pandas UDF) cost more in row conversions
    and Java<->Python crossings than its batched matrix product saved (docs/benchmark-history.md).
    """

    def __init__(self, catalog_loader: CatalogLoader, variants: Variants, user_ttl_ms: int = 0,
                 fail_once: Optional[FailOnce] = None, ann_min_products: int = 0,
                 ann_recall_floor: float = 0.95, blas_threads: int = 1) -> None:
        self._load = catalog_loader
        self._blas_threads = blas_threads
        self._variants = variants
        self._user_ttl_ms = user_ttl_ms
        self._fail_once = fail_once
        self._ann_min_products = ann_min_products
        self._ann_recall_floor = ann_recall_floor

    def open(self, runtime_context: RuntimeContext) -> None:
        self._limit_blas()
        self._live = LiveCatalog(self._load(), self._variants, self._ann_min_products, self._ann_recall_floor)
        self._synced = False
        if self._fail_once is not None:
            self._fail_once.open(runtime_context)
        # One pickled value per user: a single state access per event is what keeps PyFlink fast
        # (docs/ARCHITECTURE.md, "PyFlink facts"), and PICKLED_BYTE_ARRAY avoids the primitive-array state bugs.
        descriptor = ValueStateDescriptor("user", Types.PICKLED_BYTE_ARRAY())
        if self._user_ttl_ms > 0:
            # Flink's TTL only frees memory; apply_event resets idle users by event time. Returning an
            # expired value not yet cleaned up is harmless for that reason, and NeverReturnExpired would
            # switch PyFlink's state cache off: a blocking gRPC read and write per event, which was
            # ~70% of this operator's time in the profile (docs/benchmark-history.md).
            descriptor.enable_time_to_live(
                StateTtlConfig.new_builder(Time.milliseconds(self._user_ttl_ms))
                .set_update_type(StateTtlConfig.UpdateType.OnCreateAndWrite)
                .set_state_visibility(StateTtlConfig.StateVisibility.ReturnExpiredIfNotCleanedUp)
                .cleanup_full_snapshot()
                .build()
            )
        self._state = runtime_context.get_state(descriptor)
        # the fast path's metrics where they apply (users_in_state: UserCount after this operator)
        self._metrics = OperatorMetrics(runtime_context)
        self._events_in = self._metrics.labelled("type", "events_in")
        self._rows = self._metrics.labelled("source", "recommendation_rows")
        self._watch_catalog(self._metrics)

    def process_element(self, value: Row, ctx: KeyedBroadcastProcessFunction.ReadOnlyContext) -> Iterable[Row]:
        self._before_event(ctx.get_broadcast_state(CONTROL_STATE))
        if self._fail_once is not None:
            self._fail_once.record()
        catalog = self._live.catalog
        event = row_to_event(value)
        self._events_in.inc(event.type)
        raw = self._state.value()  # state access stays outside the guard: a backend failure must fail over
        if raw is None:
            self._metrics.count("users_started")
        try:
            # the record's own processing: an exception here would meet the same record after every restart
            variant, params = self._variants.for_user(event.user_id)
            state: UserState = pickle.loads(raw) if raw is not None else UserState()
            state = apply_event(state, event, catalog, params, self._user_ttl_ms)
            rec = recommend_users([state], catalog, params, self._live.trending, self._live.mask(variant, params),
                                  self._live.ranker)[0]
            remember_shown(state, rec, params)
            blob = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
            out = Row(*value, write_timestamp_us(state), list(rec.product_ids), [float(x) for x in rec.scores],
                      rec.source, variant, state.impressions, state.hits)
        except Exception as exc:
            # the user's state stays as it was; verify expects the same letter (same payload)
            letter = internal_dead_letter(event.to_json(), exc)
            self._metrics.dead_letters((letter,))
            yield DLQ_TAG, letter.to_json()
            return
        self._state.update(blob)
        self._rows.inc(rec.source)
        yield out

    def process_broadcast_element(self, value: Row, ctx: KeyedBroadcastProcessFunction.Context) -> Iterable[Row]:
        self._control(value, ctx.get_broadcast_state(CONTROL_STATE))
        return []
