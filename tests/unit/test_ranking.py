"""Top-k by catalog size: exact below the threshold, a faiss IVF index above it whose nprobe is
calibrated to the recall floor, with the same filters as the exact search."""

import numpy as np

from streamrec.model.catalog import Catalog
from streamrec.model.ranking import Ranker, recall_at_k, user_like_queries
from streamrec.model.topk import top_k_batch


def clustered_catalog(n=6000, d=16, clusters=60, seed=2) -> Catalog:
    """Products in clusters, as learned embeddings are (uniform random vectors have no structure)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(clusters, d))
    v = centers[rng.integers(clusters, size=n)] + 0.3 * rng.normal(size=(n, d))
    v = (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)
    return Catalog(tuple(f"p{i}" for i in range(n)), v)


def test_a_small_catalog_is_searched_exactly():
    cat = clustered_catalog(n=500)
    ranker = Ranker(cat, ann_min_products=1000)
    assert ranker.ann is None
    q = user_like_queries(cat, 20)
    mask = np.ones(len(cat), dtype=bool)
    rows, _ = ranker.top_k(q, 10, [[]] * 20, mask)
    want, _ = top_k_batch(q, cat, 10, [[]] * 20, mask)
    assert (rows == want).all()


def test_a_large_catalog_gets_an_index_that_meets_the_recall_floor_and_keeps_the_filters():
    cat = clustered_catalog()
    ranker = Ranker(cat, ann_min_products=1000, recall_floor=0.95, k=10)
    assert ranker.ann is not None and ranker.ann.recall >= 0.95
    q = user_like_queries(cat, 200, seed=9)  # other queries than the calibration's
    mask = np.ones(len(cat), dtype=bool)
    mask[::3] = False  # a third of the catalog off sale
    exclude = [list(top_k_batch(q[i:i + 1], cat, 3, [], mask)[0][0]) for i in range(len(q))]  # each user's best 3
    rows, scores = ranker.top_k(q, 10, exclude, mask)
    truth, _ = top_k_batch(q, cat, 10, exclude, mask)
    assert recall_at_k(rows, truth) >= 0.9
    assert (rows >= 0).all() and mask[rows].all()
    assert not any(set(r) & set(e) for r, e in zip(rows, exclude))
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # best first


def test_users_the_index_cannot_serve_fall_back_to_the_exact_search():
    cat = clustered_catalog()
    ranker = Ranker(cat, ann_min_products=1000)
    q = user_like_queries(cat, 5, seed=4)
    mask = np.zeros(len(cat), dtype=bool)
    mask[-20:] = True  # almost everything filtered out: the candidates the index returns are not enough
    rows, _ = ranker.top_k(q, 10, [[]] * 5, mask)
    want, _ = top_k_batch(q, cat, 10, [[]] * 5, mask)
    assert (rows == want).all()
