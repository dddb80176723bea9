"""The update rule and the top-k step, checked against brute force on small catalogs."""

import numpy as np
import pytest

from streamrec.config import DEFAULT_EVENT_WEIGHTS
from streamrec.model.catalog import Catalog
from streamrec.model.events import Event
from streamrec.model.model import (
    ModelParams,
    UserState,
    apply_event,
    excluded_ids,
    recommend_batch,
    recommend_users,
    remember_shown,
    update_user,
    write_timestamp_us,
)
from streamrec.model.topk import select_top, top_k_batch

PARAMS = ModelParams(event_weights=DEFAULT_EVENT_WEIGHTS, half_life_events=2.0, top_k=3)


def unit_catalog(n=20, d=6, seed=1, in_stock=None):
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n, d)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return Catalog(tuple(f"p{i}" for i in range(n)), v, in_stock=in_stock)


def event(i, pid, etype="view", ts=None, user="u"):
    return Event(f"e{i}", user, 1000 + i if ts is None else ts, etype, pid)


def test_first_event_sets_the_user_to_the_weighted_product_vector():
    cat = unit_catalog()
    s = update_user(UserState(), event(0, "p3", "click"), cat, PARAMS)
    np.testing.assert_allclose(s.vector, 2.0 * cat.vectors[3], rtol=1e-6)


def test_older_events_decay_with_the_half_life():
    cat = unit_catalog()
    s = UserState()
    for i, pid in enumerate(["p1", "p2", "p3"]):
        update_user(s, event(i, pid), cat, PARAMS)
    # half-life of 2 events: weights 0.5, 0.707, 1 for p1, p2, p3
    expected = 0.5 * cat.vectors[1] + 0.5 ** 0.5 * cat.vectors[2] + cat.vectors[3]
    np.testing.assert_allclose(s.vector, expected, rtol=1e-5)


def test_purchases_are_remembered_once_and_a_search_of_unknown_words_leaves_the_vector_alone():
    cat = unit_catalog()
    s = UserState()
    update_user(s, event(0, "p1", "purchase"), cat, PARAMS)
    update_user(s, event(1, "p1", "purchase"), cat, PARAMS)
    before = s.vector.copy()
    update_user(s, Event("e2", "u", 1002, "search", None, "lamp"), cat, PARAMS)
    assert s.purchased == ["p1"]
    np.testing.assert_array_equal(s.vector, before)
    assert s.seq == 3


def test_unknown_products_count_as_events_but_do_not_move_the_user():
    s = update_user(UserState(), event(0, "not-in-catalog"), unit_catalog(), PARAMS)
    assert s.vector is None and s.seq == 1


def test_write_timestamps_grow_with_every_event_even_when_event_time_goes_back():
    cat = unit_catalog()
    s = UserState()
    stamps = []
    for i, ts in enumerate([5000, 5000, 4000, 6000]):
        update_user(s, event(i, "p1", ts=ts), cat, PARAMS)
        stamps.append(write_timestamp_us(s))
    assert stamps == sorted(stamps) and len(set(stamps)) == 4
    assert stamps[0] == 5000 * 1000 and stamps[-1] == 6000 * 1000


def test_a_user_with_thousands_of_events_of_one_millisecond_gets_ever_newer_write_timestamps():
    # a wholesaler's invoice: every line has the invoice's time; a newer row must never lose to an older one
    cat = unit_catalog()
    s = UserState()
    stamps = []
    for i in range(2500):
        update_user(s, event(i, "p1", ts=5000), cat, PARAMS)
        stamps.append(write_timestamp_us(s))
    assert all(b > a for a, b in zip(stamps, stamps[1:]))
    update_user(s, event(2500, "p1", ts=5001), cat, PARAMS)
    assert write_timestamp_us(s) > stamps[-1]


def test_a_state_restored_from_the_previous_stamp_form_writes_above_everything_it_wrote():
    from streamrec.model.model import _restore_user

    # 1999 events at ts 5000, pickled before write_us existed: the old form's stamps went up to 5000 * 1000 + 999
    restored = _restore_user(None, [], 1999, 5000)
    update_user(restored, event(0, "p1", ts=5000), unit_catalog(), PARAMS)
    assert write_timestamp_us(restored) > 5000 * 1000 + 999


