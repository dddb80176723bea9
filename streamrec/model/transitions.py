"""Item-to-item transitions: what tends to come next after a product, learned with the catalog.

The decayed embedding says which products are *like* the user's recent ones; it cannot say which
one comes *next* (the saucer after the cup, the next part of a set), which is what the sequential
rules of Ludewig & Jannach (2018) capture. So the catalog can carry a sparse matrix ``T``:

``T[a, b] = sum over the training sessions of 1/gap`` for every time ``b`` follows ``a`` at most
``steps`` positions later in one session (the sessions of :func:`streamrec.embeddings.build_catalog`,
consecutive repeats of a product already collapsed), the ``keep`` strongest successors of each
product kept, each row divided by its largest entry (so a product's best successor scores 1
whatever the product's popularity).

Two settings turn the rules toward plain co-occurrence, for data whose order within a session says
little (the ratings of one MovieLens sitting): ``backward`` adds the rules read the other way,
``T_raw + backward x T_raw^T`` (1: undirected co-occurrence within ``steps``, 0: rules only), and
``damping`` divides column ``b`` by ``count(b) ^ damping`` (``count``: b's events in the sessions)
before the pruning, so that a blockbuster is not every product's best neighbour (0: none; 0.5 is
the cosine's normalisation of the target side). Both are learned into the same matrix, so the
ranking never changes.

At ranking time a user's last ``context`` product events (from the history the job keeps, newest
first, weights 1, 1/2, 1/3, ...) gather their rows in one sparse product, and
``weight x`` that sum is added to the user's cosine scores: :func:`transition_boost`. A catalog
without transitions (older catalogs, synthetic ones) ranks exactly as the cosine alone.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import scipy.sparse as sp

DEFAULT_STEPS = 10
DEFAULT_KEEP = 100
# `catalog build`'s (EmbeddingSettings) defaults, chosen on UCI's validation split (docs/EVALUATION.md);
# learn_transitions' own defaults stay 0: the plain rules
DEFAULT_BACKWARD = 1.0
DEFAULT_DAMPING = 0.25


def learn_transitions(rows: np.ndarray, sess: np.ndarray, n: int, steps: int = DEFAULT_STEPS,
                      keep: int = DEFAULT_KEEP, backward: float = 0.0, damping: float = 0.0) -> sp.csr_matrix:
    """(n, n) float32 CSR of rule strengths from product sequences: ``rows[i]`` the catalog row of
    the i-th event, ``sess[i]`` its session (sessions contiguous, events in order); ``backward``
    and ``damping`` as in the module's docstring (0: the plain forward rules)."""
    src: list[np.ndarray] = []
    dst: list[np.ndarray] = []
    val: list[np.ndarray] = []
    for gap in range(1, max(1, steps) + 1):
        if gap >= len(rows):
            break
        same = sess[gap:] == sess[:-gap]
        a, b = rows[:-gap][same], rows[gap:][same]
        differ = a != b
        src.append(a[differ])
        dst.append(b[differ])
        val.append(np.full(int(differ.sum()), 1.0 / gap))
    if not src:
        return sp.csr_matrix((n, n), dtype=np.float32)
    t = sp.csr_matrix((np.concatenate(val), (np.concatenate(src), np.concatenate(dst))), shape=(n, n),
                      dtype=np.float64)
    t.sum_duplicates()
    if backward:
        t = (t + backward * t.T).tocsr()
    if damping:
        count = np.bincount(rows, minlength=n).astype(np.float64)
        t = (t @ sp.diags(np.maximum(count, 1.0) ** -damping)).tocsr()
    t.sum_duplicates()
    t.eliminate_zeros()
    return prune_and_scale(t, keep)


def prune_and_scale(t: sp.csr_matrix, keep: int) -> sp.csr_matrix:
    """Keep each row's ``keep`` largest entries (ties: the lower column), divided by the row's max."""
    n = t.shape[0]
    counts = np.diff(t.indptr)
    row_of = np.repeat(np.arange(n), counts)
    # by row, then strength descending, then column
    order = np.lexsort((t.indices, -t.data, row_of))
    rank = np.arange(len(order)) - np.repeat(t.indptr[:-1], counts)
    chosen = order[rank < keep] if keep > 0 else order
    r, c, v = row_of[chosen], t.indices[chosen], t.data[chosen]
    top = np.zeros(n)
    np.maximum.at(top, r, v)
    out = sp.csr_matrix(((v / top[r]).astype(np.float32), (r, c)), shape=t.shape, dtype=np.float32)
    out.sum_duplicates()
    out.sort_indices()
    return out


