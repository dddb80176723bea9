"""The topology of the streamrec job.

``build_pipeline`` takes a stream of raw JSON events and returns the streams the job produces;
it knows nothing about Kafka or Cassandra, so tests drive it with collection sources. ``main``
(see :mod:`streamrec.jobs.job`) attaches the real sources and sinks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from pyflink.common import Types
from pyflink.datastream import DataStream, StreamExecutionEnvironment
from pyflink.table import StreamTableEnvironment
from pyflink.table.expressions import col
from pyflink.table.udf import udf

from streamrec.config import Config
from streamrec.udfs.model import ModelParams
from streamrec.udfs.operators import (
    DLQ_TAG,
    EVENT_ROW,
    RECS_TYPE,
    UPDATE_ROW,
    CatalogLoader,
    FailOnce,
    ParseEvents,
    TopK,
    UpdateUserEmbedding,
)

# Column order of the recommendations stream (one row per valid event):
RECOMMENDATION_FIELDS = [
    "event_id", "user_id", "ts", "type", "product_id", "query",  # the event
    "write_ts",  # Cassandra write timestamp (microseconds, from event time)
    "product_ids", "scores", "source",  # the user's recommendations after this event
]


@dataclass(frozen=True)
class PipelineStreams:
    recommendations: DataStream  # Row(RECOMMENDATION_FIELDS)
    dead_letters: DataStream  # str: JSON {"error", "reason", "payload"}


def model_params(config: Config) -> ModelParams:
    return ModelParams.from_config(config)


def fail_once(config: Config) -> Optional[FailOnce]:
    """The test-only fault injection hook, or None (the default)."""
    if config.fault_fail_once_after <= 0:
        return None
    if not config.checkpoint_dir:
        raise ValueError("fault_fail_once_after needs checkpoint_dir (it fails after a completed checkpoint)")
    return FailOnce(config.fault_fail_once_after, config.checkpoint_dir)


def build_pipeline(
    env: StreamExecutionEnvironment,
    raw_events: DataStream,
    config: Config,
    catalog_loader: CatalogLoader,
) -> PipelineStreams:
    params = model_params(config)

    # str -> Row(EVENT_FIELDS); bad records -> side output
    events = raw_events.process(
        ParseEvents(catalog_loader, config.max_record_bytes, config.max_query_chars), output_type=EVENT_ROW
    ).name("parse-events").uid("parse-events")
    dead_letters = events.get_side_output(DLQ_TAG)

    # Row(UPDATE_FIELDS): the event + the user's embedding and exclusions after it
    updates = (
        events.key_by(lambda e: e.user_id, key_type=Types.STRING())
        .process(UpdateUserEmbedding(catalog_loader, params, fail_once(config)), output_type=UPDATE_ROW)
        .name("update-embeddings")
        .uid("update-embeddings")
    )

    # The top-k runs as a pandas UDF so that a whole Arrow batch of users costs one matrix product.
    # It is stateless, so the planner-generated uid of this part does not matter for restores.
    t_env = StreamTableEnvironment.create(env)
    top_k = udf(TopK(catalog_loader, params), result_type=RECS_TYPE, func_type="pandas")
    recs_table = (
        t_env.from_data_stream(updates)
        .add_columns(top_k(col("vector"), col("exclude")).alias("recs"))
        .select(
            col("event_id"), col("user_id"), col("ts"), col("type"), col("product_id"), col("query"),
            col("write_ts"),
            col("recs").get("product_ids").alias("product_ids"),
            col("recs").get("scores").alias("scores"),
            col("recs").get("source").alias("source"),
        )
    )
    recommendations = t_env.to_data_stream(recs_table)
    return PipelineStreams(recommendations=recommendations, dead_letters=dead_letters)