def test_a_user_reset_after_the_idle_ttl_still_writes_newer_timestamps():
    cat = unit_catalog()
    s = UserState()
    for i in range(1500):
        s = apply_event(s, event(i, "p1", ts=5000), cat, PARAMS, user_ttl_ms=1)
    before = write_timestamp_us(s)
    s = apply_event(s, event(9999, "p2", ts=5002), cat, PARAMS, user_ttl_ms=1)
    assert s.seq == 1 and write_timestamp_us(s) > before


def brute_force(u, cat, k, exclude=()):
    scores = cat.vectors @ (u / np.linalg.norm(u))
    order = [i for i in np.argsort(-scores, kind="stable") if i not in exclude and cat.in_stock[i]]
    return order[:k], scores[order[:k]]


@pytest.mark.parametrize("k", [1, 3, 20, 50])
def test_top_k_equals_brute_force(k):
    cat = unit_catalog(n=20)
    users = np.random.default_rng(7).normal(size=(5, 6)).astype(np.float32)
    rows, scores = top_k_batch(users, cat, k)
    assert rows.shape == (5, min(k, 20))
    for i in range(5):
        want_rows, want_scores = brute_force(users[i], cat, k)
        assert list(rows[i]) == want_rows
        np.testing.assert_allclose(scores[i], want_scores, rtol=1e-5)


def test_top_k_never_returns_excluded_or_out_of_stock_products():
    stock = np.ones(20, dtype=bool)
    stock[[0, 1, 2]] = False
    cat = unit_catalog(in_stock=stock)
    users = cat.vectors[[0, 5]]  # the first user "is" an out-of-stock product
    rows, _ = top_k_batch(users, cat, 5, exclude=[[3, 4], [5]])
    assert not {0, 1, 2, 3, 4} & set(rows[0])
    assert 5 not in rows[1]
    want, _ = brute_force(users[0], cat, 5, exclude={3, 4})
    assert list(rows[0]) == want


def test_one_user_alone_gets_exactly_what_they_get_in_a_batch_ties_included():
    # the job ranks one user per event, verify and evaluate rank batches: same products, same order
    base = unit_catalog(n=60, d=6, seed=3)
    vectors = base.vectors.copy()
    vectors[30:45] = vectors[0:15]  # exact duplicates: tied scores everywhere
    stock = np.ones(60, dtype=bool)
    stock[[2, 33, 50]] = False
    cat = Catalog(base.product_ids, vectors, in_stock=stock)
    users = np.vstack([np.random.default_rng(5).normal(size=(6, 6)).astype(np.float32), vectors[:2],
                       np.zeros((1, 6), dtype=np.float32)])
    exclude = [[1, 31], [], [4], [], [0, 30], [], [0], [], []]
    for k in (1, 5, 20, 60, 80):
        batch_rows, batch_scores = top_k_batch(users, cat, k, exclude)
        for i in range(len(users)):
            rows, scores = top_k_batch(users[i:i + 1], cat, k, [exclude[i]])
            assert list(rows[0]) == list(batch_rows[i]), (k, i)
            # a matrix-vector product may round the last bit differently from a matrix product
            np.testing.assert_allclose(scores[0], batch_scores[i], rtol=1e-6, atol=1e-6)


def test_when_fewer_products_are_eligible_than_k_the_rest_is_padding():
    cat = unit_catalog(n=4)
    rows, scores = top_k_batch(cat.vectors[:1], cat, 4, exclude=[[0, 1]])
    assert sorted(rows[0][:2]) == [2, 3]
    assert list(rows[0][2:]) == [-1, -1] and np.isnan(scores[0][2:]).all()


