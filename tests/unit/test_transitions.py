"""The transition term of the model: rules learned from sessions with the catalog, gathered for the
user's last products and added to the cosine, on hand-made histories whose answer is worked out by hand."""

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp

from streamrec.config import DEFAULT_EVENT_WEIGHTS
from streamrec.model.catalog import Catalog
from streamrec.model.history import fold_vectors
from streamrec.model.model import ModelParams, recommend_batch, transition_scores
from streamrec.model.transitions import context_triplets, learn_transitions, successor_lists, transitions_from_lists

pytestmark = pytest.mark.unit

IDS = ("a", "b", "c", "d", "e")
A, B, C, D, E = range(len(IDS))


def test_a_rule_sums_one_over_the_gap_within_a_session_and_rows_are_scaled_to_their_best_successor():
    # session 0: a b c ; session 1: a c ; session 2: b a
    rows = np.array([A, B, C, A, C, B, A])
    sess = np.array([0, 0, 0, 1, 1, 2, 2])
    t = learn_transitions(rows, sess, len(IDS), steps=10, keep=100).toarray()
    # a -> b: 1 (gap 1); a -> c: 1/2 (session 0, gap 2) + 1 (session 1) = 1.5: a's best, so 1
    assert t[A, C] == pytest.approx(1.0)
    assert t[A, B] == pytest.approx(1 / 1.5)
    # b -> c: 1 (session 0); b -> a: 1 (session 2): a tie, both 1
    assert t[B, C] == pytest.approx(1.0) and t[B, A] == pytest.approx(1.0)
    # nothing follows c; nothing crosses a session (c of session 0 -> a of session 1)
    assert not t[C].any()
    assert t[D].sum() == 0 and t[:, D].sum() == 0


def test_steps_bound_the_gap_and_keep_bounds_the_successors():
    rows = np.array([A, B, C, D])
    sess = np.zeros(4, dtype=np.int64)
    t1 = learn_transitions(rows, sess, len(IDS), steps=1, keep=100).toarray()
    assert t1[A, B] == 1.0 and t1[A, C] == 0.0 and t1[A, D] == 0.0
    t2 = learn_transitions(rows, sess, len(IDS), steps=3, keep=2).toarray()
    # a's successors: b 1, c 1/2, d 1/3; only the two strongest kept
    assert t2[A, B] == 1.0 and t2[A, C] == pytest.approx(0.5) and t2[A, D] == 0.0


def test_backward_adds_the_rules_read_the_other_way_before_the_scaling():
    # one session a b c: forward a->b 1, a->c 1/2, b->c 1
    rows = np.array([A, B, C])
    sess = np.zeros(3, dtype=np.int64)
    fwd = learn_transitions(rows, sess, len(IDS), steps=10, keep=100).toarray()
    assert not fwd[C].any() and fwd[B, A] == 0.0
    both = learn_transitions(rows, sess, len(IDS), steps=10, keep=100, backward=1.0).toarray()
    # undirected: c's neighbours b 1 and a 1/2 (its best, b, scores 1); b's are c 1 and a 1: both 1
    assert both[C, B] == pytest.approx(1.0) and both[C, A] == pytest.approx(0.5)
    assert both[B, C] == pytest.approx(1.0) and both[B, A] == pytest.approx(1.0)
    assert np.allclose(both[A], fwd[A])  # nothing comes before a: its row is its rules
    # half the weight backward: b's row is c 1 (forward) and a 1/2 (backward)
    half = learn_transitions(rows, sess, len(IDS), steps=10, keep=100, backward=0.5).toarray()
    assert half[B, C] == pytest.approx(1.0) and half[B, A] == pytest.approx(0.5)
    assert half[C, B] == pytest.approx(1.0) and half[C, A] == pytest.approx(0.5)


def test_damping_divides_a_successor_by_its_event_count_to_the_power():
    # sessions a b | a c | c d | c e: a -> b 1 and a -> c 1 tie; c has 3 events, b 1
    rows = np.array([A, B, A, C, C, D, C, E])
    sess = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    plain = learn_transitions(rows, sess, len(IDS), steps=10, keep=100).toarray()
    assert plain[A, B] == pytest.approx(1.0) and plain[A, C] == pytest.approx(1.0)
    damped = learn_transitions(rows, sess, len(IDS), steps=10, keep=100, damping=0.5).toarray()
    assert damped[A, B] == pytest.approx(1.0) and damped[A, C] == pytest.approx(1 / np.sqrt(3), rel=1e-6)
    # the popular product loses its place among the kept successors first
    one = learn_transitions(rows, sess, len(IDS), steps=10, keep=1, damping=0.5).toarray()
    assert one[A, B] == pytest.approx(1.0) and one[A, C] == 0.0


