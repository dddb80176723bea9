"""Pure functions of the query side: filtering stored candidates, A/B aggregates, product-update files.

Nothing here talks to Kafka or Cassandra; the CLI (:mod:`streamrec.cli`) reads the rows and hands
them over, so every rule below is unit-tested without services.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Optional, Sequence

from streamrec.model.catalog import Catalog
from streamrec.model.events import WRONG_TYPE, BadRecord
from streamrec.model.products import ProductUpdate, parse_product_update
from streamrec.model.similar import similar_products

if TYPE_CHECKING:
    from streamrec.connectors.cassandra import StoredRecommendations

# The variant of a recommendations row written before A/B variants existed (or without them).
DEFAULT_VARIANT = "default"


# --- recommendations: query-side filters ---------------------------------------------------------

def filter_candidates(
    product_ids: Sequence[str],
    scores: Sequence[float],
    k: int,
    exclude: Iterable[str] = (),
    categories: Optional[Mapping[str, str]] = None,
    include_categories: Iterable[str] = (),
    exclude_categories: Iterable[str] = (),
) -> list[tuple[str, float]]:
    """The first ``k`` (product, score) pairs of a stored candidate list that pass the filters.

    The job stores ``top_k * query_overfetch`` candidates, best first; this drops the excluded
    products and, given ``categories`` (product -> category), keeps only products of
    ``include_categories`` (when any are given) and none of ``exclude_categories``. The order is
    kept; fewer than ``k`` pairs come back when fewer survive. A product whose category is unknown
    (not in ``categories``) is in no category: an include filter drops it, an exclude filter keeps it.
    """
    if k <= 0:
        return []
    drop = set(exclude)
    include = set(include_categories)
    excluded_cats = set(exclude_categories)
    cats: Mapping[str, str] = categories or {}
    if (include or excluded_cats) and categories is None:
        raise ValueError("category filters need the products' categories")
    out: list[tuple[str, float]] = []
    for pid, score in zip(product_ids, scores):
        if pid in drop:
            continue
        cat = cats.get(pid)
        if include and cat not in include:
            continue
        if excluded_cats and cat is not None and cat in excluded_cats:
            continue
        out.append((pid, float(score)))
        if len(out) >= k:
            break
    return out


def split_ids(values: Iterable[str]) -> list[str]:
    """Repeatable, comma-separated option values -> the ids, blanks dropped, first occurrence order."""
    seen: dict[str, None] = {}
    for value in values:
        for part in value.split(","):
            part = part.strip()
            if part:
                seen.setdefault(part, None)
    return list(seen)


@dataclass(frozen=True)
class ProductInfo:
    """What a client shows of a product next to its id."""

    category: str
    title: str
    price: Optional[float] = None


# product ids -> the details of those that are known (unknown ones are absent)
DetailsLookup = Callable[[Sequence[str]], Mapping[str, ProductInfo]]


def catalog_details(catalog: Catalog, product_ids: Iterable[str]) -> dict[str, ProductInfo]:
    """Details of the known products among ``product_ids``, from a catalog held in memory."""
    out: dict[str, ProductInfo] = {}
    for pid in product_ids:
        row = catalog.index.get(pid)
        if row is not None:
            price = float(catalog.prices[row])
            out[pid] = ProductInfo(catalog.categories[row], catalog.titles[row], None if math.isnan(price) else price)
    return out


def _item(pid: str, score: float, details: Mapping[str, ProductInfo], source: Optional[str] = None) -> dict[str, Any]:
    d = details.get(pid)
    value = float(score)
    # a NaN would make the answer invalid JSON (the job never stores one; a reader must not break on it)
    item: dict[str, Any] = {"product_id": pid, "score": None if math.isnan(value) else round(value, 6)}
    if source is not None:
        item["source"] = source
    item.update(title=d.title if d else None, category=d.category if d else None, price=d.price if d else None)
    return item


def recommendations_answer(
    user_id: str,
    stored: Optional[StoredRecommendations],
    k: int,
    details: DetailsLookup,
    exclude: Iterable[str] = (),
    categories: Iterable[str] = (),
    exclude_categories: Iterable[str] = (),
    trending: Sequence[tuple[str, float]] = (),
) -> dict[str, Any]:
    """The answer of `streamrec recs -o json` and of ``GET /v1/users/{id}/recommendations``.

    The stored candidates go through :func:`filter_candidates`; when fewer than ``k`` survive and
    a ``trending`` list is given, trending products that pass the same filters fill the rest (each
    item says its ``source``). ``details`` gives titles, categories and prices: the CLI reads them
    from Cassandra, the service from the catalog it holds in memory.
    """
    drop = list(exclude)
    cats, not_cats = list(categories), list(exclude_categories)
    by_category = bool(cats or not_cats)
    info: dict[str, ProductInfo] = {}

    def pick(ids: Sequence[str], scores: Sequence[float], n: int, skip: list[str]) -> list[tuple[str, float]]:
        if by_category:
            info.update(details([p for p in ids if p not in info]))
        return filter_candidates(ids, scores, n, exclude=skip,
                                 categories={p: d.category for p, d in info.items()} if by_category else None,
                                 include_categories=cats, exclude_categories=not_cats)

    stored_source = stored.source if stored is not None else None
    items: list[tuple[str, float, str]] = []
    if stored is not None:
        items = [(p, s, stored.source or "personal")
                 for p, s in pick(stored.product_ids, stored.scores, k, drop)]
    if len(items) < k and trending:
        ids = [p for p, _ in trending]
        filled = pick(ids, [s for _, s in trending], k - len(items), drop + [p for p, _, _ in items])
        items += [(p, s, "trending") for p, s in filled]
    info.update(details([p for p, _, _ in items if p not in info]))
    result: dict[str, Any] = {
        "user_id": user_id,
        "source": stored_source if stored is not None else ("trending" if items else None),
        "items": [_item(p, s, info, src) for p, s, src in items],
    }
    if stored is not None:
        result["event_id"] = stored.event_id
        result["event_ts"] = None if stored.event_ts is None else stored.event_ts.isoformat() + "Z"
        if stored.variant:
            result["variant"] = stored.variant
    return result


def similar_answer(catalog: Catalog, product_id: str, k: int) -> dict[str, Any]:
    """The answer of `streamrec similar -o json` and of ``GET /v1/products/{id}/similar``.

    Raises KeyError for a product the catalog does not know."""
    pairs = similar_products(catalog, product_id, k)
    details = catalog_details(catalog, [product_id, *(p for p, _ in pairs)])
    this = details[product_id]
    return {"product_id": product_id, "title": this.title, "category": this.category, "price": this.price,
            "items": [_item(p, s, details) for p, s in pairs]}


def trending_answer(catalog: Catalog, trending: Sequence[tuple[str, float]], k: int) -> dict[str, Any]:
    """The ``k`` most popular products right now that are in the catalog and in stock, best first."""
    chosen: list[tuple[str, float]] = []
    for pid, score in trending:
        row = catalog.index.get(pid)
        if row is not None and bool(catalog.in_stock[row]):
            chosen.append((pid, score))
            if len(chosen) >= k:
                break
    details = catalog_details(catalog, [p for p, _ in chosen])
    return {"items": [_item(p, s, details, "trending") for p, s in chosen]}


# --- A/B report ----------------------------------------------------------------------------------

@dataclass
class VariantStats:
    variant: str
    users: int = 0
    impressions: int = 0
    hits: int = 0

    @property
    def hit_rate(self) -> Optional[float]:
        return self.hits / self.impressions if self.impressions else None

    def to_dict(self) -> dict[str, Any]:
        rate = self.hit_rate
        return {"variant": self.variant, "users": self.users, "impressions": self.impressions, "hits": self.hits,
                "hit_rate": None if rate is None else round(rate, 6)}


def aggregate_variants(rows: Iterable[tuple[Optional[str], Optional[int], Optional[int]]]) -> list[VariantStats]:
    """(variant, impressions, hits) per user -> one VariantStats per variant, sorted by name.

    A null variant counts as ``"default"``; null counters count as 0 (a user whose list was never
    followed by another event yet).
    """
    stats: dict[str, VariantStats] = {}
    for variant, impressions, hits in rows:
        name = variant or DEFAULT_VARIANT
        s = stats.get(name)
        if s is None:
            s = stats[name] = VariantStats(name)
        s.users += 1
        s.impressions += int(impressions or 0)
        s.hits += int(hits or 0)
    return [stats[name] for name in sorted(stats)]


# --- catalog publish: product-update lines -------------------------------------------------------

@dataclass
class ParsedUpdates:
    updates: list[tuple[int, ProductUpdate]] = field(default_factory=list)  # (line number, update)
    bad: list[tuple[int, str]] = field(default_factory=list)  # (line number, why)
    dim: Optional[int] = None  # the embedding dimension the lines were checked against


def parse_update_lines(lines: Iterable[str], dim: Optional[int] = None,
                       max_record_bytes: int = 1024 * 1024) -> ParsedUpdates:
    """Validate product-update JSON lines with the job's own parser (``parse_product_update``).

    ``dim``: the embedding dimension of the catalog (None: unknown, then the first valid line with
    an embedding sets it, so every embedding of one file has the same length). Blank lines are
    skipped; line numbers count from 1.
    """
    result = ParsedUpdates(dim=dim)
    for lineno, line in enumerate(lines, start=1):
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        parsed = parse_product_update(line, dim=result.dim, max_record_bytes=max_record_bytes)
        if isinstance(parsed, BadRecord):
            result.bad.append((lineno, f"{parsed.code}: {parsed.reason}"))
            continue
        if parsed.embedding is not None and not parsed.embedding:
            result.bad.append((lineno, f"{WRONG_TYPE}: embedding is empty"))
            continue
        if result.dim is None and parsed.embedding is not None:
            result.dim = len(parsed.embedding)
        result.updates.append((lineno, parsed))
    return result
