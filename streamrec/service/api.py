"""What the routes of the service share: the error answers, the id check (the parser's verdict),
the application class with its fast path, and :class:`Context` (the config, the backend, the
metrics, the catalog or 503, the API key dependency, the query parameters)."""

from __future__ import annotations

import functools
import hmac
import json
from typing import Any, Awaitable, Callable, Optional

from fastapi import Depends, FastAPI, Header, Query
from fastapi.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from streamrec.config import Config
from streamrec.model.catalog import Catalog
from streamrec.model.events import BadRecord, parse_event
from streamrec.service.backend import Backend
from streamrec.service.telemetry import Metrics

# Codes of the service's own refusals (the parser's codes, model.events.ERROR_CODES, come on top).
BAD_PARAMETER = "BAD_PARAMETER"
EMPTY_BATCH = "EMPTY_BATCH"
TOO_LARGE = "TOO_LARGE"
UNAUTHORIZED = "UNAUTHORIZED"
NOT_FOUND = "NOT_FOUND"
METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
NOT_READY = "NOT_READY"
UNAVAILABLE = "UNAVAILABLE"


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


# --- the application ----------------------------------------------------------------------------

# (scope, receive, send) -> whether it answered; False hands the request to the full application
FastPath = Callable[[Scope, Receive, Send], Awaitable[bool]]


class ServiceApp(FastAPI):
    """FastAPI with one hot route answered before FastAPI itself when the request is plainly valid.
    Profiled under load, the stack (error, telemetry, exception and body-limit middleware, routing,
    dependency solving and validation) cost more CPU than building the answer, and FastAPI's own
    entry asks OpenTelemetry on every request whether a provider is set up (~3% of the event loop's
    busy time at 1,000 requests/s, reading os.environ each time). Everything else, and every
    request the fast path declines, goes through FastAPI as before."""

    fast_path: Optional[FastPath] = None
    _traced: Optional[bool] = None  # known at the first request (FastAPI's own _telemetry is its config)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fast = self.fast_path
        if (fast is not None and scope["type"] == "http" and not self.root_path and not self._is_traced()
                and await fast(scope, receive, send)):
            return
        await super().__call__(scope, receive, send)

    def _is_traced(self) -> bool:
        """Whether FastAPI traces requests (an OpenTelemetry provider is set up); asked once, at the
        first request: providers are configured when the process starts, before it serves. A traced
        application leaves every request to FastAPI, so each one gets its span."""
        if self._traced is None:
            native = getattr(self, "_native_telemetry", None)
            self._traced = bool(native is not None and native.enabled())
        return self._traced


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


def key_dependency(config: Config) -> Callable[..., Awaitable[None]]:
    """The dependency of every /v1 route: the X-API-Key header, when the service has a key."""

    # async, like every route that does not block: a plain def would cost a hop to the thread pool
    async def require_key(x_api_key: Optional[str] = Header(None, include_in_schema=False)) -> None:
        if not config.service.api_key:
            return
        given = (x_api_key or "").encode("utf-8")
        if not hmac.compare_digest(given, config.service.api_key.encode("utf-8")):
            raise ApiError(401, UNAUTHORIZED, "missing or wrong X-API-Key")

    return require_key


class Context:
    """What the routes of one application share (create_app builds it, each route module reads it)."""

    def __init__(self, config: Config, backend: Backend, metrics: Metrics) -> None:
        self.config = config
        self.backend = backend
        self.metrics = metrics
        self.origins = [o.strip() for o in config.service.cors_origins.split(",") if o.strip()]
        self.max_k = max_k = config.service.max_k
        self.v1 = [Depends(key_dependency(config))]
        self.k_query = Query(10, ge=1, le=max_k, description=f"how many items, 1..{max_k}")
        self.n_query = Query(20, ge=1, le=max_k, description=f"the newest n, 1..{max_k}")
        self.page_k = Query(min(24, max_k), ge=1, le=max_k, description=f"how many products, 1..{max_k}")

    def catalog_or_503(self) -> Catalog:
        catalog = self.backend.catalog()
        if catalog is None:
            raise ApiError(503, NOT_READY, "the catalog is not loaded yet")
        return catalog