def test_recommend_batch_excludes_purchases_and_gives_nothing_to_users_without_signal():
    cat = unit_catalog()
    s = UserState()
    update_user(s, event(0, "p4", "purchase"), cat, PARAMS)
    recs = recommend_batch([s.vector, None], [s.purchased, []], cat, PARAMS)
    assert len(recs[0].product_ids) == 3 and "p4" not in recs[0].product_ids
    assert recs[0].source == "personal"
    assert list(recs[0].scores) == sorted(recs[0].scores, reverse=True)
    assert recs[1].product_ids == () and recs[1].source == "none"
    # with the filter off, the purchased product is the best match of itself
    keep = ModelParams(DEFAULT_EVENT_WEIGHTS, 2.0, 3, exclude_purchased=False)
    assert recommend_batch([s.vector], [excluded_ids(s, keep)], cat, keep)[0].product_ids[0] == "p4"


def test_catalog_round_trips_through_a_file(tmp_path):
    cat = unit_catalog()
    cat.save(tmp_path / "c.npz")
    back = Catalog.load(tmp_path / "c.npz")
    assert back.product_ids == cat.product_ids
    np.testing.assert_array_equal(back.vectors, cat.vectors)
    assert back.index["p7"] == 7 and "p7" in back and "zz" not in back


# --- search, event weights, time decay ---------------------------------------------------------

def titled_catalog():
    """Lanterns along axis 0, mugs along axis 1, a clock on axis 2; titles say which is which."""
    titles = ("WHITE METAL LANTERN", "ZINC LANTERN", "SAVE THE PLANET MUG", "RETRO MUG", "ALARM CLOCK")
    v = np.zeros((5, 3), dtype=np.float32)
    v[[0, 1], 0] = 1.0
    v[[2, 3], 1] = 1.0
    v[4, 2] = 1.0
    return Catalog(tuple(f"p{i}" for i in range(5)), v, titles=titles)


def test_a_search_moves_the_user_toward_the_products_its_words_name():
    cat = titled_catalog()
    s = update_user(UserState(), event(0, "p2", "view"), cat, PARAMS)  # a mug fan
    before = recommend_batch([s.vector], [[]], cat, PARAMS)[0].product_ids
    assert before[0] in ("p2", "p3")
    update_user(s, Event("e1", "u", 1001, "search", None, "lanterns"), cat, PARAMS)
    after = recommend_batch([s.vector], [[]], cat, PARAMS)[0].product_ids
    assert set(after[:2]) == {"p0", "p1"}
    assert s.seq == 2


def test_a_search_with_a_zero_weight_does_nothing():
    cat = titled_catalog()
    quiet = ModelParams({**DEFAULT_EVENT_WEIGHTS, "search": 0.0}, half_life_events=2.0, top_k=3)
    s = update_user(UserState(), Event("e0", "u", 1000, "search", None, "lantern"), cat, quiet)
    assert s.vector is None and s.seq == 1


def test_each_event_type_moves_the_user_by_its_weight():
    cat = titled_catalog()
    for etype in ("view", "click", "search", "add_to_cart", "purchase"):
        s = update_user(UserState(), event(0, "p4", etype) if etype != "search" else
                        Event("e0", "u", 1000, "search", None, "alarm clock"), cat, PARAMS)
        np.testing.assert_allclose(s.vector, DEFAULT_EVENT_WEIGHTS[etype] * cat.vectors[4], rtol=1e-6)
    w = DEFAULT_EVENT_WEIGHTS
    assert w["view"] < w["click"] < w["add_to_cart"] < w["purchase"]


def test_remove_from_cart_undoes_add_to_cart():
    cat = titled_catalog()
    no_decay = ModelParams(DEFAULT_EVENT_WEIGHTS, half_life_events=float("inf"), top_k=3)
    s = update_user(UserState(), event(0, "p0", "view"), cat, no_decay)
    before = s.vector.copy()
    update_user(s, event(1, "p2", "add_to_cart"), cat, no_decay)
    update_user(s, event(2, "p2", "remove_from_cart"), cat, no_decay)
    np.testing.assert_allclose(s.vector, before, atol=1e-6)
    # with decay, the removal still leaves the user further from the product than before the add
    t = update_user(UserState(), event(0, "p0", "view"), cat, PARAMS)
    update_user(t, event(1, "p2", "add_to_cart"), cat, PARAMS)
    update_user(t, event(2, "p2", "remove_from_cart"), cat, PARAMS)
    assert float(t.vector @ cat.vectors[2]) <= 0.0


