"""Per-cluster Kubernetes API access with raw JSON.

kubernetes_asyncio does what it is good at — reading the operator's kubeconfigs and their auth (tokens, client
certs, exec plugins, refresh hooks) — and we talk HTTP ourselves with one aiohttp session per cluster, parsing bytes
with orjson into plain dicts. Generated client models cost about 7x the parse time of orjson into dicts, so they
are never built.

Clusters that joined over HTTP (`trusted=False`) never reach that loader: their kubeconfig came from whoever could
call the API, and the loader runs commands and reads local files on its behalf. They are connected from the
allow-list ConnectionSpec of multicluster.kubeconfig instead (inline CA and client certificate, bearer token);
multicluster.kubeconn builds both kinds of connection.

Errors are translated here, once: HTTP statuses become KubeAPIError subclasses (with the API's own Status message
and Retry-After), connection failures and timeouts become ClusterError("cluster <name>: <reason>").

Nothing a member sends is read unbounded (the `sync:` limits): a response body is streamed up to
`maxListPageBytes` (TooLarge past it), a watch line up to `maxWatchLineBytes` (the connection is closed past it),
discovery up to `maxDiscoveredResources` resource types and as many group-versions (the rest is left out).
Connections: each watch holds one (HTTP/1.1, no multiplexing) and is never queued, since the number of informers
(`maxTypesPerCluster`) bounds them; every other request first takes one of `maxConnectionsPerCluster` slots, and
its timeout starts only once it holds one, so lists and discovery never starve behind watches nor time out while
waiting their turn. A cluster thus opens at most maxTypesPerCluster + maxConnectionsPerCluster connections.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from http import HTTPStatus
from typing import Any, cast

import aiohttp
import orjson
from kubernetes_asyncio.client import Configuration

from multicluster import kubeconn, metrics
from multicluster.config import ClusterConfig, SyncConfig
from multicluster.errors import ClusterError, ConfigError, KubeAPIError, kube_error
from multicluster.gvr import APIResource, invalid_group_version, parse_discovery
from multicluster.logsetup import cluster_logger
from multicluster.types import APIGroupList, APIVersions, Status, VersionInfo, WatchEvent
from multicluster.watchlines import Lines, LineTooLong

log = logging.getLogger(__name__)

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"


def _status_message(body: bytes, status: int) -> tuple[str, str, Status]:
    try:
        data = orjson.loads(body) if body else {}
    except orjson.JSONDecodeError:
        text = body[:300].decode("utf-8", "replace").strip()
        return (text or f"HTTP {status}"), "", {}
    if isinstance(data, dict):
        st = cast(Status, data)  # a member's answer: each field is checked where it is read
        return str(st.get("message") or f"HTTP {status}"), str(st.get("reason") or ""), st
    return f"HTTP {status}", "", {}


class TooLarge(ClusterError):
    """A member sent more bytes than a `sync:` limit allows; `limit` is the option's name."""

    def __init__(self, cluster: str, what: str, limit: str, size: int) -> None:
        super().__init__(cluster, f"{what} exceeds sync.{limit} ({size:,} bytes); not read further",
                         hint=f"raise sync.{limit} if the cluster really serves responses this large")
        self.limit = limit
        self.size = size


