"""Serving the API: per-request limits, and deadlines that stop slow clients from holding sockets.

aiohttp closes an idle keep-alive connection after `keepalive_timeout` but has no separate deadline for a
request's head or body: a client that sends its headers a byte at a time (slowloris) or trickles a body keeps
its socket and handler for as long as the keep-alive allows. Three deadlines apply here:

- keep-alive (server.keepaliveSeconds): a connection idle between requests is closed;
- head (server.headerTimeoutSeconds): once the first byte of a request arrives, its whole head must follow in
  time, or the connection is closed (the client has not sent a request yet, so there is nothing to answer);
- body (server.bodyTimeoutSeconds): the body must be complete in time, or the request gets a 408 and the
  connection is closed (see the middleware, which owns the answer).

Each connection's protocol is wrapped by a `_Guard` that watches the bytes arrive; the middleware tells the
guard when a request's head was complete (the handler is about to run) and when it is done.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from typing import Any, cast

from aiohttp import web

from multicluster.config import ServerConfig

_DEFAULTS = ServerConfig()


@dataclass(frozen=True, slots=True)
class Limits:
    """What one request may cost (see ServerConfig for the reasons)."""

    max_page_bytes: int = _DEFAULTS.max_page_bytes
    max_count: int = _DEFAULTS.max_count
    max_selector_terms: int = _DEFAULTS.max_selector_terms
    body_timeout: float = _DEFAULTS.body_timeout_seconds

    @classmethod
    def from_server(cls, server: ServerConfig) -> Limits:
        return cls(max_page_bytes=server.max_page_bytes, max_count=server.max_count,
                   max_selector_terms=server.max_selector_terms, body_timeout=server.body_timeout_seconds)


LIMITS: web.AppKey[Limits] = web.AppKey("limits", Limits)  # absent: the defaults (apps a test serves itself)
GUARDS: web.AppKey[dict[asyncio.BaseTransport, _Guard]] = web.AppKey("guards", dict)


class _Guard(asyncio.Protocol):
    """Wraps aiohttp's protocol for one connection and closes the connection when a request head is late."""

    def __init__(self, inner: asyncio.Protocol, guards: dict[asyncio.BaseTransport, _Guard],
                 header_timeout: float) -> None:
        self._inner = inner
        self._guards = guards
        self._timeout = header_timeout
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._busy = False  # a request's head arrived and its handler has not finished

    # -- the middleware's side

    def request_started(self) -> None:
        self._busy = True
        self._cancel()

    def request_done(self) -> None:
        self._busy = False

    # -- asyncio's side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._guards[transport] = self
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if data and not self._busy and self._timer is None:
            # The first bytes of a request head: the rest of it must arrive before the deadline.
            self._timer = asyncio.get_running_loop().call_later(self._timeout, self._late)
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        if self._transport is not None:
            self._guards.pop(self._transport, None)
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def _late(self) -> None:
        self._timer = None
        if not self._busy and self._transport is not None:
            # No request was ever handed to a handler: nothing to answer, and an answer would only be read by a
            # client that is not reading.
            self._transport.abort()

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class _Factory:
    """The protocol factory asyncio's server calls per connection: aiohttp's, wrapped in a _Guard. Everything
    else (connections, shutdown) is aiohttp's server."""

    def __init__(self, server: web.Server, guards: dict[asyncio.BaseTransport, _Guard],
                 header_timeout: float) -> None:
        self._server = server
        self._guards = guards
        self._timeout = header_timeout

    def __call__(self) -> _Guard:
        return _Guard(self._server(), self._guards, self._timeout)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)


class _Runner(web.AppRunner):
    def __init__(self, app: web.Application, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._header_timeout = header_timeout

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        return cast(web.Server, _Factory(server, self.app[GUARDS], self._header_timeout))


async def start(app: web.Application, server: ServerConfig, ssl_context: ssl.SSLContext | None = None
                ) -> web.AppRunner:
    """Serve `app` on server.bind:server.port with the configured limits and deadlines; cleanup() stops it."""
    app[LIMITS] = Limits.from_server(server)
    app[GUARDS] = {}
    runner = _Runner(app, server.header_timeout_seconds, access_log=None, handle_signals=False,
                     keepalive_timeout=server.keepalive_seconds)
    await runner.setup()
    try:
        site = web.TCPSite(runner, server.bind, server.port, ssl_context=ssl_context, reuse_address=True)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner
