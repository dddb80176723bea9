"""The topology of the streamrec job.

``build_pipeline`` takes a stream of raw JSON events (and optionally raw product updates) and
returns the streams the job produces; it knows nothing about Kafka or Cassandra, so tests drive it
with collection sources. ``main`` (see :mod:`streamrec.jobs.job`) attaches the real sources and sinks.

    events --parse-events--> key_by(user) --update-and-recommend--> recommendations
                  |     ^                          ^ (broadcast: product updates, trending list)
                  |     await-products (JVM: events waiting for their product)
                  +--> popularity (JVM) ------trending--+
    products --parse-products----------------------+
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from pyflink.common import Types
from pyflink.datastream import DataStream, StreamExecutionEnvironment
from pyflink.java_gateway import get_gateway

from streamrec.config import Config
from streamrec.connectors.javasupport import POPULARITY_CLASS_NAME, add_support_jar, java_class
from streamrec.model.model import ModelParams
from streamrec.model.variants import Variants
from streamrec.udfs.batch import BATCH, ParseBatch, RankBatch
from streamrec.udfs.metrics import count_users_in_state
from streamrec.udfs.operators import (
    CONTROL_ROW,
    CONTROL_STATE,
    DLQ_TAG,
    EVENT_ROW,
    KNOWN_PRODUCTS_STATE,
    RECOMMENDATION_FIELDS,
    RECOMMENDATION_ROW,
    WAITING_TAG,
    CatalogLoader,
    FailOnce,
    ParseEvents,
    ParseEventsLive,
    ParseProducts,
    Recommend,
    TrendingMerge,
)

# the fast path's JVM operators (java/src/main/java/streamrec/flink/)
RECORD_BATCHER_CLASS_NAME = "streamrec.flink.RecordBatcher"
EVENT_UNBATCHER_CLASS_NAME = "streamrec.flink.EventUnbatcher"
ROW_KEY_CLASS_NAME = "streamrec.flink.RowKey"
USER_STATE_CLASS_NAME = "streamrec.flink.UserStateOperator"
RECOMMENDATION_UNBATCHER_CLASS_NAME = "streamrec.flink.RecommendationUnbatcher"
HIT_COUNTER_CLASS_NAME = "streamrec.flink.HitCounter"
AWAIT_PRODUCTS_CLASS_NAME = "streamrec.flink.AwaitProducts"

__all__ = ["RECOMMENDATION_FIELDS", "PipelineStreams", "build_pipeline", "model_params"]


@dataclass(frozen=True)
class PipelineStreams:
    recommendations: DataStream  # Row(RECOMMENDATION_FIELDS), one per valid event
    dead_letters: DataStream  # str: JSON {"error", "reason", "payload"}
    trending: DataStream  # Row(CONTROL_FIELDS) with kind "trending": each trending list broadcast


def model_params(config: Config) -> ModelParams:
    return ModelParams.from_config(config.model)


def fail_once(config: Config) -> Optional[FailOnce]:
    """The ranker's test-only fault injection hook, or None (the default)."""
    if config.faults.fail_once_after <= 0:
        return None
    if not config.job.checkpoint_dir:
        raise ValueError("fault_fail_once_after needs checkpoint_dir (it fails after a completed checkpoint)")
    if config.faults.fail_in_checkpoint_complete and config.job.hot_path != "batch":
        raise ValueError("fault_fail_in_checkpoint_complete needs the fast path (hot_path batch): "
                         "user-state throws it")
    # attempt 0 is user-state's when it fails inside checkpoint completion
    first = 1 if config.faults.fail_in_checkpoint_complete else 0
    return FailOnce(config.faults.fail_once_after, config.job.checkpoint_dir, config.faults.fail_times, first)


def _fail_in_checkpoint_complete(user_state: Any, config: Config) -> Any:
    """user-state with the test-only failure inside notifyCheckpointComplete armed, when configured."""
    if config.faults.fail_once_after > 0 and config.faults.fail_in_checkpoint_complete:
        return user_state.failInCheckpointComplete(int(config.faults.fail_once_after))
    return user_state


