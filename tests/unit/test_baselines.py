"""The sequential baselines of `streamrec evaluate` (SR, V-SKNN, STAN) on hand-made histories whose
right answer is worked out by hand from the papers' definitions."""

import dataclasses
import json
import math

import numpy as np
import pytest

from streamrec import evaluate as ev
from streamrec.config import DEFAULT_EVENT_WEIGHTS
from streamrec.model.catalog import Catalog
from streamrec.model.events import Event
from streamrec.model.model import ModelParams

pytestmark = pytest.mark.unit

PARAMS = ModelParams(DEFAULT_EVENT_WEIGHTS, half_life_events=1.0, top_k=10)
IDS = ("a", "b", "c", "d", "e", "f", "g")
A, B, C, D, E, F, G = range(len(IDS))
DAY = ev.DAY_MS
NO_TIME_DECAY = 1e12  # days


def catalog():
    return Catalog(IDS, np.eye(len(IDS), dtype=np.float32))


def basket(user, ts, products, tag=""):
    # event ids sort against the basket's order: the order must come from the data, not the ids
    return [Event(f"{tag}{user}-{ts}-{9 - i}", user, ts, "purchase", p) for i, p in enumerate(products)]


def case(rows_ts, excluded=()):
    """One case whose user's recent events are (catalog row, ts), oldest first."""
    return ev.Queries(vectors=[None], excluded=[tuple(excluded)], recent=[tuple(rows_ts)],
                      targets=[np.array([0])], novel=[np.array([True])], ts=[rows_ts[-1][1] + 1])


def names(rows):
    return [IDS[r] for r in np.asarray(rows)[0] if r >= 0]  # the one case's list


def popularity(train):
    return ev._popularity(train, catalog(), ("purchase",))


# --- SR ----------------------------------------------------------------------------------------

def sr_train():
    # three baskets a, b, c (in that order) and one d, a: rules follow the order within a basket only
    train = [e for u in range(3) for e in basket(f"u{u}", u * 100, "abc")]
    return train + basket("w", 1000, "da")


def test_sr_rules_are_the_gap_weighted_counts_of_what_follows_within_a_session():
    sr = ev.SequentialRulesModel(catalog(), PARAMS, sr_train(), popularity(sr_train()),
                                 ev.SrSettings(gap_ms=0, steps=10, pruning=0))
    rules = sr.rules.toarray()
    assert rules[A, B] == pytest.approx(3.0)  # b one step after a, three times: 3 x 1/1
    assert rules[A, C] == pytest.approx(1.5)  # c two steps after a: 3 x 1/2
    assert rules[B, C] == pytest.approx(3.0)
    assert rules[D, A] == pytest.approx(1.0)
    assert rules[B, A] == 0 and rules[C, A] == 0  # never backwards
    assert rules[C, D] == 0  # nothing across baskets (sessions)
    assert np.count_nonzero(rules) == 4


def test_sr_ranks_by_the_last_product_s_rules_and_honours_steps_and_pruning():
    train = sr_train()
    sr = ev.SequentialRulesModel(catalog(), PARAMS, train, popularity(train), ev.SrSettings(gap_ms=0))
    # the user's earlier products do not vote: only the last one (d) does
    assert names(sr.recommend(case([(B, 0), (D, 5)]), 1)) == ["a"]
    assert names(sr.recommend(case([(A, 0)]), 2)) == ["b", "c"]
    assert names(sr.recommend(case([(A, 0)], excluded=["b"]), 1)) == ["c"]  # the purchase filter
    one_step = ev.SequentialRulesModel(catalog(), PARAMS, train, popularity(train), ev.SrSettings(gap_ms=0, steps=1))
    assert one_step.rules[A, C] == 0
    pruned = ev.SequentialRulesModel(catalog(), PARAMS, train, popularity(train),
                                     ev.SrSettings(gap_ms=0, pruning=1))
    assert pruned.rules[A].nonzero()[1].tolist() == [B]  # the strongest rule of a survives
    # with no rule to go on the list is filled by popularity
    assert names(sr.recommend(case([(G, 0)]), 3)) == ["a", "b", "c"]


def test_sr_linear_and_quadratic_weights():
    train = sr_train()
    for weighting, expected in (("linear", 3 * 0.8), ("quadratic", 3 * 0.25), ("same", 3.0)):
        sr = ev.SequentialRulesModel(catalog(), PARAMS, train, popularity(train),
                                     ev.SrSettings(gap_ms=0, weighting=weighting))
        assert sr.rules[A, C] == pytest.approx(expected)


def test_sessions_keep_the_data_s_order_of_equal_timestamps():
    got = ev.sessions(basket("u", 5, "cab"), gap_ms=0)
    assert [e.product_id for e in got[0]] == ["c", "a", "b"]


# --- V-SKNN -------------------------------------------------------------------------------------

def vsknn_train():
    # three training baskets, oldest first: {a, b}, {c, d}, {a, c}
    return basket("u1", 10, "ab") + basket("u2", 20, "cd") + basket("u3", 30, "ac")


def test_vsknn_scores_are_position_weighted_similarities_times_the_step_decay():
    train = vsknn_train()
    m = ev.VsknnModel(catalog(), PARAMS, train, popularity(train), ev.VsknnSettings(gap_ms=0, neighbors=10))
    # context a then c (one basket): weights a = 1/2, c = 2/2, over 2 distinct items
    # sims: {a,b} 0.5/2 = .25, {c,d} 1/2 = .5, {a,c} 1.5/2 = .75
    # step decay: {a,b} holds a, the second-to-last event: 1/2; the other two hold c: 1
    scores = m.scores(case([(A, 0), (C, 0)]))[0]
    expected = {A: .25 * .5 + .75, B: .25 * .5, C: .5 + .75, D: .5}
    np.testing.assert_allclose(scores[[A, B, C, D]], [expected[i] for i in (A, B, C, D)])
    assert scores[[E, F, G]].tolist() == [0, 0, 0]
    assert names(m.recommend(case([(A, 0), (C, 0)], excluded=["a", "c"]), 2)) == ["d", "b"]


def test_vsknn_keeps_the_k_most_similar_of_the_most_recent_candidates():
    train = vsknn_train()
    pop = popularity(train)
    q = case([(A, 0), (C, 0)])
    one = ev.VsknnModel(catalog(), PARAMS, train, pop, ev.VsknnSettings(gap_ms=0, neighbors=1)).scores(q)[0]
    assert np.flatnonzero(one).tolist() == [A, C]  # {a, c} alone: the most similar
    # sample 2: only the two most recent sessions sharing an item ({c,d}, {a,c}) are candidates
    two = ev.VsknnModel(catalog(), PARAMS, train, pop, ev.VsknnSettings(gap_ms=0, sample=2)).scores(q)[0]
    assert two[B] == 0 and two[D] == pytest.approx(.5)


def test_vsknn_context_is_the_current_session_or_the_last_events():
    train = vsknn_train()
    pop = popularity(train)
    # two baskets: b (day 0), then d (day 1); the current session is the last basket: {d}
    q = case([(B, 0), (D, DAY)])
    session = ev.VsknnModel(catalog(), PARAMS, train, pop, ev.VsknnSettings(gap_ms=0)).scores(q)[0]
    assert np.flatnonzero(session).tolist() == [C, D]
    both = ev.VsknnModel(catalog(), PARAMS, train, pop, ev.VsknnSettings(gap_ms=0, window=2)).scores(q)[0]
    assert np.flatnonzero(both).tolist() == [A, B, C, D]


# --- STAN --------------------------------------------------------------------------------------

def test_stan_weighs_a_neighbour_s_items_by_their_distance_from_the_shared_item():
    train = basket("u1", 0, "bacd")
    s = ev.StanSettings(gap_ms=0, lambda_snh=NO_TIME_DECAY, lambda_inh=2.0)
    m = ev.StanModel(catalog(), PARAMS, train, popularity(train), s)
    scores = m.scores(case([(A, 0)]))[0]
    sim = 1 / (1 * math.sqrt(4))  # cosine of {a} (weight 1) with a four-item session
    expected = [sim, sim * math.exp(-1 / 2), sim * math.exp(-1 / 2), sim * math.exp(-2 / 2)]  # a, b, c, d
    np.testing.assert_allclose(scores[[A, B, C, D]], expected, rtol=1e-6)
    assert names(m.recommend(case([(A, 0)], excluded=["a"]), 3)) == ["b", "c", "d"]  # equal: by popularity


