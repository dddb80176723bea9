"""Learning product embeddings from an interaction history (offline, before the job runs).

The method is item2vec in its matrix form (Levy & Goldberg 2014: skip-gram with negative sampling
implicitly factorises a shifted PMI matrix; Barkan & Koenigstein 2016 apply it to items):

1. Each user's product events, in the order they happened, are cut into sessions (a gap of more
   than ``session_gap_ms`` starts a new one). Two products *co-occur* when they are at most
   ``window`` positions apart in a session: neighbouring lines of a UCI invoice, consecutive
   clicks of an OTTO session. (``window=0`` counts every pair of a session instead.)
2. Co-occurrence counts become the shifted positive PMI matrix
   ``SPPMI(i, j) = max(0, log(#(i,j) * T / (#i^a * #j^a / Z)) - log(shift))`` with context
   smoothing ``a`` (0.75, as in word2vec), symmetric by construction.
3. The top ``dim`` positive eigenpairs of that symmetric matrix give the vectors
   ``Q * Lambda^p`` (``p = eig_power``), made unit length: products that appear next to the same
   products point the same way.
4. Products with fewer than ``min_count`` events (too little history), or none, get the
   vector of their title (:mod:`streamrec.model.text`: the idf-weighted mean of the vectors of
   its words, a word's vector being the mean of the learned products whose title has it).
5. Categories: the data has none, so they are derived: spherical k-means over the vectors
   (``categories`` clusters), each cluster named after its most distinctive title words
   (e.g. ``"lunch bag"``), or ``"cluster-07"`` when the data has no titles.

The defaults were chosen on a validation split of UCI Online Retail (docs/EVALUATION.md).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np

from streamrec.model.catalog import Catalog
from streamrec.model.events import Event
from streamrec.model.text import TextIndex, tokens
from streamrec.model.transitions import (
    DEFAULT_BACKWARD,
    DEFAULT_DAMPING,
    DEFAULT_KEEP,
    DEFAULT_STEPS,
    learn_transitions,
)

if TYPE_CHECKING:  # the CLI imports this module for its defaults: keep the import light
    import scipy.sparse as sp

    from streamrec.datasets import History

DEFAULT_DIM = 256


@dataclass(frozen=True)
class EmbeddingSettings:
    dim: int = DEFAULT_DIM  # all dimensions, the popularity one included
    window: int = 3  # products at most this many positions apart co-occur; 0: the whole session
    session_gap_ms: int = 30 * 60 * 1000  # a longer pause starts a new session
    shift: float = 1.0  # k of "shifted" PMI (negative samples in word2vec terms); 1 = plain PPMI
    smoothing: float = 0.75  # context distribution smoothing exponent
    eig_power: float = 0.5  # vectors = eigenvectors * eigenvalues ** eig_power
    min_count: int = 1  # products with fewer events than this get their title vector alone
    title_weight: float = 0.3  # share of the title vector in a learned product vector
    popularity: float = 0.75  # weight of the log-popularity dimension (0: none)
    categories: int = 24  # clusters named as categories; 0: no categories
    seed: int = 0
    # item-to-item transitions (streamrec.model.transitions): successors at most this many positions
    # later in a session count; 0: the catalog carries no transitions
    transition_steps: int = DEFAULT_STEPS
    transition_keep: int = DEFAULT_KEEP  # the strongest successors kept per product
    # the rules read backward too, with this weight (1: undirected co-occurrence; 0: order only), and a
    # successor's strength divided by its event count ^ damping (0: none); chosen on UCI's validation split
    transition_backward: float = DEFAULT_BACKWARD
    transition_damping: float = DEFAULT_DAMPING


def _sequences(events: Sequence[Event], p_index: dict[str, int], gap_ms: int) -> tuple[np.ndarray, np.ndarray]:
    """All product events as (row, session id) arrays, sessions contiguous, events in order."""
    by_user: dict[str, list[Event]] = {}
    for e in events:
        if e.product_id is not None:
            by_user.setdefault(e.user_id, []).append(e)
    rows: list[int] = []
    sess: list[int] = []
    sid = 0
    for user in sorted(by_user):
        prev_ts: Optional[int] = None
        prev_row = -1
        for e in by_user[user]:  # already in time order
            if prev_ts is not None and e.ts - prev_ts > gap_ms:
                sid += 1
                prev_row = -1
            row = p_index[e.product_id]  # type: ignore[index]
            if row != prev_row:  # a repeated click on the same product is not a new context
                rows.append(row)
                sess.append(sid)
            prev_ts, prev_row = e.ts, row
        sid += 1
    return np.array(rows, dtype=np.int64), np.array(sess, dtype=np.int64)


def cooccurrence(rows: np.ndarray, sess: np.ndarray, n: int, window: int) -> sp.csr_matrix:
    """Symmetric (n x n) counts of products at most ``window`` apart in a session (0: anywhere in it)."""
    import scipy.sparse as sp
    if window <= 0:
        x = sp.csr_matrix((np.ones(len(rows)), (sess, rows)), shape=(int(sess.max()) + 1 if len(sess) else 0, n))
        x.sum_duplicates()
        x.data[:] = 1.0
        c = (x.T @ x).tocsr()
        c.setdiag(0.0)
        c.eliminate_zeros()
        return c
    a_parts, b_parts = [], []
    for d in range(1, window + 1):
        same = sess[d:] == sess[:-d]
        a, b = rows[:-d][same], rows[d:][same]
        keep = a != b
        a_parts += [a[keep], b[keep]]
        b_parts += [b[keep], a[keep]]
    a_all = np.concatenate(a_parts) if a_parts else np.empty(0, dtype=np.int64)
    b_all = np.concatenate(b_parts) if b_parts else np.empty(0, dtype=np.int64)
    c = sp.csr_matrix((np.ones(len(a_all)), (a_all, b_all)), shape=(n, n))
    c.sum_duplicates()
    return c


def sppmi(c: sp.csr_matrix, shift: float = 1.0, smoothing: float = 0.75) -> sp.csr_matrix:
    """Shifted positive PMI of a symmetric co-occurrence matrix (stays symmetric and sparse)."""
    import scipy.sparse as sp
    c = c.tocoo()
    counts = np.asarray(c.sum(axis=1)).ravel()
    total = counts.sum()
    if total == 0:
        return sp.csr_matrix(c.shape)
    p = counts**smoothing
    p = p / p.sum()
    pmi = np.log(c.data / total) - np.log(p[c.row]) - np.log(p[c.col]) - math.log(shift)
    keep = pmi > 0
    return sp.csr_matrix((pmi[keep], (c.row[keep], c.col[keep])), shape=c.shape)


def factorise(m: sp.csr_matrix, dim: int, eig_power: float = 0.5, seed: int = 0) -> np.ndarray:
    """(n, dim) unit rows from the top positive eigenpairs of the symmetric matrix ``m``.

    Rows of products with no co-occurrence stay zero; so do dimensions beyond the positive spectrum.
    """
    from scipy.sparse.linalg import eigsh
    n = m.shape[0]
    out = np.zeros((n, dim), dtype=np.float64)
    active = np.flatnonzero(np.asarray(abs(m).sum(axis=1)).ravel() > 0)
    if len(active) < 2:
        return out.astype(np.float32)
    sub = m[active][:, active].astype(np.float64)
    k = min(dim, len(active) - 1)
    v0 = np.random.default_rng(seed).standard_normal(len(active))
    vals, vecs = eigsh(sub, k=k, which="LA", v0=v0)
    order = np.argsort(-vals)
    vals, vecs = vals[order], vecs[:, order]
    pos = vals > 1e-9
    vecs = vecs[:, pos] * (vals[pos] ** eig_power)
    # eigenvectors come up to sign: pin each dimension's sign so rebuilds are identical
    signs = np.sign(vecs.sum(axis=0))
    signs[signs == 0] = 1
    out[np.ix_(active, np.arange(vecs.shape[1]))] = vecs * signs
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return np.divide(out, norms, out=np.zeros_like(out), where=norms > 0).astype(np.float32)


def spherical_kmeans(vectors: np.ndarray, k: int, seed: int = 0, iterations: int = 25) -> np.ndarray:
    """Cluster ids (n,) of unit vectors by cosine k-means (k-means++ seeding); -1 for zero rows."""
    n = len(vectors)
    labels = np.full(n, -1, dtype=np.int64)
    active = np.flatnonzero(np.linalg.norm(vectors, axis=1) > 0)
    k = min(k, len(active))
    if k <= 0:
        return labels
    x = vectors[active].astype(np.float64)
    rng = np.random.default_rng(seed)
    centers = [x[rng.integers(len(x))]]
    for _ in range(1, k):
        dist = np.clip(1.0 - np.max(x @ np.array(centers).T, axis=1), 0.0, None)
        probs = dist / dist.sum() if dist.sum() > 0 else np.full(len(x), 1.0 / len(x))
        centers.append(x[rng.choice(len(x), p=probs)])
    c = np.array(centers)
    assign = np.zeros(len(x), dtype=np.int64)
    for _ in range(iterations):
        new = np.argmax(x @ c.T, axis=1)
        if _ > 0 and np.array_equal(new, assign):
            break
        assign = new
        for j in range(k):
            members = x[assign == j]
            if len(members):
                s = members.sum(axis=0)
                c[j] = s / max(np.linalg.norm(s), 1e-12)
    labels[active] = assign
    return labels


def name_clusters(labels: np.ndarray, titles: Sequence[str], words: int = 2) -> dict[int, str]:
    """Each cluster's name: its title words most over-represented against the whole catalog."""
    overall: Counter[str] = Counter()
    per: dict[int, Counter[str]] = {}
    sizes: Counter[int] = Counter()
    for lab, title in zip(labels.tolist(), titles):
        ws = set(tokens(title))
        overall.update(ws)
        if lab >= 0:
            per.setdefault(lab, Counter()).update(ws)
            sizes[lab] += 1
    total = max(1, len(titles))
    names: dict[int, str] = {}
    for lab in sorted(sizes):
        counts = per.get(lab, Counter())
        # frequent in the cluster and rarer elsewhere: tf * log(lift)
        ranked = sorted(
            ((cnt * math.log((cnt / sizes[lab]) / (overall[w] / total)), w) for w, cnt in counts.items() if cnt >= 2),
            key=lambda t: (-t[0], t[1]),
        )
        chosen = [w for score, w in ranked[:words] if score > 0]
        names[lab] = " ".join(chosen) if chosen else f"cluster-{lab:02d}"
    return names


