"""Learning product embeddings from an interaction history (offline, before the job runs).

The skeleton's method: a truncated SVD of the user x product matrix (binary: did the user touch
the product), with columns scaled by 1/sqrt(popularity) so that best-sellers do not own every
dimension. Product vectors are the right singular vectors scaled by the singular values, made
unit length. Two products bought by the same customers end up close.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import svds

from streamrec.datasets import History
from streamrec.udfs.catalog import Catalog
from streamrec.udfs.events import Event


def build_catalog(history: History, dim: int = 32, seed: int = 0) -> Catalog:
    events: Sequence[Event] = [e for e in history.events if e.product_id is not None]
    products = sorted({e.product_id for e in events if e.product_id} | set(history.titles))
    users = sorted({e.user_id for e in events})
    if not products or not users:
        raise ValueError("the history has no product events to learn from")
    p_index = {p: i for i, p in enumerate(products)}
    u_index = {u: i for i, u in enumerate(users)}
    rows = np.fromiter((u_index[e.user_id] for e in events), dtype=np.int64, count=len(events))
    cols = np.fromiter((p_index[e.product_id] for e in events), dtype=np.int64, count=len(events))  # type: ignore[index]
    x = sp.csr_matrix((np.ones(len(events), dtype=np.float64), (rows, cols)), shape=(len(users), len(products)))
    x.data[:] = 1.0  # duplicates summed by csr construction: keep "touched or not"
    popularity = np.asarray(x.sum(axis=0)).ravel()
    scale = np.divide(1.0, np.sqrt(popularity), out=np.zeros_like(popularity), where=popularity > 0)
    x = x @ sp.diags(scale)
    k = max(1, min(dim, min(x.shape) - 1))
    rng = np.random.default_rng(seed)
    v0 = rng.standard_normal(min(x.shape))
    _, s, vt = svds(x, k=k, v0=v0)
    order = np.argsort(-s)
    vectors = (vt[order].T * s[order]).astype(np.float32)
    # svds returns vectors up to sign; pin each dimension's sign so rebuilds are identical.
    signs = np.sign(vectors.sum(axis=0))
    signs[signs == 0] = 1
    vectors *= signs
    if k < dim:
        vectors = np.hstack([vectors, np.zeros((len(products), dim - k), dtype=np.float32)])
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
    return Catalog(
        product_ids=tuple(products),
        vectors=vectors,
        titles=tuple(history.titles.get(p, "") for p in products),
        prices=np.array([history.prices.get(p, np.nan) for p in products], dtype=np.float64),
        popularity=popularity.astype(np.float64),
    )
