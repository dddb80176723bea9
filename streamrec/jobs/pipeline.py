"""The topology of the streamrec job.

``build_pipeline`` takes a stream of raw JSON events (and optionally raw product updates) and
returns the streams the job produces; it knows nothing about Kafka or Cassandra, so tests drive it
with collection sources. ``main`` (see :mod:`streamrec.jobs.job`) attaches the real sources and sinks.

    events --parse-events--> key_by(user) --update-and-recommend--> recommendations
                  |                                ^ (broadcast: product updates, trending list)
                  +--> popularity (JVM) ------trending--+
    products --parse-products----------------------+
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from pyflink.common import Types
from pyflink.datastream import DataStream, StreamExecutionEnvironment
from pyflink.java_gateway import get_gateway

from streamrec.config import Config
from streamrec.connectors.javasupport import POPULARITY_CLASS_NAME, add_support_jar, java_class
from streamrec.model.model import ModelParams
from streamrec.model.variants import Variants
from streamrec.udfs.operators import (
    CONTROL_ROW,
    CONTROL_STATE,
    DLQ_TAG,
    EVENT_ROW,
    KNOWN_PRODUCTS_STATE,
    RECOMMENDATION_FIELDS,
    RECOMMENDATION_ROW,
    CatalogLoader,
    FailOnce,
    ParseEvents,
    ParseEventsLive,
    ParseProducts,
    Recommend,
    TrendingMerge,
)

__all__ = ["RECOMMENDATION_FIELDS", "PipelineStreams", "build_pipeline", "model_params"]


@dataclass(frozen=True)
class PipelineStreams:
    recommendations: DataStream  # Row(RECOMMENDATION_FIELDS), one per valid event
    dead_letters: DataStream  # str: JSON {"error", "reason", "payload"}
    trending: DataStream  # Row(CONTROL_FIELDS) with kind "trending": each trending list broadcast


def model_params(config: Config) -> ModelParams:
    return ModelParams.from_config(config)


def fail_once(config: Config) -> Optional[FailOnce]:
    """The test-only fault injection hook, or None (the default)."""
    if config.fault_fail_once_after <= 0:
        return None
    if not config.checkpoint_dir:
        raise ValueError("fault_fail_once_after needs checkpoint_dir (it fails after a completed checkpoint)")
    return FailOnce(config.fault_fail_once_after, config.checkpoint_dir)


def popularity_counts(env: StreamExecutionEnvironment, events: DataStream, config: Config) -> DataStream:
    """Per product and minute of event time, the summed positive event weights and the newest event
    time, as one JSON string ``[[product_id, weight, ts], ...]`` per ``trending_interval_ms`` and
    per checkpoint. Counted in the JVM (``PopularityCounter``): in Python, or in SQL behind a
    DataStream-to-Table conversion, counting cost ~150 us per event and took the interpreter lock
    from the ranking operator (BENCHMARKS.md, session 8). The minute keeps decay right when a
    backlog of older events arrives at once."""
    add_support_jar(env)
    weights = get_gateway().jvm.java.util.HashMap()
    for etype, weight in config.event_weights.items():
        weights.put(str(etype), float(weight))
    counter = java_class(POPULARITY_CLASS_NAME)(weights, int(config.trending_interval_ms))
    j_stream = events._j_data_stream.transform("popularity", Types.STRING().get_java_type_info(), counter)
    return DataStream(j_stream).name("popularity").uid("popularity")


def build_pipeline(
    env: StreamExecutionEnvironment,
    raw_events: DataStream,
    config: Config,
    catalog_loader: CatalogLoader,
    raw_products: Optional[DataStream] = None,
) -> PipelineStreams:
    variants = Variants.from_config(config)  # fails fast on bad STREAMREC_VARIANTS

    products: Optional[DataStream] = None
    if raw_products is not None:
        products = raw_products.process(
            ParseProducts(catalog_loader, config.max_record_bytes), output_type=CONTROL_ROW
        ).name("parse-products").uid("parse-products")

    # str -> Row(EVENT_FIELDS); bad records -> side output. The parser learns of products published
    # while the job runs, so events naming them are valid.
    if products is None:
        events = raw_events.process(
            ParseEvents(catalog_loader, config.max_record_bytes, config.max_query_chars), output_type=EVENT_ROW
        ).name("parse-events").uid("parse-events")
    else:
        events = raw_events.connect(products.broadcast(KNOWN_PRODUCTS_STATE)).process(
            ParseEventsLive(catalog_loader, config.max_record_bytes, config.max_query_chars), output_type=EVENT_ROW
        ).name("parse-events").uid("parse-events")
    dead_letters = events.get_side_output(DLQ_TAG)

    # Trending: popularity counted in the JVM, merged and decayed by one Python instance.
    popularity = popularity_counts(env, events, config)
    trending = (
        popularity.key_by(lambda _: 0, key_type=Types.INT())
        .process(TrendingMerge(config.trending_half_life_minutes * 60_000, config.trending_size,
                               config.trending_interval_ms), output_type=CONTROL_ROW)
        .name("trending").uid("trending")
    )

    control = trending
    if products is not None:
        dead_letters = dead_letters.union(products.get_side_output(DLQ_TAG))
        control = trending.union(products)

    recommendations = (
        events.key_by(lambda e: e.user_id, key_type=Types.STRING())
        .connect(control.broadcast(CONTROL_STATE))
        .process(Recommend(catalog_loader, variants, config.user_ttl_ms, fail_once(config),
                           config.ann_min_products, config.ann_recall_floor, config.blas_threads),
                 output_type=RECOMMENDATION_ROW)
        .name("update-and-recommend")
        # the uid of the keyed user state since the first release: savepoints keep restoring it
        .uid("update-embeddings")
    )
    # INTERNAL dead letters of events whose update or ranking raised (see Recommend)
    dead_letters = dead_letters.union(recommendations.get_side_output(DLQ_TAG))
    return PipelineStreams(recommendations=recommendations, dead_letters=dead_letters, trending=trending)
