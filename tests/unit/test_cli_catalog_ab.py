"""The query side of issue 4 without services: `streamrec recs` filters, `catalog publish`, `ab report`.

The pure rules (streamrec.query) are tested directly. The commands run through click's CliRunner
against in-memory fakes, named as such: ``FakeSession`` stands in for a cassandra-driver Session
(prepared statements, execute/execute_async, rows as namedtuples) and ``FakeProducer`` for
kafka-python's KafkaProducer; both append to one shared log, so the tests also see the order in
which Cassandra and Kafka were written.
"""

from __future__ import annotations

import json
import re
from collections import namedtuple
from datetime import datetime
from typing import Any, Callable, Optional

import pytest
from click.testing import CliRunner

import streamrec.connectors.cassandra as cass
from streamrec.cli import main
from streamrec.config import Config
from streamrec.connectors import kafka as kafka_conn
from streamrec.connectors.cassandra import (
    PRODUCT_COLUMNS,
    ProductInfo,
    ProductStore,
    QueryClient,
    StoredRecommendations,
    product_upsert_cql,
)
from streamrec.model.products import ProductUpdate
from streamrec.query import (
    DEFAULT_VARIANT,
    VariantStats,
    aggregate_variants,
    filter_candidates,
    parse_update_lines,
    split_ids,
)

# --- fakes -------------------------------------------------------------------------------------

RecRow = namedtuple("RecRow", "user_id product_ids scores source event_id event_ts updated_at variant")
ProductRow = namedtuple("ProductRow", "product_id category title price")
EmbeddingRow = namedtuple("EmbeddingRow", "embedding")
CounterRow = namedtuple("CounterRow", "variant impressions hits")


class FakePrepared:
    def __init__(self, cql: str) -> None:
        self.cql = cql
        self.is_idempotent = False


class FakeResult(list):
    def one(self) -> Any:
        return self[0] if self else None


class FakeFuture:
    def __init__(self, error: Optional[Exception] = None) -> None:
        self.error = error

    def result(self) -> None:
        if self.error is not None:
            raise self.error


class FakeCluster:
    def __init__(self) -> None:
        self.shut_down = False

    def shutdown(self) -> None:
        self.shut_down = True


class FakeSession:
    """An in-memory stand-in for a cassandra-driver Session over tiny `recommendations` and `products` tables."""

    def __init__(self, log: Optional[list] = None) -> None:
        self.log: list = [] if log is None else log
        self.prepared: list[str] = []
        self.recs: dict[str, RecRow] = {}
        self.products: dict[str, dict[str, Any]] = {}  # product_id -> columns
        self.counters: list[CounterRow] = []
        self.fail_write: Callable[[tuple], bool] = lambda values: False
        self.cluster = FakeCluster()
        self.fetch_sizes: list[Optional[int]] = []
        self.in_queries: list[list[str]] = []

    def prepare(self, cql: str) -> FakePrepared:
        # every prepared statement must name the keyspace (Cassandra warns about table names alone
        # after USE); the fake's tables are those of the default keyspace and it keeps the bare name
        assert re.search(r"\b(FROM|INTO) streamrec\.", cql), f"keyspace not named: {cql}"
        cql = re.sub(r"\b(FROM|INTO) streamrec\.", r"\1 ", cql)
        self.prepared.append(cql)
        return FakePrepared(cql)

    def execute(self, stmt: Any, values: Any = None, timeout: Any = None) -> FakeResult:
        cql = getattr(stmt, "cql", None) or stmt.query_string
        self.fetch_sizes.append(getattr(stmt, "fetch_size", None))
        if cql.startswith("SELECT user_id, product_ids"):
            row = self.recs.get(values[0])
            return FakeResult([row] if row else [])
        if cql == "SELECT product_id, category, title, price FROM products WHERE product_id IN ?":
            self.in_queries.append(list(values[0]))
            return FakeResult(ProductRow(p, self.products[p].get("category"), self.products[p].get("title"),
                                         self.products[p].get("price")) for p in values[0] if p in self.products)
        if cql.startswith("SELECT embedding FROM products"):
            return FakeResult(EmbeddingRow(cols.get("embedding")) for cols in self.products.values())
        if cql == "SELECT variant, impressions, hits FROM recommendations":
            return FakeResult(self.counters)
        raise AssertionError(f"unexpected query {cql}")

    def execute_async(self, stmt: FakePrepared, values: tuple) -> FakeFuture:
        assert stmt.cql.startswith("INSERT INTO products (")
        self.log.append(("cassandra", values[0]))
        if self.fail_write(values):
            return FakeFuture(RuntimeError("write timeout"))
        columns = stmt.cql[len("INSERT INTO products ("):stmt.cql.index(")")].split(", ")
        assert len(columns) == len(values)
        self.products.setdefault(values[0], {}).update(dict(zip(columns[1:], values[1:])))
        return FakeFuture()