def test_stan_prefers_neighbours_sharing_the_context_s_latest_items():
    # {a, e} and {b, f} are equally old and equally long; the context is a, then b
    train = basket("u1", 0, "ae") + basket("u2", 0, "bf")
    s = ev.StanSettings(gap_ms=0, lambda_snh=NO_TIME_DECAY, lambda_spw=1.0)
    m = ev.StanModel(catalog(), PARAMS, train, popularity(train), s)
    scores = m.scores(case([(A, 5), (B, 5)]))[0]
    w_a, w_b = math.exp(-1), 1.0  # exp((p - l) / lambda1)
    norm = math.sqrt(w_a**2 + w_b**2) * math.sqrt(2)
    assert scores[F] == pytest.approx(w_b / norm * math.exp(-1 / 2.05))
    assert scores[E] == pytest.approx(w_a / norm * math.exp(-1 / 2.05))
    assert names(m.recommend(case([(A, 5), (B, 5)], excluded=["a", "b"]), 2)) == ["f", "e"]


def test_stan_decays_neighbours_by_how_long_before_the_context_they_ended():
    # the same basket shape twice: {a, e} 20 days before the case, {a, f} 2 days before
    train = basket("u1", 0, "ae") + basket("u2", 18 * DAY, "af")
    pop = popularity(train)
    m = ev.StanModel(catalog(), PARAMS, train, pop, ev.StanSettings(gap_ms=0, lambda_snh=5.0))
    scores = m.scores(case([(A, 20 * DAY)]))[0]
    assert scores[E] / scores[F] == pytest.approx(math.exp(-18 / 5.0))
    one = ev.StanModel(catalog(), PARAMS, train, pop, ev.StanSettings(gap_ms=0, neighbors=1)).scores(
        case([(A, 20 * DAY)]))[0]
    assert one[E] == 0 and one[F] > 0
    # far below any fixed tie-break, yet still ranked above products no neighbour holds
    tiny = ev.StanModel(catalog(), PARAMS, train, pop, ev.StanSettings(gap_ms=0, lambda_snh=0.1))
    assert names(tiny.recommend(case([(A, 20 * DAY)], excluded=["a"]), 2)) == ["f", "e"]


# --- in the evaluation -------------------------------------------------------------------------

def test_the_sequential_baselines_are_in_the_report_and_tuned_on_validation(monkeypatch):
    from tests.unit.test_evaluate import EMB, shop

    # the filter off: the synthetic customers buy the same family again and again, in the family's order
    unfiltered = dataclasses.replace(PARAMS, exclude_purchased=False)
    report = ev.evaluate(shop(users=20, days=40), unfiltered, ev.EvalSettings(test_days=10), EMB)
    assert {"sr", "v-sknn", "stan"} <= set(report["models"]) and {"sr", "vsknn", "stan"} <= set(report["params"])
    m = report["models"]
    assert min(m[x]["hr@20"] for x in ("sr", "v-sknn", "stan")) > m["pop"]["hr@20"]
    assert m["sr"]["mrr@20"] > m["item-knn"]["mrr@20"]  # it knows what comes next, not just what goes with
    monkeypatch.setattr(ev, "SEQUENTIAL_GRIDS", {"sr": {"steps": (1,)}, "v-sknn": {"neighbors": (1,)},
                                                 "stan": {"lambda_inh": (1.0,)}})
    splits = []
    real = ev.evaluate

    def spy(history, params, settings, *a, **kw):
        splits.append(settings.validation)
        return real(history, params, settings, *a, **kw)

    monkeypatch.setattr(ev, "evaluate", spy)
    out = ev.tune(shop(users=30, days=60), PARAMS, ev.EvalSettings(test_days=10, models=("sr", "v-sknn", "stan")),
                  EMB, rounds=1)
    assert splits == [True]  # one replay of the validation split for all candidates, never the test
    default = ev.EvalSettings()
    assert out["sr"]["params"]["steps"] in (default.sr.steps, 1)  # the start point or a value of the grid
    assert out["stan"]["params"]["lambda_inh"] in (default.stan.lambda_inh, 1.0)
    assert {t["model"] for t in out["trials"]} == {"sr", "v-sknn", "stan"}
    # evaluate --tuned: the chosen values, back from JSON, replace the defaults
    chosen = ev.EvalSettings().with_tuned(json.loads(json.dumps(out)))
    assert chosen.sr == ev.SrSettings(**out["sr"]["params"]) and chosen.item_knn == ev.EvalSettings().item_knn
    assert chosen.stan.lambda_inh == out["stan"]["params"]["lambda_inh"]
