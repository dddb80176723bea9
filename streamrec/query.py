"""Pure functions of the query side: filtering stored candidates, A/B aggregates, product-update files.

Nothing here talks to Kafka or Cassandra; the CLI (:mod:`streamrec.cli`) reads the rows and hands
them over, so every rule below is unit-tested without services.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional, Sequence

from streamrec.model.events import WRONG_TYPE, BadRecord
from streamrec.model.products import ProductUpdate, parse_product_update

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
