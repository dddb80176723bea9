"""Reading real histories: what is kept, what is dropped, and the catalog learned from them."""

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from streamrec.datasets import read_history, read_otto, read_uci
from streamrec.embeddings import build_catalog

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"

UCI_CSV = """InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country
536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,12/1/2010 8:26,2.55,17850.0,United Kingdom
536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,2,12/1/2010 8:26,2.55,17850.0,United Kingdom
536365,71053,WHITE METAL LANTERN,6,12/1/2010 8:26,3.39,17850.0,United Kingdom
536366,POST,POSTAGE,1,12/1/2010 8:28,18.0,17850.0,United Kingdom
C536379,71053,WHITE METAL LANTERN,-1,12/1/2010 9:41,3.39,14527.0,United Kingdom
536380,71053,WHITE METAL LANTERN,3,12/1/2010 9:41,0,14527.0,United Kingdom
536381,22728,ALARM CLOCK BAKELIKE PINK,24,12/1/2010 9:45,3.75,,United Kingdom
536382,22728,ALARM CLOCK BAKELIKE PINK,4,12/1/2010 9:45,3.75,13047.0,United Kingdom
"""


def test_uci_keeps_one_purchase_per_invoice_line_of_a_known_customer_in_cart_order(tmp_path):
    path = tmp_path / "retail.csv.gz"
    with gzip.open(path, "wt") as f:
        f.write(UCI_CSV)
    h = read_uci(path)
    assert [(e.event_id, e.user_id, e.product_id, e.type) for e in h.events] == [
        ("uci-536365-85123A", "17850", "85123A", "purchase"),  # the invoice's lines keep their order
        ("uci-536365-71053", "17850", "71053", "purchase"),
        ("uci-536382-22728", "13047", "22728", "purchase"),
    ]
    assert h.events[1].ts == 1291191960000  # 2010-12-01 08:26 taken as UTC
    assert h.titles["71053"] == "WHITE METAL LANTERN" and h.prices["85123A"] == 2.55


def test_otto_sessions_become_users_and_types_map_to_ours(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps({"session": 7, "events": [
        {"aid": 1, "ts": 5, "type": "clicks"}, {"aid": 2, "ts": 6, "type": "carts"},
        {"aid": 2, "ts": 9, "type": "orders"}]}) + "\n")
    h = read_otto(path)
    assert [(e.user_id, e.product_id, e.type, e.ts) for e in h.events] == [
        ("7", "1", "click", 5), ("7", "2", "add_to_cart", 6), ("7", "2", "purchase", 9)]


def test_a_broken_otto_line_is_reported_with_its_line_number(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"session": 1, "events": []}\n{"session": 2}\n')
    with pytest.raises(ValueError, match=r"s.jsonl:2"):
        read_otto(path)


@pytest.mark.skipif(not (SHARED / "otto-sample").exists(), reason="shared data not present")
def test_the_real_otto_sample_reads_completely():
    h = read_history(SHARED / "otto-sample" / "otto-train-sample.jsonl", "otto")
    assert len(h.events) == 862 and len({e.user_id for e in h.events}) == 20


def test_products_bought_together_end_up_closer_than_unrelated_ones(tmp_path):
    from streamrec.datasets import History
    from streamrec.embeddings import EmbeddingSettings
    from streamrec.model.events import Event

    events = []
    # two groups of customers with disjoint tastes
    for u in range(30):
        group = ["a1", "a2", "a3"] if u % 2 else ["b1", "b2", "b3"]
        for j, p in enumerate(group):
            events.append(Event(f"e{u}-{j}", f"u{u}", u * 10 + j, "purchase", p))
    history = History(events, {}, {})
    plain = build_catalog(history, settings=EmbeddingSettings(dim=4, popularity=0.0))
    v = {p: plain.vectors[plain.index[p]] for p in plain.product_ids}
    assert float(v["a1"] @ v["a2"]) > 0.9
    assert float(v["a1"] @ v["b1"]) < 0.1
    np.testing.assert_allclose(np.linalg.norm(plain.vectors, axis=1), 1.0, rtol=1e-5)
    # with the popularity dimension (the default) equally popular products share only that one
    cat = build_catalog(history, dim=4)
    w = {p: cat.vectors[cat.index[p]] for p in cat.product_ids}
    pop = float(w["a1"][-1] * w["b1"][-1])
    assert float(w["a1"] @ w["a2"]) > 0.9 and float(w["a1"] @ w["b1"]) == pytest.approx(pop, abs=1e-5)
