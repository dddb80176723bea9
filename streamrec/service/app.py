"""The HTTP API (FastAPI): recommendations, events, similar products, trending, event intake, health.

Every answer of a query route is built by the functions the CLI uses (:mod:`streamrec.query`);
every event is judged by the job's own parser (:func:`streamrec.model.events.parse_event`), so a
bad event gets here the code it would get on the dead-letter topic. Errors are JSON objects
``{"error": CODE, "reason": "..."}``; bad input is always a 4xx.

:func:`create_app` puts the application together from its parts: ``api`` (errors, ids, the
application class, what the routes share), ``telemetry`` (metrics and their middleware),
``recommendations`` (the hot route and its fast path), ``routes`` (every other route).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from streamrec.config import Config
from streamrec.service.api import (
    BAD_PARAMETER,
    METHOD_NOT_ALLOWED,
    NOT_FOUND,
    ApiError,
    Context,
    ServiceApp,
    _error,
    id_error,
)
from streamrec.service.backend import Backend
from streamrec.service.recommendations import RecommendationsAnswer, add_recommendations
from streamrec.service.routes import (
    add_event_routes,
    add_health_routes,
    add_page_routes,
    add_query_routes,
    page_html,
    swagger_ui_dir,
)
from streamrec.service.telemetry import Metrics, MetricsMiddleware

__all__ = ["Metrics", "RecommendationsAnswer", "create_app", "id_error", "page_html", "swagger_ui_dir"]


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
    ctx = Context(config, backend, metrics)
    if ctx.origins:
        app.add_middleware(CORSMiddleware, allow_origins=ctx.origins, allow_methods=["GET", "POST"],
                           allow_headers=["Content-Type", "X-API-Key"])
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=app.router.routes)
    _add_error_handlers(app)
    # the order of the routes is the order of matching and of the OpenAPI description
    add_recommendations(app, ctx)
    add_query_routes(app, ctx)
    add_event_routes(app, ctx)
    add_health_routes(app, ctx)
    add_page_routes(app)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    """Every error as ``{"error": CODE, "reason": ...}``: the service's own, FastAPI's validation
    (400 BAD_PARAMETER, not its 422) and Starlette's (404, 405)."""

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
