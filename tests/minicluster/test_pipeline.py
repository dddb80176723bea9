"""build_pipeline of the per-event design (hot_path "per-event") on a local Flink minicluster at
parallelism 2, fed from a collection.

One job run serves every check: a Flink job start costs 5-20 s on this machine.
"""

import random
from collections import defaultdict

import numpy as np
import pytest

from streamrec.config import Config, JobConfig, ModelConfig
from streamrec.jobs.pipeline import model_params
from streamrec.model.catalog import Catalog
from streamrec.model.events import Event
from streamrec.model.model import (
    UserState,
    apply_event,
    excluded_ids,
    is_cold,
    recommend_users,
    remember_shown,
    write_timestamp_us,
)
from tests.minicluster.collected import (
    BAD,
    local_env,
    product_ids,
    random_events,
    run_with_bad_records,
    unit_vectors,
)

pytestmark = pytest.mark.minicluster

@pytest.fixture(scope="module")
def run(tmp_path_factory):
    catalog = Catalog(product_ids(60), unit_vectors(np.random.default_rng(3), 60))
    path = tmp_path_factory.mktemp("catalog") / "catalog.npz"
    catalog.save(path)
    config = Config(model=ModelConfig(catalog_path=str(path), top_k=5), job=JobConfig(parallelism=2,
                                                                                      hot_path="per-event"))
    valid = random_events(300, users=25, products=60, seed=5,
                          types=["view", "view", "click", "add_to_cart", "purchase", "search"])
    recs, dlq = run_with_bad_records(catalog, config, valid)
    return catalog, config, valid, recs, dlq


def test_every_valid_event_comes_out_exactly_once(run):
    _, _, valid, recs, _ = run
    assert sorted(r["event_id"] for r in recs) == sorted(e.event_id for e in valid)


def test_every_bad_record_is_a_dead_letter_with_its_code(run):
    _, _, _, _, dlq = run
    assert sorted(d["error"] for d in dlq) == sorted([*BAD, "WRONG_TYPE"])  # + the bad product update
    assert all(d["reason"] and d["payload"] for d in dlq)


def test_recommendations_equal_the_offline_model_replayed_in_the_jobs_order(run):
    catalog, config, valid, recs, _ = run
    params = model_params(config)
    by_id = {e.event_id: e for e in valid}
    per_user = defaultdict(list)
    for r in recs:
        per_user[r["user_id"]].append(r)
    checked = 0
    for user, rows in per_user.items():
        rows.sort(key=lambda r: r["write_ts"])  # grows with every event of a user: processing order
        state = UserState()
        for row in rows:
            state = apply_event(state, by_id[row["event_id"]], catalog, params, config.model.user_ttl_ms)
            assert row["write_ts"] == write_timestamp_us(state)
            assert (row["variant"], row["impressions"], row["hits"]) == ("default", state.impressions, state.hits)
            if is_cold(state, params):
                # trending depends on when the trending list reached the operator: check only the rules
                assert row["source"] in ("trending", "none")
                assert not set(row["product_ids"]) & set(excluded_ids(state, params))
                state.last_shown = ()
            else:
                want = recommend_users([state], catalog, params)[0]
                assert row["product_ids"] == list(want.product_ids), (user, row["event_id"])
                np.testing.assert_allclose(row["scores"], want.scores, rtol=1e-5)
                assert row["source"] == want.source == "personal"
                assert not set(row["product_ids"]) & set(excluded_ids(state, params))
                remember_shown(state, want, params)
            checked += 1
    assert checked == len(valid)


def test_users_with_a_product_signal_get_k_recommendations(run):
    _, config, _, recs, _ = run
    personal = [r for r in recs if r["source"] == "personal"]
    # over-fetched, so that query-side filters still leave top_k
    stored = config.model.top_k * config.model.query_overfetch
    assert personal and all(len(r["product_ids"]) == stored for r in personal)


def test_the_jvm_popularity_counter_passes_on_every_events_weight_once():
    """The trending branch's counting (PopularityCounter): per product and minute of event time,
    the summed positive weights and the newest time, whatever batches the counts leave in."""
    from pyflink.common import Row

    from streamrec.jobs.pipeline import popularity_counts
    from streamrec.model.trending import popularity_rows
    from streamrec.udfs.operators import EVENT_ROW

    config = Config(model=ModelConfig(trending_interval_ms=50))
    r = random.Random(8)
    products = ["p1", "p2", 'odd "id" \\ with\ttab', "ünïcode-é"]
    events = []
    for i in range(3000):
        etype = r.choice(["view", "click", "add_to_cart", "remove_from_cart", "purchase", "search"])
        pid = None if etype == "search" else r.choice(products)
        events.append(Event(f"e{i}", f"u{i % 7}", 1_700_000_000_000 + r.randrange(180_000), etype, pid,
                            "lamp" if pid is None else None))
    env = local_env(parallelism=2)
    rows = [Row(e.event_id, e.user_id, e.ts, e.type, e.product_id, e.query) for e in events]
    counts = popularity_counts(env, env.from_collection(rows, type_info=EVENT_ROW), config)
    with counts.execute_and_collect() as results:
        batches = list(results)

    got: dict = defaultdict(lambda: [0.0, 0])
    for pid, weight, ts in popularity_rows(batches):
        got[(pid, ts // 60_000)][0] += weight
        got[(pid, ts // 60_000)][1] = max(got[(pid, ts // 60_000)][1], ts)
    want: dict = defaultdict(lambda: [0.0, 0])
    for e in events:
        if e.product_id is not None:
            w = max(0.0, config.model.event_weights.get(e.type, 0.0))  # a negative weight counts as none
            want[(e.product_id, e.ts // 60_000)][0] += w
            want[(e.product_id, e.ts // 60_000)][1] = max(want[(e.product_id, e.ts // 60_000)][1], e.ts)
    assert got.keys() == want.keys() and {p for p, _ in want} == set(products)
    for key, (weight, ts) in want.items():
        assert got[key][0] == pytest.approx(weight) and got[key][1] == ts, key
