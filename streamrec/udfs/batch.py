"""The fast path's two Python operators: thin adapters around :mod:`streamrec.model.batch`, each
called once per batch of events (a ``byte[]`` from a JVM operator), never once per event."""

from __future__ import annotations

from typing import Any, Iterable, Optional

from pyflink.common import Row, Types
from pyflink.datastream import RuntimeContext
from pyflink.datastream.functions import BroadcastProcessFunction

from streamrec.model.batch import BatchRanker, decode_event_part, parse_batch, request_event_part
from streamrec.model.events import BadRecord, Event
from streamrec.model.live import LiveCatalog
from streamrec.model.variants import Variants
from streamrec.udfs.control import CatalogControl
from streamrec.udfs.metrics import OperatorMetrics
from streamrec.udfs.operators import (
    CONTROL_STATE,
    DLQ_TAG,
    WAITING_TAG,
    CatalogLoader,
    FailOnce,
    ParseEvents,
    waiting_row,
)

BATCH = Types.PRIMITIVE_ARRAY(Types.BYTE())  # arrives in Python as bytes, no per-element conversion


class ParseBatch(ParseEvents):
    """A batch of raw records -> one block of valid events; bad records -> DLQ_TAG, one JSON dead
    letter each (same codes as the per-record parser: it is the same parser). Wrap it in
    ParseEventsLive to learn the products published while the job runs."""

    _metrics: Optional[OperatorMetrics] = None  # set in open (tests call parse without it)

    def open(self, runtime_context: RuntimeContext) -> None:
        super().open(runtime_context)
        self._metrics = OperatorMetrics(runtime_context)

    def parse(self, value: bytes) -> Iterable[Any]:
        # the job's clock, once per batch: every event of the batch is held to the same bound
        waiting: Optional[list[tuple[Event, BadRecord]]] = [] if self._hold_unknown else None
        events, dead = parse_batch(value, self.known, self._max_record_bytes, self._max_query_chars,
                                   self.max_ts(), waiting)
        if dead and self._metrics is not None:
            self._metrics.dead_letters(dead)
        for letter in dead:
            yield DLQ_TAG, letter.to_json()
        for late, letter in waiting or ():
            yield WAITING_TAG, waiting_row(late, letter)
        if events:
            yield events


class RankBatch(CatalogControl, BroadcastProcessFunction):
    """A ``UserStateOperator`` batch -> one answer for ``RecommendationUnbatcher``: every user of the
    batch ranked for their newest state with one matrix product per variant. The broadcast side
    brings product updates and the trending list."""

    def __init__(self, catalog_loader: CatalogLoader, variants: Variants, fail_once: Optional[FailOnce] = None,
                 ann_min_products: int = 0, ann_recall_floor: float = 0.95, blas_threads: int = 1) -> None:
        self._load = catalog_loader
        self._variants = variants
        self._fail_once = fail_once
        self._ann_min_products = ann_min_products
        self._ann_recall_floor = ann_recall_floor
        self._blas_threads = blas_threads

    def open(self, runtime_context: RuntimeContext) -> None:
        self._limit_blas()
        self._live = LiveCatalog(self._load(), self._variants, self._ann_min_products, self._ann_recall_floor)
        self._ranker = BatchRanker(self._live)
        self._synced = False
        if self._fail_once is not None:
            self._fail_once.open(runtime_context)
        self._metrics = OperatorMetrics(runtime_context)
        self._watch_catalog(self._metrics)

    def process_element(self, value: bytes, ctx: BroadcastProcessFunction.ReadOnlyContext) -> Iterable[Any]:
        self._before_event(ctx.get_broadcast_state(CONTROL_STATE))
        if self._fail_once is not None:  # the test hook counts events, as the per-event operator does
            self._fail_once.record(len(decode_event_part(request_event_part(value))))
        answer, dead = self._ranker.rank(value)
        if dead:
            self._metrics.dead_letters(dead)
        for letter in dead:
            yield DLQ_TAG, letter.to_json()
        yield answer

    def process_broadcast_element(self, value: Row, ctx: BroadcastProcessFunction.Context) -> Iterable[Any]:
        self._control(value, ctx.get_broadcast_state(CONTROL_STATE))
        return []
