"""Thin PyFlink wrappers around the pure functions of this package.

Each class only adapts Flink's calling convention (rows, state, side outputs, Arrow batches) to
the plain functions in :mod:`streamrec.udfs.events` and :mod:`streamrec.udfs.model`. Importing
this module needs pyflink but starts no JVM.
"""

from __future__ import annotations

import pickle
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import numpy as np
import pandas as pd
from pyflink.common import Row, Types
from pyflink.datastream import KeyedProcessFunction, OutputTag, ProcessFunction, RuntimeContext
from pyflink.datastream.state import ValueStateDescriptor
from pyflink.table import DataTypes
from pyflink.table.udf import FunctionContext, ScalarFunction

from streamrec.udfs.catalog import Catalog
from streamrec.udfs.events import BadRecord, Event, parse_event
from streamrec.udfs.model import ModelParams, UserState, recommend_batch, update_user, write_timestamp_us

CatalogLoader = Callable[[], Catalog]

# Shapes of the streams between operators (field names are the Table API column names too).
EVENT_FIELDS = ["event_id", "user_id", "ts", "type", "product_id", "query"]
EVENT_TYPES = [Types.STRING(), Types.STRING(), Types.LONG(), Types.STRING(), Types.STRING(), Types.STRING()]
EVENT_ROW = Types.ROW_NAMED(EVENT_FIELDS, EVENT_TYPES)

# An event plus the user's state after it: what the top-k step needs.
UPDATE_FIELDS = [*EVENT_FIELDS, "vector", "exclude", "write_ts"]
UPDATE_ROW = Types.ROW_NAMED(
    UPDATE_FIELDS,
    [*EVENT_TYPES, Types.BASIC_ARRAY(Types.FLOAT()), Types.BASIC_ARRAY(Types.STRING()), Types.LONG()],
)

RECS_TYPE = DataTypes.ROW(
    [
        DataTypes.FIELD("product_ids", DataTypes.ARRAY(DataTypes.STRING())),
        DataTypes.FIELD("scores", DataTypes.ARRAY(DataTypes.FLOAT())),
        DataTypes.FIELD("source", DataTypes.STRING()),
    ]
)

DLQ_TAG = OutputTag("dead-letters", Types.STRING())


def event_to_row(e: Event) -> Row:
    return Row(e.event_id, e.user_id, e.ts, e.type, e.product_id, e.query)


def row_to_event(r: Row) -> Event:
    return Event(r.event_id, r.user_id, r.ts, r.type, r.product_id, r.query)


class ParseEvents(ProcessFunction):
    """raw JSON string -> EVENT_ROW; bad input -> DLQ_TAG as a JSON dead letter."""

    def __init__(self, catalog_loader: CatalogLoader, max_record_bytes: int, max_query_chars: int) -> None:
        self._load = catalog_loader
        self._max_record_bytes = max_record_bytes
        self._max_query_chars = max_query_chars
        self._known: Optional[frozenset[str]] = None

    def open(self, runtime_context: RuntimeContext) -> None:
        self._known = frozenset(self._load().product_ids)

    def process_element(self, value: str, ctx: ProcessFunction.Context) -> Iterable[Any]:
        parsed = parse_event(value, self._known, self._max_record_bytes, self._max_query_chars)
        if isinstance(parsed, BadRecord):
            yield DLQ_TAG, parsed.to_json()
        else:
            yield event_to_row(parsed)


class FailOnce:
    """Fault injection for the tests (reliability target 3), off unless ``after_records`` > 0.

    Subtask 0 raises once, on its first attempt only, at the first record after it has processed
    ``after_records`` records and a checkpoint of the job has completed (a ``chk-N/_metadata``
    file exists under ``checkpoint_dir``). Flink then restarts the job from that checkpoint.
    """

    def __init__(self, after_records: int, checkpoint_dir: str) -> None:
        self._after = after_records
        self._dir = checkpoint_dir[len("file://"):] if checkpoint_dir.startswith("file://") else checkpoint_dir
        self._armed = False
        self._seen = 0
        self._next_look = 0.0

    def open(self, runtime_context: RuntimeContext) -> None:
        self._armed = (self._after > 0 and runtime_context.get_attempt_number() == 0
                       and runtime_context.get_index_of_this_subtask() == 0)
        self._seen = 0

    def checkpoint_completed(self) -> bool:
        return any(Path(self._dir).glob("*/chk-*/_metadata"))

    def record(self) -> None:
        if not self._armed:
            return
        self._seen += 1
        now = time.monotonic()
        if self._seen < self._after or now < self._next_look:
            return
        self._next_look = now + 0.2  # a directory listing at most five times a second
        if self.checkpoint_completed():
            self._armed = False
            raise RuntimeError(f"injected failure (fault_fail_once_after={self._after}): {self._seen} records "
                               "processed and a checkpoint completed; attempt 0 only")


class UpdateUserEmbedding(KeyedProcessFunction):
    """Keyed by user: moves the user's embedding (Flink keyed state) with every event."""

    def __init__(self, catalog_loader: CatalogLoader, params: ModelParams,
                 fail_once: Optional[FailOnce] = None) -> None:
        self._load = catalog_loader
        self._params = params
        self._catalog: Optional[Catalog] = None
        self._fail_once = fail_once

    def open(self, runtime_context: RuntimeContext) -> None:
        self._catalog = self._load()
        if self._fail_once is not None:
            self._fail_once.open(runtime_context)
        # One pickled value per user: a single state access per event is what keeps PyFlink fast
        # (see ARCHITECTURE.md), and PICKLED_BYTE_ARRAY avoids the primitive-array state bugs.
        self._state = runtime_context.get_state(ValueStateDescriptor("user", Types.PICKLED_BYTE_ARRAY()))

    def process_element(self, value: Row, ctx: KeyedProcessFunction.Context) -> Iterable[Row]:
        assert self._catalog is not None
        if self._fail_once is not None:
            self._fail_once.record()
        raw = self._state.value()
        state: UserState = pickle.loads(raw) if raw is not None else UserState()
        update_user(state, row_to_event(value), self._catalog, self._params)
        self._state.update(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))
        vector = None if state.vector is None else [float(x) for x in state.vector]
        yield Row(*value, vector, list(state.purchased), write_timestamp_us(state))


class TopK(ScalarFunction):
    """Vectorized (pandas) UDF: top-k for a whole Arrow batch of users with one matrix product."""

    def __init__(self, catalog_loader: CatalogLoader, params: ModelParams) -> None:
        self._load = catalog_loader
        self._params = params
        self._catalog: Optional[Catalog] = None

    def open(self, function_context: FunctionContext) -> None:
        self._catalog = self._load()

    def eval(self, vectors: pd.Series, exclude: pd.Series) -> pd.DataFrame:
        assert self._catalog is not None
        vecs = [None if v is None else np.asarray(v, dtype=np.float32) for v in vectors]
        excl = [[] if e is None else list(e) for e in exclude]
        recs = recommend_batch(vecs, excl, self._catalog, self._params)
        return pd.DataFrame(
            {
                "product_ids": [list(r.product_ids) for r in recs],
                "scores": [list(r.scores) for r in recs],
                "source": [r.source for r in recs],
            }
        )
