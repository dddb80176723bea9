"""The catalog as the running job sees it: the base catalog loaded at start, the product updates
broadcast since, the trending list, and what is derived from them (eligibility masks per variant,
the ranker with its index). Pure Python; the Flink adapters feed it broadcast elements."""

from __future__ import annotations

import json
from typing import Any, Callable, Iterable, Optional

import numpy as np

from streamrec.model.catalog import Catalog
from streamrec.model.model import ModelParams, eligible_mask
from streamrec.model.products import ProductUpdate, apply_updates, merge_updates, parse_product_update
from streamrec.model.ranking import Ranker
from streamrec.model.variants import Variants

TRENDING_KEY = "trending"
PRODUCT_PREFIX = "product:"


class LiveCatalog:
    """The catalog with the updates applied so far, rebuilt lazily (on the next ranking), and the
    trending list. Keys and payloads are those of the job's control broadcast state:
    ``"product:<id>"`` -> a merged product update (JSON), ``"trending"`` -> ``[[id, score], ...]``."""

    def __init__(self, base: Catalog, variants: Variants, ann_min_products: int = 0,
                 ann_recall_floor: float = 0.95) -> None:
        self.base = base
        self.variants = variants
        self._ann_min_products = ann_min_products
        self._ann_recall_floor = ann_recall_floor
        self._catalog = base
        self._ranker = self._new_ranker(base)
        self._updates: dict[str, ProductUpdate] = {}  # merged, by product: what the catalog has on top of base
        self._dirty = False
        self._vectors_changed = False
        self._masks: dict[str, np.ndarray] = {}
        self._rows: Any = None  # pandas Index of the product ids, for the catalog it was built on
        self._rows_of: Optional[Catalog] = None
        self.trending: list[tuple[str, float]] = []

    def _new_ranker(self, catalog: Catalog) -> Ranker:
        k = max(p.stored_k for p in self.variants.params.values())
        return Ranker(catalog, self._ann_min_products, self._ann_recall_floor, k)

    def restore(self, control: Iterable[tuple[str, str]]) -> None:
        """Take every entry of the broadcast state (after a restore it holds each update since the
        job started; the base catalog is what they apply to)."""
        for key, payload in control:
            if key == TRENDING_KEY:
                self.set_trending(payload)
            else:
                update = parse_product_update(payload)
                if isinstance(update, ProductUpdate):
                    self._apply(update)

    def set_trending(self, payload: str) -> None:
        self.trending = [(str(p), float(s)) for p, s in json.loads(payload)]

    def update_product(self, payload: str, store: Callable[[str, str], Any]) -> None:
        """Merge a product update into what is known of the product and ``store(key, merged JSON)``
        it in the broadcast state."""
        update = parse_product_update(payload)
        if not isinstance(update, ProductUpdate):
            return
        older = self._updates.get(update.product_id)
        merged = update if older is None else merge_updates(older, update)
        store(PRODUCT_PREFIX + update.product_id, merged.to_json())
        self._apply(merged)

    def _apply(self, update: ProductUpdate) -> None:
        self._updates[update.product_id] = update
        self._dirty = True
        if update.embedding is not None or update.product_id not in self._catalog.index:
            self._vectors_changed = True

    @property
    def size(self) -> int:
        """Products known now, without the rebuild ``catalog`` may do (a metrics gauge reads it)."""
        return len(self._catalog.product_ids) + sum(1 for p in self._updates if p not in self._catalog.index)

    @property
    def catalog(self) -> Catalog:
        if self._dirty:
            self._catalog = apply_updates(self.base, self._updates.values())
            self._masks.clear()
            self._dirty = False
            if self._vectors_changed:  # an index is only valid for the vectors it was built on
                self._ranker = self._new_ranker(self._catalog)
                self._vectors_changed = False
            else:
                self._ranker.catalog = self._catalog
        return self._catalog

    @property
    def ranker(self) -> Ranker:
        _ = self.catalog  # bring it up to date first
        return self._ranker

    def rows_of(self, product_ids: list[str]) -> np.ndarray:
        """Catalog rows of many ids in one call (-1 for an unknown id): a hash lookup in C, where
        ``catalog.index`` costs a Python dict access per id (a wholesaler's 1,000 purchases)."""
        catalog = self.catalog
        if self._rows_of is not catalog:
            import pandas as pd

            self._rows = pd.Index(catalog.product_ids)
            self._rows_of = catalog
        return np.asarray(self._rows.get_indexer(product_ids), dtype=np.int64)

    def mask(self, variant: str, params: ModelParams) -> np.ndarray:
        catalog = self.catalog
        mask = self._masks.get(variant)
        if mask is None:
            mask = self._masks[variant] = eligible_mask(catalog, params)
        return mask
