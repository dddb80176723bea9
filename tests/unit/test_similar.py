"""`streamrec similar`: nearest products by the catalog's vectors, in stock, never the product itself."""

import numpy as np
import pytest

from streamrec.model.catalog import Catalog
from streamrec.model.similar import similar_products


def catalog(in_stock=None):
    # p0..p2 point one way, p3..p4 another
    v = np.array([[1, 0], [0.9, 0.1], [0.8, 0.2], [0, 1], [0.1, 0.9]], dtype=np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return Catalog(tuple(f"p{i}" for i in range(5)), v, in_stock=in_stock)


def test_the_nearest_products_come_first_and_the_product_itself_never():
    got = similar_products(catalog(), "p0", 3)
    assert [p for p, _ in got] == ["p1", "p2", "p4"]
    assert [s for _, s in got] == sorted((s for _, s in got), reverse=True)


def test_out_of_stock_products_are_not_suggested():
    stock = np.array([True, False, True, True, True])
    assert "p1" not in [p for p, _ in similar_products(catalog(stock), "p0", 4)]


def test_an_unknown_product_is_an_error():
    with pytest.raises(KeyError):
        similar_products(catalog(), "nope", 3)
