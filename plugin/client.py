"""HTTP client for the daemon's query API — the plugin never talks to Kubernetes itself.

Synchronous stdlib urllib on purpose: a kubectl plugin is a short-lived process where import time is most of
the latency. Paging follows continue tokens, so page n+1 can only be asked for once page n is in; resources()
asks for it on a background thread while the caller prints page n, so the server's time and the printing
overlap, and at most two pages are held at once. Every failure becomes a PluginError subclass with a message that
says what to do: an unreachable server names the address *and where it came from* (--server, the environment,
or the config file), because "connection refused" alone never tells a user which of the three to fix.
"""

from __future__ import annotations

import os
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import orjson

from multicluster.cliconfig import DEFAULT_HOST, DEFAULT_PORT, config_path, load_cli_config
from multicluster.errors import MulticlusterError

# Types only: importing multicluster.types would be start-up time of `kubectl multicluster list`.
if TYPE_CHECKING:
    from multicluster.types import ClusterInfo, KubeObject, ResourcesPage

ENV_SERVER = "MULTICLUSTER_SERVER"
ENV_TOKEN = "MULTICLUSTER_TOKEN"
ENV_ADMIN_TOKEN = "MULTICLUSTER_ADMIN_TOKEN"
PAGE_SIZE = 500


class PluginError(MulticlusterError):
    """Anything the plugin reports as one red line (and an optional hint)."""


class Unreachable(PluginError):
    """No HTTP answer from the API server."""


class ApiError(PluginError):
    """The API answered with an error status; message and hint are the server's."""

    def __init__(self, status: int, message: str, *, hint: str | None = None, matches: list[str] | None = None,
                 body: dict[str, Any] | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.matches = matches or []
        self.body = body or {}


@dataclass(frozen=True, slots=True)
class Endpoint:
    url: str  # http://host:port, no trailing slash
    source: str  # where the URL came from, for error messages
    token: str | None = field(default=None, repr=False)


def _normalise(url: str) -> str:
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise PluginError(f'"{url}" is not a server address', hint="use http://HOST:PORT, e.g. http://localhost:31888")
    return url


def find_endpoint(server: str | None = None, token: str | None = None, *, admin: bool = False,
                  admin_token: str | None = None) -> Endpoint:
    """--server, then $MULTICLUSTER_SERVER, then the CLI config file, then http://localhost:31888.

    The token: --token, $MULTICLUSTER_TOKEN, the file's `token:`. With admin=True (join/unjoin) the admin token
    comes first when there is one (--admin-token, $MULTICLUSTER_ADMIN_TOKEN, the file's `adminToken:`): a daemon
    without server.adminToken accepts the read token there, one with it accepts only the admin token."""
    env_server = os.environ.get(ENV_SERVER)
    cfg = None
    path = config_path()
    if (not server and not env_server) or not (token or os.environ.get(ENV_TOKEN)) or admin:
        cfg = load_cli_config(path)
    if server:
        url, source = _normalise(server), "the --server flag"
    elif env_server:
        url, source = _normalise(env_server), f"${ENV_SERVER}"
    elif cfg is not None:
        url, source = cfg.server_url, f"the config file {path}"
    else:
        url, source = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}", f"the default (no config file at {path})"
    tok = token or os.environ.get(ENV_TOKEN) or (cfg.token if cfg else None)
    if admin:
        tok = admin_token or os.environ.get(ENV_ADMIN_TOKEN) or (cfg.admin_token if cfg else None) or tok
    return Endpoint(url, source, tok)


class _Ahead:
    """One call run on a daemon thread from the start; result() waits for it and returns or raises its outcome.

    A daemon thread, so a command that stops reading pages (--limit reached, a closed pipe, Ctrl-C) exits
    without waiting for a page it no longer needs."""

    def __init__(self, fn: Callable[[list[tuple[str, str]]], ResourcesPage],
                 arg: list[tuple[str, str]]) -> None:
        self._value: ResourcesPage | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn, arg), daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[[list[tuple[str, str]]], ResourcesPage], arg: list[tuple[str, str]]) -> None:
        try:
            self._value = fn(arg)
        except BaseException as exc:  # handed to the reader, who raises it where the page is wanted
            self._error = exc

    def result(self) -> ResourcesPage:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._value is not None
        return self._value


