"""The one middleware every request passes: auth, size limits, latency metrics, and exceptions → JSON errors.

This is the API's error boundary (STYLE: translate errors once per boundary). Whatever a handler raises leaves
as `{"error": ..., "hint": ...}` with a status that tells the client whose fault it was: 4xx for input it can
fix, 503 for a store outage worth retrying, and 500 with a request id (never a traceback) for our bugs.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from multicluster import metrics
from multicluster.api.backend import ApiBackend
from multicluster.api.params import MAX_QUERY_BYTES, check_sizes
from multicluster.errors import ClusterError, GVRError, MembershipError, MulticlusterError, QueryError, StoreError

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
UNAUTHENTICATED = frozenset({"/healthz", "/readyz"})
BACKEND: web.AppKey[ApiBackend] = web.AppKey("backend")


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json", headers=headers)


def error_response(status: int, error: str, hint: str | None = None, *, headers: dict[str, str] | None = None,
                   **extra: Any) -> web.Response:
    body: dict[str, Any] = {"error": error, "hint": hint}
    body.update(extra)
    if status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": 'Bearer realm="multicluster"'}
    return json_response(body, status=status, headers=headers)


def _route_label(request: web.Request) -> str:
    route = request.match_info.route
    resource = route.resource
    if request.match_info.http_exception is not None or resource is None:
        return "unmatched"
    return resource.canonical


def _authorized(request: web.Request, token: str) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given:
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


_HTTP_HINTS = {
    404: "see GET /openapi.json for the routes this server has",
    405: "see GET /openapi.json for the methods each route accepts",
}


STREAMING: web.RequestKey[bool] = web.RequestKey("streaming", bool)


@web.middleware
async def api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    start = time.perf_counter()
    label = _route_label(request)
    try:
        token = request.app[BACKEND].token
        if token and request.path not in UNAUTHENTICATED and not _authorized(request, token):
            return error_response(401, "missing or wrong bearer token",
                                  "send `Authorization: Bearer <token>`; the plugin reads it from --token, "
                                  "MULTICLUSTER_TOKEN or the `token:` line of its config file")
        if len(request.raw_path) > MAX_QUERY_BYTES:
            return error_response(414, f"the URL is too long ({len(request.raw_path)} bytes; max {MAX_QUERY_BYTES})",
                                  "no query needs more than a few KB of parameters")
        check_sizes(request.query)
        return await handler(request)
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception as exc:
        if request.get(STREAMING):
            # Part of a streamed body is already on the wire: a JSON error cannot follow it. Re-raising makes
            # aiohttp drop the connection, so the client sees a truncated (invalid) body, never a short list.
            log.error("%s %s failed mid-stream: %s", request.method, request.path_qs[:200], exc)
            raise
        return _error_for(request, exc)
    finally:
        metrics.QUERY_SECONDS.labels(label).observe(time.perf_counter() - start)


def _error_for(request: web.Request, exc: Exception) -> web.StreamResponse:
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            raise exc
        if exc.status == 404:
            message = f"no route {request.method} {request.path}"
        elif exc.status == 405:
            message = f"method {request.method} is not allowed on {request.path}"
        else:
            message = exc.text or exc.reason
        return error_response(exc.status, message, _HTTP_HINTS.get(exc.status))
    if isinstance(exc, GVRError):
        return error_response(400, exc.message, exc.hint, matches=exc.matches)
    if isinstance(exc, QueryError):
        return error_response(400, exc.message, exc.hint)
    if isinstance(exc, StoreError):
        log.warning("store error on %s %s: %s", request.method, request.path_qs[:200], exc)
        return error_response(503, f"the store is unavailable: {exc.message}",
                              exc.hint or "retry in a moment; the daemon reconnects by itself",
                              headers={"Retry-After": "5"})
    if isinstance(exc, ClusterError):
        return error_response(503, exc.message, exc.hint)
    if isinstance(exc, MembershipError):
        return error_response(exc.http_status, exc.message, exc.hint)
    if isinstance(exc, MulticlusterError):
        log.warning("error on %s %s: %s", request.method, request.path_qs[:200], exc)
        return error_response(500, exc.message, exc.hint)
    rid = uuid.uuid4().hex[:12]
    log.error("unhandled error on %s %s (request id %s)", request.method, request.path_qs[:200], rid,
              exc_info=exc)
    return error_response(500, "internal server error",
                          f"the daemon logged the details under request id {rid}", requestId=rid)
