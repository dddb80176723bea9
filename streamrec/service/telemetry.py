"""The service's own metrics: request counts and latencies per route template, events posted by
outcome, where the served recommendations came from; counted by a pure ASGI middleware."""

from __future__ import annotations

import time
from typing import Any, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Latency buckets (seconds) around the target of p99 < 10 ms for a recommendations request.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


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
