"""The HTTP API (FastAPI): recommendations, events, similar products, trending, event intake, health.

Every answer of a query route is built by the functions the CLI uses (:mod:`streamrec.query`);
every event is judged by the job's own parser (:func:`streamrec.model.events.parse_event`), so a
bad event gets here the code it would get on the dead-letter topic. Errors are JSON objects
``{"error": CODE, "reason": "..."}``; bad input is always a 4xx.
"""

from __future__ import annotations

import functools
import hmac
import json
import time
from importlib import resources
from pathlib import Path
from typing import Any, Awaitable, Callable, Optional, Sequence
from urllib.parse import parse_qsl

import orjson
from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from streamrec.config import Config
from streamrec.model.catalog import Catalog
from streamrec.model.events import UNKNOWN_PRODUCT, BadRecord, Event, latest_ts, parse_event
from streamrec.query import (
    DetailsLookup,
    ProductInfo,
    catalog_details,
    recommendations_answer,
    similar_answer,
    split_ids,
    trending_answer,
)
from streamrec.service.backend import Backend

# Codes of the service's own refusals (the parser's codes, model.events.ERROR_CODES, come on top).
BAD_PARAMETER = "BAD_PARAMETER"
EMPTY_BATCH = "EMPTY_BATCH"
TOO_LARGE = "TOO_LARGE"
UNAUTHORIZED = "UNAUTHORIZED"
NOT_FOUND = "NOT_FOUND"
METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
NOT_READY = "NOT_READY"
UNAVAILABLE = "UNAVAILABLE"

# Latency buckets (seconds) around the target of p99 < 10 ms for a recommendations request.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ApiError(Exception):
    def __init__(self, status: int, code: str, reason: str, **extra: Any) -> None:
        super().__init__(reason)
        self.status, self.code, self.reason, self.extra = status, code, reason, extra


