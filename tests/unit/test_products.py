"""Product updates from the `products` topic: parsing like events (codes, never raising) and the
live catalog they produce."""

import json

import numpy as np
import pytest

from streamrec.model.catalog import Catalog
from streamrec.model.events import BadRecord
from streamrec.model.model import ModelParams, eligible_mask
from streamrec.model.products import ProductUpdate, apply_updates, merge_updates, parse_product_update


def catalog() -> Catalog:
    v = np.eye(3, dtype=np.float32)
    return Catalog(("a", "b", "c"), v, titles=("A", "B", "C"), categories=("x", "y", "x"))


def test_an_update_names_a_product_and_only_the_fields_it_changes():
    u = parse_product_update('{"product_id": "b", "in_stock": false, "price": 3}', dim=3)
    assert u == ProductUpdate("b", price=3.0, in_stock=False) and u.changed_fields() == ["price", "in_stock"]
    assert json.loads(u.to_json()) == {"product_id": "b", "price": 3.0, "in_stock": False}


@pytest.mark.parametrize("raw, code", [
    (None, "NOT_JSON"),
    ("{nope", "NOT_JSON"),
    ("[1]", "NOT_JSON"),
    ('{"title": "x"}', "MISSING_FIELD"),
    ('{"product_id": 7}', "WRONG_TYPE"),
    ('{"product_id": "a", "in_stock": "no"}', "WRONG_TYPE"),
    ('{"product_id": "a", "price": true}', "WRONG_TYPE"),
    ('{"product_id": "a", "embedding": [1, 2]}', "WRONG_TYPE"),  # the catalog's vectors have 3 numbers
    ('{"product_id": "a", "price": NaN}', "NON_FINITE"),
    ('{"product_id": "a", "embedding": [1, 2, Infinity]}', "NON_FINITE"),
    ('{"product_id": "a", "title": "' + "x" * 2000 + '"}', "WRONG_TYPE"),
])
def test_bad_updates_become_dead_letters_with_a_code(raw, code):
    bad = parse_product_update(raw, dim=3)
    assert isinstance(bad, BadRecord) and bad.code == code and bad.reason


def test_an_oversized_update_is_refused():
    bad = parse_product_update(json.dumps({"product_id": "a", "title": "x" * 500}), dim=3, max_record_bytes=100)
    assert isinstance(bad, BadRecord) and bad.code == "OVERSIZED"


def test_updates_change_known_products_in_place_and_append_new_ones():
    base = catalog()
    new = apply_updates(base, [ProductUpdate("b", in_stock=False), ProductUpdate("d", title="D", embedding=(0, 3, 4)),
                               ProductUpdate("a", category="z")])
    assert new.product_ids == ("a", "b", "c", "d") and base.product_ids == ("a", "b", "c")
    assert list(new.in_stock) == [True, False, True, True] and base.in_stock.all()
    np.testing.assert_allclose(new.vectors[3], [0, 0.6, 0.8], rtol=1e-6)  # stored unit length
    assert new.titles[3] == "D" and new.categories[0] == "z"
    # a product without an embedding yet cannot be recommended; one off sale neither
    blank = apply_updates(base, [ProductUpdate("e", title="E")])
    assert list(eligible_mask(blank, ModelParams({"view": 1.0}))) == [True, True, True, False]
    assert list(eligible_mask(new, ModelParams({"view": 1.0}))) == [True, False, True, True]


def test_merging_keeps_the_newest_value_of_each_field():
    merged = merge_updates(ProductUpdate("a", price=1.0, in_stock=False), ProductUpdate("a", in_stock=True))
    assert merged == ProductUpdate("a", price=1.0, in_stock=True)