class ClusterClient:
    """HTTP access to one cluster's API server."""

    def __init__(self, cluster: ClusterConfig, *, request_timeout: float = 30.0,
                 limits: SyncConfig | None = None) -> None:
        self.cluster = cluster
        self.name = cluster.name
        self.request_timeout = request_timeout
        self.limits = limits or SyncConfig()
        self._slots = asyncio.Semaphore(self.limits.max_connections_per_cluster)
        self.host = ""
        self._cfg: Configuration | None = None
        self._token: str | None = None  # bearer token of an uploaded kubeconfig (trusted clusters use _cfg)
        self._server_hostname: str | None = None  # tls-server-name of an uploaded kubeconfig
        self._session: aiohttp.ClientSession | None = None
        self._discovery: list[APIResource] | None = None
        self._discovery_at = 0.0
        self._discovery_lock = asyncio.Lock()
        self._discovery_cut = False  # the last discovery passed sync.maxDiscoveredResources
        self._discovery_invalid = 0  # names Kubernetes does not allow in the last discovery

    # ------------------------------------------------------------------ lifecycle

    async def connect(self) -> None:
        """Load the kubeconfig and open the HTTP session. Does not contact the server."""
        if self._session is not None:
            return
        if not self.cluster.trusted:
            spec = kubeconn.read_uploaded(self.name, self.cluster.config_path, self.cluster.context)
            ctx = kubeconn.spec_ssl(self.name, spec, insecure=self.cluster.insecure)
            self.host = spec.server
            self._token = spec.token
            self._server_hostname = spec.tls_server_name if isinstance(ctx, ssl.SSLContext) else None
            self._session = kubeconn.session(ctx)
            return
        cfg = Configuration()
        if self.cluster.config_path is None:
            kubeconn.load_in_cluster(self.name, cfg)
        else:
            await kubeconn.load_kubeconfig(self.name, self.cluster.config_path, self.cluster.context, cfg)
        self._cfg = cfg
        self.host = str(cfg.host).rstrip("/")
        self._session = kubeconn.session(kubeconn.config_ssl(self.name, cfg, insecure=self.cluster.insecure))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _headers(self, content_type: str | None) -> dict[str, str]:
        headers = {"Accept": JSON, "User-Agent": "multicluster/0.1"}
        if self._cfg is None:
            if self._token:
                headers["Authorization"] = f"Bearer {self._token}"
        else:
            auth = await self._cfg.auth_settings()
            if "BearerToken" in auth:
                headers["Authorization"] = auth["BearerToken"]["value"]
            elif self._cfg.username and self._cfg.password:
                headers["Authorization"] = self._cfg.get_basic_auth_token()
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    # ------------------------------------------------------------------ requests

    async def request_bytes(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        content_type: str = JSON,
        timeout: float | None = None,
        impersonate: Mapping[str, str] | None = None,
    ) -> bytes:
        """One request; returns the raw body of a 2xx answer, raises KubeAPIError/ClusterError otherwise.
        `impersonate`: Impersonate-* headers (the request is authorized as that user, see delivery/policy.py)."""
        await self.connect()
        assert self._session is not None
        data: bytes | None = None
        if body is not None:
            data = body if isinstance(body, bytes) else orjson.dumps(body)
        q = {k: _param(v) for k, v in (params or {}).items() if v is not None}
        headers = await self._headers(content_type if data is not None else None)
        headers.update({k: v for k, v in (impersonate or {}).items() if k.startswith("Impersonate-")})
        try:
            async with self._slots, self._session.request(
                method,
                self.host + path,
                params=q,
                data=data,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout or self.request_timeout),
                # An API server never redirects our paths; following one would carry the credentials elsewhere.
                allow_redirects=False,
                server_hostname=self._server_hostname,
            ) as resp:
                raw = await self._body(resp, path)
                if resp.status >= 300:
                    raise self._error(resp.status, raw, resp.headers.get("Retry-After"))
                return raw
        except (aiohttp.ClientError, TimeoutError, OSError, ssl.SSLError) as exc:
            raise ClusterError(self.name, _describe(exc, self.host)) from exc

    async def _body(self, resp: aiohttp.ClientResponse, path: str) -> bytes:
        """The whole body, read as it streams in and never past sync.maxListPageBytes (TooLarge, connection
        closed). Chunks are joined once at the end, as aiohttp's own read() does."""
        limit = self.limits.max_list_page_bytes
        if resp.content_length is not None and resp.content_length > limit:
            resp.close()
            raise self._too_large(f"the answer to GET {path[:200]}", "maxListPageBytes", resp.content_length)
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_any():
            size += len(chunk)
            if size > limit:
                resp.close()
                raise self._too_large(f"the answer to GET {path[:200]}", "maxListPageBytes", size)
            chunks.append(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _too_large(self, what: str, limit: str, size: int) -> TooLarge:
        metrics.MEMBER_LIMITS.labels(self.name, limit).inc()
        return TooLarge(self.name, what, limit, size)

    async def request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        raw = await self.request_bytes(method, path, **kwargs)
        try:
            out = orjson.loads(raw) if raw else {}
        except ValueError as exc:  # failure_summary() tells callers "not a Kubernetes API server's" from the cause
            raise ClusterError(self.name, f"the answer to {method} {path[:200]} is not JSON: {exc}") from exc
        return out if isinstance(out, dict) else {"items": out}

    async def get(self, path: str, **kwargs: Any) -> dict[str, Any]:
        return await self.request("GET", path, **kwargs)

    def _error(self, status: int, raw: bytes, retry_after: str | None) -> KubeAPIError:
        message, reason, body = _status_message(raw, status)
        ra: float | None = None
        if retry_after:
            try:
                ra = float(retry_after)
            except ValueError:
                ra = None
        return kube_error(status, message, reason=reason, cluster=self.name, body=body, retry_after=ra)

    async def watch(self, path: str, params: Mapping[str, Any], *, timeout: float) -> AsyncIterator[WatchEvent]:
        """Stream watch events (one JSON object per line, parsed) until the server closes the stream."""
        lines = self.watch_lines(path, params, timeout=timeout)
        try:
            async for line in lines:
                yield orjson.loads(line)
        finally:
            await lines.aclose()

    async def watch_lines(self, path: str, params: Mapping[str, Any], *,
                          timeout: float) -> AsyncGenerator[bytes, None]:
        """Stream a watch's lines (one JSON event each, not parsed) until the server closes the stream.

        `timeout` bounds silence between events (the server's timeoutSeconds plus slack), so a frozen API
        server or a dead TCP connection is noticed instead of hanging forever. A line longer than
        sync.maxWatchLineBytes ends the watch with TooLarge (the connection is closed, not drained).
        """
        await self.connect()
        assert self._session is not None
        q = {k: _param(v) for k, v in params.items() if v is not None}
        q["watch"] = "true"
        try:
            async with self._session.get(
                self.host + path,
                params=q,
                headers=await self._headers(None),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=timeout),
                allow_redirects=False,
                server_hostname=self._server_hostname,
            ) as resp:
                if resp.status >= 300:
                    raise self._error(resp.status, await self._body(resp, path), resp.headers.get("Retry-After"))
                lines = Lines(self.limits.max_watch_line_bytes)
                async for chunk in resp.content.iter_any():
                    try:
                        for line in lines.feed(chunk):
                            yield line
                    except LineTooLong as exc:
                        resp.close()
                        raise self._too_large(f"a watch line of {path[:200]}", "maxWatchLineBytes", exc.size) from None
                last = lines.rest()
                if last:
                    yield last
        except (aiohttp.ClientError, TimeoutError, OSError, ssl.SSLError) as exc:
            raise ClusterError(self.name, _describe(exc, self.host)) from exc

    # ------------------------------------------------------------------ discovery

    async def server_version(self) -> VersionInfo:
        return cast(VersionInfo, await self.get("/version"))

    async def discover(self, *, refresh: bool = False, max_age: float = 300.0) -> list[APIResource]:
        """Every resource the server serves (all versions; `preferred` marks the group's preferred one)."""
        async with self._discovery_lock:
            fresh = self._discovery is not None and time.monotonic() - self._discovery_at < max_age
            if fresh and not refresh:
                assert self._discovery is not None
                return self._discovery
            try:
                out = await self._discover()
            except (AssertionError, AttributeError, KeyError, TypeError, ValueError) as exc:
                # A member's discovery documents are data: a shape we cannot read is a cluster fault.
                raise ClusterError(self.name, f"discovery answer is malformed ({type(exc).__name__}: "
                                              f"{str(exc)[:200]})") from exc
            self._discovery = out
            self._discovery_at = time.monotonic()
            return out

    async def _discover(self) -> list[APIResource]:
        """One pass over /api and /apis, keeping at most sync.maxDiscoveredResources resource types and reading at
        most as many group-versions (core first, then the groups in the server's order); raises whatever a
        malformed document makes it raise."""
        cap = self.limits.max_discovered_resources
        out: list[APIResource] = []
        invalid: list[str] = []  # names no API server serves: never a path, a row or a metric label here

        def allowed(gv: str) -> bool:
            reason = invalid_group_version(gv)
            if reason is not None:
                invalid.append(reason)
            return reason is None

        core = cast(APIVersions, await self.get("/api"))
        core_versions = [v for v in map(str, core.get("versions") or []) if allowed(v) and "/" not in v]
        groups = cast(APIGroupList, await self.get("/apis"))
        fetches: list[tuple[str, bool]] = []
        for g in groups.get("groups") or []:
            preferred_gv = (g.get("preferredVersion") or {}).get("groupVersion")
            for gv_entry in g.get("versions") or []:
                gv = str(gv_entry["groupVersion"])
                if "/" in gv and allowed(gv):
                    fetches.append((gv, gv == preferred_gv))
        advertised = len(core_versions) + len(fetches)
        for version in core_versions[:cap]:
            out += parse_discovery(version, await self.get(f"/api/{version}"), preferred=True,
                                   limit=cap + 1 - len(out), invalid=invalid)
        fetches = fetches[:max(0, cap - len(core_versions))]
        # A window of maxConnectionsPerCluster at a time, in order: only one window's documents are held at once,
        # and reading stops as soon as the kept types reach the cap.
        window = self.limits.max_connections_per_cluster
        read = min(len(core_versions), cap)
        for start in range(0, len(fetches), window):
            if len(out) > cap:
                break
            part = fetches[start:start + window]
            read += len(part)
            results = await asyncio.gather(*(self.get(f"/apis/{gv}") for gv, _ in part), return_exceptions=True)
            for (gv, pref), res in zip(part, results, strict=True):
                if isinstance(res, BaseException):
                    # An aggregated API that is down (e.g. metrics-server) must not break discovery of the rest.
                    cluster_logger(log, self.name).warning("discovery of %s failed: %s", gv, res)
                    continue
                if len(out) <= cap:
                    out += parse_discovery(gv, res, preferred=pref, limit=cap + 1 - len(out), invalid=invalid)
        self._note_discovery_cut(len(out) > cap or read < advertised, advertised, read, min(len(out), cap))
        self._note_invalid_names(invalid)
        return out[:cap]

    def _note_invalid_names(self, invalid: list[str]) -> None:
        """Warn when discovery names what Kubernetes does not allow (again only when their number changes)."""
        if invalid and len(invalid) != self._discovery_invalid:
            cluster_logger(log, self.name).warning(
                "the cluster's discovery names %d group-versions or resource types Kubernetes does not allow; they "
                "are skipped: %s", len(invalid), "; ".join(invalid[:3]) + ("; ..." if len(invalid) > 3 else ""))
        self._discovery_invalid = len(invalid)

    def _note_discovery_cut(self, cut: bool, advertised: int, read: int, kept: int) -> None:
        """Warn (and count) when discovery is first cut at sync.maxDiscoveredResources, not at every rediscovery."""
        if cut and not self._discovery_cut:
            metrics.MEMBER_LIMITS.labels(self.name, "maxDiscoveredResources").inc()
            cluster_logger(log, self.name).warning(
                "the cluster's discovery is over sync.maxDiscoveredResources (%d): %d of its %d group-versions read, "
                "the first %d resource types kept and the rest left out; raise the limit if the cluster really "
                "serves that many", self.limits.max_discovered_resources, read, advertised, kept)
        self._discovery_cut = cut