def _error(status: int, code: str, reason: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": code, "reason": reason, **extra}, status_code=status)


# --- ids: valid exactly when the parser accepts an event that carries them ----------------------

_PROBE = {"event_id": "id-check", "user_id": "u", "ts": 0, "type": "view", "product_id": "p"}


@functools.lru_cache(maxsize=65_536)  # the same users ask again and again; a verdict never changes
def id_error(name: str, value: str) -> Optional[BadRecord]:
    """The parser's verdict on ``value`` as the ``name`` field of an otherwise valid event (None: valid).

    The rules stay the parser's alone: an id the API accepts is one the job accepts."""
    parsed = parse_event(json.dumps({**_PROBE, name: value}))
    return parsed if isinstance(parsed, BadRecord) else None


def _check_id(name: str, value: str) -> str:
    bad = id_error(name, value)
    if bad is not None:
        raise ApiError(400, bad.code, bad.reason)
    return value


# --- metrics ------------------------------------------------------------------------------------

class Metrics:
    """Request counts and latencies per route template (``/v1/users/{user_id}/...``, never the
    ids themselves: one time series per route, not per user)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("streamrec_http_requests", "HTTP requests by route, method and status",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("streamrec_http_request_duration_seconds", "HTTP request latency by route",
                                 ["route", "method"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.events = Counter("streamrec_events", "Events posted, by outcome (sent, rejected, failed)",
                              ["outcome"], registry=self.registry)
        # what a recommendations request found in Cassandra (a user without a row is answered from
        # trending), and where the items it served came from
        self.lookups = Counter("streamrec_recommendation_lookups", "Recommendation lookups, by result (row, no_row)",
                               ["result"], registry=self.registry)
        self.items = Counter("streamrec_served_items", "Recommended items served, by source (personal, trending)",
                             ["source"], registry=self.registry)
        self.catalog_products = Gauge("streamrec_service_catalog_products", "Products in the catalog the service holds",
                                      registry=self.registry)


class MetricsMiddleware:
    """Pure ASGI, so that it sees the route the router matched (``scope["route"]``) and every status."""

    def __init__(self, app: Any, metrics: Metrics, routes: Sequence[Any] = ()) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes  # the application's own list: routes added later are seen too

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]
        before = dict(scope)  # a mount rewrites the scope's paths; an unlabelled route is matched on this

        async def record_status(message: Any) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or self._template(before)
            method = scope.get("method", "")
            self.metrics.requests.labels(route, method, str(status[0])).inc()
            self.metrics.latency.labels(route, method).observe(time.perf_counter() - started)

    def _template(self, scope: Any) -> str:
        """The path of the route that serves ``scope``, for those FastAPI's router does not name in
        the scope (its plain routes and mounts: /openapi.json, /docs-static); else "unmatched"."""
        from starlette.routing import Match

        for route in self.routes:
            if route.matches(scope)[0] is Match.FULL:
                return str(getattr(route, "path", "unmatched"))
        return "unmatched"


# --- the recommendations answer, as the OpenAPI description shows it --------------------------------
# Documentation only: the answer is built as plain dicts and encoded once (a response model would
# validate and serialise every answer again, which the profile showed to be the route's dearest part).

class RecommendedItem(BaseModel):
    product_id: str
    score: Optional[float] = Field(description="cosine similarity (personal) or decayed popularity (trending)")
    source: str = Field(description="personal, trending (filled in), or the stored list's source")
    title: Optional[str] = None
    category: Optional[str] = None
    price: Optional[float] = None


class RecommendationsAnswer(BaseModel):
    user_id: str
    source: Optional[str] = Field(description="the stored list's source; trending for a user without a row; "
                                              "null when nothing is left")
    items: list[RecommendedItem]
    event_id: Optional[str] = Field(None, description="the event that produced the stored list (absent without a row)")
    event_ts: Optional[str] = Field(None, description="its event time, ISO 8601 UTC")
    variant: Optional[str] = Field(None, description="the user's A/B variant, when the job has variants")


class ErrorAnswer(BaseModel):
    error: str = Field(description="the code: the parser's for ids, else BAD_PARAMETER, UNAUTHORIZED, ...")
    reason: str


# --- the recommendations route's fast path ----------------------------------------------------------

RECOMMENDATIONS = "/v1/users/{user_id}/recommendations"
_RECS_PREFIX, _RECS_SUFFIX = "/v1/users/", "/recommendations"
DEFAULT_K = 10
# the headers Starlette's JSONResponse sends, in its order
_JSON_CONTENT_TYPE = (b"content-type", b"application/json")

# (scope, receive, send) -> whether it answered; False hands the request to the full application
FastPath = Callable[[Scope, Receive, Send], Awaitable[bool]]


class ServiceApp(FastAPI):
    """FastAPI with one hot route answered before its middleware stack when the request is plainly
    valid. Profiled under load, the stack (error, telemetry, exception and body-limit middleware,
    routing, dependency solving and validation) cost more CPU than building the answer; everything
    else, and every request the fast path declines, goes through the stack as before."""

    fast_path: Optional[FastPath] = None

    def build_middleware_stack(self) -> ASGIApp:
        stack = super().build_middleware_stack()
        fast = self.fast_path
        if fast is None:
            return stack

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            if not await fast(scope, receive, send):
                await stack(scope, receive, send)

        return app


class CatalogDetails:
    """The product details of the catalog in use, each built once: a recommendations request joins
    10-30 products, and building their ProductInfo again per request was a tenth of its own work.
    A reloaded catalog is a new object (the backend swaps the reference), which empties the cache."""

    def __init__(self) -> None:
        self._catalog: Optional[Catalog] = None
        self._known: dict[str, Optional[ProductInfo]] = {}

    def lookup(self, catalog: Catalog) -> DetailsLookup:
        if catalog is not self._catalog or len(self._known) > 2 * len(catalog) + 1024:
            # the bound: ids the catalog does not know (a stale stored list) are remembered as None
            self._catalog, self._known = catalog, {}
        known = self._known

        def details(product_ids: Sequence[str]) -> dict[str, ProductInfo]:
            missing = [p for p in product_ids if p not in known]
            if missing:
                found = catalog_details(catalog, missing)
                for p in missing:
                    known[p] = found.get(p)
            out: dict[str, ProductInfo] = {}
            for p in product_ids:
                info = known[p]
                if info is not None:
                    out[p] = info
            return out

        return details


# --- the application ----------------------------------------------------------------------------

# query parameters of the recommendations route (FastAPI reads them from the defaults)
_EXCLUDE = Query([], description="products never to show (repeatable or comma-separated)")
_CATEGORY = Query([], description="show only these categories (repeatable: any of them)")
_EXCLUDE_CATEGORY = Query([], description="never show these categories (repeatable)")
_SEARCH = Query("", max_length=256, description="words of the title or the id")

def swagger_ui_dir() -> str:
    """Swagger UI's files as the swagger-ui-py package ships them (a 5.x release: OpenAPI 3.1)."""
    import swagger_ui

    return str(Path(swagger_ui.__file__).parent / "static")


def page_html() -> str:
    return resources.files("streamrec.service").joinpath("static/index.html").read_text(encoding="utf-8")


def create_app(config: Config, backend: Backend) -> FastAPI:
    """The API over ``backend`` (a LiveBackend in `streamrec serve`, a fake one in the unit tests)."""
    from fastapi.middleware.cors import CORSMiddleware

    # docs_url None: FastAPI's /docs page loads Swagger UI from a CDN; ours serves it from the package
    app = ServiceApp(title="streamrec", version="0.1.0", docs_url=None, redoc_url=None,
                  description="Real-time recommendations: Kafka -> PyFlink -> Cassandra, served over HTTP.")
    metrics = Metrics()
    metrics.catalog_products.set_function(lambda: len(backend.catalog() or ()))
    app.state.metrics = metrics
    app.state.backend = backend
    origins = [o.strip() for o in config.serve_cors_origins.split(",") if o.strip()]
    if origins:
        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["GET", "POST"],
                           allow_headers=["Content-Type", "X-API-Key"])
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=app.router.routes)
    max_k = config.serve_max_k

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.reason, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def bad_parameter(request: Request, exc: RequestValidationError) -> JSONResponse:
        reasons = ["{}: {}".format(".".join(str(x) for x in e.get("loc", ()) if x != "query"), e.get("msg", ""))
                   for e in exc.errors()]
        return _error(400, BAD_PARAMETER, "; ".join(reasons) or "bad request")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: NOT_FOUND, 405: METHOD_NOT_ALLOWED}.get(exc.status_code, BAD_PARAMETER)
        return _error(exc.status_code, code, str(exc.detail))

    # async, like every route that does not block: a plain def would cost a hop to the thread pool
    async def require_key(x_api_key: Optional[str] = Header(None, include_in_schema=False)) -> None:
        if not config.serve_api_key:
            return
        given = (x_api_key or "").encode("utf-8")
        if not hmac.compare_digest(given, config.serve_api_key.encode("utf-8")):
            raise ApiError(401, UNAUTHORIZED, "missing or wrong X-API-Key")

    def catalog_or_503() -> Catalog:
        catalog = backend.catalog()
        if catalog is None:
            raise ApiError(503, NOT_READY, "the catalog is not loaded yet")
        return catalog

    def guarded(call: Callable[[], Any]) -> Any:
        """A backend call; a dependency that fails is the service's problem (503), not the client's."""
        try:
            return call()
        except ApiError:
            raise
        except Exception as exc:
            raise ApiError(503, UNAVAILABLE, f"a dependency failed ({type(exc).__name__})") from exc

    async def guarded_async(call: Awaitable[Any]) -> Any:
        try:
            return await call
        except ApiError:
            raise
        except Exception as exc:
            raise ApiError(503, UNAVAILABLE, f"a dependency failed ({type(exc).__name__})") from exc

    v1 = [Depends(require_key)]
    k_query = Query(10, ge=1, le=max_k, description=f"how many items, 1..{max_k}")
    n_query = Query(20, ge=1, le=max_k, description=f"the newest n, 1..{max_k}")
    page_k = Query(min(24, max_k), ge=1, le=max_k, description=f"how many products, 1..{max_k}")

    product_details = CatalogDetails()
    lookups = {True: metrics.lookups.labels("row"), False: metrics.lookups.labels("no_row")}
    served = {source: metrics.items.labels(source) for source in ("personal", "trending")}

    async def recommendations_json(user_id: str, k: int, exclude: list[str], category: list[str],
                                   exclude_category: list[str]) -> bytes:
        """The answer of both ways to the route (its FastAPI handler and the fast path)."""
        catalog = catalog_or_503()
        stored = await guarded_async(backend.recommendations(user_id))
        answer = recommendations_answer(
            user_id, stored, k, product_details.lookup(catalog), exclude=split_ids(exclude),
            categories=category, exclude_categories=exclude_category, trending=backend.trending())
        lookups[stored is not None].inc()
        counts: dict[str, int] = {}
        for item in answer["items"]:
            source = str(item.get("source"))
            counts[source] = counts.get(source, 0) + 1
        for source, n in counts.items():
            child = served.get(source)
            if child is None:
                child = served[source] = metrics.items.labels(source)
            child.inc(n)
        # orjson: the same JSON as JSONResponse's json.dumps (compact, UTF-8), in a seventh of the time
        return orjson.dumps(answer)

    # response_class: the OpenAPI description says application/json, as it did with JSONResponse
    @app.get(RECOMMENDATIONS, dependencies=v1, tags=["query"], response_class=JSONResponse,
             responses={200: {"model": RecommendationsAnswer}, 400: {"model": ErrorAnswer},
                        401: {"model": ErrorAnswer}, 503: {"model": ErrorAnswer}})
    async def recommendations(
        user_id: str,
        k: int = k_query,
        exclude: list[str] = _EXCLUDE,
        category: list[str] = _CATEGORY,
        exclude_category: list[str] = _EXCLUDE_CATEGORY,
    ) -> Response:
        """The user's current recommendations, as `streamrec recs -o json` shows them; when fewer
        than k personal items pass the filters, trending products fill the list (each item says its
        `source`)."""
        _check_id("user_id", user_id)
        body = await recommendations_json(user_id, k, exclude, category, exclude_category)
        return Response(body, media_type="application/json")

    api_key = config.serve_api_key.encode("utf-8") if config.serve_api_key else None
    requests_ok = metrics.requests.labels(RECOMMENDATIONS, "GET", "200")
    latency = metrics.latency.labels(RECOMMENDATIONS, "GET")

    async def fast_recommendations(scope: Scope, receive: Receive, send: Send) -> bool:
        """GET /v1/users/{user_id}/recommendations without the middleware stack, when nothing about
        the request needs it: a valid id, k plain digits in range, the right key (if one is set), no
        CORS request. Anything else returns False and FastAPI answers it (its 4xx, its CORS), so
        the two ways can only differ in speed. Metrics are counted here as the middleware would."""
        if scope["type"] != "http" or scope["method"] != "GET" or scope.get("root_path"):
            return False
        path: str = scope["path"]
        if not (path.startswith(_RECS_PREFIX) and path.endswith(_RECS_SUFFIX)):
            return False
        user_id = path[len(_RECS_PREFIX):-len(_RECS_SUFFIX)]
        if not user_id or "/" in user_id or id_error("user_id", user_id) is not None:
            return False
        if api_key is not None or origins:
            keys: list[bytes] = []
            for name, value in scope["headers"]:
                if name == b"x-api-key":
                    keys.append(value)
                elif name == b"origin" and origins:
                    return False
            # as the dependency reads it: the header's latin-1 text, as UTF-8
            if api_key is not None and (len(keys) != 1 or not hmac.compare_digest(
                    keys[0].decode("latin-1").encode("utf-8"), api_key)):
                return False
        k, k_seen = DEFAULT_K, False
        exclude: list[str] = []
        category: list[str] = []
        exclude_category: list[str] = []
        query: bytes = scope.get("query_string", b"")
        if query:
            # as Starlette's QueryParams parses it
            for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
                if name == "k":
                    if k_seen or not (value.isascii() and value.isdigit() and len(value) <= 6) or value[0] == "0":
                        return False
                    k, k_seen = int(value), True
                elif name == "exclude":
                    exclude.append(value)
                elif name == "category":
                    category.append(value)
                elif name == "exclude_category":
                    exclude_category.append(value)
            if k > max_k:
                return False
        started = time.perf_counter()
        try:
            body = await recommendations_json(user_id, k, exclude, category, exclude_category)
        except ApiError as exc:
            await _error(exc.status, exc.code, exc.reason, **exc.extra)(scope, receive, send)
            metrics.requests.labels(RECOMMENDATIONS, "GET", str(exc.status)).inc()
            latency.observe(time.perf_counter() - started)
            return True
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode("latin-1")), _JSON_CONTENT_TYPE]})
        await send({"type": "http.response.body", "body": body})
        requests_ok.inc()
        latency.observe(time.perf_counter() - started)
        return True

    app.fast_path = fast_recommendations

    @app.get("/v1/users/{user_id}/events", dependencies=v1, tags=["query"])
    async def user_events(user_id: str, n: int = n_query) -> JSONResponse:
        """The user's newest events as the job stored them (the answer of `streamrec events -o json`)."""
        _check_id("user_id", user_id)
        events = await run_in_threadpool(guarded, lambda: backend.events(user_id, n))
        return JSONResponse({"user_id": user_id, "events": events})

    @app.get("/v1/products/{product_id}/similar", dependencies=v1, tags=["query"])
    async def similar(product_id: str, k: int = k_query) -> JSONResponse:
        """The in-stock products closest to this one (the answer of `streamrec similar -o json`)."""
        _check_id("product_id", product_id)
        catalog = catalog_or_503()
        try:
            return JSONResponse(similar_answer(catalog, product_id, k))
        except KeyError:
            raise ApiError(404, UNKNOWN_PRODUCT, f"product {product_id!r} is not in the catalog") from None

    @app.get("/v1/trending", dependencies=v1, tags=["query"])
    async def trending(k: int = k_query) -> JSONResponse:
        """The most popular in-stock products right now (decayed popularity of the recent events)."""
        return JSONResponse(trending_answer(catalog_or_503(), backend.trending(), k))

    @app.get("/v1/products", dependencies=v1, tags=["query"])
    async def products(q: str = _SEARCH, k: int = page_k) -> JSONResponse:
        """Catalog search for the demo page: in-stock products whose title or id contains every word
        of `q`, trending ones first (all in-stock products when `q` is empty)."""
        catalog = catalog_or_503()
        words = q.lower().split()
        picked: list[int] = []
        for row in _by_popularity(catalog, backend.trending()):
            text = f"{catalog.product_ids[row]} {catalog.titles[row]}".lower()
            if all(w in text for w in words):
                picked.append(row)
                if len(picked) >= k:
                    break
        details = catalog_details(catalog, [catalog.product_ids[r] for r in picked])
        return JSONResponse({"items": [{"product_id": pid, "title": d.title, "category": d.category,
                                        "price": d.price} for pid, d in details.items()]})

    @app.post("/v1/events", status_code=202, dependencies=v1, tags=["events"],
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {
                  "oneOf": [{"type": "object"}, {"type": "array", "items": {"type": "object"}}]}}}}})
    async def post_events(request: Request) -> JSONResponse:
        """One event or a JSON array of events, checked by the job's parser. All valid: produced to
        the events topic (acks=all, idempotent), 202. Any invalid: 400 with each bad event's index
        and dead-letter code, and none of the batch is sent. A broker failure: 503 naming the indices
        that were sent and those that were not."""
        body = await _read_body(request, config.serve_max_body_bytes)
        raws = _split_batch(body, config.serve_max_batch)
        catalog = catalog_or_503()
        max_ts = latest_ts(int(time.time() * 1000), config.max_ts_lead_ms)  # the job would refuse it (FUTURE_TS)
        parsed = [parse_event(raw, known_products=catalog.index, max_record_bytes=config.max_record_bytes,
                              max_query_chars=config.max_query_chars, max_ts=max_ts) for raw in raws]
        bad = [(i, p) for i, p in enumerate(parsed) if isinstance(p, BadRecord)]
        if bad:
            metrics.events.labels("rejected").inc(len(bad))
            first = bad[0][1]
            return _error(400, first.code, first.reason, sent=[],
                          errors=[{"index": i, "error": b.code, "reason": b.reason} for i, b in bad])
        events: list[Event] = [p for p in parsed if isinstance(p, Event)]
        result = await run_in_threadpool(guarded, lambda: backend.send(events))
        metrics.events.labels("sent").inc(len(result.sent))
        if result.failed:
            metrics.events.labels("failed").inc(len(result.failed))
            return _error(503, UNAVAILABLE, "some events were not accepted by Kafka", sent=result.sent,
                          failed=[{"index": i, "reason": why} for i, why in result.failed])
        return JSONResponse({"accepted": len(events), "event_ids": [e.event_id for e in events]}, status_code=202)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    def readyz() -> JSONResponse:
        """Cassandra and Kafka reachable and the catalog loaded: 200, else 503 naming what is not."""
        checks = guarded(backend.readiness)
        ok = all(checks.values())
        return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["health"])
    async def prometheus() -> Response:
        """Prometheus text format: request counts and latency histograms per route."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(page_html())

    app.mount("/docs-static", StaticFiles(directory=swagger_ui_dir()), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        """Swagger UI over /openapi.json, with no internet access needed."""
        return get_swagger_ui_html(openapi_url=app.openapi_url or "/openapi.json", title="streamrec API",
                                   swagger_js_url="/docs-static/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-static/swagger-ui.css",
                                   swagger_favicon_url="/docs-static/favicon-32x32.png")

    return app


def _by_popularity(catalog: Catalog, trending: Sequence[tuple[str, float]]) -> Sequence[int]:
    """In-stock rows: trending products in their order, then the rest by the catalog's popularity
    (history counts; zero for a catalog read back from Cassandra, which keeps catalog order)."""
    import numpy as np

    rows = np.flatnonzero(catalog.in_stock)
    first = [r for r in (catalog.index.get(p) for p, _ in trending) if r is not None and catalog.in_stock[r]]
    rest = set(rows.tolist()) - set(first)
    ordered = [int(r) for r in rows[np.argsort(-catalog.popularity[rows], kind="stable")] if int(r) in rest]
    return [*first, *ordered]


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, TOO_LARGE, f"the body is {declared} bytes, limit {limit}")
    body = bytearray()
    async for chunk in request.stream():  # a body without Content-Length is counted as it comes
        body += chunk
        if len(body) > limit:
            raise ApiError(413, TOO_LARGE, f"the body is over {limit} bytes")
    return bytes(body)


def _split_batch(body: bytes, max_batch: int) -> list[str]:
    """The raw JSON of each event in the body: the body itself when it is one object (the parser
    sees exactly what was sent), else each element of a JSON array, serialised again."""
    text = body.decode("utf-8", errors="replace")
    try:
        # NaN/Infinity survive this outer parse so that the parser, not this one, names them
        outer = json.loads(text)
    except (ValueError, RecursionError):
        return [text]  # the parser gives it its NOT_JSON code
    if not isinstance(outer, list):
        return [text]
    if not outer:
        raise ApiError(400, EMPTY_BATCH, "an empty array holds no event")
    if len(outer) > max_batch:
        raise ApiError(413, TOO_LARGE, f"{len(outer)} events in one request, limit {max_batch}")
    return [json.dumps(item, ensure_ascii=False) for item in outer]

