"""The routes besides recommendations: a user's events, similar products, trending, the catalog
search of the demo page, event intake (POST /v1/events), health and metrics, the page and the
API docs. Each group is added by one function, in the order create_app calls them."""

from __future__ import annotations

import json
import time
from importlib import resources
from pathlib import Path
from typing import Sequence

from fastapi import Query, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from streamrec.model.catalog import Catalog
from streamrec.model.events import UNKNOWN_PRODUCT, BadRecord, Event, latest_ts, parse_event
from streamrec.query import catalog_details, similar_answer, trending_answer
from streamrec.service.api import (
    EMPTY_BATCH,
    TOO_LARGE,
    UNAVAILABLE,
    ApiError,
    Context,
    ServiceApp,
    _check_id,
    _error,
    guarded,
)

_SEARCH = Query("", max_length=256, description="words of the title or the id")


def add_query_routes(app: ServiceApp, ctx: Context) -> None:
    """GET a user's events, a product's similar products, trending, the catalog search."""
    backend = ctx.backend

    @app.get("/v1/users/{user_id}/events", dependencies=ctx.v1, tags=["query"])
    async def user_events(user_id: str, n: int = ctx.n_query) -> JSONResponse:
        """The user's newest events as the job stored them (the answer of `streamrec events -o json`)."""
        _check_id("user_id", user_id)
        events = await run_in_threadpool(guarded, lambda: backend.events(user_id, n))
        return JSONResponse({"user_id": user_id, "events": events})

    @app.get("/v1/products/{product_id}/similar", dependencies=ctx.v1, tags=["query"])
    async def similar(product_id: str, k: int = ctx.k_query) -> JSONResponse:
        """The in-stock products closest to this one (the answer of `streamrec similar -o json`)."""
        _check_id("product_id", product_id)
        catalog = ctx.catalog_or_503()
        try:
            return JSONResponse(similar_answer(catalog, product_id, k))
        except KeyError:
            raise ApiError(404, UNKNOWN_PRODUCT, f"product {product_id!r} is not in the catalog") from None

    @app.get("/v1/trending", dependencies=ctx.v1, tags=["query"])
    async def trending(k: int = ctx.k_query) -> JSONResponse:
        """The most popular in-stock products right now (decayed popularity of the recent events)."""
        return JSONResponse(trending_answer(ctx.catalog_or_503(), backend.trending(), k))

    @app.get("/v1/products", dependencies=ctx.v1, tags=["query"])
    async def products(q: str = _SEARCH, k: int = ctx.page_k) -> JSONResponse:
        """Catalog search for the demo page: in-stock products whose title or id contains every word
        of `q`, trending ones first (all in-stock products when `q` is empty)."""
        catalog = ctx.catalog_or_503()
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


def add_event_routes(app: ServiceApp, ctx: Context) -> None:
    """POST /v1/events: events checked by the job's parser, then produced to the events topic."""
    backend, config, metrics = ctx.backend, ctx.config, ctx.metrics

    @app.post("/v1/events", status_code=202, dependencies=ctx.v1, tags=["events"],
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {
                  "oneOf": [{"type": "object"}, {"type": "array", "items": {"type": "object"}}]}}}}})
    async def post_events(request: Request) -> JSONResponse:
        """One event or a JSON array of events, checked by the job's parser. All valid: produced to
        the events topic (acks=all, idempotent), 202. Any invalid: 400 with each bad event's index
        and dead-letter code, and none of the batch is sent. A broker failure: 503 naming the indices
        that were sent and those that were not."""
        body = await _read_body(request, config.service.max_body_bytes)
        raws = _split_batch(body, config.service.max_batch)
        catalog = ctx.catalog_or_503()
        max_ts = latest_ts(int(time.time() * 1000), config.limits.max_ts_lead_ms)  # the job would refuse it (FUTURE_TS)
        parsed = [parse_event(raw, known_products=catalog.index, max_record_bytes=config.limits.max_record_bytes,
                              max_query_chars=config.limits.max_query_chars, max_ts=max_ts) for raw in raws]
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


def add_health_routes(app: ServiceApp, ctx: Context) -> None:
    """/healthz, /readyz and /metrics."""
    backend, metrics = ctx.backend, ctx.metrics

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


def add_page_routes(app: ServiceApp) -> None:
    """The demo shop page at / and the API docs (Swagger UI served from the package)."""
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


def swagger_ui_dir() -> str:
    """Swagger UI's files as the swagger-ui-py package ships them (a 5.x release: OpenAPI 3.1)."""
    import swagger_ui

    return str(Path(swagger_ui.__file__).parent / "static")


def page_html() -> str:
    return resources.files("streamrec.service").joinpath("static/index.html").read_text(encoding="utf-8")


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