def _param(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _describe(exc: BaseException, host: str) -> str:
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return f"timed out talking to {host}"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError | ssl.SSLCertVerificationError):
        return f"TLS verification of {host} failed ({exc}); set insecure: true only if you trust the network"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect to {host}: {exc.os_error.strerror or exc.os_error}"
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return f"connection to {host} was closed"
    return f"{type(exc).__name__} talking to {host}: {exc}"


def failure_summary(exc: BaseException) -> str:
    """What failed, in a few words, for answers to callers who must not see internals: no paths, no TLS library
    text, no remote response body (the log keeps those). `exc` is what a ClusterClient request or connect raised."""
    if isinstance(exc, KubeAPIError):
        try:
            phrase = HTTPStatus(exc.status).phrase
        except ValueError:
            phrase = ""
        return f"the server answered {exc.status} {phrase}".rstrip()
    if isinstance(exc, ConfigError):
        # Raised by _connect_uploaded, whose messages are ours and name no path.
        return exc.message.split(": ", 1)[1] if exc.message.startswith("cluster ") else exc.message
    cause: BaseException | None = exc.__cause__ if isinstance(exc, ClusterError) else exc
    if isinstance(cause, TimeoutError | asyncio.TimeoutError):
        return "the server did not answer in time"
    if isinstance(cause, aiohttp.ClientConnectorCertificateError | ssl.SSLCertVerificationError):
        return "TLS verification failed"
    if isinstance(cause, aiohttp.ClientSSLError | ssl.SSLError):
        return "the TLS handshake failed"
    if isinstance(cause, aiohttp.ClientConnectorError):
        os_error = cause.os_error
        if isinstance(os_error, socket.gaierror):
            return "the server's host name cannot be resolved"
        if os_error.errno == errno.ECONNREFUSED:
            return "connection refused"
        if os_error.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            return "no route to the server"
        return "the connection failed"
    if isinstance(cause, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return "the server closed the connection"
    if isinstance(cause, ValueError):  # orjson.JSONDecodeError: not an API server's answer
        return "the server's answer is not a Kubernetes API server's"
    return "the connection failed"