class FakeKafkaFuture:
    def __init__(self, ok: bool) -> None:
        self.ok = ok

    def get(self, timeout: Any = None) -> None:
        if not self.ok:
            raise RuntimeError("NotEnoughReplicas")


class FakeProducer:
    """kafka-python's KafkaProducer as far as the CLI uses it; remembers its settings and records."""

    instances: list[FakeProducer] = []

    def __init__(self, log: Optional[list] = None, refuse: Callable[[bytes], bool] = lambda key: False,
                 **settings: Any) -> None:
        self.log = [] if log is None else log
        self.refuse = refuse
        self.settings = settings
        self.sent: list[tuple[str, Optional[bytes], bytes]] = []
        self.closed = False
        FakeProducer.instances.append(self)

    def send(self, topic: str, key: Optional[bytes] = None, value: Optional[bytes] = None) -> FakeKafkaFuture:
        assert value is not None
        self.log.append(("kafka", None if key is None else key.decode()))
        self.sent.append((topic, key, value))
        return FakeKafkaFuture(key is None or not self.refuse(key))

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def fake_session(monkeypatch: pytest.MonkeyPatch) -> FakeSession:
    session = FakeSession()
    monkeypatch.setattr(cass.connection, "connect", lambda config, keyspace=None, connect_timeout=10.0: session)
    return session


@pytest.fixture
def fake_kafka(monkeypatch: pytest.MonkeyPatch, fake_session: FakeSession) -> list[FakeProducer]:
    import kafka

    FakeProducer.instances = []
    monkeypatch.setattr(kafka, "KafkaProducer", lambda **settings: FakeProducer(log=fake_session.log, **settings))
    return FakeProducer.instances


def _run(*args: str, input: Optional[str] = None) -> Any:
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


# --- filter_candidates -------------------------------------------------------------------------

IDS = ["p1", "p2", "p3", "p4", "p5", "p6"]
SCORES = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
CATS = {"p1": "lamps", "p2": "mugs", "p3": "lamps", "p4": "rugs", "p5": "mugs"}  # p6: unknown


def test_filter_keeps_stored_order_and_cuts_at_k():
    assert filter_candidates(IDS, SCORES, 3) == [("p1", 0.9), ("p2", 0.8), ("p3", 0.7)]


def test_filter_drops_excluded_products_and_refills_from_the_overfetched_tail():
    assert filter_candidates(IDS, SCORES, 3, exclude=["p2", "p1"]) == [("p3", 0.7), ("p4", 0.6), ("p5", 0.5)]


def test_filter_shows_fewer_than_k_when_fewer_survive():
    assert filter_candidates(IDS, SCORES, 10, exclude=["p1", "p2", "p3", "p4"]) == [("p5", 0.5), ("p6", 0.4)]
    assert filter_candidates(IDS, SCORES, 10, categories=CATS, include_categories=["nothing"]) == []