def test_an_undirected_matrix_ranks_what_came_before_a_product_in_other_sessions():
    # training: people who watched d then a; the user watched a: the rules alone say nothing after
    # a, the undirected matrix names d
    rows = np.array([D, A, D, A])
    sess = np.array([0, 0, 1, 1])
    params = ModelParams(DEFAULT_EVENT_WEIGHTS, half_life_events=1.0, top_k=2, transition_weight=0.5)
    history = [("click", 1, "a", None)]
    for backward, first in ((0.0, "b"), (1.0, "d")):
        cat = _catalog(learn_transitions(rows, sess, len(IDS), backward=backward))
        vectors, _ = fold_vectors([history], cat, params)
        boost = transition_scores([history], cat, params)
        rec = recommend_batch([vectors[0]], [["a"]], cat, params, boost=boost)[0]
        assert rec.product_ids[0] == first  # without the term every other product ties at 0: b by position


def test_the_context_is_each_users_last_products_newest_first_weighted_one_over_position():
    u = np.array([0, 0, 0, 0, 1, 1])
    rows = np.array([A, B, -1, C, D, E])  # -1: a search, no product: not part of the sequence
    cu, cr, cw = context_triplets(u, rows, 2)
    got = sorted(zip(cu.tolist(), cr.tolist(), cw.tolist()))
    assert got == [(0, B, 0.5), (0, C, 1.0), (1, D, 0.5), (1, E, 1.0)]


def _catalog(transitions):
    # every product equally far from every user vector: the cosine alone cannot tell them apart
    vectors = np.eye(len(IDS), dtype=np.float32)
    return Catalog(IDS, vectors, transitions=transitions)


def test_the_successor_of_the_last_product_ranks_first_and_without_transitions_the_cosine_alone():
    t = sp.csr_matrix(np.array([
        [0, 0, 0, 1.0, 0],    # a -> d
        [0, 0, 0, 0, 1.0],    # b -> e
        [0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0],
    ], dtype=np.float32))
    params = ModelParams(DEFAULT_EVENT_WEIGHTS, half_life_events=1.0, top_k=3, transition_weight=0.5)
    history = [("click", 1, "a", None), ("click", 2, "b", None)]
    # without transitions: the cosine of the user (a/2 + b, normalised): b, a, then c, d, e tie at 0
    plain = _catalog(None)
    vectors, _ = fold_vectors([history], plain, params)
    assert transition_scores([history], plain, params) is None
    assert recommend_batch([vectors[0]], [[]], plain, params)[0].product_ids == ("b", "a", "c")
    # with transitions: b is the last product (weight 1) -> e gets 0.5, a (weight 1/2) -> d gets 0.25;
    # the cosine of the user (a/2 + b, normalised) with b is 2/sqrt(5), with a 1/sqrt(5)
    cat = _catalog(t)
    vectors, _ = fold_vectors([history], cat, params)
    rec = recommend_batch([vectors[0]], [[]], cat, params, boost=transition_scores([history], cat, params))[0]
    assert rec.product_ids == ("b", "e", "a")
    assert rec.scores[0] == pytest.approx(2 / np.sqrt(5), rel=1e-5)
    assert rec.scores[1] == pytest.approx(0.5, rel=1e-5)
    # weight 0 is exactly the cosine model
    off = dataclasses.replace(params, transition_weight=0.0)
    assert transition_scores([history], cat, off) is None


def test_a_catalog_keeps_its_transitions_through_save_and_load_and_an_old_file_has_none(tmp_path):
    t = learn_transitions(np.array([A, B, C]), np.zeros(3, dtype=np.int64), len(IDS))
    cat = _catalog(t)
    cat.save(tmp_path / "with.npz")
    back = Catalog.load(tmp_path / "with.npz")
    assert back.transitions is not None
    assert (back.transitions != t).nnz == 0
    _catalog(None).save(tmp_path / "without.npz")
    assert Catalog.load(tmp_path / "without.npz").transitions is None


def test_the_products_table_keeps_each_products_successors_strongest_first_and_gives_the_matrix_back():
    # what `catalog load` writes into Cassandra `products` and the job reads back from it
    t = learn_transitions(np.array([A, B, C, A, C]), np.zeros(5, dtype=np.int64), len(IDS), steps=2)
    lists = successor_lists(t, IDS)
    # a->c: 1 (gap 1) + 1/2 (gap 2), a->b: 1; each divided by the best
    assert lists[A][0] == ["c", "b"] and lists[A][1] == pytest.approx([1.0, 1 / 1.5])
    assert lists[D] == ([], [])
    # in another order (Cassandra's reader sorts by product id), the same strengths between the same ids
    order = [E, C, A, D, B]
    back = transitions_from_lists([IDS[i] for i in order], [lists[i] for i in order])
    assert back is not None and back.dtype == np.float32
    assert (back != t[order][:, order]).nnz == 0  # float32 through Cassandra's float: exact


