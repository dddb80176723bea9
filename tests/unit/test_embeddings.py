"""Product vectors learned from histories: item2vec as SPPMI + eigendecomposition, titles, categories."""

import numpy as np
import pytest

from streamrec.datasets import History
from streamrec.embeddings import (
    EmbeddingSettings,
    build_catalog,
    cooccurrence,
    factorise,
    name_clusters,
    spherical_kmeans,
    sppmi,
    with_popularity,
)
from streamrec.model.catalog import Catalog
from streamrec.model.events import Event

MINUTE = 60_000


def baskets(groups, users=40, repeat=3):
    """Each user fills `repeat` carts from one group of products, in order, a day apart."""
    events = []
    for u in range(users):
        group = groups[u % len(groups)]
        for r in range(repeat):
            for j, p in enumerate(group):
                ts = (u * 10 + r) * 86_400_000 + j * MINUTE
                events.append(Event(f"e{u}-{r}-{j}", f"u{u}", ts, "purchase", p))
    events.sort(key=lambda e: e.ts)
    return events


GROUPS = [["lamp1", "lamp2", "lamp3", "lamp4"], ["mug1", "mug2", "mug3", "mug4"], ["bag1", "bag2", "bag3", "bag4"]]
TITLES = {
    **{f"lamp{i}": f"GLASS LANTERN LAMP {c}" for i, c in zip(range(1, 5), ["RED", "BLUE", "PINK", "GREEN"])},
    **{f"mug{i}": f"ENAMEL MUG {c}" for i, c in zip(range(1, 5), ["RED", "BLUE", "PINK", "GREEN"])},
    **{f"bag{i}": f"JUMBO SHOPPER BAG {c}" for i, c in zip(range(1, 5), ["RED", "BLUE", "PINK", "GREEN"])},
}


def test_cooccurrence_counts_neighbours_within_the_window_and_the_session_only():
    rows = np.array([0, 1, 2, 3, 0, 1])
    sess = np.array([0, 0, 0, 0, 1, 1])
    c = cooccurrence(rows, sess, 4, window=1).toarray()
    np.testing.assert_array_equal(c, c.T)
    assert c[0, 1] == 2 and c[1, 2] == 1 and c[2, 3] == 1  # 0-1 twice: once per session
    assert c[0, 2] == 0 and c[1, 3] == 0 and c[3, 0] == 0  # two apart, or across sessions
    assert np.all(np.diag(c) == 0)
    whole = cooccurrence(rows, sess, 4, window=0).toarray()
    assert whole[0, 3] == 1 and whole[0, 1] == 2 and np.all(np.diag(whole) == 0)


def test_sppmi_keeps_pairs_seen_together_more_often_than_chance():
    # 0 goes with 1, 2 goes with 3; 0 and 2 met once: less than chance
    c = np.array([[0, 10, 1, 0], [10, 0, 1, 0], [1, 1, 0, 10], [0, 0, 10, 0]], dtype=float)
    import scipy.sparse as sp

    m = sppmi(sp.csr_matrix(c), shift=1.0, smoothing=1.0).toarray()
    np.testing.assert_allclose(m, m.T)
    assert m[0, 1] > 0 and m[2, 3] > 0 and m[0, 2] == 0 and (m >= 0).all()
    assert sppmi(sp.csr_matrix(c), shift=100.0).nnz == 0  # a large shift removes everything


def test_factorise_gives_unit_rows_and_zero_rows_for_products_never_seen_together():
    import scipy.sparse as sp

    block = np.ones((3, 3)) - np.eye(3)
    m = sp.block_diag([block, block, np.zeros((1, 1))]).tocsr()
    v = factorise(m, dim=2)
    np.testing.assert_allclose(np.linalg.norm(v[:6], axis=1), 1.0, rtol=1e-5)
    assert not v[6].any()
    assert float(v[0] @ v[1]) > 0.99 and abs(float(v[0] @ v[3])) < 1e-5
    np.testing.assert_array_equal(v, factorise(m, dim=2))  # deterministic


def test_products_of_the_same_carts_end_up_close_and_other_groups_far():
    cat = build_catalog(History(baskets(GROUPS), TITLES, {}), settings=EmbeddingSettings(dim=8, categories=0))
    v = {p: cat.vectors[cat.index[p]] for p in cat.product_ids}
    assert float(v["lamp1"] @ v["lamp2"]) > float(v["lamp1"] @ v["mug1"]) + 0.3
    nearest = sorted(cat.product_ids, key=lambda p: -float(v["mug1"] @ v[p]))[1:4]
    assert set(nearest) == {"mug2", "mug3", "mug4"}
    np.testing.assert_allclose(np.linalg.norm(cat.vectors, axis=1), 1.0, rtol=1e-5)
    assert cat.dim == 8