def test_filter_include_categories_is_any_of_and_drops_unknown_products():
    got = filter_candidates(IDS, SCORES, 10, categories=CATS, include_categories=["lamps", "rugs"])
    assert [p for p, _ in got] == ["p1", "p3", "p4"]


def test_filter_exclude_categories_keeps_products_of_unknown_category():
    got = filter_candidates(IDS, SCORES, 10, categories=CATS, exclude_categories=["mugs"])
    assert [p for p, _ in got] == ["p1", "p3", "p4", "p6"]


def test_filter_all_filters_together():
    got = filter_candidates(IDS, SCORES, 2, exclude=["p1"], categories=CATS, include_categories=["lamps", "mugs"],
                            exclude_categories=["mugs"])
    assert got == [("p3", 0.7)]


def test_filter_by_category_needs_the_categories():
    with pytest.raises(ValueError):
        filter_candidates(IDS, SCORES, 3, include_categories=["lamps"])


def test_split_ids_accepts_repeated_and_comma_separated_values():
    assert split_ids(["p1,p2", " p3 ", "p2,,", ""]) == ["p1", "p2", "p3"]


# --- aggregate_variants ------------------------------------------------------------------------

def test_aggregate_variants_per_variant_with_null_variant_as_default():
    rows = [("a", 10, 3), (None, 4, 1), ("b", 0, 0), ("a", 5, 2), ("default", 6, 0), ("b", None, None)]
    stats = aggregate_variants(rows)
    assert [s.variant for s in stats] == ["a", "b", DEFAULT_VARIANT]
    a, b, d = stats
    assert (a.users, a.impressions, a.hits, a.hit_rate) == (2, 15, 5, 5 / 15)
    assert (b.users, b.impressions, b.hits, b.hit_rate) == (2, 0, 0, None)
    assert (d.users, d.impressions, d.hits) == (2, 10, 1)
    assert d.to_dict() == {"variant": "default", "users": 2, "impressions": 10, "hits": 1, "hit_rate": 0.1}
    assert b.to_dict()["hit_rate"] is None


def test_aggregate_variants_of_nothing_is_empty():
    assert aggregate_variants([]) == []
    assert VariantStats("x").hit_rate is None


# --- parse_update_lines ------------------------------------------------------------------------

def test_parse_update_lines_reports_bad_lines_with_their_numbers():
    lines = [
        '{"product_id": "p1", "in_stock": false}\n',
        "\n",
        "not json\n",
        '{"title": "no id"}\n',
        '{"product_id": "p2", "price": "cheap"}\n',
        '{"product_id": "p3", "embedding": [1, 2]}\n',
        '{"product_id": "p4", "embedding": [1, 2, 3]}\n',
        '{"product_id": "p5", "price": NaN}\n',
    ]
    parsed = parse_update_lines(lines, dim=3)
    assert [(n, u.product_id) for n, u in parsed.updates] == [(1, "p1"), (7, "p4")]
    assert parsed.updates[0][1] == ProductUpdate("p1", in_stock=False)
    assert [n for n, _ in parsed.bad] == [3, 4, 5, 6, 8]
    assert parsed.bad[0][1].startswith("NOT_JSON")
    assert parsed.bad[1][1].startswith("MISSING_FIELD")
    assert "3" in parsed.bad[3][1] and parsed.bad[3][1].startswith("WRONG_TYPE")
    assert parsed.bad[4][1].startswith("NON_FINITE")


def test_parse_update_lines_without_a_known_dimension_takes_the_first_embedding():
    lines = ['{"product_id": "a", "embedding": [1, 0]}', '{"product_id": "b", "embedding": [1, 0, 0]}',
             '{"product_id": "c", "embedding": []}', '{"product_id": "d", "embedding": [0, 1]}']
    parsed = parse_update_lines(lines)
    assert parsed.dim == 2
    assert [u.product_id for _, u in parsed.updates] == ["a", "d"]
    assert [n for n, _ in parsed.bad] == [2, 3]


