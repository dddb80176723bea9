"""Text into the product space: the words of product titles get vectors, queries are made of words.

A word's vector is the normalised mean of the vectors of the products whose title has the word; a
text (a search query, or the title of a product with too little history to learn from) is the
normalised, idf-weighted mean of the vectors of its known words. Everything is derived from a
:class:`~streamrec.model.catalog.Catalog` (titles + vectors), so the job can build it at load time
from the Cassandra ``products`` table: :func:`text_index` does that once per catalog object.
"""

from __future__ import annotations

import re
import threading
import weakref
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

import numpy as np

from streamrec.model.catalog import Catalog

_TOKEN = re.compile(r"[a-z0-9]+")
# Words that say nothing about what a product is.
STOPWORDS = frozenset(
    "a an and as at by for from in of on or set sets the to with w".split()
)


def _stem(word: str) -> str:
    """A light English plural stemmer, applied to titles and queries alike: lanterns -> lantern."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("ches", "shes", "sses", "xes", "zes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is", "as")):
        return word[:-1]
    return word


def tokens(text: str) -> list[str]:
    """The words of a text as the index knows them: lower case, stemmed, no stopwords or numbers."""
    out = []
    for t in _TOKEN.findall(text.lower()):
        if t in STOPWORDS or t.isdigit() or len(t) < 2:
            continue
        out.append(_stem(t))
    return out


@dataclass(frozen=True, eq=False)
class TextIndex:
    words: dict[str, int]
    vectors: np.ndarray  # (words, d) float32, unit rows
    idf: np.ndarray  # (words,) float32: log(1 + products / products with the word)

    @classmethod
    def build(cls, titles: Sequence[str], vectors: np.ndarray, rows: Optional[Iterable[int]] = None) -> TextIndex:
        """Word vectors from the products ``rows`` (default: every product with a non-zero vector)."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if rows is None:
            rows = np.flatnonzero(np.linalg.norm(vectors, axis=1) > 0)
        words: dict[str, int] = {}
        pairs_w: list[int] = []
        pairs_p: list[int] = []
        for r in rows:
            for w in set(tokens(titles[int(r)])):
                pairs_w.append(words.setdefault(w, len(words)))
                pairs_p.append(int(r))
        d = vectors.shape[1]
        sums = np.zeros((len(words), d), dtype=np.float64)
        np.add.at(sums, np.array(pairs_w, dtype=np.int64), vectors[np.array(pairs_p, dtype=np.int64)])
        df = np.bincount(np.array(pairs_w, dtype=np.int64), minlength=len(words)).astype(np.float64)
        n_docs = max(1, len({*pairs_p}))
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        unit = np.divide(sums, norms, out=np.zeros_like(sums), where=norms > 0).astype(np.float32)
        idf = np.log1p(n_docs / np.maximum(df, 1.0)).astype(np.float32)
        return cls(words, unit, idf)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def embed(self, text: str) -> Optional[np.ndarray]:
        """Unit vector of a text in the product space, or None when no word of it is known."""
        ids = [self.words[w] for w in tokens(text) if w in self.words]
        if not ids:
            return None
        rows = np.array(ids, dtype=np.int64)
        v = (self.idf[rows, None] * self.vectors[rows]).sum(axis=0)
        norm = float(np.linalg.norm(v))
        if norm == 0.0:
            return None
        return (v / norm).astype(np.float32)


_cache: weakref.WeakKeyDictionary[Catalog, TextIndex] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def text_index(catalog: Catalog) -> TextIndex:
    """The catalog's word index, built on first use and kept as long as the catalog object lives."""
    with _lock:
        index = _cache.get(catalog)
        if index is None:
            index = _cache[catalog] = TextIndex.build(catalog.titles, catalog.vectors)
        return index


def embed_query(catalog: Catalog, query: str) -> Optional[np.ndarray]:
    """A search query as a unit vector in the catalog's space (None: no known word)."""
    return text_index(catalog).embed(query)