def context_triplets(u: np.ndarray, rows: np.ndarray, context: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The (user, catalog row, weight) of each user's last ``context`` product entries: flat arrays
    grouped by user (``u`` non-decreasing, oldest first); ``rows`` negative for an entry that is no
    known product (a search, an unknown id), which is skipped. The newest product weighs 1, the one
    before 1/2, then 1/3, ..."""
    keep = rows >= 0
    u, rows = u[keep], rows[keep]
    m = len(u)
    if m == 0 or context <= 0:
        return u[:0], rows[:0], np.zeros(0)
    last = np.ones(m, dtype=bool)
    last[:-1] = u[:-1] != u[1:]
    ends = np.flatnonzero(last)  # each user's last entry
    starts = np.concatenate(([0], ends[:-1] + 1))
    end_of = np.repeat(ends, ends - starts + 1)
    back = end_of - np.arange(m) + 1  # 1 for the newest entry of the user
    near = back <= context
    return u[near], rows[near], 1.0 / back[near]


def transition_boost(transitions: Optional[sp.csr_matrix], u: np.ndarray, rows: np.ndarray, weights: np.ndarray,
                     b: int) -> Optional[sp.csr_matrix]:
    """(b, n) CSR: for user i, the sum of ``weights x T[row]`` over their context triplets
    (:func:`context_triplets`); None when there are no transitions. Its column indices are not
    sorted (sorting was a third of the term's cost in the job); each coordinate appears once."""
    if transitions is None or transitions.nnz == 0:
        return None
    n = transitions.shape[0]
    ctx = sp.csr_matrix((weights, (u, rows)), shape=(b, n), dtype=np.float64)
    return (ctx @ transitions).tocsr()


def history_boost(transitions: Optional[sp.csr_matrix], histories_rows: list[list[int]],
                  context: int) -> Optional[sp.csr_matrix]:
    """:func:`transition_boost` of users given as lists of catalog rows of their moving entries,
    oldest first (-1 for an entry that is no known product)."""
    if transitions is None or transitions.nnz == 0:
        return None
    sizes = [len(h) for h in histories_rows]
    u = np.repeat(np.arange(len(histories_rows)), sizes)
    rows = np.fromiter((r for h in histories_rows for r in h), dtype=np.int64, count=sum(sizes))
    cu, cr, cw = context_triplets(u, rows, context)
    return transition_boost(transitions, cu, cr, cw, len(histories_rows))


def successor_lists(transitions: Optional[sp.csr_matrix],
                    product_ids: Sequence[str]) -> list[tuple[list[str], list[float]]]:
    """Each product's successors and their strengths, strongest first (ties: catalog order): the
    rows of ``T`` as the Cassandra ``products`` table keeps them (``transition_ids``,
    ``transition_weights``). Empty lists for every product when there are no transitions."""
    if transitions is None:
        return [([], []) for _ in product_ids]
    t = sp.csr_matrix(transitions, dtype=np.float32)
    out = []
    for i in range(len(product_ids)):
        lo, hi = t.indptr[i], t.indptr[i + 1]
        cols, vals = t.indices[lo:hi], t.data[lo:hi]
        order = np.lexsort((cols, -vals))
        out.append(([product_ids[c] for c in cols[order]], [float(v) for v in vals[order]]))
    return out


def transitions_from_lists(product_ids: Sequence[str],
                           lists: Sequence[tuple[Optional[Sequence[str]], Optional[Sequence[float]]]],
                           ) -> Optional[sp.csr_matrix]:
    """The inverse of :func:`successor_lists`: ``lists[i]`` are product i's successors and
    strengths (None: none). A successor that is not in ``product_ids`` (deleted since) is left
    out; a list pair of unequal lengths is an error. None when no product has a successor (a
    catalog loaded before transitions existed ranks by the cosine alone)."""
    index = {pid: i for i, pid in enumerate(product_ids)}
    src: list[int] = []
    dst: list[int] = []
    val: list[float] = []
    for i, (ids, weights) in enumerate(lists):
        ids, weights = ids or [], weights or []
        if len(ids) != len(weights):
            raise ValueError(f"product {product_ids[i]!r}: {len(ids)} successors but {len(weights)} weights")
        for pid, w in zip(ids, weights):
            j = index.get(pid)
            if j is not None:
                src.append(i)
                dst.append(j)
                val.append(w)
    if not src:
        return None
    n = len(product_ids)
    t = sp.csr_matrix((np.asarray(val, dtype=np.float32), (src, dst)), shape=(n, n), dtype=np.float32)
    t.sum_duplicates()
    t.sort_indices()
    return t