def test_time_decay_halves_the_past_every_half_life_of_event_time():
    cat = titled_catalog()
    day = 86_400_000
    timed = ModelParams(DEFAULT_EVENT_WEIGHTS, half_life_events=float("inf"), top_k=3, half_life_days=1.0)
    s = UserState()
    update_user(s, event(0, "p0", "view", ts=0), cat, timed)
    update_user(s, event(1, "p2", "view", ts=2 * day), cat, timed)
    np.testing.assert_allclose(s.vector, 0.25 * cat.vectors[0] + cat.vectors[2], rtol=1e-6)
    # an event older than the newest one seen does not decay anything
    update_user(s, event(2, "p4", "view", ts=day), cat, timed)
    np.testing.assert_allclose(s.vector, 0.25 * cat.vectors[0] + cat.vectors[2] + cat.vectors[4], rtol=1e-6)
    # the clock runs from the last event that moved the user: an unknown product does not reset it
    before = s.vector.copy()
    update_user(s, event(3, "not-in-catalog", "view", ts=3 * day), cat, timed)
    update_user(s, event(4, "p4", "view", ts=4 * day), cat, timed)
    np.testing.assert_allclose(s.vector, 0.25 * before + cat.vectors[4], rtol=1e-6)


def test_model_params_come_from_the_config_with_the_same_defaults():
    from streamrec.config import Config

    assert ModelParams.from_config(Config().model) == ModelParams(dict(DEFAULT_EVENT_WEIGHTS), candidates=30)
    env = Config.from_env({"STREAMREC_HALF_LIFE_EVENTS": "3", "STREAMREC_HALF_LIFE_DAYS": "7",
                           "STREAMREC_TOP_K": "4", "STREAMREC_EXCLUDE_PURCHASED": "false"})
    p = ModelParams.from_config(env.model)
    assert (p.half_life_events, p.half_life_days, p.top_k, p.exclude_purchased) == (3.0, 7.0, 4, False)


# --- shop filters, cold start, TTL and the online hit count (issue 4) --------------------------

def categorised_catalog():
    cat = unit_catalog(n=12)
    return Catalog(cat.product_ids, cat.vectors, categories=tuple("ab"[i % 2] for i in range(12)))


def test_what_is_in_the_cart_is_not_recommended_until_it_is_removed():
    cat = unit_catalog()
    p = ModelParams(DEFAULT_EVENT_WEIGHTS, 2.0, 3)
    s = apply_event(UserState(), event(0, "p4", "add_to_cart"), cat, p)
    assert s.cart == ["p4"] and "p4" not in recommend_users([s], cat, p)[0].product_ids
    apply_event(s, event(1, "p4", "remove_from_cart"), cat, p)
    apply_event(s, event(2, "p4", "view"), cat, p)
    assert s.cart == [] and recommend_users([s], cat, p)[0].product_ids[0] == "p4"
    apply_event(s, event(3, "p5", "add_to_cart"), cat, p)
    apply_event(s, event(4, "p5", "purchase"), cat, p)
    assert s.cart == [] and s.purchased == ["p5"]


def test_category_filters_keep_only_allowed_categories_and_still_fill_k():
    cat = categorised_catalog()
    only_a = ModelParams(DEFAULT_EVENT_WEIGHTS, 2.0, 3, include_categories=frozenset({"a"}))
    not_a = ModelParams(DEFAULT_EVENT_WEIGHTS, 2.0, 3, exclude_categories=frozenset({"a"}))
    s = apply_event(UserState(), event(0, "p1", "view"), cat, only_a)  # p1 is in category b
    got_a = recommend_users([s], cat, only_a)[0].product_ids
    got_b = recommend_users([s], cat, not_a)[0].product_ids
    assert len(got_a) == 3 and all(int(pid[1:]) % 2 == 0 for pid in got_a)
    assert len(got_b) == 3 and all(int(pid[1:]) % 2 == 1 for pid in got_b)