def popularity_counts(env: StreamExecutionEnvironment, events: DataStream, config: Config) -> DataStream:
    """Per product and minute of event time, the summed positive event weights and the newest event
    time, as one JSON string ``[[product_id, weight, ts], ...]`` per ``trending_interval_ms`` and
    per checkpoint. Counted in the JVM (``PopularityCounter``): in Python, or in SQL behind a
    DataStream-to-Table conversion, counting cost ~150 us per event and took the interpreter lock
    from the ranking operator (docs/benchmark-history.md, session 8). The minute keeps decay right when a
    backlog of older events arrives at once."""
    add_support_jar(env)
    weights = get_gateway().jvm.java.util.HashMap()
    for etype, weight in config.model.event_weights.items():
        weights.put(str(etype), float(weight))
    counter = java_class(POPULARITY_CLASS_NAME)(weights, int(config.model.trending_interval_ms))
    j_stream = events._j_data_stream.transform("popularity", Types.STRING().get_java_type_info(), counter)
    return DataStream(j_stream).name("popularity").uid("popularity")


def _java_transform(stream: DataStream, name: str, type_info: Any, operator: Any, key: Optional[int] = None
                    ) -> DataStream:
    """A JVM operator of the job's jar on ``stream`` (keyed by the string field ``key`` first, with a
    Java key selector: PyFlink's key_by would call Python once per record)."""
    j_stream = stream._j_data_stream
    if key is not None:
        j_stream = j_stream.keyBy(java_class(ROW_KEY_CLASS_NAME)(key))
    return DataStream(j_stream.transform(name, type_info.get_java_type_info(), operator)).name(name).uid(name)


def _java_flat_map(stream: DataStream, name: str, type_info: Any, function: Any) -> DataStream:
    return DataStream(stream._j_data_stream.flatMap(function, type_info.get_java_type_info())).name(name).uid(name)


def _java_set(values: Any) -> Any:
    out = get_gateway().jvm.java.util.HashSet()
    for v in values:
        out.add(v)
    return out


def parse_products(raw_products: Optional[DataStream], config: Config, catalog_loader: CatalogLoader
                   ) -> Optional[DataStream]:
    """Raw product updates -> Row(CONTROL_FIELDS) (bad ones -> side output), or None without them."""
    if raw_products is None:
        return None
    return raw_products.process(
        ParseProducts(catalog_loader, config.limits.max_record_bytes), output_type=CONTROL_ROW
    ).name("parse-products").uid("parse-products")


def parse_events(raw: DataStream, products: Optional[DataStream], parser: ParseEvents, output_type: Any
                 ) -> DataStream:
    """``parser`` on the raw stream; with product updates, it also learns of the products published
    while the job runs (so events naming them are valid). Bad records -> its DLQ_TAG side output."""
    if products is None:
        parsed = raw.process(parser, output_type=output_type)
    else:
        parsed = raw.connect(products.broadcast(KNOWN_PRODUCTS_STATE)).process(ParseEventsLive(parser),
                                                                                output_type=output_type)
    return parsed.name("parse-events").uid("parse-events")


def holds_unknown(config: Config, products: Optional[DataStream]) -> bool:
    """Whether the parser hands an event for an unknown product to await-products (the late
    catalog) instead of dead-lettering it: only with a wait and a products stream to wait on."""
    return products is not None and config.limits.unknown_product_wait_ms > 0