# --- Cassandra: product upserts and the query client ----------------------------------------------

def test_product_upsert_cql_sets_only_the_given_columns():
    assert product_upsert_cql(["in_stock"]) == "INSERT INTO products (product_id, in_stock) VALUES (?, ?)"
    assert product_upsert_cql(PRODUCT_COLUMNS) == (
        "INSERT INTO products (product_id, title, category, price, in_stock, embedding) VALUES (?, ?, ?, ?, ?, ?)")
    assert product_upsert_cql([]) == "INSERT INTO products (product_id) VALUES (?)"
    # the job's stores name the keyspace (Cassandra warns about table names alone after USE)
    assert product_upsert_cql(["price"], "shop") == "INSERT INTO shop.products (product_id, price) VALUES (?, ?)"
    with pytest.raises(ValueError):
        product_upsert_cql(["price"], "shop; DROP TABLE x")
    for bad in (["in_stock; DROP TABLE x"], ["price", "price"], ["product_id"]):
        with pytest.raises(ValueError):
            product_upsert_cql(bad)


def test_product_store_prepares_one_statement_per_field_set_and_keeps_other_fields(fake_session):
    fake_session.products["p1"] = {"title": "Lamp", "category": "lamps", "price": 10.0, "in_stock": True,
                                   "embedding": [1.0, 0.0]}
    store = ProductStore(Config().cassandra)
    errors = store.upsert([
        ProductUpdate("p1", in_stock=False),
        ProductUpdate("p2", title="Mug", price=3.5, embedding=(0.0, 1.0)),
        ProductUpdate("p1", price=12.0, in_stock=True),
        ProductUpdate("p3", in_stock=False),
        ProductUpdate("p1", in_stock=False),
    ])
    assert errors == [None] * 5
    inserts = [c for c in fake_session.prepared if c.startswith("INSERT")]
    assert inserts == [
        "INSERT INTO products (product_id, in_stock) VALUES (?, ?)",
        "INSERT INTO products (product_id, title, price, embedding) VALUES (?, ?, ?, ?)",
        "INSERT INTO products (product_id, price, in_stock) VALUES (?, ?, ?)",
    ]
    assert all(s.is_idempotent for s in store._statements.values())
    assert fake_session.products["p1"] == {"title": "Lamp", "category": "lamps", "price": 12.0, "in_stock": False,
                                           "embedding": [1.0, 0.0]}
    assert fake_session.products["p2"] == {"title": "Mug", "price": 3.5, "embedding": [0.0, 1.0]}
    assert isinstance(fake_session.products["p2"]["embedding"], list)  # the driver binds a list<float>
    assert [pid for _, pid in fake_session.log] == ["p1", "p2", "p1", "p3", "p1"]  # issued in input order
    store.close()
    assert fake_session.cluster.shut_down


def test_product_store_reports_a_failed_write_for_that_update_only(fake_session):
    fake_session.fail_write = lambda values: values[0] == "bad"
    store = ProductStore(Config().cassandra, session=fake_session, concurrency=1)
    errors = store.upsert([ProductUpdate("a", in_stock=True), ProductUpdate("bad", in_stock=True),
                           ProductUpdate("c", in_stock=True)])
    assert errors[0] is None and errors[2] is None
    assert errors[1] is not None and "write timeout" in errors[1]
    store.close()
    assert not fake_session.cluster.shut_down  # a session it was given is not its own to close


def test_product_store_embedding_dim_is_the_first_non_empty_embedding(fake_session):
    store = ProductStore(Config().cassandra)
    assert store.embedding_dim() is None
    fake_session.products.update({"a": {"title": "no vector"}, "b": {"embedding": [0.1, 0.2, 0.3]}})
    assert store.embedding_dim() == 3


