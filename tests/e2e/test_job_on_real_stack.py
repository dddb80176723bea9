"""The job on a local minicluster against the real Kafka and Cassandra.

A user replays real purchases (UCI Online Retail) plus one record of each bad-input class into
Kafka; they must find every valid event in Cassandra once, every bad one in the dead-letter
topic with its code, and k recommendations per customer that exclude what the customer bought.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

import pytest

from streamrec.config import Config
from streamrec.connectors.cassandra import QueryClient
from streamrec.model.events import Event
from streamrec.runner import BackgroundJob, config_env, wait_for
from streamrec.verify import Report, verify
from tests.e2e.conftest import fresh_config

from .helpers import (
    MALFORMED,
    count_events,
    dead_letters,
    produce,
    read_store,
    tombstones_read,
    uci_slice,
)


@dataclass
class Replay:
    config: Config
    events: list[Event]
    store: Any
    dlq: list[dict]
    lone_seconds: float
    ranked: Report  # `verify` against the catalog file, as `catalog build` made it


@pytest.fixture(scope="module", params=[("thread", "java"), ("process", "python")],
                ids=["thread-mode-java-sink", "process-mode-python-writer"])
def replayed(request, services, artifacts, uci_history, uci_catalog, tmp_path_factory):
    # the default (Python in the TaskManager's JVM, rows written by the Java sink) and the other
    # pair of settings a user may choose: the same events must give the same store. One job run per
    # pair serves every check (a Flink job start costs 5-20 s here)
    mode, writer = request.param
    with fresh_config(artifacts, uci_catalog) as e2e_config:
        # checkpoints far apart: a row that waited for one (rather than for its batch's linger) would show
        job_config = e2e_config.replace(job={"python_execution_mode": mode, "checkpoint_interval_ms": 60_000},
                                        cassandra={"writer": writer})
        events = uci_slice(uci_history, users=12, per_user=30)
        # two shoppers look at the same product; only the second then searches for "lantern"
        ts = events[-1].ts + 1000
        searchers = [Event("s-1", "shopper-a", ts, "view", "85123A"), Event("s-2", "shopper-b", ts, "view", "85123A"),
                     Event("s-3", "shopper-b", ts + 1000, "search", None, "lantern")]
        with BackgroundJob(job_config, tmp_path_factory.mktemp("job") / "job.log") as job:
            produce(e2e_config, events)
            produce(e2e_config, searchers, malformed=False)
            wait_for(lambda: count_events(e2e_config) >= len(events) + len(searchers), timeout=240,
                     what=f"{len(events)} events in Cassandra", interval=2,
                     on_timeout=job.log_tail)
            wait_for(lambda: len(dead_letters(e2e_config)) >= len(MALFORMED), timeout=60,
                     what="dead letters", on_timeout=job.log_tail)
            # then the stream goes quiet, and one more shopper clicks
            lone = Event("s-4", "shopper-quiet", ts + 2000, "click", "85123A")
            reader = QueryClient(e2e_config.cassandra)  # what `streamrec recs` reads with
            try:
                produce(e2e_config, [lone], malformed=False)
                sent = time.monotonic()  # the click is in Kafka
                wait_for(lambda: getattr(reader.recommendations(lone.user_id), "event_id", None) == lone.event_id,
                         timeout=90, what="the lone click's recommendations", interval=0.05,
                         on_timeout=job.log_tail)
                lone_seconds = time.monotonic() - sent
            finally:
                reader.close()
            assert job.alive(), job.log_tail()
        # the job read its catalog from Cassandra `products`; the offline model ranks with the
        # catalog as `catalog build` made it, item-to-item transitions included
        ranked = verify(e2e_config, catalog=uci_catalog, dead_letters=False)
        yield Replay(e2e_config, events, read_store(e2e_config), dead_letters(e2e_config), lone_seconds, ranked)


def test_the_job_stores_every_event_once_and_routes_bad_ones_to_the_dead_letter_topic(replayed, uci_catalog):
    e2e_config, events, store, dlq = replayed.config, replayed.events, replayed.store, replayed.dlq

    # a search moves the user toward the searched products
    def lanterns(user: str) -> int:
        items = store.recommendations[user][0]
        return sum("LANTERN" in uci_catalog.titles[uci_catalog.index[p]] for p in items)

    assert lanterns("shopper-b") >= 3, "searching 'lantern' should bring lanterns into the recommendations"
    assert lanterns("shopper-b") > lanterns("shopper-a")

    assert len(events) >= 300
    produced = Counter((e.user_id, e.event_id, e.ts, e.type, e.product_id) for e in events)
    stored = Counter(ev for ev in store.events if not ev[0].startswith("shopper-"))
    assert stored == produced  # nothing missing, nothing extra, nothing doubled
    assert Counter(d["error"] for d in dlq) == Counter(code for code, _ in MALFORMED)
    assert not any(e[1].startswith("bad-") for e in store.events)
    # a view has no query and a search no product: the missing column is left unset, not written as a
    # tombstone (a user with 100,000 events would otherwise make Cassandra refuse to read them back)
    assert tombstones_read(e2e_config, "shopper-b") == (2, 0)

    bought = defaultdict(set)
    for e in events:
        bought[e.user_id].add(e.product_id)
    assert set(store.recommendations) == set(bought) | {"shopper-a", "shopper-b", "shopper-quiet"}
    for user, (items, scores, source) in store.recommendations.items():
        if user.startswith("shopper-"):
            continue
        # over-fetched so that query-side filters still leave top_k
        assert len(items) == e2e_config.model.top_k * e2e_config.model.query_overfetch and source == "personal"
        assert not set(items) & bought[user], f"user {user} was recommended something they bought"
        assert scores == sorted(scores, reverse=True)

    # the CLI, as a user runs it, reads the same recommendations back as JSON
    user = events[0].user_id
    out = subprocess.run(
        [sys.executable, "-m", "streamrec.cli", "recs", user, "-k", "3", "-o", "json"],
        env=config_env(e2e_config), capture_output=True, text=True, timeout=60, check=True,
    )
    answer = json.loads(out.stdout)
    assert answer["user_id"] == user and answer["source"] == "personal"
    assert [i["product_id"] for i in answer["items"]] == store.recommendations[user][0][:3]
    assert all(isinstance(i["score"], float) for i in answer["items"])


def test_the_job_ranks_from_the_catalog_in_cassandra_as_the_offline_model_does_transitions_included(
    replayed, uci_catalog
):
    ranked = replayed.ranked
    assert uci_catalog.transitions is not None and uci_catalog.transitions.nnz > 0
    assert ranked.recommendations.ok, ranked.examples
    assert ranked.recommendations.found == ranked.recommendations.expected >= 12


def test_a_lone_click_on_a_quiet_stream_is_readable_within_a_second_or_two(replayed):
    # a partial write batch goes out after its linger (20 ms), not when nine more rows arrive or at
    # the next checkpoint (a minute away here); the bound leaves room for a slow, shared machine
    lone_seconds = replayed.lone_seconds
    assert lone_seconds < 3.0, f"a lone click took {lone_seconds:.1f} s to reach Cassandra"


def test_similar_products_come_from_the_catalog_in_cassandra(e2e_config, uci_catalog):
    out = subprocess.run(
        [sys.executable, "-m", "streamrec.cli", "similar", "85123A", "-k", "5", "-o", "json"],
        env=config_env(e2e_config), capture_output=True, text=True, timeout=60, check=True,
    )
    answer = json.loads(out.stdout)
    ids = [i["product_id"] for i in answer["items"]]
    assert len(ids) == 5 and "85123A" not in ids
    # the same vectors the job uses: the nearest neighbours of the white hanging heart by cosine
    v = uci_catalog.vectors
    scores = v @ v[uci_catalog.index["85123A"]]
    want = [uci_catalog.product_ids[i] for i in scores.argsort()[::-1] if uci_catalog.product_ids[i] != "85123A"][:5]
    assert ids == want