def await_products(env: StreamExecutionEnvironment, parsed: DataStream, events: DataStream,
                   dead_letters: DataStream, products: Optional[DataStream], config: Config
                   ) -> tuple[DataStream, DataStream]:
    """The late catalog: the parser's waiting events (WAITING_TAG), keyed by product, wait in the
    JVM operator await-products for their product on the products stream (keyed alike), then join
    ``events``; those whose wait ends join ``dead_letters`` with the parser's own UNKNOWN_PRODUCT
    letter. Unchanged streams without a wait or without products."""
    if not holds_unknown(config, products):
        return events, dead_letters
    assert products is not None
    add_support_jar(env)
    waiting = parsed.get_side_output(WAITING_TAG)._j_data_stream.keyBy(java_class(ROW_KEY_CLASS_NAME)(4))
    catalog = products._j_data_stream.keyBy(java_class(ROW_KEY_CLASS_NAME)(1))
    awaiting = java_class(AWAIT_PRODUCTS_CLASS_NAME)
    late = DataStream(waiting.connect(catalog).transform(
        "await-products", EVENT_ROW.get_java_type_info(),
        awaiting.operator(int(config.limits.unknown_product_wait_ms))))
    late = late.name("await-products").uid("await-products")
    expired = DataStream(late._j_data_stream.getSideOutput(awaiting.deadLetters()))
    return events.union(late), dead_letters.union(expired)


def trending_and_control(env: StreamExecutionEnvironment, events: DataStream, products: Optional[DataStream],
                         config: Config) -> tuple[DataStream, DataStream]:
    """Trending (popularity counted in the JVM, merged and decayed by one Python instance), and the
    control stream the ranking operator gets broadcast: the trending lists and the product updates."""
    popularity = popularity_counts(env, events, config)
    trending = (
        popularity.key_by(lambda _: 0, key_type=Types.INT())
        .process(TrendingMerge(config.model.trending_half_life_minutes * 60_000, config.model.trending_size,
                               config.model.trending_interval_ms), output_type=CONTROL_ROW)
        .name("trending").uid("trending")
    )
    return trending, trending if products is None else trending.union(products)


def build_pipeline(
    env: StreamExecutionEnvironment,
    raw_events: DataStream,
    config: Config,
    catalog_loader: CatalogLoader,
    raw_products: Optional[DataStream] = None,
) -> PipelineStreams:
    variants = Variants.from_config(config.model)  # fails fast on bad STREAMREC_VARIANTS
    if config.job.hot_path == "batch":
        return build_batch_pipeline(env, raw_events, config, catalog_loader, raw_products, variants)

    products = parse_products(raw_products, config, catalog_loader)

    # str -> Row(EVENT_FIELDS); bad records -> side output
    parsed = parse_events(raw_events, products, ParseEvents(catalog_loader, config.limits.max_record_bytes,
                                                            config.limits.max_query_chars, config.limits.max_ts_lead_ms,
                                                            holds_unknown(config, products)),
                          EVENT_ROW)
    # events for a product not known yet join the others once it is (before trending and key_by)
    events, dead_letters = await_products(env, parsed, parsed, parsed.get_side_output(DLQ_TAG), products, config)
    trending, control = trending_and_control(env, events, products, config)
    if products is not None:
        dead_letters = dead_letters.union(products.get_side_output(DLQ_TAG))

    recommendations = (
        events.key_by(lambda e: e.user_id, key_type=Types.STRING())
        .connect(control.broadcast(CONTROL_STATE))
        .process(Recommend(catalog_loader, variants, config.model.user_ttl_ms, fail_once(config),
                           config.model.ann_min_products, config.model.ann_recall_floor, config.job.blas_threads),
                 output_type=RECOMMENDATION_ROW)
        .name("update-and-recommend")
        # the uid of the keyed user state since the first release: savepoints keep restoring it
        .uid("update-embeddings")
    )
    # INTERNAL dead letters of events whose update or ranking raised (see Recommend)
    dead_letters = dead_letters.union(recommendations.get_side_output(DLQ_TAG))
    recommendations = count_users_in_state(recommendations, config.model.user_ttl_ms)  # exact users_in_state
    return PipelineStreams(recommendations=recommendations, dead_letters=dead_letters, trending=trending)