def test_query_client_products_folds_titles_and_chunks_the_in_list(fake_session):
    fake_session.products.update({f"p{i}": {"title": f"T{i}", "category": "c" if i % 2 else None}
                                  for i in range(250)})
    client = QueryClient(Config().cassandra)
    assert "SELECT product_id, category, title, price FROM products WHERE product_id IN ?" in fake_session.prepared
    ids = [f"p{i}" for i in range(250)] + ["p1", "unknown"]
    info = client.products(ids)
    assert len(info) == 250 and info["p1"] == ProductInfo("c", "T1") and info["p2"] == ProductInfo("", "T2")
    assert [len(q) for q in fake_session.in_queries] == [100, 100, 51]  # deduplicated, at most 100 a query
    assert client.titles(["p3", "nope"]) == {"p3": "T3"}
    assert client.products([]) == {}


def test_query_client_reads_variant_counters_in_pages(fake_session):
    fake_session.counters = [CounterRow("a", 3, 1), CounterRow(None, None, None)]
    client = QueryClient(Config().cassandra)
    assert list(client.variant_counters()) == [("a", 3, 1), (None, None, None)]
    assert fake_session.fetch_sizes[-1] == cass.AB_FETCH_SIZE == 5000


# --- Kafka: keyed sending ------------------------------------------------------------------------

def test_send_keyed_uses_the_idempotent_producer_and_reports_refusals(fake_kafka):
    records = [(1, "p1", '{"product_id":"p1"}'), (4, "p2", '{"product_id":"p2"}'), (5, "p1", '{"product_id":"p1"}')]
    report = kafka_conn.send_keyed(records, "products", Config().kafka, Config().limits.max_record_bytes)
    (producer,) = fake_kafka
    assert producer.settings["acks"] == "all" and producer.settings["enable_idempotence"] is True
    assert producer.closed
    assert [(t, k) for t, k, _ in producer.sent] == [("products", b"p1"), ("products", b"p2"), ("products", b"p1")]
    assert report.sent == 3 and report.rejected == []

    refusing = FakeProducer(refuse=lambda key: key == b"p2")
    report = kafka_conn.send_keyed(records, "products", Config().kafka, Config().limits.max_record_bytes,
                                   producer=refusing)
    assert report.sent == 2 and [n for n, _ in report.rejected] == [4]
    assert "NotEnoughReplicas" in report.rejected[0][1]
    assert not refusing.closed  # a producer it was given is the caller's


def test_produce_lines_still_sends_events_keyed_by_user(fake_kafka):
    report = kafka_conn.produce_lines(['{"user_id": "u1"}', "", "oops", '{"user_id": 5}'], Config())
    (producer,) = fake_kafka
    assert report.sent == 2 and report.rejected[0][0] == 3
    assert [(t, k) for t, k, _ in producer.sent] == [("events", b"u1"), ("events", None)]


# --- streamrec recs ------------------------------------------------------------------------------

def _store_recs(session: FakeSession, variant: Optional[str] = "B") -> None:
    session.recs["u1"] = RecRow("u1", IDS, SCORES, "personal", "e9", datetime(2024, 1, 2, 3, 4, 5), None, variant)
    for pid, cat in CATS.items():
        session.products[pid] = {"category": cat, "title": f"Title {pid}"}


def test_recs_json_keeps_its_shape_adds_the_variant_and_each_items_details(fake_session):
    _store_recs(fake_session)
    fake_session.products["p1"]["price"] = 2.5
    result = _run("recs", "u1", "-k", "2", "-o", "json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {
        "user_id": "u1", "source": "personal", "variant": "B", "event_id": "e9", "event_ts": "2024-01-02T03:04:05Z",
        "items": [{"product_id": "p1", "score": 0.9, "source": "personal", "title": "Title p1",
                   "category": CATS["p1"], "price": 2.5},
                  {"product_id": "p2", "score": 0.8, "source": "personal", "title": "Title p2",
                   "category": CATS["p2"], "price": None}]}
    assert fake_session.in_queries == [["p1", "p2"]]  # the details of the items shown, in one query


