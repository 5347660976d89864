"""The one middleware every request passes: browser checks, auth, size limits, latency metrics, and exceptions →
JSON errors.

This is the API's error boundary (STYLE: translate errors once per boundary). Whatever a handler raises leaves
as `{"error": ..., "hint": ...}` with a status that tells the client whose fault it was: 4xx for input it can
fix, 503 for a store outage worth retrying, and 500 with a request id (never a traceback) for our bugs.

It also starts the body's deadline (server.bodyTimeoutSeconds: a body still incomplete then is answered 408) and
tells the connection's guard that a request head arrived in time (see server.py).

It is also the trust boundary, checked in this order before any handler runs:
- Host: a web page can make the operator's browser talk to 127.0.0.1 under a DNS name it controls (DNS
  rebinding). Only `localhost`, loopback IPs, the bound address, IP literals when bound to a wildcard address (a
  rebinding needs a name) and `server.allowedHosts` pass.
- Origin: browsers send it on cross-site requests, and a plain form post (multipart, text/plain) needs no CORS
  preflight, so without this check any web page could join a cluster to a daemon on 127.0.0.1. Command-line
  clients send no Origin and are unaffected.
- Tokens: the read token opens every route but the health checks; with an admin token configured, join and
  unjoin need exactly that token (the admin token also opens every read route). Both compared in constant time.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from multicluster import metrics
from multicluster.api.auth.chain import identify
from multicluster.api.auth.identity import IDENTITY
from multicluster.api.backend import ApiBackend
from multicluster.api.kube.paths import PREFIX as KUBE_PREFIX
from multicluster.api.params import MAX_QUERY_BYTES, check_sizes
from multicluster.api.server import GUARDS, LIMITS, Limits
from multicluster.config import ServerConfig
from multicluster.errors import (
    AccessDenied,
    ClusterError,
    GVRError,
    MembershipError,
    MulticlusterError,
    NotAuthenticated,
    QueryError,
    StoreError,
)

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
UNAUTHENTICATED = frozenset({"/healthz", "/readyz"})
ADMIN_ROUTES = frozenset({"/v1/join", "/v1/unjoin"})  # canonical routes that need the admin scope
_WILDCARDS = frozenset({"0.0.0.0", "::", "[::]", ""})  # noqa: S104 - compared, not bound


@dataclass(frozen=True, slots=True)
class Access:
    """Who may call the API: tokens per scope, browser origins, and the host names the daemon answers to."""

    token: str | None = field(default=None, repr=False)
    admin_token: str | None = field(default=None, repr=False)
    allowed_origins: frozenset[str] = frozenset()
    allowed_hosts: frozenset[str] = frozenset()
    bind: str = "127.0.0.1"
    # Without a read token reads are open, unless Kubernetes identities are accepted (server.auth: kubernetes,
    # server.apiService): then every read needs an identity or a static token.
    open_without_token: bool = True

    @classmethod
    def from_server(cls, server: ServerConfig) -> Access:
        return cls(
            token=server.token,
            admin_token=server.admin_token,
            allowed_origins=frozenset(o.lower().rstrip("/") for o in server.allowed_origins),
            allowed_hosts=frozenset(h.lower() for h in server.allowed_hosts) | _service_hosts(server),
            bind=server.bind,
            open_without_token=not server.kubernetes_identities,
        )

    def host_allowed(self, header: str | None) -> bool:
        if header is None or "*" in self.allowed_hosts:
            return True  # HTTP/1.0 clients send no Host; browsers always do
        host = _hostname(header)
        if host in ("localhost", self.bind.lower().strip("[]")) or host in self.allowed_hosts:
            return True
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return False
        return ip.is_loopback or self.bind in _WILDCARDS

    def origin_allowed(self, origin: str) -> bool:
        return origin.strip().lower().rstrip("/") in self.allowed_origins

    def scopes(self, given: bytes | None) -> tuple[bool, bool]:
        """(read, admin): what a bearer token opens. Without a read token reads are open; without an admin token
        the admin routes need what the read routes need."""
        is_admin = _matches(given, self.admin_token)
        read = is_admin or _matches(given, self.token) or (self.token is None and self.open_without_token)
        return read, (is_admin if self.admin_token is not None else read)


def _service_hosts(server: ServerConfig) -> frozenset[str]:
    """With --apiservice, the names the master's API server may dial the daemon by (its Service)."""
    if not server.api_service:
        return frozenset()
    service, namespace = server.api_service_name, server.api_service_namespace
    base = f"{service}.{namespace}.svc"
    names = {service, f"{service}.{namespace}", base, f"{base}.cluster.local"}
    return frozenset(names | ({server.api_service_external_name} if server.api_service_external_name else set()))


def _hostname(header: str) -> str:
    host = header.strip().lower()
    if host.startswith("["):  # [v6]:port
        return host[1:].partition("]")[0]
    if host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


def _bearer(request: web.Request) -> bytes | None:
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return None
    return given.strip().encode()


def _matches(given: bytes | None, token: str | None) -> bool:
    return given is not None and token is not None and hmac.compare_digest(given, token.encode())


BACKEND: web.AppKey[ApiBackend] = web.AppKey("backend")
ACCESS: web.AppKey[Access] = web.AppKey("access", Access)
AUTHORIZED: web.RequestKey[bool] = web.RequestKey("authorized", bool)  # the read scope was granted


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


