"""The fast path's user vector: folding a user's remembered events gives the vector the per-event
update rule builds, for every setting the model has."""

import numpy as np
import pytest

from streamrec.config import DEFAULT_EVENT_WEIGHTS
from streamrec.model.catalog import Catalog
from streamrec.model.events import Event
from streamrec.model.history import QueryVectors, fold_vectors
from streamrec.model.model import MAX_HISTORY, MIN_HISTORY, ModelParams, UserState, update_user

pytestmark = pytest.mark.unit

DAY = 86_400_000


def catalog(n=40, d=8, seed=3):
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n, d)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    titles = tuple(f"red chair {i}" if i % 2 else f"blue lamp {i}" for i in range(n))
    return Catalog(tuple(f"p{i}" for i in range(n)), v, titles=titles)


def random_events(rng, n, user="u", with_search=True):
    types = ["view", "click", "add_to_cart", "remove_from_cart", "purchase"] + (["search"] if with_search else [])
    ts = 1_700_000_000_000
    out = []
    for i in range(n):
        ts += int(rng.integers(0, 3 * DAY))
        etype = str(rng.choice(types))
        if etype == "search":
            query = str(rng.choice(["red chair", "blue", "no such words", "lamp 3"]))
            pid = f"p{rng.integers(0, 40)}" if rng.random() < 0.2 else None
            out.append(Event(f"e{i}", user, ts, etype, pid, query))
        else:
            pid = f"p{rng.integers(0, 45)}"  # p40..p44 are unknown to the catalog: they never move anyone
            out.append(Event(f"e{i}", user, ts, etype, pid))
    return out


@pytest.mark.parametrize(("half_life_events", "half_life_days"),
                         [(0.5, 0.0), (2.0, 0.0), (0.5, 3.0), (4.0, 1.0), (0.0, 0.0)])
def test_the_fold_of_a_users_history_is_the_vector_the_update_rule_builds(half_life_events, half_life_days):
    cat = catalog()
    params = ModelParams(event_weights=DEFAULT_EVENT_WEIGHTS, half_life_events=half_life_events,
                         half_life_days=half_life_days)
    rng = np.random.default_rng(7)
    states, histories = [], []
    for user in range(30):
        state = UserState()
        for e in random_events(rng, int(rng.integers(0, 3 * params.history_size)), user=f"u{user}"):
            update_user(state, e, cat, params)
        states.append(state)
        histories.append(state.history)
    vectors, moves = fold_vectors(histories, cat, params)
    for state, v, m in zip(states, vectors, moves):
        if state.vector is None:
            assert m == 0 and not v.any()
            continue
        assert m == min(state.moves, m) and m > 0
        scale = max(1.0, float(np.abs(state.vector).max()))
        np.testing.assert_allclose(v, state.vector, atol=1e-5 * scale, rtol=1e-5)


def test_a_user_whose_events_moved_nothing_gets_a_zero_vector_and_no_moves():
    cat = catalog()
    params = ModelParams(event_weights=DEFAULT_EVENT_WEIGHTS)
    unknown_only = [("view", 1, "nope", None), ("search", 2, None, "zzz qqq")]
    vectors, moves = fold_vectors([[], unknown_only], cat, params)
    assert vectors.shape == (2, cat.dim) and not vectors.any() and list(moves) == [0, 0]


def test_searches_fold_in_the_querys_vector_and_the_query_cache_is_per_catalog():
    cat = catalog()
    params = ModelParams(event_weights=DEFAULT_EVENT_WEIGHTS)
    state = update_user(UserState(), Event("e1", "u", 10, "search", None, "red chair"), cat, params)
    queries = QueryVectors(cat)
    vectors, moves = fold_vectors([state.history], cat, params, queries)
    np.testing.assert_allclose(vectors[0], state.vector, rtol=1e-6)
    assert moves[0] == 1 and queries.row("red chair") == 0 and queries.row("zzz") is None
    other = catalog(seed=4)
    again, _ = fold_vectors([state.history], other, params, queries)  # a stale cache is not used
    np.testing.assert_allclose(again[0], update_user(UserState(), Event("e1", "u", 10, "search", None, "red chair"),
                                                     other, params).vector, rtol=1e-6)


def test_the_history_keeps_only_moving_events_and_is_bounded_by_the_half_life():
    cat = catalog()
    params = ModelParams(event_weights={**DEFAULT_EVENT_WEIGHTS, "view": 0.0}, half_life_events=0.5)
    state = UserState()
    for i in range(100):
        update_user(state, Event(f"e{i}", "u", i, "click", f"p{i % 40}"), cat, params)
        update_user(state, Event(f"v{i}", "u", i, "view", f"p{i % 40}"), cat, params)  # weight 0: not kept
    assert len(state.history) == params.history_size == MIN_HISTORY
    assert state.history[-1] == ("click", 99, "p19", None)
    assert ModelParams(event_weights=DEFAULT_EVENT_WEIGHTS, half_life_events=2.0).history_size == 48
    assert ModelParams(event_weights=DEFAULT_EVENT_WEIGHTS, half_life_events=1e9).history_size == MAX_HISTORY
    assert ModelParams(event_weights=DEFAULT_EVENT_WEIGHTS, half_life_events=float("inf")).history_size == MAX_HISTORY


def test_the_batch_selection_picks_each_rows_top_k_exactly_as_the_one_row_selection():
    from streamrec.model.topk import select_top, select_top_rows

    rng = np.random.default_rng(11)
    for n, k in [(10_000, 30), (2_000, 10), (500, 30), (40, 5)]:
        scores = rng.normal(size=(64, n)).astype(np.float32)
        scores[:, rng.integers(0, n, n // 3)] = np.round(scores[:, rng.integers(0, n, n // 3)], 1)  # ties
        scores[5, :] = -np.inf  # everything filtered out
        scores[6, : n - 3] = -np.inf  # fewer than k eligible
        scores[7, rng.integers(0, n, 20)] = np.nan
        scores[8, :] = 0.5  # one big tie
        got = select_top_rows(scores, k)
        for i, row in enumerate(scores):
            np.testing.assert_array_equal(got[i], select_top(row, k), err_msg=f"row {i}, n={n}, k={k}")