def test_recs_json_has_no_variant_when_the_row_has_none(fake_session):
    _store_recs(fake_session, variant=None)
    out = json.loads(_run("recs", "u1", "-o", "json").stdout)
    assert "variant" not in out and len(out["items"]) == 6  # k=10 by default, 6 stored: all of them


def test_recs_filters_by_product_and_category(fake_session):
    _store_recs(fake_session)
    result = _run("recs", "u1", "-k", "2", "--exclude", "p1,p9", "--exclude", "p4", "--category", "lamps",
                  "--category", "rugs", "--category", "mugs", "--exclude-category", "mugs", "-o", "json")
    assert [i["product_id"] for i in json.loads(result.stdout)["items"]] == ["p3"]
    assert fake_session.in_queries == [IDS]  # categories of every stored candidate, in one query


def test_recs_table_shows_variant_titles_and_categories(fake_session):
    _store_recs(fake_session)
    result = _run("recs", "u1", "-k", "3", "--exclude-category", "mugs")
    assert result.exit_code == 0
    assert "variant B" in result.stdout and "personal" in result.stdout
    for pid in ("p1", "p3", "p4"):
        assert f"Title {pid}" in result.stdout
    assert "p2" not in result.stdout and "p5" not in result.stdout and "category" in result.stdout


def test_recs_table_without_category_filters_looks_up_titles_of_the_shown_items_only(fake_session):
    _store_recs(fake_session)
    result = _run("recs", "u1", "-k", "2", "--exclude", "p1")
    assert "Title p2" in result.stdout and "Title p3" in result.stdout and "category" not in result.stdout
    assert fake_session.in_queries == [["p2", "p3"]]


def test_recs_when_nothing_passes_the_filters(fake_session):
    _store_recs(fake_session)
    result = _run("recs", "u1", "--category", "nothing")
    assert result.exit_code == 0 and result.stdout == "" and "pass the filters" in result.stderr
    assert json.loads(_run("recs", "u1", "--category", "nothing", "-o", "json").stdout)["items"] == []


def test_recs_of_an_unknown_user_exits_1(fake_session):
    result = _run("recs", "nobody", "-o", "json")
    assert result.exit_code == 1 and json.loads(result.stdout)["items"] == []


# --- streamrec catalog publish -------------------------------------------------------------------

def test_publish_writes_cassandra_then_kafka_and_skips_bad_lines(fake_session, fake_kafka):
    fake_session.products["p1"] = {"title": "Lamp", "price": 10.0, "in_stock": True, "embedding": [1.0, 0.0]}
    lines = "\n".join([
        '{"product_id": "p1", "in_stock": false}',
        '{"product_id": "p2", "title": "Mug", "embedding": [0, 1]}',
        '{"product_id": "p3", "embedding": [0, 1, 0]}',  # wrong dimension: the table's is 2
        "{broken",
    ]) + "\n"
    result = _run("catalog", "publish", "-", input=lines)
    assert result.exit_code == 1
    assert "line 3:" in result.stderr and "line 4:" in result.stderr
    assert "published 2" in result.stderr and "bad 2" in result.stderr
    assert result.stdout == ""
    # every Cassandra write before the first Kafka record; the bad lines went nowhere
    assert fake_session.log == [("cassandra", "p1"), ("cassandra", "p2"), ("kafka", "p1"), ("kafka", "p2")]
    assert fake_session.products["p1"] == {"title": "Lamp", "price": 10.0, "in_stock": False, "embedding": [1.0, 0.0]}
    assert "p3" not in fake_session.products
    (producer,) = fake_kafka
    assert producer.settings["acks"] == "all" and producer.settings["enable_idempotence"] is True
    assert [(t, k, json.loads(v)) for t, k, v in producer.sent] == [
        ("products", b"p1", {"product_id": "p1", "in_stock": False}),
        ("products", b"p2", {"product_id": "p2", "title": "Mug", "embedding": [0.0, 1.0]}),
    ]