async def _refusal(request: web.Request, access: Access) -> web.Response | None:
    """The trust boundary's answer to a request it refuses, or None to let it through."""
    if not access.host_allowed(request.headers.get("Host")):
        log.warning("refused %s %s: Host %r is not one of this daemon's names", request.method, request.path[:200],
                    request.headers.get("Host", "")[:100])
        return error_response(403, "the Host header names a host this daemon does not answer to",
                              "add the name clients use to server.allowedHosts (requests through a DNS name that "
                              "is not configured are refused to stop DNS rebinding)")
    origin = request.headers.get("Origin")
    if origin is not None and not access.origin_allowed(origin):
        log.warning("refused %s %s from Origin %r", request.method, request.path[:200], origin[:100])
        return error_response(403, "cross-origin requests are refused: this Origin is not allowed",
                              "a web page cannot call this API unless its origin is listed in "
                              "server.allowedOrigins; command-line clients send no Origin header")
    given = _bearer(request)
    read, admin = access.scopes(given)
    if not (_matches(given, access.token) or _matches(given, access.admin_token)):
        user = await identify(request, given)
        if user is not None:
            # A Kubernetes user: reads are filtered by the master's RBAC (api.auth.access); membership is the
            # operator's, so join and unjoin stay with the admin token.
            request[IDENTITY] = user
            request[AUTHORIZED] = True
            if _route_label(request) in ADMIN_ROUTES:
                return error_response(403, f"user {user.name[:200]!r} cannot join or unjoin clusters: that needs "
                                      "the daemon's admin token", "send server.adminToken as the bearer token")
            return None
    request[AUTHORIZED] = read
    if request.path in UNAUTHENTICATED:
        return None
    if _route_label(request) not in ADMIN_ROUTES:
        return None if read else _unauthorized()
    if admin:
        return None
    if not _matches(given, access.token):
        return _unauthorized()
    return error_response(403, "joining and unjoining clusters needs the admin token, not the read token",
                              "send the admin token (server.adminToken) as `Authorization: Bearer <token>`; the "
                              "plugin reads it from --admin-token, MULTICLUSTER_ADMIN_TOKEN or the `adminToken:` "
                              "line of its config file")


def _unauthorized() -> web.Response:
    return error_response(401, "missing or wrong bearer token",
                          "send `Authorization: Bearer <token>`; the plugin reads it from --token, "
                          "MULTICLUSTER_TOKEN or the `token:` line of its config file")


_HTTP_HINTS = {
    404: "see GET /openapi.json for the routes this server has",
    405: "see GET /openapi.json for the methods each route accepts",
}


STREAMING: web.RequestKey[bool] = web.RequestKey("streaming", bool)
_DEFAULT_LIMITS = Limits()


class BodyTimeout(TimeoutError):
    """The request body did not arrive within server.bodyTimeoutSeconds. A TimeoutError, so aiohttp, which reads
    what is left of an unread body after the answer, gives up on it quietly instead of logging a crash."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"the request body did not arrive within {seconds:g} s")
        self.seconds = seconds


def _body_deadline(request: web.Request, seconds: float) -> asyncio.TimerHandle | None:
    """Fail the handler's reads of a body that is still incomplete `seconds` after the head arrived."""
    content = request.content
    if not request.body_exists or content.is_eof():
        return None

    def expire() -> None:
        if not content.is_eof():
            content.set_exception(BodyTimeout(seconds))

    return asyncio.get_running_loop().call_later(seconds, expire)


@web.middleware
async def api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    start = time.perf_counter()
    label = _route_label(request)
    # The head is complete: its deadline is over, the body's begins (see multicluster.api.server).
    transport = request.transport
    guard = request.app.get(GUARDS, {}).get(transport) if transport is not None else None
    if guard is not None:
        guard.request_started()
    deadline = _body_deadline(request, request.app.get(LIMITS, _DEFAULT_LIMITS).body_timeout)
    try:
        refused = await _refusal(request, request.app[ACCESS])
        if refused is not None:
            return _as_status(request, refused)
        if len(request.raw_path) > MAX_QUERY_BYTES:
            return _as_status(request, error_response(
                414, f"the URL is too long ({len(request.raw_path)} bytes; max {MAX_QUERY_BYTES})",
                "no query needs more than a few KB of parameters"))
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
        return _as_status(request, _error_for(request, exc))
    finally:
        if deadline is not None:
            deadline.cancel()
        if guard is not None:
            guard.request_done()
        metrics.QUERY_SECONDS.labels(label).observe(time.perf_counter() - start)


def _as_status(request: web.Request, resp: web.StreamResponse) -> web.StreamResponse:
    """Under the Kubernetes-compatible paths every error is a Kubernetes Status (kubectl prints its message);
    elsewhere the `{error, hint}` answer stays as it is."""
    if not request.path.startswith(KUBE_PREFIX):
        return resp
    from multicluster.api.kube.status import from_error

    return from_error(resp, request.method, request.path)


def _error_for(request: web.Request, exc: Exception) -> web.StreamResponse:
    if isinstance(exc, BodyTimeout):
        log.warning("%s %s: %s; closing the connection", request.method, request.path[:200], exc)
        resp = error_response(408, str(exc), "send the whole body at once; the server waits "
                              f"server.bodyTimeoutSeconds ({exc.seconds:g} s) for it")
        resp.force_close()  # the rest of the body may still be on its way
        return resp
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
    if isinstance(exc, NotAuthenticated):
        log.warning("refused %s %s: %s", request.method, request.path[:200], exc.message)
        return error_response(401, exc.message, exc.hint)
    if isinstance(exc, AccessDenied):
        return error_response(403, exc.message, exc.hint)
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