def test_a_new_user_gets_trending_products_that_pass_the_filters():
    cat = unit_catalog(in_stock=np.array([i != 2 for i in range(20)]))
    p = ModelParams(DEFAULT_EVENT_WEIGHTS, 2.0, 3, cold_start_events=2)
    trending = [("p2", 9.0), ("p7", 5.0), ("nope", 4.0), ("p3", 3.0), ("p1", 2.0)]
    s = apply_event(UserState(), event(0, "p3", "add_to_cart"), cat, p)  # one move: still cold
    rec = recommend_users([s], cat, p, trending)[0]
    # p2 is out of stock, "nope" is unknown, p3 is in the cart
    assert rec.source == "trending" and rec.product_ids == ("p7", "p1") and rec.scores == (5.0, 2.0)
    apply_event(s, event(1, "p5", "view"), cat, p)
    assert recommend_users([s], cat, p, trending)[0].source == "personal"
    assert recommend_users([UserState()], cat, p, ())[0].source == "none"


def test_a_user_idle_longer_than_the_ttl_comes_back_as_a_new_user():
    cat = unit_catalog()
    p = ModelParams(DEFAULT_EVENT_WEIGHTS, 2.0, 3)
    s = apply_event(UserState(), event(0, "p1", "purchase", ts=1_000), cat, p, user_ttl_ms=60_000)
    s = apply_event(s, event(1, "p2", "view", ts=50_000), cat, p, user_ttl_ms=60_000)
    assert s.seq == 2 and s.purchased == ["p1"]
    s = apply_event(s, event(2, "p3", "view", ts=200_000), cat, p, user_ttl_ms=60_000)
    assert s.seq == 1 and s.purchased == [] and s.moves == 1
    np.testing.assert_allclose(s.vector, cat.vectors[3], rtol=1e-6)


def test_hits_count_events_that_touch_a_product_of_the_list_shown_before():
    cat = unit_catalog()
    p = ModelParams(DEFAULT_EVENT_WEIGHTS, 2.0, 3)
    s = apply_event(UserState(), event(0, "p1", "view"), cat, p)
    assert s.impressions == 0  # nothing was shown before the first event
    rec = recommend_users([s], cat, p)[0]
    remember_shown(s, rec, p)
    apply_event(s, event(1, rec.product_ids[1], "click"), cat, p)
    assert (s.impressions, s.hits) == (1, 1)
    remember_shown(s, recommend_users([s], cat, p)[0], p)
    outside = next(pid for pid in cat.product_ids if pid not in s.last_shown)
    apply_event(s, event(2, outside, "view"), cat, p)
    assert (s.impressions, s.hits) == (2, 1)


# A user's state as the release before 2026-11-24 pickled it (a dict of fields, numpy's own array
# pickling): what a savepoint taken with it holds.
STATE_PICKLED_BY_THE_PREVIOUS_RELEASE = (
    b"\x80\x05\x95B\x01\x00\x00\x00\x00\x00\x00\x8c\x14streamrec.udfs.model\x94\x8c\tUserState\x94\x93\x94)"
    b"\x81\x94}\x94(\x8c\x06vector\x94\x8c\x13numpy._core.numeric\x94\x8c\x0b_frombuffer\x94\x93\x94(\x96\x0c"
    b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00?\x00\x00\x80\xbe\x00\x00\x80?\x94\x8c\x05numpy\x94\x8c\x05dtype"
    b"\x94\x93\x94\x8c\x02f4\x94\x89\x88\x87\x94R\x94(K\x03\x8c\x01<\x94NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK"
    b"\x00t\x94bK\x03\x85\x94\x8c\x01C\x94t\x94R\x94\x8c\tpurchased\x94]\x94\x8c\x02p1\x94a\x8c\x03seq\x94"
    b"K\x07\x8c\x06max_ts\x94\x8a\x06{h\xe5\xcf\x8b\x01\x8c\tvector_ts\x94\x8a\x06dh\xe5\xcf\x8b\x01\x8c\x04"
    b"cart\x94]\x94\x8c\x02p2\x94a\x8c\x05moves\x94K\x05\x8c\nlast_shown\x94\x8c\x02p3\x94\x8c\x02p4\x94"
    b"\x86\x94\x8c\x0bimpressions\x94K\x03\x8c\x04hits\x94K\x01ub."
)
PREVIOUS_RELEASE_STATE = UserState(vector=np.array([0.5, -0.25, 1.0], dtype=np.float32), purchased=["p1"], seq=7,
                                   max_ts=1700000000123, vector_ts=1700000000100, cart=["p2"], moves=5,
                                   last_shown=("p3", "p4"), impressions=3, hits=1)