def _unit(m: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    return np.divide(m, norms, out=np.zeros_like(m), where=norms > 0)


def with_popularity(vectors: np.ndarray, counts: np.ndarray, weight: float) -> np.ndarray:
    """Append the popularity dimension: ``a = weight * log(1+count) / log(1+max count)``.

    The other dimensions are scaled by ``sqrt(1 - a^2)`` so rows stay unit length (zero rows stay
    zero). A user vector, a sum of product vectors, then always leans toward popular products a
    little, in proportion to how popular the user's own products are.
    """
    logc = np.log1p(np.maximum(counts, 0.0))
    a = weight * logc / max(float(logc.max()), 1e-12) if weight > 0 else np.zeros(len(counts))
    a = np.minimum(a, 1.0)[:, None]
    out = np.hstack([vectors * np.sqrt(1.0 - a**2), a]).astype(np.float32)
    out[np.linalg.norm(vectors, axis=1) == 0] = 0.0
    return out


def build_catalog(
    history: History, dim: Optional[int] = None, seed: Optional[int] = None,
    settings: Optional[EmbeddingSettings] = None,
) -> Catalog:
    """The catalog (ids, titles, categories, prices, unit vectors) learned from ``history``.

    Every product the history names or has a title for is in it. ``dim`` and ``seed``, when
    given, override the same fields of ``settings``.
    """
    s = settings or EmbeddingSettings()
    s = replace(s, dim=s.dim if dim is None else dim, seed=s.seed if seed is None else seed)
    if s.dim < 2:
        raise ValueError("dim must be at least 2")
    events = [e for e in history.events if e.product_id is not None]
    products = sorted({e.product_id for e in events if e.product_id} | set(history.titles))
    if not products or not events:
        raise ValueError("the history has no product events to learn from")
    p_index = {p: i for i, p in enumerate(products)}
    n = len(products)
    titles = tuple(history.titles.get(p, "") for p in products)

    # 1-3: co-occurrence in sessions -> SPPMI -> eigenvectors
    rows, sess = _sequences(events, p_index, s.session_gap_ms)
    counts = np.bincount(rows, minlength=n).astype(np.float64)
    learned_dim = s.dim - 1 if s.popularity > 0 else s.dim
    learned = factorise(sppmi(cooccurrence(rows, sess, n, s.window), s.shift, s.smoothing), learned_dim,
                        s.eig_power, s.seed).astype(np.float64)

    # 4: titles: mixed into learned vectors, alone where there is too little history
    warm = (counts >= max(1, s.min_count)) & (np.linalg.norm(learned, axis=1) > 0)
    vectors = np.where(warm[:, None], learned, 0.0)
    if any(titles):
        words = TextIndex.build(titles, learned, rows=np.flatnonzero(warm))
        for r in range(n):
            t = words.embed(titles[r])
            if t is None:
                continue
            vectors[r] = (1.0 - s.title_weight) * vectors[r] + s.title_weight * t if warm[r] else t
    vectors = _unit(vectors)
    if s.popularity > 0:
        vectors = with_popularity(vectors, counts, s.popularity)
    vectors = vectors.astype(np.float32)

    # 5: derived categories
    categories: tuple[str, ...] = ()
    if s.categories > 0:
        labels = spherical_kmeans(vectors, s.categories, s.seed)
        names = name_clusters(labels, titles)
        categories = tuple(names.get(int(lab), "") for lab in labels)

    users_per_product = np.zeros(n)
    seen = {(e.user_id, p_index[e.product_id]) for e in events}  # type: ignore[index]
    np.add.at(users_per_product, np.array([r for _, r in seen], dtype=np.int64), 1.0)
    return Catalog(
        product_ids=tuple(products),
        vectors=vectors,
        titles=titles,
        categories=categories,
        prices=np.array([history.prices.get(p, np.nan) for p in products], dtype=np.float64),
        popularity=users_per_product,
        transitions=learn_transitions(rows, sess, n, s.transition_steps, s.transition_keep, s.transition_backward,
                                      s.transition_damping) if s.transition_steps > 0 else None,
    )