def test_a_product_with_too_little_history_gets_the_vector_of_its_title():
    titles = {**TITLES, "lamp9": "GLASS LANTERN LAMP WHITE", "ghost": "NOTHING IN COMMON"}
    events = [*baskets(GROUPS), Event("once", "u0", 10**12, "purchase", "mug1")]
    cat = build_catalog(History(events, titles, {}), settings=EmbeddingSettings(dim=8, min_count=2, categories=0))
    v = cat.vectors
    lamp9 = v[cat.index["lamp9"]]  # never bought: its words are lamp words
    nearest = sorted(cat.product_ids, key=lambda p: -float(lamp9 @ v[cat.index[p]]))[:5]
    assert set(nearest) == {"lamp9", "lamp1", "lamp2", "lamp3", "lamp4"}
    assert not v[cat.index["ghost"]].any()  # no known word, no history: no vector at all


def test_the_popularity_dimension_leans_toward_best_sellers_and_keeps_rows_unit():
    v = np.eye(3, dtype=np.float32)
    out = with_popularity(v, np.array([0.0, 9.0, 99.0]), weight=0.5)
    assert out.shape == (3, 4)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-6)
    assert out[0, 3] == 0.0 and 0 < out[1, 3] < out[2, 3] == pytest.approx(0.5)
    assert not with_popularity(np.zeros((1, 3)), np.array([5.0]), 0.5).any()


def test_the_popularity_dimension_is_the_last_one_of_a_learned_catalog():
    groups = [*GROUPS, ["lamp1", "mug1"]]  # lamp1 and mug1 sell more
    cat = build_catalog(History(baskets(groups, users=50), TITLES, {}),
                        settings=EmbeddingSettings(dim=8, popularity=0.5, categories=0))
    pop = cat.vectors[:, -1]
    assert pop[cat.index["lamp1"]] == pytest.approx(0.5) and pop[cat.index["lamp2"]] < 0.5
    plain = build_catalog(History(baskets(groups, users=50), TITLES, {}),
                          settings=EmbeddingSettings(dim=8, popularity=0.0, categories=0))
    assert plain.dim == 8 and (plain.vectors[:, -1] != pop).any()


def test_derived_categories_are_clusters_named_after_their_title_words():
    cat = build_catalog(History(baskets(GROUPS), TITLES, {}), settings=EmbeddingSettings(dim=8, categories=3))
    by_group = [{cat.categories[cat.index[p]] for p in g} for g in GROUPS]
    assert all(len(names) == 1 for names in by_group)  # one category per group
    names = [next(iter(n)) for n in by_group]
    assert len(set(names)) == 3
    assert "lantern" in names[0] or "lamp" in names[0] or "glass" in names[0]
    assert "mug" in names[1] or "enamel" in names[1]


def test_spherical_kmeans_and_cluster_names_on_their_own():
    rng = np.random.default_rng(0)
    x = np.vstack([rng.normal([5, 0, 0], 0.3, (10, 3)), rng.normal([0, 5, 0], 0.3, (10, 3)), np.zeros((1, 3))])
    x[:20] /= np.linalg.norm(x[:20], axis=1, keepdims=True)
    labels = spherical_kmeans(x, 2)
    assert len(set(labels[:10])) == 1 and len(set(labels[10:20])) == 1 and labels[0] != labels[10]
    assert labels[20] == -1
    titles = ["TEA CUP RED"] * 8 + ["TEA CUP BLUE"] * 2 + ["DOOR MAT BLUE"] * 8 + ["DOOR MAT RED"] * 2 + [""]
    names = name_clusters(labels, titles)
    assert {names[labels[0]], names[labels[10]]} == {"cup tea", "door mat"}  # not the colours: both have them


def test_a_catalog_rebuilds_identically_and_round_trips_through_its_file(tmp_path):
    h = History(baskets(GROUPS), TITLES, {"lamp1": 2.5})
    a = build_catalog(h, settings=EmbeddingSettings(dim=8, categories=3))
    b = build_catalog(h, settings=EmbeddingSettings(dim=8, categories=3))
    np.testing.assert_array_equal(a.vectors, b.vectors)
    assert a.categories == b.categories
    a.save(tmp_path / "c.npz")
    back = Catalog.load(tmp_path / "c.npz")
    np.testing.assert_array_equal(back.vectors, a.vectors)
    assert back.categories == a.categories and back.titles == a.titles
    assert back.prices[back.index["lamp1"]] == 2.5


def test_dim_and_seed_arguments_override_the_settings():
    cat = build_catalog(History(baskets(GROUPS), TITLES, {}), dim=6, settings=EmbeddingSettings(dim=32))
    assert cat.dim == 6


def test_an_empty_history_is_an_error():
    with pytest.raises(ValueError, match="no product events"):
        build_catalog(History([], {}, {}))