def test_a_successor_no_longer_in_the_catalog_is_left_out_and_a_table_without_any_has_no_transitions():
    assert transitions_from_lists(["a", "b"], [(["b", "gone"], [1.0, 0.5]), (None, None)]).toarray().tolist() == [
        [0.0, 1.0], [0.0, 0.0]]
    assert transitions_from_lists(["a", "b"], [(None, None), ([], [])]) is None
    assert successor_lists(None, ["a", "b"]) == [([], []), ([], [])]
    with pytest.raises(ValueError, match="'a': 2 successors but 1 weights"):
        transitions_from_lists(["a", "b"], [(["b", "a"], [1.0]), (None, None)])


def test_the_jobs_batched_ranking_adds_the_transition_term_as_the_offline_model_does():
    from streamrec.model.batch import BatchRanker, UserRequest, decode_rank_result, encode_rank_request
    from streamrec.model.live import LiveCatalog
    from streamrec.model.model import UserState, recommend_users
    from streamrec.model.variants import Variants

    rng = np.random.default_rng(3)
    n, d = 300, 8
    v = rng.normal(size=(n, d)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    ids = tuple(f"p{i}" for i in range(n))
    seq = rng.integers(0, n, size=4000)
    t = learn_transitions(seq, np.arange(4000) // 20, n, steps=5, keep=20)
    cat = Catalog(ids, v, transitions=t)
    params = ModelParams(DEFAULT_EVENT_WEIGHTS, top_k=5, transition_weight=0.4)
    live = LiveCatalog(cat, Variants.single(params))
    requests = []
    for u in range(40):
        history, purchased = [], []
        for i in range(int(rng.integers(1, 9))):
            etype = str(rng.choice(["view", "click", "purchase", "remove_from_cart"]))
            pid = f"p{rng.integers(n + 5)}"  # p300.. are unknown
            history.append((etype, 100 + i, pid, None))
            if etype == "purchase":
                purchased.append(pid)
        requests.append(UserRequest(f"u{u}", history, purchased, []))
    ranker = BatchRanker(live)
    _, fast = decode_rank_result(ranker.rank_columns(encode_rank_request(b"", requests)))
    slow = ranker.rank_users(requests)
    changed = 0
    for req, f, s in zip(requests, fast, slow):
        assert f.recommendation.product_ids == s.recommendation.product_ids
        np.testing.assert_allclose(f.recommendation.scores, s.recommendation.scores, rtol=1e-5, atol=1e-6)
        vectors, moves = fold_vectors([req.history], cat, params)
        state = UserState(vector=vectors[0] if moves[0] else None, purchased=req.purchased, moves=int(moves[0]),
                          history=req.history)
        assert recommend_users([state], cat, params)[0].product_ids == f.recommendation.product_ids
        plain = dataclasses.replace(params, transition_weight=0.0)
        changed += recommend_users([state], cat, plain)[0].product_ids != f.recommendation.product_ids
    assert changed > 0  # the term did reorder some lists


def test_with_the_ivf_index_a_product_the_transition_term_names_is_ranked_even_far_from_the_user():
    from streamrec.model.ranking import Ranker, user_like_queries
    from streamrec.model.topk import top_k_batch
    from tests.unit.test_ranking import clustered_catalog

    cat = clustered_catalog()
    ranker = Ranker(cat, ann_min_products=1000, k=10)
    assert ranker.ann is not None
    q = user_like_queries(cat, 30, seed=7)
    mask = np.ones(len(cat), dtype=bool)
    # each user's boosted product is the one least like them: the index alone would never return it
    far = np.argmin(q @ cat.vectors.T, axis=1)
    boost = sp.csr_matrix((np.full(len(q), 5.0), (np.arange(len(q)), far)), shape=(len(q), len(cat)))
    rows, scores = ranker.top_k(q, 10, [[]] * len(q), mask, boost)
    assert (rows[:, 0] == far).all()  # cosine >= -1, + 5: first
    exact, exact_scores = top_k_batch(q, cat, 10, [[]] * len(q), mask, boost)
    assert (exact[:, 0] == far).all()
    np.testing.assert_allclose(scores[:, 0], exact_scores[:, 0], rtol=1e-5)
    assert (np.diff(scores, axis=1) <= 1e-6).all()
