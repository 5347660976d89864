"""Requests the master's API server proxies to us through the APIService: who sent them, and for whom.

The master's aggregator connects with a client certificate signed by its request-header (front-proxy) CA and
names the user in headers (X-Remote-User, X-Remote-Group, X-Remote-Extra-*: whatever the master's
`--requestheader-*` flags say). The master publishes the CA, the allowed certificate names and the header names
in the ConfigMap kube-system/extension-apiserver-authentication; the daemon re-reads it every `reload_seconds`
(a rotated CA takes effect without a restart).

The TLS server asks every client for a certificate (CERT_OPTIONAL): one signed by the front-proxy CA is verified
in the handshake, a client without one (a bearer token, a probe) connects as before, and one signed by any other
CA fails the handshake. A new CA means a new SSLContext; the SNI callback, which runs in every handshake, moves
each new connection onto the newest one, and a connection verified against an older context is no longer
trusted to name a user. The headers are trusted only on a connection whose certificate passed all of that, so a
client talking to the daemon's port directly cannot claim to be anyone by sending X-Remote-User.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from aiohttp import web

from multicluster.api.auth.identity import User
from multicluster.errors import ConfigError, MulticlusterError, NotAuthenticated

log = logging.getLogger(__name__)

CONFIGMAP_NAMESPACE = "kube-system"
CONFIGMAP_NAME = "extension-apiserver-authentication"


# Reads kube-system/extension-apiserver-authentication's `data` from the master (the daemon supplies it).
ConfigMapReader = Callable[[], Awaitable[Mapping[str, str]]]


@dataclass(frozen=True, slots=True)
class RequestHeaderConfig:
    """The request-header part of the master's authentication ConfigMap."""

    ca_pem: str = field(repr=False)
    allowed_names: frozenset[str] = frozenset()  # empty: any certificate the CA signed (the master's rule too)
    user_headers: tuple[str, ...] = ("X-Remote-User",)
    group_headers: tuple[str, ...] = ("X-Remote-Group",)
    extra_prefixes: tuple[str, ...] = ("X-Remote-Extra-",)


def parse_configmap(data: Mapping[str, str]) -> RequestHeaderConfig:
    """RequestHeaderConfig from the ConfigMap's `data` (list values are JSON arrays)."""
    ca = data.get("requestheader-client-ca-file", "")
    if "BEGIN CERTIFICATE" not in ca:
        raise ConfigError(f"{CONFIGMAP_NAMESPACE}/{CONFIGMAP_NAME} has no requestheader-client-ca-file: the master "
                          "does not authenticate a front proxy",
                          hint="start the master's kube-apiserver with --requestheader-client-ca-file, "
                          "--requestheader-username-headers and --proxy-client-cert-file (docs/deploy.md)")

    def strings(key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        raw = data.get(key)
        if not raw:
            return default
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ConfigError(f"{CONFIGMAP_NAMESPACE}/{CONFIGMAP_NAME}: {key} is not a JSON list: {exc}") from exc
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{CONFIGMAP_NAMESPACE}/{CONFIGMAP_NAME}: {key} is not a list of strings")
        return tuple(value)

    return RequestHeaderConfig(
        ca_pem=ca,
        allowed_names=frozenset(strings("requestheader-allowed-names", ())),
        user_headers=strings("requestheader-username-headers", ()),
        group_headers=strings("requestheader-group-headers", ()),
        extra_prefixes=strings("requestheader-extra-headers-prefix", ()),
    )


class FrontProxy:
    """The daemon's TLS server side of aggregation: the serving contexts and the identity of proxied requests."""

    def __init__(self, cert_file: Path, key_file: Path) -> None:
        self._cert = cert_file
        self._key = key_file
        self.config: RequestHeaderConfig | None = None
        self._current = self._context(None)
        self._base = self._current  # the context the listening socket holds; the SNI callback moves connections

    @property
    def ssl_context(self) -> ssl.SSLContext:
        return self._base

    def _context(self, ca_pem: str | None) -> ssl.SSLContext:
        # Not create_default_context: that trusts the system's CAs for client certificates, and only the master's
        # front-proxy CA may vouch for a user here.
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self._cert, self._key)
        ctx.verify_mode = ssl.CERT_OPTIONAL
        if ca_pem:
            ctx.load_verify_locations(cadata=ca_pem)
        ctx.sni_callback = self._pick
        return ctx

    def _pick(self, conn: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, ctx: ssl.SSLContext) -> None:
        if ctx is not self._current:
            conn.context = self._current

    def update(self, config: RequestHeaderConfig) -> bool:
        """Use this request-header configuration from the next handshake on; True when it changed."""
        if config == self.config:
            return False
        self._current = self._context(config.ca_pem)
        self.config = config
        return True

    def identity(self, request: web.Request) -> User | None:
        """The user a front-proxy request is made for; None when the connection has no client certificate.
        Raises NotAuthenticated for a certificate we cannot accept a user from."""
        transport = request.transport
        conn = transport.get_extra_info("ssl_object") if transport is not None else None
        if conn is None:
            return None
        cert = conn.getpeercert()
        if not cert:
            return None
        config = self.config
        if config is None or conn.context is not self._current:
            raise NotAuthenticated("the client certificate was verified against a front-proxy CA the master no "
                                    "longer publishes", hint="reconnect")
        cn = _common_name(cert)
        if config.allowed_names and cn not in config.allowed_names:
            raise NotAuthenticated(f"client certificate CN {cn[:100]!r} is not one of the master's "
                                    "requestheader-allowed-names",
                                    hint="only the master's API server may present a front-proxy certificate")
        name = next((v for h in config.user_headers for v in request.headers.getall(h, []) if v), "")
        if not name:
            raise NotAuthenticated("a front-proxy request names no user (" + ", ".join(config.user_headers) + ")")
        groups = tuple(v for h in config.group_headers for v in request.headers.getall(h, []) if v)
        extra: dict[str, list[str]] = {}
        for header, value in request.headers.items():
            for prefix in config.extra_prefixes:
                if len(header) > len(prefix) and header.lower().startswith(prefix.lower()):
                    key = urllib.parse.unquote(header[len(prefix):]).lower()
                    extra.setdefault(key, []).append(value)
        return User(name=name, groups=groups, extra=tuple(sorted((k, tuple(v)) for k, v in extra.items())),
                    via="front-proxy")


def _common_name(cert: Mapping[str, object]) -> str:
    subject = cert.get("subject")
    if isinstance(subject, tuple):
        for rdn in subject:
            for attr in rdn:
                if isinstance(attr, tuple) and len(attr) == 2 and attr[0] == "commonName":
                    return str(attr[1])
    return ""


async def keep_current(proxy: FrontProxy, read: ConfigMapReader, every: float) -> None:
    """Re-read the master's request-header configuration every `every` seconds (a supervised task). A failed
    read keeps the configuration in use and is logged; the first successful one is logged at INFO."""
    while True:
        try:
            config = parse_configmap(await read())
        except MulticlusterError as exc:
            log.warning("cannot read the master's front-proxy configuration (%s/%s): %s", CONFIGMAP_NAMESPACE,
                        CONFIGMAP_NAME, exc)
        else:
            if proxy.update(config):
                log.info("front-proxy authentication: CA from %s/%s, allowed names %s, user header %s",
                         CONFIGMAP_NAMESPACE, CONFIGMAP_NAME, sorted(config.allowed_names) or "any",
                         ", ".join(config.user_headers))
        await asyncio.sleep(every)

