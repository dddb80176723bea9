"""GET /v1/users/{user_id}/recommendations, the hot route: its answer (the CLI's, with the product
details of the catalog and trending products filling in), its FastAPI route with the OpenAPI
description, and its fast path, which answers a plainly valid request before the middleware stack."""

from __future__ import annotations

import hmac
import time
from typing import Optional, Sequence
from urllib.parse import parse_qsl

import orjson
from fastapi import Query
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.types import Receive, Scope, Send

from streamrec.model.catalog import Catalog
from streamrec.query import DetailsLookup, ProductInfo, catalog_details, recommendations_answer, split_ids
from streamrec.service.api import ApiError, Context, ServiceApp, _check_id, _error, guarded_async, id_error

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


RECOMMENDATIONS = "/v1/users/{user_id}/recommendations"
_RECS_PREFIX, _RECS_SUFFIX = "/v1/users/", "/recommendations"
DEFAULT_K = 10
# the headers Starlette's JSONResponse sends, in its order
_JSON_CONTENT_TYPE = (b"content-type", b"application/json")

# query parameters of the route (FastAPI reads them from the defaults)
_EXCLUDE = Query([], description="products never to show (repeatable or comma-separated)")
_CATEGORY = Query([], description="show only these categories (repeatable: any of them)")
_EXCLUDE_CATEGORY = Query([], description="never show these categories (repeatable)")


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


def add_recommendations(app: ServiceApp, ctx: Context) -> None:
    """The route, and its fast path as ``app.fast_path``."""
    backend, metrics = ctx.backend, ctx.metrics
    product_details = CatalogDetails()
    lookups = {True: metrics.lookups.labels("row"), False: metrics.lookups.labels("no_row")}
    served = {source: metrics.items.labels(source) for source in ("personal", "trending")}

    async def recommendations_json(user_id: str, k: int, exclude: list[str], category: list[str],
                                   exclude_category: list[str]) -> bytes:
        """The answer of both ways to the route (its FastAPI handler and the fast path)."""
        catalog = ctx.catalog_or_503()
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
    @app.get(RECOMMENDATIONS, dependencies=ctx.v1, tags=["query"], response_class=JSONResponse,
             responses={200: {"model": RecommendationsAnswer}, 400: {"model": ErrorAnswer},
                        401: {"model": ErrorAnswer}, 503: {"model": ErrorAnswer}})
    async def recommendations(
        user_id: str,
        k: int = ctx.k_query,
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

    api_key = ctx.config.service.api_key.encode("utf-8") if ctx.config.service.api_key else None
    cors = bool(ctx.origins)
    max_k = ctx.max_k
    requests_ok = metrics.requests.labels(RECOMMENDATIONS, "GET", "200")
    latency = metrics.latency.labels(RECOMMENDATIONS, "GET")

    async def fast_recommendations(scope: Scope, receive: Receive, send: Send) -> bool:
        """GET /v1/users/{user_id}/recommendations without the middleware stack, when nothing about
        the request needs it: a valid id, k plain digits in range, the right key (if one is set), no
        CORS request. Anything else returns False and FastAPI answers it (its 4xx, its CORS), so
        the two ways can only differ in speed. Metrics are counted here as the middleware would."""
        user_id = _plain_user_id(scope, api_key, cors)
        if user_id is None:
            return False
        params = _plain_query(scope.get("query_string", b""), max_k)
        if params is None:
            return False
        started = time.perf_counter()
        try:
            body = await recommendations_json(user_id, *params)
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


def _plain_user_id(scope: Scope, api_key: Optional[bytes], cors: bool) -> Optional[str]:
    """The user id of a GET of the route the fast path may answer: a valid id, the right key (if one
    is set), no CORS request; None hands the request to FastAPI."""
    if scope["type"] != "http" or scope["method"] != "GET" or scope.get("root_path"):
        return None
    path: str = scope["path"]
    if not (path.startswith(_RECS_PREFIX) and path.endswith(_RECS_SUFFIX)):
        return None
    user_id = path[len(_RECS_PREFIX):-len(_RECS_SUFFIX)]
    if not user_id or "/" in user_id or id_error("user_id", user_id) is not None:
        return None
    if (api_key is not None or cors) and not _plain_headers(scope["headers"], api_key, cors):
        return None
    return user_id


def _plain_headers(headers: Sequence[tuple[bytes, bytes]], api_key: Optional[bytes], cors: bool) -> bool:
    """One X-API-Key header with the key (when one is set), and no Origin header when CORS is on."""
    keys: list[bytes] = []
    for name, value in headers:
        if name == b"x-api-key":
            keys.append(value)
        elif name == b"origin" and cors:
            return False
    # as the dependency reads it: the header's latin-1 text, as UTF-8
    return api_key is None or (len(keys) == 1 and hmac.compare_digest(
        keys[0].decode("latin-1").encode("utf-8"), api_key))


def _plain_query(query: bytes, max_k: int) -> Optional[tuple[int, list[str], list[str], list[str]]]:
    """(k, exclude, category, exclude_category) of a query string the fast path may answer: k plain
    digits in range, at most once; None hands the request to FastAPI (its 400)."""
    k, k_seen = DEFAULT_K, False
    exclude: list[str] = []
    category: list[str] = []
    exclude_category: list[str] = []
    if query:
        # as Starlette's QueryParams parses it
        for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
            if name == "k":
                if k_seen or not (value.isascii() and value.isdigit() and len(value) <= 6) or value[0] == "0":
                    return None
                k, k_seen = int(value), True
            elif name == "exclude":
                exclude.append(value)
            elif name == "category":
                category.append(value)
            elif name == "exclude_category":
                exclude_category.append(value)
        if k > max_k:
            return None
    return k, exclude, category, exclude_category
