"""Product updates from the `products` topic, and the live catalog they change.

A product update names a product and any of its fields; fields it leaves out keep their value, so
``{"product_id": "X", "in_stock": false}`` takes X off sale. A product the catalog does not know is
added (it needs an embedding of the catalog's dimension to be recommendable). Parsing never raises:
bad input becomes a :class:`~streamrec.model.events.BadRecord` with the events' error codes. The
product id follows the events' text rule (``BAD_ID``), and so do a title and a category (which may
also be empty, to clear them).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from typing import Any, Iterable, Optional, Union

import numpy as np

from streamrec.model.catalog import Catalog
from streamrec.model.events import (
    BAD_ID,
    MISSING_FIELD,
    NON_FINITE,
    NOT_JSON,
    OVERSIZED,
    WRONG_TYPE,
    BadRecord,
    text_problem,
)

MAX_TEXT_CHARS = 1024


@dataclass(frozen=True)
class ProductUpdate:
    product_id: str
    title: Optional[str] = None
    category: Optional[str] = None
    price: Optional[float] = None
    in_stock: Optional[bool] = None
    embedding: Optional[tuple[float, ...]] = None

    def to_json(self) -> str:
        d: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if v is not None:
                d[f.name] = list(v) if f.name == "embedding" else v
        return json.dumps(d, separators=(",", ":"))

    def changed_fields(self) -> list[str]:
        return [f.name for f in fields(self) if f.name != "product_id" and getattr(self, f.name) is not None]


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


def parse_product_update(raw: Union[str, bytes, None], dim: Optional[int] = None,
                         max_record_bytes: int = 1024 * 1024) -> Union[ProductUpdate, BadRecord]:
    """One `products` record -> ProductUpdate, or BadRecord (with the events' error codes).

    ``dim``: the catalog's embedding dimension; an embedding of another length is WRONG_TYPE.
    The fields are checked in a fixed order (product_id, title, category, price, in_stock,
    embedding): a record that breaks several rules gets the code of the first.
    """
    if raw is None:
        return BadRecord(NOT_JSON, "null record", "")
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    if len(text.encode("utf-8")) > max_record_bytes:
        return BadRecord(OVERSIZED, f"record over {max_record_bytes} bytes", text[:1024])
    obj = _update_object(text)
    if isinstance(obj, BadRecord):
        return obj
    pid = obj.get("product_id")
    if pid is None:
        return BadRecord(MISSING_FIELD, "product_id is required", text)
    if not isinstance(pid, str):
        return BadRecord(WRONG_TYPE, f"product_id must be a string, got {type(pid).__name__}", text)
    problem = text_problem(pid)
    if problem is not None:
        return BadRecord(BAD_ID, f"product_id {problem}", text)
    out: dict[str, Any] = {"product_id": pid}
    bad = _text_fields(obj, out, text) or _price_and_stock(obj, out, text)
    if bad is not None:
        return bad
    emb = obj.get("embedding")
    if emb is not None:
        vector = _embedding(emb, dim, text)
        if isinstance(vector, BadRecord):
            return vector
        out["embedding"] = vector
    return ProductUpdate(**out)


def _update_object(text: str) -> Union[dict[str, Any], BadRecord]:
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:
        if str(exc) in ("NaN", "Infinity", "-Infinity"):
            return BadRecord(NON_FINITE, f"non-finite number {exc}", text)
        return BadRecord(NOT_JSON, f"not JSON: {exc}", text)
    if not isinstance(obj, dict):
        return BadRecord(NOT_JSON, "not a JSON object", text)
    return obj


def _text_fields(obj: dict[str, Any], out: dict[str, Any], text: str) -> Optional[BadRecord]:
    """title and category, those given, into ``out``: strings of at most MAX_TEXT_CHARS under the
    text rule (empty allowed)."""
    for name in ("title", "category"):
        v = obj.get(name)
        if v is None:
            continue
        if not isinstance(v, str) or len(v) > MAX_TEXT_CHARS:
            return BadRecord(WRONG_TYPE, f"{name} must be a string of at most {MAX_TEXT_CHARS} chars", text)
        problem = text_problem(v, MAX_TEXT_CHARS) if v else None
        if problem is not None:
            return BadRecord(BAD_ID, f"{name} {problem}", text)
        out[name] = v
    return None


def _price_and_stock(obj: dict[str, Any], out: dict[str, Any], text: str) -> Optional[BadRecord]:
    """price (a finite number, as float) and in_stock (a bool), those given, into ``out``."""
    price = obj.get("price")
    if price is not None:
        if isinstance(price, bool) or not isinstance(price, (int, float)):
            return BadRecord(WRONG_TYPE, "price must be a number", text)
        if not math.isfinite(price):
            return BadRecord(NON_FINITE, "price is not finite", text)
        out["price"] = float(price)
    stock = obj.get("in_stock")
    if stock is not None:
        if not isinstance(stock, bool):
            return BadRecord(WRONG_TYPE, "in_stock must be true or false", text)
        out["in_stock"] = stock
    return None


def _embedding(emb: Any, dim: Optional[int], text: str) -> Union[tuple[float, ...], BadRecord]:
    """A list of ``dim`` finite numbers (any length when ``dim`` is None), as floats."""
    if not isinstance(emb, list) or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in emb):
        return BadRecord(WRONG_TYPE, "embedding must be a list of numbers", text)
    if dim is not None and len(emb) != dim:
        return BadRecord(WRONG_TYPE, f"embedding has {len(emb)} numbers, the catalog's have {dim}", text)
    if not all(math.isfinite(x) for x in emb):
        return BadRecord(NON_FINITE, "embedding holds a non-finite number", text)
    return tuple(float(x) for x in emb)


def _unit(v: Iterable[float], dim: int) -> np.ndarray:
    a = np.asarray(list(v), dtype=np.float32).reshape(dim)
    n = float(np.linalg.norm(a))
    return a / n if n > 0 else a


def apply_updates(catalog: Catalog, updates: Iterable[ProductUpdate]) -> Catalog:
    """A new catalog with the updates applied in order (the input is not changed).

    Known products keep their row; new products are appended in order of first appearance, so
    product rows (and everything indexed by them) stay stable while the catalog grows.
    """
    ups = list(updates)
    if not ups:
        return catalog
    ids = list(catalog.product_ids)
    index = dict(catalog.index)
    for u in ups:
        if u.product_id not in index:
            index[u.product_id] = len(ids)
            ids.append(u.product_id)
    n, old = len(ids), len(catalog)
    vectors = np.zeros((n, catalog.dim), dtype=np.float32)
    vectors[:old] = catalog.vectors
    titles = list(catalog.titles) + [""] * (n - old)
    categories = list(catalog.categories) + [""] * (n - old)
    prices = np.concatenate([catalog.prices, np.full(n - old, np.nan)])
    in_stock = np.concatenate([catalog.in_stock, np.ones(n - old, dtype=bool)])
    popularity = np.concatenate([catalog.popularity, np.zeros(n - old)])
    for u in ups:
        i = index[u.product_id]
        if u.title is not None:
            titles[i] = u.title
        if u.category is not None:
            categories[i] = u.category
        if u.price is not None:
            prices[i] = u.price
        if u.in_stock is not None:
            in_stock[i] = u.in_stock
        if u.embedding is not None:
            vectors[i] = _unit(u.embedding, catalog.dim)
    transitions = catalog.transitions
    if transitions is not None and n > old:  # rows are stable: a new product has no transitions yet
        transitions = transitions.copy()
        transitions.resize((n, n))
    return Catalog(tuple(ids), vectors, tuple(titles), tuple(categories), prices, in_stock, popularity, transitions)


def merge_updates(older: ProductUpdate, newer: ProductUpdate) -> ProductUpdate:
    """One update with the effect of ``older`` then ``newer`` (same product)."""
    values = {f.name: getattr(older, f.name) for f in fields(older)}
    values.update({f.name: getattr(newer, f.name) for f in fields(newer) if getattr(newer, f.name) is not None})
    return ProductUpdate(**values)
