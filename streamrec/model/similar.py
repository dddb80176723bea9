"""Item-to-item: the products closest to one product, from the same vectors the job uses."""

from __future__ import annotations

from streamrec.model.catalog import Catalog
from streamrec.model.topk import top_k_batch


def similar_products(catalog: Catalog, product_id: str, k: int) -> list[tuple[str, float]]:
    """The k in-stock products most similar (cosine) to ``product_id``, best first, without itself.

    Raises KeyError for a product the catalog does not know.
    """
    row = catalog.index.get(product_id)
    if row is None:
        raise KeyError(product_id)
    rows, scores = top_k_batch(catalog.vectors[row : row + 1], catalog, k, exclude=[[row]])
    return [(catalog.product_ids[r], float(s)) for r, s in zip(rows[0], scores[0]) if r >= 0]