def same_state(a: UserState, b: UserState) -> bool:
    vectors_equal = (a.vector is None and b.vector is None) or (
        a.vector is not None and b.vector is not None and np.array_equal(a.vector, b.vector))
    return vectors_equal and {**a.__dict__, "vector": None} == {**b.__dict__, "vector": None}


def test_a_savepoint_of_the_previous_release_still_loads():
    import pickle

    back = pickle.loads(STATE_PICKLED_BY_THE_PREVIOUS_RELEASE)
    assert same_state(back, PREVIOUS_RELEASE_STATE)
    # and the job goes on with it: the next event moves the restored vector
    update_user(back, event(1, None, "search"), unit_catalog(d=3), PARAMS)
    assert back.seq == 8


def test_state_pickled_by_an_older_version_loads_with_defaults():
    import copyreg
    import pickle

    class PickledAsADict:  # the previous release's form: the class, then a dict of its fields
        def __init__(self, fields: dict) -> None:
            self.fields = fields

        def __reduce__(self):
            return copyreg._reconstructor, (UserState, object, None), self.fields  # type: ignore[attr-defined]

    # a release before the cart and the hit counts: its dict has neither
    fields = {k: v for k, v in PREVIOUS_RELEASE_STATE.__dict__.items() if k not in ("cart", "hits")}
    back = pickle.loads(pickle.dumps(PickledAsADict(fields), protocol=pickle.HIGHEST_PROTOCOL))
    assert isinstance(back, UserState)
    assert back.cart == [] and back.hits == 0 and back.impressions == 3 and back.purchased == ["p1"]


def test_the_state_round_trips_through_its_compact_pickle():
    import pickle

    for state in (PREVIOUS_RELEASE_STATE, UserState()):
        raw = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
        back = pickle.loads(raw)
        assert same_state(back, state)
        assert back.vector is None or (back.vector.dtype == np.float32 and back.vector.flags.writeable)
    assert len(pickle.dumps(PREVIOUS_RELEASE_STATE, protocol=pickle.HIGHEST_PROTOCOL)) < len(
        STATE_PICKLED_BY_THE_PREVIOUS_RELEASE)


def test_a_compact_pickle_without_the_fields_a_later_release_added_gets_their_defaults():
    from streamrec.model.model import _restore_user

    back = _restore_user(np.ones(3, dtype=np.float32).tobytes(), ["p1"], 4)  # vector, purchased, seq only
    assert back.seq == 4 and back.purchased == ["p1"] and back.cart == [] and back.hits == 0
    np.testing.assert_array_equal(back.vector, np.ones(3, dtype=np.float32))


def test_top_k_selection_is_exact_best_first_and_breaks_ties_by_catalog_row():
    # the selection only sorts the scores above a bound taken from block maxima: it must still be
    # exactly "sort by score, then by row" for any data, ties and filtered-out products included
    rng = np.random.default_rng(11)
    for trial in range(300):
        n = int(rng.choice([1, 7, 60, 500, 10_000]))
        scores = rng.normal(size=n).astype(np.float32)
        if trial % 3 == 0:
            scores = np.round(scores, 1)  # many equal scores
        if trial % 4 == 0:
            scores[rng.random(n) < 0.9] = -np.inf  # most products filtered out
        if trial % 7 == 0:
            scores[:] = 0.5  # all equal
        if trial % 11 == 0:
            scores[rng.random(n) < 0.5] = np.nan  # never expected, but must not lose a slot
        k = int(rng.choice([1, 10, 30, 100]))
        want = np.lexsort((np.arange(n), -scores))[: min(k, n)]
        assert list(select_top(scores, k)) == list(want), (trial, n, k)
