"""The top-k micro-benchmark's helpers: recall, jittered catalogs, picking settings (no timing asserts)."""

from __future__ import annotations

import numpy as np
import pytest

from streamrec.bench.generator import synthetic_catalog
from streamrec.bench.topk import best_per_method, jittered, model_user_vectors, normalise, recall_at_k, summary_table
from streamrec.model.events import Event


def test_recall_at_k_counts_overlap_and_ignores_missing():
    truth = np.array([[1, 2, 3], [4, 5, -1]])
    assert recall_at_k(truth, truth) == 1.0
    found = np.array([[3, 2, 9], [5, 6, 7]])
    assert recall_at_k(found, truth) == pytest.approx((2 + 1) / 5)
    assert recall_at_k(np.array([[1]]), np.array([[-1]])) == 1.0


def test_jittered_keeps_the_base_and_adds_unit_vectors_near_it():
    base = synthetic_catalog(50, 16, seed=1).vectors
    out = jittered(base, 500, seed=2)
    assert out.shape == (500, 16) and out.dtype == np.float32
    assert np.array_equal(out[:50], base)
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    nearest = (out[50:] @ base.T).max(axis=1)
    assert np.median(nearest) > 0.7  # each copy stays close to a real vector
    assert jittered(base, 10, seed=2).shape == (10, 16)


def test_normalise_leaves_zero_rows_zero():
    x = normalise(np.array([[3.0, 4.0], [0.0, 0.0]]))
    assert np.allclose(x, [[0.6, 0.8], [0.0, 0.0]])


def test_model_user_vectors_are_unit_length_user_states():
    cat = synthetic_catalog(100, 8, seed=0)
    hist = [[Event(f"e{u}-{i}", f"u{u}", i, "view", cat.product_ids[(u * 7 + i) % 100]) for i in range(5)]
            for u in range(10)]
    q = model_user_vectors(cat, hist, 20, seed=0)
    assert q.shape == (20, 8)
    assert np.allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-5)


def test_best_per_method_picks_the_fastest_setting_above_the_floor():
    recs = [
        {"dataset": "d", "catalog_size": 10, "method": "ivf", "recall": 0.90, "events_per_s_per_core": 900,
         "param": {"nprobe": 1}},
        {"dataset": "d", "catalog_size": 10, "method": "ivf", "recall": 0.96, "events_per_s_per_core": 500,
         "param": {"nprobe": 4}},
        {"dataset": "d", "catalog_size": 10, "method": "ivf", "recall": 0.99, "events_per_s_per_core": 200,
         "param": {"nprobe": 16}},
        {"dataset": "d", "catalog_size": 10, "method": "hnsw", "recall": 0.80, "events_per_s_per_core": 100,
         "param": None},
    ]
    best = {r["method"]: r for r in best_per_method(recs, 0.95)}
    assert best["ivf"]["param"] == {"nprobe": 4}
    assert best["hnsw"]["recall"] == 0.80  # none reaches the floor: the best recall, marked in the table
    table = "\n".join(summary_table(recs, 0.95))
    assert "below floor" in table and "nprobe 4" in table


def test_synthetic_transitions_are_shaped_as_catalog_build_keeps_them():
    from streamrec.bench.generator import synthetic_transitions

    t = synthetic_transitions(300, keep=20, seed=1)
    per_row = np.diff(t.indptr)
    assert t.shape == (300, 300) and t.dtype == np.float32
    assert per_row.max() <= 20 and per_row.min() >= 15  # 20 draws, a repeat now and then
    assert np.allclose(t.max(axis=1).toarray().ravel(), 1.0) and t.data.min() > 0


def test_model_pieces_measures_every_piece():
    from streamrec.bench.pieces import model_pieces

    pieces = dict(model_pieces(products=200, dim=8, events=1_200, users=50))
    assert "parse_event" in pieces and "update_user + pickled state" in pieces
    assert any(name.startswith("top-k once per user") for name in pieces)
    assert [n for n in pieces if n.startswith("fast path rank")] == [
        *(f"fast path rank, batches of {size} events" for size in (25, 150, 350, 512)),
        *(f"fast path rank, batches of {size} events, with transitions (100 per product)" for size in (150, 512))]
    assert all(us >= 0 for us in pieces.values())
