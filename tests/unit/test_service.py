"""The HTTP service's routes with a fake query backend: answers, every 4xx path, metrics, key, CORS."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any, Optional, Sequence
from urllib.parse import quote

import numpy as np
import pytest
from fastapi.testclient import TestClient

from streamrec.config import Config, ServiceConfig
from streamrec.connectors.cassandra import StoredRecommendations
from streamrec.model.catalog import Catalog
from streamrec.model.events import ERROR_CODES, BadRecord, Event, parse_event
from streamrec.service.app import create_app, id_error
from streamrec.service.backend import SendResult, TrendingTracker

IDS = ["p1", "p2", "p3", "p4", "p5", "p6"]
CATS = ["lamps", "mugs", "lamps", "rugs", "mugs", "rugs"]


def small_catalog() -> Catalog:
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(len(IDS), 4)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return Catalog(tuple(IDS), vectors, titles=tuple(f"Title {p}" for p in IDS), categories=tuple(CATS),
                   prices=np.array([1.5, np.nan, 3.0, 4.0, 5.0, 6.0]),
                   in_stock=np.array([True, True, True, True, True, False]),
                   popularity=np.array([1.0, 5.0, 3.0, 0.0, 2.0, 9.0]))


class FakeQueryBackend:
    """Stands in for LiveBackend: rows in dicts, sends recorded, failures on demand."""

    def __init__(self) -> None:
        self.rows: dict[str, StoredRecommendations] = {}
        self.stored_events: dict[str, list[dict[str, Any]]] = {}
        self.loaded: Optional[Catalog] = small_catalog()
        self.trending_list: list[tuple[str, float]] = [("p6", 9.0), ("p5", 7.0), ("p4", 5.0), ("p3", 1.0)]
        self.sent: list[Event] = []
        self.fail_indices: set[int] = set()
        self.broken = False
        self.ready = {"cassandra": True, "kafka": True, "catalog": True}

    async def recommendations(self, user_id: str) -> Any:
        if self.broken:
            raise ConnectionError("Cassandra is away")
        return self.rows.get(user_id)

    def events(self, user_id: str, limit: int) -> list[dict[str, Any]]:
        return self.stored_events.get(user_id, [])[:limit]

    def catalog(self) -> Optional[Catalog]:
        return self.loaded

    def trending(self) -> list[tuple[str, float]]:
        return self.trending_list

    def send(self, events: Sequence[Event]) -> SendResult:
        result = SendResult()
        for i, e in enumerate(events):
            if i in self.fail_indices:
                result.failed.append((i, "failed to send (KafkaTimeoutError)"))
            else:
                self.sent.append(e)
                result.sent.append(i)
        return result

    def readiness(self) -> dict[str, bool]:
        return dict(self.ready)

    def close(self) -> None:
        pass


@pytest.fixture
def backend() -> FakeQueryBackend:
    b = FakeQueryBackend()
    b.rows["u1"] = StoredRecommendations("u1", "personal", ["p1", "p2", "p3"], [0.9, 0.8, 0.7], "e9",
                                         datetime(2024, 1, 2, 3, 4, 5), None, "B")
    b.stored_events["u1"] = [{"event_id": "e9", "user_id": "u1", "ts": 1, "type": "view", "product_id": "p1",
                              "query": None}]
    return b


def client_for(backend: FakeQueryBackend, **settings: Any) -> TestClient:
    return TestClient(create_app(Config(service=ServiceConfig(**settings)), backend))


@pytest.fixture
def client(backend: FakeQueryBackend) -> TestClient:
    return client_for(backend)


def event(i: int = 1, **fields: Any) -> dict[str, Any]:
    return {"event_id": f"e{i}", "user_id": "u1", "ts": 1_700_000_000_000 + i, "type": "click", "product_id": "p2",
            **fields}


def dead_letter_code(raw: str) -> str:
    parsed = parse_event(raw, known_products=small_catalog().index)
    assert isinstance(parsed, BadRecord)
    return parsed.code


# --- query routes ---------------------------------------------------------------------------------

def test_recommendations_answer_the_cli_json_with_details(client: TestClient) -> None:
    r = client.get("/v1/users/u1/recommendations", params={"k": 2})
    assert r.status_code == 200
    assert r.json() == {
        "user_id": "u1", "source": "personal", "variant": "B", "event_id": "e9", "event_ts": "2024-01-02T03:04:05Z",
        "items": [{"product_id": "p1", "score": 0.9, "source": "personal", "title": "Title p1", "category": "lamps",
                   "price": 1.5},
                  {"product_id": "p2", "score": 0.8, "source": "personal", "title": "Title p2", "category": "mugs",
                   "price": None}]}


def test_recommendations_filter_then_fill_from_trending(client: TestClient) -> None:
    r = client.get("/v1/users/u1/recommendations",
                   params=[("k", "4"), ("exclude", "p2,p9"), ("exclude_category", "rugs")])
    items = r.json()["items"]
    # p2 excluded; p1, p3 personal; the trending fill skips rugs (p6, p4) and repeats nothing
    assert [(i["product_id"], i["source"]) for i in items] == [("p1", "personal"), ("p3", "personal"),
                                                               ("p5", "trending")]
    r = client.get("/v1/users/u1/recommendations", params=[("k", "3"), ("category", "mugs")])
    assert [(i["product_id"], i["source"]) for i in r.json()["items"]] == [("p2", "personal"), ("p5", "trending")]


def test_a_user_without_a_row_gets_trending(client: TestClient) -> None:
    body = client.get("/v1/users/newbie/recommendations", params={"k": 2}).json()
    assert body["source"] == "trending" and "event_id" not in body
    assert [i["product_id"] for i in body["items"]] == ["p6", "p5"]


def test_events_similar_trending_and_product_search(client: TestClient, backend: FakeQueryBackend) -> None:
    assert client.get("/v1/users/u1/events", params={"n": 5}).json() == {
        "user_id": "u1", "events": backend.stored_events["u1"]}
    similar = client.get("/v1/products/p1/similar", params={"k": 3}).json()
    assert similar["product_id"] == "p1" and similar["title"] == "Title p1"
    assert len(similar["items"]) == 3 and "p1" not in [i["product_id"] for i in similar["items"]]
    assert "p6" not in [i["product_id"] for i in similar["items"]]  # off sale
    trending = client.get("/v1/trending", params={"k": 2}).json()["items"]
    assert [i["product_id"] for i in trending] == ["p5", "p4"]  # p6 is off sale
    assert trending[0]["title"] == "Title p5" and trending[0]["source"] == "trending"
    found = client.get("/v1/products", params={"q": "title P", "k": 3}).json()["items"]
    assert [i["product_id"] for i in found] == ["p5", "p4", "p3"]  # in stock, trending first
    found = client.get("/v1/products", params={"k": 6}).json()["items"]
    # then by the catalog's popularity: p2 (5) before p1 (1); p6 is off sale
    assert [i["product_id"] for i in found] == ["p5", "p4", "p3", "p2", "p1"]
    assert client.get("/v1/products", params={"q": "p4"}).json()["items"][0]["category"] == "rugs"
    assert client.get("/v1/products", params={"q": "nothing like it"}).json() == {"items": []}


# --- 4xx: parameters and ids ----------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/v1/users/u1/recommendations?k=0", "/v1/users/u1/recommendations?k=101",
                                  "/v1/users/u1/recommendations?k=ten", "/v1/users/u1/events?n=0",
                                  "/v1/users/u1/events?n=101", "/v1/products/p1/similar?k=-1", "/v1/trending?k=1000",
                                  "/v1/products?k=0", "/v1/products?q=" + "x" * 300])
def test_bad_parameters_are_400_with_a_code(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 400
    assert r.json()["error"] == "BAD_PARAMETER" and r.json()["reason"]


def test_the_k_limit_is_a_setting(backend: FakeQueryBackend) -> None:
    client = client_for(backend, max_k=5)
    assert client.get("/v1/trending?k=5").status_code == 200
    assert client.get("/v1/trending?k=6").status_code == 400


@pytest.mark.parametrize("bad_id", ["x" * 257, "a\u0007b", "tab\there", "\u202eevil"])
def test_ids_the_parser_refuses_are_400_with_its_code(client: TestClient, bad_id: str) -> None:
    want = dead_letter_code(json.dumps(event(user_id=bad_id)))
    assert want in ERROR_CODES
    quoted = quote(bad_id, safe="")
    r = client.get(f"/v1/users/{quoted}/recommendations")
    assert (r.status_code, r.json()["error"]) == (400, want)
    assert client.get(f"/v1/users/{quoted}/events").json()["error"] == want
    want = dead_letter_code(json.dumps(event(product_id=bad_id)))
    r = client.get(f"/v1/products/{quoted}/similar")
    assert (r.status_code, r.json()["error"]) == (400, want)


def test_id_error_is_the_parsers_verdict() -> None:
    assert id_error("user_id", "fine-user") is None
    bad = id_error("user_id", "x" * 300)
    assert bad is not None and bad.code == dead_letter_code(json.dumps(event(user_id="x" * 300)))


def test_unknown_product_is_404_unknown_routes_and_methods_are_json(client: TestClient) -> None:
    r = client.get("/v1/products/NOPE/similar")
    assert (r.status_code, r.json()["error"]) == (404, "UNKNOWN_PRODUCT")
    r = client.get("/v1/nothing-here")
    assert (r.status_code, r.json()["error"]) == (404, "NOT_FOUND")
    r = client.delete("/v1/events")
    assert (r.status_code, r.json()["error"]) == (405, "METHOD_NOT_ALLOWED")


def test_no_catalog_yet_is_503_not_ready(client: TestClient, backend: FakeQueryBackend) -> None:
    backend.loaded = None
    for path in ("/v1/users/u1/recommendations", "/v1/products/p1/similar", "/v1/trending"):
        r = client.get(path)
        assert (r.status_code, r.json()["error"]) == (503, "NOT_READY")
    r = client.post("/v1/events", json=event())
    assert (r.status_code, r.json()["error"]) == (503, "NOT_READY") and backend.sent == []


def test_a_failing_dependency_is_503_not_500(client: TestClient, backend: FakeQueryBackend) -> None:
    backend.broken = True
    r = client.get("/v1/users/u1/recommendations")
    assert (r.status_code, r.json()["error"]) == (503, "UNAVAILABLE")
    assert "Cassandra is away" not in r.text  # the client learns the kind of failure, not its details


# --- POST /v1/events ------------------------------------------------------------------------------

def test_one_event_and_a_batch_are_accepted_and_sent(client: TestClient, backend: FakeQueryBackend) -> None:
    r = client.post("/v1/events", json=event(1))
    assert r.status_code == 202 and r.json() == {"accepted": 1, "event_ids": ["e1"]}
    r = client.post("/v1/events", json=[event(2), event(3, type="search", query="lamp", product_id=None)])
    assert r.status_code == 202 and r.json()["accepted"] == 2
    assert [e.event_id for e in backend.sent] == ["e1", "e2", "e3"]
    assert backend.sent[0] == Event("e1", "u1", 1_700_000_000_001, "click", "p2")
    assert backend.sent[2].query == "lamp" and backend.sent[2].product_id is None


MALFORMED = [
    ("NOT_JSON", "this is not json"),
    ("NOT_JSON", "[1, 2"),
    ("MISSING_FIELD", json.dumps({"event_id": "b", "ts": 1, "type": "view", "product_id": "p1"})),
    ("WRONG_TYPE", json.dumps({"event_id": "b", "user_id": 17850, "ts": 1, "type": "view", "product_id": "p1"})),
    ("UNKNOWN_TYPE", json.dumps({"event_id": "b", "user_id": "u", "ts": 1, "type": "like", "product_id": "p1"})),
    ("UNKNOWN_PRODUCT", json.dumps({"event_id": "b", "user_id": "u", "ts": 1, "type": "view", "product_id": "NO"})),
    ("OVERSIZED", json.dumps({"event_id": "b", "user_id": "u", "ts": 1, "type": "view", "product_id": "p1",
                              "pad": "x" * 70_000})),
    ("NON_FINITE", '{"event_id": "b", "user_id": "u", "ts": NaN, "type": "view", "product_id": "p1"}'),
]


@pytest.mark.parametrize("code,raw", MALFORMED)
def test_a_bad_event_gets_its_dead_letter_code(client: TestClient, backend: FakeQueryBackend, code: str,
                                               raw: str) -> None:
    r = client.post("/v1/events", content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    body = r.json()
    assert body["error"] == code == dead_letter_code(raw)
    assert body["sent"] == [] and body["errors"][0]["index"] == 0
    assert backend.sent == []


def test_one_bad_event_in_a_batch_sends_none_and_names_each_bad_one(client: TestClient,
                                                                    backend: FakeQueryBackend) -> None:
    batch = [event(1), event(2, type="like"), event(3), event(4, product_id="NO"), event(5)]
    r = client.post("/v1/events", json=batch)
    assert r.status_code == 400
    body = r.json()
    assert body["error"] == "UNKNOWN_TYPE" and body["sent"] == []
    assert [(e["index"], e["error"]) for e in body["errors"]] == [(1, "UNKNOWN_TYPE"), (3, "UNKNOWN_PRODUCT")]
    assert backend.sent == []


def test_a_nan_inside_a_batch_is_non_finite(client: TestClient) -> None:
    raw = '[{"event_id": "a", "user_id": "u", "ts": 1, "type": "view", "product_id": "p1"},' \
          ' {"event_id": "b", "user_id": "u", "ts": Infinity, "type": "view", "product_id": "p1"}]'
    r = client.post("/v1/events", content=raw)
    assert r.status_code == 400 and [(e["index"], e["error"]) for e in r.json()["errors"]] == [(1, "NON_FINITE")]


def test_a_kafka_failure_says_which_events_were_sent(client: TestClient, backend: FakeQueryBackend) -> None:
    backend.fail_indices = {1}
    r = client.post("/v1/events", json=[event(1), event(2), event(3)])
    assert r.status_code == 503
    body = r.json()
    assert body["error"] == "UNAVAILABLE" and body["sent"] == [0, 2]
    assert [f["index"] for f in body["failed"]] == [1]


def test_size_and_batch_limits(backend: FakeQueryBackend) -> None:
    client = client_for(backend, max_body_bytes=2000, max_batch=3)
    r = client.post("/v1/events", content=json.dumps([event(i) for i in range(20)]))
    assert (r.status_code, r.json()["error"]) == (413, "TOO_LARGE")

    def chunks() -> Any:  # no Content-Length: counted as it arrives
        for _ in range(10):
            yield b" " * 500
    r = client.post("/v1/events", content=chunks())
    assert (r.status_code, r.json()["error"]) == (413, "TOO_LARGE")
    r = client.post("/v1/events", json=[event(i) for i in range(4)])
    assert (r.status_code, r.json()["error"]) == (413, "TOO_LARGE") and "limit 3" in r.json()["reason"]
    r = client.post("/v1/events", json=[])
    assert (r.status_code, r.json()["error"]) == (400, "EMPTY_BATCH")
    assert backend.sent == []


# --- key, CORS, health, metrics, page -------------------------------------------------------------

def test_the_api_key_guards_v1_and_is_never_logged(backend: FakeQueryBackend, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    client = client_for(backend, api_key="s3cret-key")
    for headers in ({}, {"X-API-Key": "wrong"}):
        r = client.get("/v1/users/u1/recommendations", headers=headers)
        assert (r.status_code, r.json()["error"]) == (401, "UNAUTHORIZED")
        assert client.post("/v1/events", json=event(), headers=headers).status_code == 401
    assert backend.sent == []
    assert client.get("/v1/users/u1/recommendations", headers={"X-API-Key": "s3cret-key"}).status_code == 200
    assert client.get("/healthz").status_code == 200  # probes need no key
    assert "s3cret-key" not in caplog.text
    assert "s3cret-key" not in repr(Config(service=ServiceConfig(api_key="s3cret-key")))
    assert "s3cret-key" not in Config(service=ServiceConfig(api_key="s3cret-key")).to_json()


def test_the_api_key_comes_from_a_file(tmp_path: Any) -> None:
    path = tmp_path / "key"
    path.write_text("from-file\n")
    assert Config.from_env({"STREAMREC_SERVE_API_KEY_FILE": str(path)}).service.api_key == "from-file"


def test_cors_allows_only_the_configured_origins(backend: FakeQueryBackend) -> None:
    client = client_for(backend, cors_origins="https://shop.example, https://admin.example")
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    r = client.options("/v1/events", headers={"Origin": "https://shop.example", **preflight})
    assert r.headers.get("access-control-allow-origin") == "https://shop.example"
    r = client.options("/v1/events", headers={"Origin": "https://evil.example", **preflight})
    assert "access-control-allow-origin" not in r.headers
    plain = client_for(backend)  # no origins configured: no CORS headers at all
    r = plain.get("/v1/trending", headers={"Origin": "https://shop.example"})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers


def test_healthz_and_readyz(client: TestClient, backend: FakeQueryBackend) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json()["ready"] is True
    backend.ready["kafka"] = False
    r = client.get("/readyz")
    assert r.status_code == 503 and r.json() == {"ready": False, "checks": {"cassandra": True, "kafka": False,
                                                                            "catalog": True}}


def test_metrics_count_requests_per_route_template(client: TestClient) -> None:
    for user in ("a", "b", "c"):
        client.get(f"/v1/users/{user}/recommendations")
    client.get("/v1/users/a/recommendations?k=0")
    client.post("/v1/events", json=event())
    text = client.get("/metrics").text
    rec = 'route="/v1/users/{user_id}/recommendations"'
    assert f'streamrec_http_requests_total{{method="GET",{rec},status="200"}} 3.0' in text
    assert f'streamrec_http_requests_total{{method="GET",{rec},status="400"}} 1.0' in text
    assert 'streamrec_http_requests_total{method="POST",route="/v1/events",status="202"} 1.0' in text
    assert f'streamrec_http_request_duration_seconds_count{{method="GET",{rec}}} 4.0' in text
    assert f'streamrec_http_request_duration_seconds_bucket{{le="0.01",method="GET",{rec}}}' in text
    assert 'streamrec_events_total{outcome="sent"} 1.0' in text
    assert "/v1/users/a/" not in text  # ids never become labels
    client.get("/openapi.json")
    client.get("/docs-static/swagger-ui.css")
    client.get("/no/such/route")
    text = client.get("/metrics").text
    assert 'streamrec_http_requests_total{method="GET",route="/openapi.json",status="200"} 1.0' in text
    assert 'streamrec_http_requests_total{method="GET",route="/docs-static",status="200"} 1.0' in text
    assert 'streamrec_http_requests_total{method="GET",route="unmatched",status="404"} 1.0' in text


def test_the_page_and_the_openapi_description(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "Recommended for you" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # loads with no internet access
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/openapi.json" in docs.text
    assert "cdn" not in docs.text.lower()  # Swagger UI comes from the package, not the internet
    for asset in ("/docs-static/swagger-ui-bundle.js", "/docs-static/swagger-ui.css"):
        assert client.get(asset).status_code == 200
    assert client.get("/openapi.json").json()["openapi"].startswith("3.")
    paths = set(client.get("/openapi.json").json()["paths"])
    assert {"/v1/users/{user_id}/recommendations", "/v1/users/{user_id}/events", "/v1/products/{product_id}/similar",
            "/v1/trending", "/v1/events", "/healthz", "/readyz", "/metrics"} <= paths


@pytest.mark.parametrize("path", ["/v1/users/%00/recommendations", "/v1/users/%ff%fe/events",
                                  "/v1/products/%0a/similar", "/v1/users/u1/recommendations?exclude=%00&category=",
                                  "/v1/users/" + "%e2%80%ae" * 3 + "/recommendations", "/v1/products?q=%00%ff"])
def test_odd_input_is_never_a_500(client: TestClient, path: str) -> None:
    assert client.get(path).status_code < 500


@pytest.mark.parametrize("body", [b"", b"\xff\xfe", b"null", b"[null]", b"[[]]", b'{"a": [' * 2000, b"123"])
def test_odd_bodies_are_never_a_500(client: TestClient, backend: FakeQueryBackend, body: bytes) -> None:
    r = client.post("/v1/events", content=body)
    assert r.status_code == 400 and r.json()["error"] in ERROR_CODES
    assert backend.sent == []


# --- the recommendations route's fast path and the batched reads ---------------------------------

FAST_PATH_URLS = [
    "/v1/users/u1/recommendations", "/v1/users/u1/recommendations?k=2", "/v1/users/newbie/recommendations?k=3",
    "/v1/users/u1/recommendations?k=4&exclude=p2,p9&exclude_category=rugs&unknown=1",
    "/v1/users/u1/recommendations?k=3&category=mugs&category=lamps", "/v1/users/u%C3%A9/recommendations?k=1",
    # declined by the fast path, answered by FastAPI
    "/v1/users/u1/recommendations?k=0", "/v1/users/u1/recommendations?k=007", "/v1/users/u1/recommendations?k=x",
    "/v1/users/u1/recommendations?k=1&k=2", "/v1/users/u1/recommendations?k=101", "/v1/users/%00/recommendations",
    "/v1/users/u1/recommendations/", "/v1/users/recommendations", "/v1/users/a%2Fb/recommendations",
]


def test_the_fast_path_answers_exactly_as_fastapi_does(backend: FakeQueryBackend) -> None:
    fast = client_for(backend)
    slow_app = create_app(Config(), backend)
    slow_app.fast_path = None  # type: ignore[attr-defined]  # the stack is built at the first request
    slow = TestClient(slow_app)
    for url in FAST_PATH_URLS:
        a, b = fast.get(url), slow.get(url)
        assert (a.status_code, a.content) == (b.status_code, b.content), url
        assert a.headers.get("content-type") == b.headers.get("content-type"), url
        assert a.headers.get("content-length") == b.headers.get("content-length"), url
    backend.loaded = None  # no catalog: both 503
    assert fast.get("/v1/users/u1/recommendations").json() == slow.get("/v1/users/u1/recommendations").json()
    backend.loaded, backend.broken = small_catalog(), True
    r = fast.get("/v1/users/u1/recommendations")
    assert (r.status_code, r.json()["error"]) == (503, "UNAVAILABLE")
    text = fast.get("/metrics").text
    rec = 'route="/v1/users/{user_id}/recommendations"'
    assert f'streamrec_http_requests_total{{method="GET",{rec},status="503"}} 2.0' in text
    assert 'streamrec_recommendation_lookups_total{result="row"}' in text
    assert 'streamrec_served_items_total{source="trending"}' in text


def test_the_fast_path_leaves_cors_requests_and_wrong_keys_to_fastapi(backend: FakeQueryBackend) -> None:
    client = client_for(backend, api_key="s3cret", cors_origins="https://shop.example")
    url = "/v1/users/u1/recommendations?k=1"
    assert client.get(url, headers={"X-API-Key": "s3cret"}).status_code == 200
    for headers in ({}, {"X-API-Key": "s3cret "}, {"X-API-Key": "wrong"}):
        r = client.get(url, headers=headers)
        assert (r.status_code, r.json()["error"]) == (401, "UNAUTHORIZED")
    assert client.get(url, headers=[("X-API-Key", "s3cret"), ("X-API-Key", "s3cret")]).status_code == 200
    r = client.get(url, headers={"X-API-Key": "s3cret", "Origin": "https://shop.example"})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://shop.example"


def test_the_openapi_description_shows_the_recommendations_answer(client: TestClient) -> None:
    from streamrec.service.app import RecommendationsAnswer

    route = client.get("/openapi.json").json()["paths"]["/v1/users/{user_id}/recommendations"]["get"]
    assert route["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/RecommendationsAnswer")
    assert route["responses"]["400"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorAnswer")
    for url in ("/v1/users/u1/recommendations?k=4&category=mugs", "/v1/users/newbie/recommendations"):
        body = client.get(url).json()
        assert RecommendationsAnswer.model_validate(body).model_dump(exclude_unset=True) == body


class FakeResponseFuture:
    """The driver's ResponseFuture: callbacks run on another thread, as on the driver's IO thread."""

    def __init__(self, rows: Optional[list[Any]] = None, error: Optional[BaseException] = None) -> None:
        self.rows, self.error = rows, error

    def add_callbacks(self, callback: Any, errback: Any, callback_args: tuple = (), errback_args: tuple = ()) -> None:
        import threading

        if self.error is not None:
            threading.Thread(target=errback, args=(self.error, *errback_args)).start()
        else:
            threading.Thread(target=callback, args=(self.rows, *callback_args)).start()


class FakeReadClient:
    def __init__(self) -> None:
        self.single: list[str] = []
        self.many: list[list[str]] = []
        self.error: Optional[BaseException] = None

    def _rows(self, user_ids: Sequence[str]) -> FakeResponseFuture:
        from collections import namedtuple

        row = namedtuple("row", "user_id n")
        return FakeResponseFuture([row(u, int(u[1:])) for u in user_ids if u != "u0"], self.error)

    def recommendations_future(self, user_id: str) -> FakeResponseFuture:
        self.single.append(user_id)
        return self._rows([user_id])

    def recommendations_many_future(self, user_ids: Sequence[str]) -> FakeResponseFuture:
        self.many.append(list(user_ids))
        return self._rows(user_ids)


def test_reads_of_one_loop_turn_go_as_one_request() -> None:
    import asyncio

    from streamrec.service.backend import ReadBatcher

    client = FakeReadClient()
    batcher = ReadBatcher(client, max_batch=3)

    async def scenario() -> None:
        lone = await batcher.read("u7")
        assert lone.n == 7 and client.single == ["u7"] and client.many == []
        rows = await asyncio.gather(*(batcher.read(u) for u in ["u1", "u2", "u1", "u0", "u3", "u4"]))
        assert [r.n if r else None for r in rows] == [1, 2, 1, None, 3, 4]  # u0 has no row
        # the same user's reads share one; at most 3 users a request
        assert client.many == [["u1", "u2", "u0"], ["u3", "u4"]] and client.single == ["u7"]
        client.error = ConnectionError("Cassandra is away")
        failed = await asyncio.gather(batcher.read("u1"), batcher.read("u2"), return_exceptions=True)
        assert all(isinstance(f, ConnectionError) for f in failed)
        client.error = None

    asyncio.run(scenario())

    async def another_loop() -> None:  # a batcher outlives an event loop (a test client's, say)
        assert [r.n for r in await asyncio.gather(batcher.read("u5"), batcher.read("u6"))] == [5, 6]

    asyncio.run(another_loop())
    dead = asyncio.new_event_loop()
    dead.close()
    batcher._flush_loop = dead  # a loop that closed with its flush still scheduled
    asyncio.run(another_loop())


class SilentResponseFuture:
    """A read Cassandra never answers (until the test answers it by hand, late)."""

    def __init__(self) -> None:
        self.callback: Any = None

    def add_callbacks(self, callback: Any, errback: Any, callback_args: tuple = (), errback_args: tuple = ()) -> None:
        self.callback = lambda rows: callback(rows, *callback_args)


def test_a_read_cassandra_does_not_answer_fails_at_its_deadline_and_a_late_answer_is_ignored() -> None:
    import asyncio

    from streamrec.service.backend import ReadBatcher, ReadTimeout

    silent = SilentResponseFuture()

    class SilentClient(FakeReadClient):
        def recommendations_future(self, user_id: str) -> Any:
            return silent

    batcher = ReadBatcher(SilentClient(), timeout=0.2)

    async def scenario() -> None:
        with pytest.raises(ReadTimeout):
            await batcher.read("u1")
        late = silent.callback
        second = asyncio.ensure_future(batcher.read("u1"))  # the next read waits for its own answer
        await asyncio.sleep(0.01)
        late([])  # the first read's answer after its deadline: nobody waits for it any more
        await asyncio.sleep(0.01)
        assert not second.done()
        silent.callback([])  # the second read's answer: the user has no row
        assert (await second) is None

    asyncio.run(scenario())


# --- the trending tracker -------------------------------------------------------------------------

def test_trending_tracker_counts_valid_events_with_positive_weights() -> None:
    tracker = TrendingTracker(Config())
    catalog = small_catalog()
    t = 1_700_000_000_000
    for i, (etype, pid) in enumerate([("purchase", "p3"), ("view", "p1"), ("remove_from_cart", "p1"),
                                      ("view", "NO-SUCH")]):
        tracker.add_raw(json.dumps(event(i, type=etype, product_id=pid, ts=t + i)).encode(), catalog)
    tracker.add_raw(b"not json", catalog)
    assert [p for p, _ in tracker.top()] == ["p3", "p1"]  # purchase 5 > view 1; the removal counts nothing
