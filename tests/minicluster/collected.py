"""What the minicluster tests of ``build_pipeline`` share: records that break every parsing rule,
a local environment, seeded random catalogs and event streams, and one run of the pipeline on
collections with its two outputs collected."""

from __future__ import annotations

import json
import random
import sys
from typing import Any, Sequence

import numpy as np

from streamrec.config import Config
from streamrec.connectors.catalog import CatalogFromConfig
from streamrec.jobs.pipeline import build_pipeline
from streamrec.model.catalog import Catalog
from streamrec.model.events import Event
from streamrec.udfs.operators import RECOMMENDATION_FIELDS

BAD = {
    "NOT_JSON": "{this is not json",
    "MISSING_FIELD": json.dumps({"event_id": "b2", "ts": 1, "type": "view", "product_id": "p1"}),
    "WRONG_TYPE": json.dumps({"event_id": "b3", "user_id": "u1", "ts": "noon", "type": "view", "product_id": "p1"}),
    "UNKNOWN_TYPE": json.dumps({"event_id": "b4", "user_id": "u1", "ts": 1, "type": "wish", "product_id": "p1"}),
    "UNKNOWN_PRODUCT": json.dumps({"event_id": "b5", "user_id": "u1", "ts": 1, "type": "view", "product_id": "zz"}),
    "OVERSIZED": json.dumps({"event_id": "b6", "user_id": "u1", "ts": 1, "type": "view", "product_id": "p1",
                             "pad": "x" * 70_000}),
    "NON_FINITE": '{"event_id": "b7", "user_id": "u1", "ts": NaN, "type": "view", "product_id": "p1"}',
}

# product updates that arrive while events flow: a new title changes no ranking; a bad one is a dead letter
PRODUCT_UPDATES = [json.dumps({"product_id": "p1", "title": "renamed"}), json.dumps({"product_id": 5})]


def local_env(parallelism: int) -> Any:
    """A plain local environment whose Python workers run this interpreter (its venv has pyflink),
    as the job's create_env sets it."""
    from pyflink.common import Configuration
    from pyflink.datastream import StreamExecutionEnvironment

    env = StreamExecutionEnvironment.get_execution_environment(
        Configuration().set_string("python.executable", sys.executable))
    env.set_parallelism(parallelism)
    return env


def unit_vectors(rng: np.random.Generator, products: int, dim: int = 8) -> np.ndarray:
    vectors = rng.normal(size=(products, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def product_ids(products: int) -> tuple[str, ...]:
    return tuple(f"p{i}" for i in range(products))


def random_events(count: int, users: int, products: int, types: Sequence[str], seed: int) -> list[Event]:
    """``count`` events of random users, types and products, one ms apart (searches for "lamp")."""
    r = random.Random(seed)
    events = []
    for i in range(count):
        etype = r.choice(types)
        events.append(Event(f"e{i:03d}", f"u{r.randrange(users)}", 1_700_000_000_000 + i, etype,
                            None if etype == "search" else f"p{r.randrange(products)}",
                            "lamp" if etype == "search" else None))
    return events


def run_with_bad_records(catalog: Catalog, config: Config, valid: list[Event],
                         seed: int = 5) -> tuple[list[dict], list[dict]]:
    """``build_pipeline`` at parallelism 2 on ``valid`` and :data:`BAD` shuffled together, with
    :data:`PRODUCT_UPDATES` on the control side: (recommendation rows, dead letters)."""
    from pyflink.common import Types

    raw = [e.to_json() for e in valid] + list(BAD.values())
    random.Random(seed).shuffle(raw)
    env = local_env(parallelism=2)
    streams = build_pipeline(env, env.from_collection(raw, type_info=Types.STRING()), config,
                             CatalogFromConfig(config), env.from_collection(PRODUCT_UPDATES, type_info=Types.STRING()))
    # one job, two outputs: tag them and collect once
    tagged = streams.recommendations.map(lambda row: json.dumps(["rec", list(row)]), Types.STRING()).union(
        streams.dead_letters.map(lambda s: json.dumps(["dlq", s]), Types.STRING()))
    with tagged.execute_and_collect() as results:
        out = [json.loads(x) for x in results]
    recs = [dict(zip(RECOMMENDATION_FIELDS, v)) for kind, v in out if kind == "rec"]
    dlq = [json.loads(v) for kind, v in out if kind == "dlq"]
    return recs, dlq