def build_batch_pipeline(
    env: StreamExecutionEnvironment,
    raw_events: DataStream,
    config: Config,
    catalog_loader: CatalogLoader,
    raw_products: Optional[DataStream],
    variants: Variants,
) -> PipelineStreams:
    """The fast path: Python sees batches of events only, the user state lives in a JVM operator.

        raw --batch-records(JVM)--> parse-events(Py, per batch) --unbatch-events(JVM)--> events
        events --key_by(user)--> user-state(JVM keyed state, batches) --> rank(Py, per batch)
               --unbatch-recommendations(JVM)--> key_by(user) --ab-hits(JVM)--> recommendations
    """
    add_support_jar(env)
    jvm = get_gateway().jvm
    products = parse_products(raw_products, config, catalog_loader)

    # str -> byte[] (raw records, RecordBatcher's format)
    batches = _java_transform(raw_events, "batch-records", BATCH, java_class(RECORD_BATCHER_CLASS_NAME)(
        config.job.batch_max_events, config.job.batch_max_bytes, config.job.batch_linger_ms,
    ).lingerUpTo(config.job.batch_max_linger_ms))
    # byte[] -> byte[] (valid events, one text block per batch); bad records -> side output
    parsed = parse_events(batches, products, ParseBatch(catalog_loader, config.limits.max_record_bytes,
                                                        config.limits.max_query_chars, config.limits.max_ts_lead_ms,
                                                        holds_unknown(config, products)), BATCH)
    # byte[] -> Row(EVENT_FIELDS), one per event
    events = _java_flat_map(parsed, "unbatch-events", EVENT_ROW, java_class(EVENT_UNBATCHER_CLASS_NAME)())
    # events for a product not known yet join the others once it is (before trending and user-state)
    events, dead_letters = await_products(env, parsed, events, parsed.get_side_output(DLQ_TAG), products, config)

    trending, control = trending_and_control(env, events, products, config)
    if products is not None:
        dead_letters = dead_letters.union(products.get_side_output(DLQ_TAG))

    # Row(EVENT_FIELDS) keyed by user -> byte[] (UserStateOperator's batches)
    user_state = _fail_in_checkpoint_complete(java_class(USER_STATE_CLASS_NAME)(
        _java_set(variants.moving_types), variants.history_size, int(config.model.user_ttl_ms),
        config.job.batch_max_events, config.job.batch_linger_ms).lingerUpTo(config.job.batch_max_linger_ms)
        .paceUsers(config.job.user_max_events_per_s, config.job.user_max_paced_events), config)
    user_batches = _java_transform(events, "user-state", BATCH, user_state, key=1)
    # byte[] -> byte[] (RecommendationUnbatcher's format); a user whose ranking raises -> side output
    answers = (
        user_batches.connect(control.broadcast(CONTROL_STATE))
        .process(RankBatch(catalog_loader, variants, fail_once(config), config.model.ann_min_products,
                           config.model.ann_recall_floor, config.job.blas_threads), output_type=BATCH)
        .name("rank").uid("rank")
    )
    dead_letters = dead_letters.union(answers.get_side_output(DLQ_TAG))
    rows = _java_flat_map(answers, "unbatch-recommendations", RECOMMENDATION_ROW,
                          java_class(RECOMMENDATION_UNBATCHER_CLASS_NAME)())
    top_k = jvm.java.util.HashMap()
    for name, params in variants.params.items():
        top_k.put(name, int(params.top_k))
    hit_counter = java_class(HIT_COUNTER_CLASS_NAME)(top_k, int(config.model.user_ttl_ms))
    # Keyed by user without a shuffle: rank and the unbatcher run forward from user-state, so each
    # subtask already holds exactly the users of its key groups. A keyBy here cost a network hop
    # (serialising every row, and up to the buffer timeout of latency) for nothing.
    keyed_rows = jvm.org.apache.flink.streaming.api.datastream.DataStreamUtils.reinterpretAsKeyedStream(
        rows._j_data_stream, java_class(ROW_KEY_CLASS_NAME)(1), Types.STRING().get_java_type_info())
    recommendations = DataStream(keyed_rows.transform(
        "ab-hits", RECOMMENDATION_ROW.get_java_type_info(), hit_counter)).name("ab-hits").uid("ab-hits")
    return PipelineStreams(recommendations=recommendations, dead_letters=dead_letters, trending=trending)