class Client:
    def __init__(self, endpoint: Endpoint, *, timeout: float = 60.0) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        # An explicit opener: honours http(s)_proxy/no_proxy like kubectl, but never shares global state.
        self._opener = urllib.request.build_opener()

    def get_raw(self, path: str, params: Sequence[tuple[str, str]] = (), *, accept: str = "application/json") -> bytes:
        return self.send("GET", path, params, accept=accept)

    def send(self, method: str, path: str, params: Sequence[tuple[str, str]] = (), *, body: bytes | None = None,
             content_type: str | None = None, accept: str = "application/json") -> bytes:
        url = self.endpoint.url + path
        if params:
            url += "?" + urllib.parse.urlencode(list(params))
        headers = {"Accept": accept, "User-Agent": "kubectl-multicluster"}
        if self.endpoint.token:
            headers["Authorization"] = f"Bearer {self.endpoint.token}"
        if content_type:
            headers["Content-Type"] = content_type
        req = urllib.request.Request(url, data=body, headers=headers, method=method)  # noqa: S310 - http(s) only
        try:
            with self._opener.open(req, timeout=self.timeout) as resp:
                data: bytes = resp.read()
                return data
        except urllib.error.HTTPError as exc:
            raise self._api_error(exc) from None
        except (urllib.error.URLError, OSError) as exc:
            raise self._unreachable(exc, self.timeout) from None

    def _unreachable(self, exc: OSError, timeout: float) -> Unreachable:
        """The daemon could not be reached: why, and where its address came from."""
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, TimeoutError):
            what = f"timed out after {timeout:g}s"
        else:
            what = getattr(reason, "strerror", None) or str(reason)
        return Unreachable(
            f"cannot reach the multicluster API at {self.endpoint.url} ({what}); "
            f"the address came from {self.endpoint.source}",
            hint="start the daemon with `multicluster run`, or point --server / $MULTICLUSTER_SERVER "
            "(or the config file) at a running one",
        )

    def _api_error(self, exc: urllib.error.HTTPError) -> ApiError:
        try:
            raw = exc.read()
        except OSError:
            raw = b""
        try:
            body = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            body = {}
        if isinstance(body, dict) and body.get("error"):
            matches = body.get("matches")
            return ApiError(exc.code, str(body["error"]), hint=body.get("hint") or None,
                            matches=[str(m) for m in matches] if isinstance(matches, list) else None, body=body)
        text = raw[:200].decode("utf-8", "replace").strip()
        return ApiError(exc.code, f"{self.endpoint.url} answered HTTP {exc.code}" + (f": {text}" if text else ""),
                        hint="is this address really the multicluster API?")

    def get_json(self, path: str, params: Sequence[tuple[str, str]] = ()) -> Any:
        raw = self.get_raw(path, params)
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise PluginError(f"{self.endpoint.url}{path} did not answer JSON",
                              hint="is this address really the multicluster API?") from None

    def resources(
        self,
        gvr: str,
        *,
        clusters: Sequence[str] = (),
        namespaces: Sequence[str] = (),
        name: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int = 0,
        page_size: int = PAGE_SIZE,
    ) -> Iterator[ResourcesPage]:
        """Walk GET /v1/resources page by page; `limit` caps the total (0 = everything)."""
        base: list[tuple[str, str]] = [("gvr", gvr)]
        base += [("cluster", c) for c in clusters]
        base += [("namespace", n) for n in namespaces]
        if name:
            base.append(("name", name))
        if label_selector:
            base.append(("labelSelector", label_selector))
        if field_selector:
            base.append(("fieldSelector", field_selector))

        def params(token: str | None, seen: int) -> list[tuple[str, str]]:
            size = min(page_size, limit - seen) if limit else page_size
            return [*base, ("limit", str(size)), *([("continue", token)] if token else [])]

        page = self._resource_page(params(None, 0))
        seen = 0
        while True:
            seen += len(page.get("items") or [])
            token = page.get("continue")
            more = bool(token) and not (limit and seen >= limit)
            ahead = _Ahead(self._resource_page, params(str(token), seen)) if more else None
            yield page
            if ahead is None:
                return
            page = ahead.result()

    def _resource_page(self, params: list[tuple[str, str]]) -> ResourcesPage:
        page = self.get_json("/v1/resources", params)
        if not isinstance(page, dict):
            raise PluginError("unexpected answer from /v1/resources", hint="is the daemon up to date?")
        return cast("ResourcesPage", page)

    def open_stream(self, path: str, params: Sequence[tuple[str, str]], headers: dict[str, str],
                    timeout: float) -> Any:
        """A streaming GET (Server-Sent Events): the open response, read line by line. `timeout` bounds each
        read, so a connection that went silent (no event and no heartbeat) ends as an OSError. Errors as
        send() raises them."""
        url = self.endpoint.url + path + "?" + urllib.parse.urlencode(list(params))
        hdrs = {"Accept": "text/event-stream", "User-Agent": "kubectl-multicluster", **headers}
        if self.endpoint.token:
            hdrs["Authorization"] = f"Bearer {self.endpoint.token}"
        req = urllib.request.Request(url, headers=hdrs, method="GET")  # noqa: S310 - http(s) only
        try:
            return self._opener.open(req, timeout=timeout)
        except urllib.error.HTTPError as exc:
            raise self._api_error(exc) from None
        except (urllib.error.URLError, OSError) as exc:
            raise self._unreachable(exc, timeout) from None

    def get_object(self, cluster: str, gvr: str, namespace: str, name: str) -> KubeObject:
        """GET /v1/resources/{cluster}/{gvr}/{namespace}/{name} (`namespace` "" = cluster-scoped)."""
        q = urllib.parse.quote
        path = f"/v1/resources/{q(cluster, safe='')}/{q(gvr)}/{q(namespace or '_', safe='')}/{q(name, safe='')}"
        obj = self.get_json(path)
        if not isinstance(obj, dict):
            raise PluginError(f"unexpected answer from {path}", hint="is the daemon up to date?")
        return cast("KubeObject", obj)

    def clusters(self) -> list[ClusterInfo]:
        data = self.get_json("/v1/clusters")
        return list(data.get("clusters") or []) if isinstance(data, dict) else []