def test_publish_one_update_from_options_with_json_summary(fake_session, fake_kafka):
    result = _run("catalog", "publish", "--product-id", "p7", "--out-of-stock", "--price", "4.5", "-o", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"published": 1, "bad": 0, "failed": 0, "table": "streamrec.products",
                                         "topic": "products", "errors": []}
    assert fake_session.products["p7"] == {"price": 4.5, "in_stock": False}
    assert json.loads(fake_kafka[0].sent[0][2]) == {"product_id": "p7", "price": 4.5, "in_stock": False}
    assert any(c == "INSERT INTO products (product_id, price, in_stock) VALUES (?, ?, ?)"
               for c in fake_session.prepared)


def test_publish_an_invalid_option_update_is_bad(fake_session, fake_kafka):
    result = _run("catalog", "publish", "--product-id", "x" * 300, "--in-stock", "-o", "json")
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert summary["bad"] == 1 and summary["published"] == 0 and summary["errors"][0]["line"] == 1
    assert fake_session.log == []


def test_publish_a_failed_cassandra_write_is_not_sent_to_kafka(fake_session, fake_kafka):
    fake_session.fail_write = lambda values: values[0] == "p2"
    lines = '{"product_id": "p1", "in_stock": true}\n{"product_id": "p2", "in_stock": true}\n'
    result = _run("catalog", "publish", "-o", "json", input=lines)
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert (summary["published"], summary["bad"], summary["failed"]) == (1, 0, 1)
    assert summary["errors"][0]["line"] == 2 and "line 2: not published" in result.stderr
    assert [k for _, k, _ in fake_kafka[0].sent] == [b"p1"]


def test_publish_a_record_kafka_refuses_counts_as_failed(fake_session, monkeypatch):
    import kafka

    monkeypatch.setattr(kafka, "KafkaProducer", lambda **s: FakeProducer(refuse=lambda key: key == b"p1", **s))
    result = _run("catalog", "publish", "--product-id", "p1", "--title", "New", "-o", "json")
    assert result.exit_code == 1 and json.loads(result.stdout)["failed"] == 1
    assert fake_session.products["p1"] == {"title": "New"}  # Cassandra has it: the job loads it on restart


@pytest.mark.parametrize("args", [["somefile.jsonl", "--product-id", "p1"], ["--price", "3"], ["--in-stock"]])
def test_publish_usage_errors(args, fake_session, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "somefile.jsonl").write_text('{"product_id": "p1"}\n')
    result = _run("catalog", "publish", *args)
    assert result.exit_code == 2
    assert fake_session.log == []


# --- streamrec ab report -------------------------------------------------------------------------

def test_ab_report_json(fake_session):
    fake_session.counters = [CounterRow("A", 10, 4), CounterRow("B", 10, 1), CounterRow(None, 0, 0),
                             CounterRow("A", 10, 2)]
    result = _run("ab", "report", "-o", "json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"variants": [
        {"variant": "A", "users": 2, "impressions": 20, "hits": 6, "hit_rate": 0.3},
        {"variant": "B", "users": 1, "impressions": 10, "hits": 1, "hit_rate": 0.1},
        {"variant": "default", "users": 1, "impressions": 0, "hits": 0, "hit_rate": None},
    ]}
    assert fake_session.cluster.shut_down


def test_ab_report_table(fake_session):
    fake_session.counters = [CounterRow("A", 8, 2), CounterRow("B", 0, 0)]
    result = _run("ab", "report")
    assert result.exit_code == 0
    assert "A/B variants" in result.stdout and "0.2500" in result.stdout and "hit rate" in result.stdout
    empty = FakeSession()
    fake_session.counters = empty.counters
    result = _run("ab", "report")
    assert result.exit_code == 0 and result.stdout == "" and "no recommendations" in result.stderr


def test_stored_recommendations_variant_defaults_to_none():
    assert StoredRecommendations("u", "trending", [], [], None, None, None).variant is None
