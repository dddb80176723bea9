"""The product catalog as the model sees it: ids, metadata and unit-length embeddings."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import scipy.sparse as sp

_EMPTY = np.empty(0)


@dataclass(frozen=True, eq=False)
class Catalog:
    product_ids: tuple[str, ...]
    vectors: np.ndarray  # (n, d) float32, each row unit length (or zero for "no vector yet")
    titles: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    # empty arrays mean "not given": unknown prices (NaN), everything in stock, no popularity
    prices: np.ndarray = field(default_factory=lambda: _EMPTY)  # (n,) float64, NaN where unknown
    in_stock: np.ndarray = field(default_factory=lambda: _EMPTY)  # (n,) bool
    popularity: np.ndarray = field(default_factory=lambda: _EMPTY)  # (n,) float64, history counts
    # (n, n) float32 CSR of item-to-item transition strengths (streamrec.model.transitions); None: none
    transitions: Optional[sp.csr_matrix] = None
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        n = len(self.product_ids)
        if self.vectors.ndim != 2 or self.vectors.shape[0] != n:
            raise ValueError(f"vectors must be (n={n}, d), got {self.vectors.shape}")
        object.__setattr__(self, "vectors", np.ascontiguousarray(self.vectors, dtype=np.float32))
        if not self.titles:
            object.__setattr__(self, "titles", ("",) * n)
        if not self.categories:
            object.__setattr__(self, "categories", ("",) * n)
        if self.prices is None or len(self.prices) == 0:
            object.__setattr__(self, "prices", np.full(n, np.nan))
        if self.in_stock is None or len(self.in_stock) == 0:
            object.__setattr__(self, "in_stock", np.ones(n, dtype=bool))
        if self.popularity is None or len(self.popularity) == 0:
            object.__setattr__(self, "popularity", np.zeros(n))
        object.__setattr__(self, "in_stock", np.asarray(self.in_stock, dtype=bool))
        for name in ("titles", "categories", "prices", "in_stock", "popularity"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} entries for {n} products")
        if self.transitions is not None:
            if self.transitions.shape != (n, n):
                raise ValueError(f"transitions must be ({n}, {n}), got {self.transitions.shape}")
            object.__setattr__(self, "transitions", sp.csr_matrix(self.transitions, dtype=np.float32))
        object.__setattr__(self, "index", {pid: i for i, pid in enumerate(self.product_ids)})
        if len(self.index) != n:
            raise ValueError("product ids must be unique")

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def __len__(self) -> int:
        return len(self.product_ids)

    def __contains__(self, product_id: object) -> bool:
        return product_id in self.index

    def indices(self, product_ids: Sequence[str]) -> list[int]:
        """Catalog rows of the given ids; ids the catalog does not know are skipped."""
        return [self.index[p] for p in product_ids if p in self.index]

    def save(self, path: Union[str, Path]) -> None:
        t = self.transitions
        extra = {} if t is None else {"transitions_data": t.data, "transitions_indices": t.indices,
                                      "transitions_indptr": t.indptr}
        np.savez_compressed(
            path,
            **extra,
            product_ids=np.array(self.product_ids, dtype=object),
            vectors=self.vectors,
            titles=np.array(self.titles, dtype=object),
            categories=np.array(self.categories, dtype=object),
            prices=self.prices,
            in_stock=self.in_stock,
            popularity=self.popularity,
        )

    @classmethod
    def load(cls, path: Union[str, Path]) -> Catalog:
        with np.load(path, allow_pickle=True) as z:
            n = len(z["product_ids"])
            transitions = None
            if "transitions_data" in z.files:  # catalogs saved before transitions existed have none
                transitions = sp.csr_matrix((z["transitions_data"], z["transitions_indices"],
                                             z["transitions_indptr"]), shape=(n, n))
            return cls(
                product_ids=tuple(str(x) for x in z["product_ids"]),
                vectors=z["vectors"],
                titles=tuple(str(x) for x in z["titles"]),
                categories=tuple(str(x) for x in z["categories"]),
                prices=z["prices"],
                in_stock=z["in_stock"],
                popularity=z["popularity"],
                transitions=transitions,
            )
