"""Uploaded kubeconfigs are data, never code: an allow-list parser for the kubeconfigs of joined clusters.

kubernetes_asyncio's loader does everything a kubeconfig may ask for: it runs `exec` and `auth-provider`
commands, reads `tokenFile` and certificate paths, and follows proxies. For a kubeconfig the operator put in
config.yaml that is wanted (cloud login helpers); for one uploaded through `POST /v1/join` it would let whoever can
reach the API run commands on the daemon's host and read its files. So an upload is parsed here, with
yaml.safe_load, into a ConnectionSpec built only from keys that describe a connection by value: the server URL,
inline CA and client-certificate data, TLS options and a bearer token. Any other key in the selected context,
cluster or user is refused with its path (`users[0].user.exec`) and how to fix the file; entries the context does
not select are never read. Error messages never quote values: a kubeconfig holds credentials.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import yaml

from multicluster.errors import MembershipError, yaml_syntax

_INLINE = (
    "inline the credential: `kubectl config view --minify --flatten --raw` and use a token or client-certificate-data"
)
_NO_COMMANDS = (
    "uploaded kubeconfigs cannot run commands; create a service-account token for the daemon "
    "(`kubectl create token NAME`, or a token Secret) and put it in `token`"
)
_REFUSED_HINTS: dict[str, str] = {
    "exec": _NO_COMMANDS,
    "auth-provider": _NO_COMMANDS,
    "tokenFile": "uploaded kubeconfigs cannot name files on the daemon's host; " + _INLINE,
    "certificate-authority": "uploaded kubeconfigs cannot name files on the daemon's host; use "
    "certificate-authority-data (`kubectl config view --minify --flatten --raw` inlines it)",
    "client-certificate": "uploaded kubeconfigs cannot name files on the daemon's host; " + _INLINE,
    "client-key": "uploaded kubeconfigs cannot name files on the daemon's host; " + _INLINE,
    "proxy-url": "uploaded kubeconfigs cannot route through a proxy; the daemon connects to `server` directly",
    "username": "basic authentication is not accepted; use a token or client-certificate-data",
    "password": "basic authentication is not accepted; use a token or client-certificate-data",
    "as": "impersonation is not accepted in an uploaded kubeconfig; give the credential itself the rights it needs",
    "as-uid": "impersonation is not accepted in an uploaded kubeconfig; give the credential itself the rights it needs",
    "as-groups": "impersonation is not accepted in an uploaded kubeconfig; give the credential itself the rights "
    "it needs",
    "as-user-extra": "impersonation is not accepted in an uploaded kubeconfig; give the credential itself the "
    "rights it needs",
}

_TOP_KEYS = ("apiVersion", "kind", "preferences", "extensions", "clusters", "users", "contexts", "current-context")
_CLUSTER_KEYS = ("server", "certificate-authority-data", "insecure-skip-tls-verify", "tls-server-name", "extensions")
_USER_KEYS = ("token", "client-certificate-data", "client-key-data", "extensions")
_CONTEXT_KEYS = ("cluster", "user", "namespace", "extensions")
_NOT_A_KUBECONFIG_HINT = (
    "a kubeconfig is YAML with clusters, users and contexts, as written by `kubectl config view --raw`"
)


class KubeconfigError(MembershipError):
    """An uploaded kubeconfig is refused (400). `key_path` names the offending key when there is one."""

    def __init__(self, message: str, *, key_path: str = "", hint: str | None = None) -> None:
        super().__init__(message, status=400, hint=hint)
        self.key_path = key_path


@dataclass(frozen=True, slots=True)
class ConnectionSpec:
    """How to reach one API server, by value only. Secrets stay out of repr."""

    server: str
    context: str
    ca_data: bytes | None = None  # PEM
    insecure_skip_tls_verify: bool = False
    tls_server_name: str | None = None
    token: str | None = field(default=None, repr=False)
    client_cert_data: bytes | None = field(default=None, repr=False)  # PEM
    client_key_data: bytes | None = field(default=None, repr=False)  # PEM

    def to_yaml(self) -> bytes:
        """A minimal kubeconfig holding exactly this spec (what the state dir keeps for a joined cluster)."""
        cluster: dict[str, Any] = {"server": self.server}
        if self.ca_data is not None:
            cluster["certificate-authority-data"] = base64.b64encode(self.ca_data).decode()
        if self.insecure_skip_tls_verify:
            cluster["insecure-skip-tls-verify"] = True
        if self.tls_server_name:
            cluster["tls-server-name"] = self.tls_server_name
        user: dict[str, Any] = {}
        if self.token is not None:
            user["token"] = self.token
        if self.client_cert_data is not None and self.client_key_data is not None:
            user["client-certificate-data"] = base64.b64encode(self.client_cert_data).decode()
            user["client-key-data"] = base64.b64encode(self.client_key_data).decode()
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": self.context, "cluster": cluster}],
            "users": [{"name": self.context, "user": user}],
            "contexts": [{"name": self.context, "context": {"cluster": self.context, "user": self.context}}],
            "current-context": self.context,
        }
        return yaml.safe_dump(doc, sort_keys=False).encode()


def _key(k: object) -> str:
    """A key as it may appear in a message: keys are chosen by the uploader, so keep them short and printable."""
    s = str(k)
    s = "".join(c if c.isprintable() else "?" for c in s)
    return s if len(s) <= 60 else s[:57] + "..."


def _refuse(where: str, key: object, allowed: tuple[str, ...]) -> KubeconfigError:
    k = _key(key)
    path = f"{where}.{k}" if where else k
    hint = _REFUSED_HINTS.get(k)
    if hint is not None:
        return KubeconfigError(
            f"the kubeconfig uses `{path}`, which an uploaded kubeconfig may not", key_path=path, hint=hint
        )
    shown = ", ".join(a for a in allowed if a != "extensions")
    return KubeconfigError(
        f"the kubeconfig has an unsupported key `{path}`",
        key_path=path,
        hint=f"an uploaded kubeconfig may use only {shown} here; {_INLINE}",
    )


def _check_keys(where: str, data: Mapping[Any, Any], allowed: tuple[str, ...]) -> None:
    for k in data:
        if k not in allowed:
            raise _refuse(where, k, allowed)


def _str(where: str, value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise KubeconfigError(f"the kubeconfig's `{where}` must be {what}", key_path=where)
    return value


def _b64(where: str, value: Any, what: str) -> bytes:
    text = _str(where, value, f"base64-encoded {what}")
    try:
        raw = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise KubeconfigError(
            f"the kubeconfig's `{where}` is not valid base64",
            key_path=where,
            hint=f"it holds the base64 of the PEM {what}, as `kubectl config view --raw` shows it",
        ) from None
    if not raw:
        raise KubeconfigError(f"the kubeconfig's `{where}` is empty", key_path=where)
    return raw


def _find(doc: Mapping[Any, Any], section: str, payload: str, name: str, ref: str) -> tuple[str, Mapping[Any, Any]]:
    """(path, payload mapping) of the first entry called `name` in `section` (kubectl's first-wins rule)."""
    entries = doc.get(section)
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        raise KubeconfigError(
            f"the kubeconfig's `{section}` must be a list", key_path=section, hint=_NOT_A_KUBECONFIG_HINT
        )
    names: list[str] = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            continue
        if entry.get("name") == name:
            where = f"{section}[{i}]"
            _check_keys(where, entry, ("name", payload))
            body = entry.get(payload)
            if body is None:
                body = {}
            if not isinstance(body, dict):
                raise KubeconfigError(
                    f"the kubeconfig's `{where}.{payload}` must be a mapping", key_path=f"{where}.{payload}"
                )
            return f"{where}.{payload}", body
        names.append(_key(entry.get("name")))
    raise KubeconfigError(
        f'the kubeconfig\'s `{ref}` names "{_key(name)}", which is not in `{section}`',
        key_path=ref,
        hint=f"entries in `{section}`: {', '.join(names) or 'none'}",
    )


def _server(where: str, value: Any) -> str:
    server = _str(where, value, "the API server's URL").strip()
    try:
        parts = urlsplit(server)
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        parts, port_ok = None, False
    if parts is None or parts.scheme not in ("https", "http") or not parts.hostname or not port_ok:
        raise KubeconfigError(
            f"the kubeconfig's `{where}` must be an https:// (or http://) URL of the API server",
            key_path=where,
            hint="e.g. https://203.0.113.10:6443, as `kubectl config view --minify` shows it",
        )
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
        raise KubeconfigError(
            f"the kubeconfig's `{where}` must not carry credentials, a query or a fragment", key_path=where
        )
    return server.rstrip("/")


def parse_kubeconfig(text: bytes | str, context: str | None = None) -> ConnectionSpec:
    """Parse an uploaded kubeconfig into a ConnectionSpec; raise KubeconfigError (400) for anything else."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise KubeconfigError(
                "the kubeconfig is not UTF-8 text, so it is not a kubeconfig", hint=_NOT_A_KUBECONFIG_HINT
            ) from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise KubeconfigError(
            f"the upload is not a kubeconfig (YAML error{yaml_syntax(exc)})", hint=_NOT_A_KUBECONFIG_HINT
        ) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("clusters"), list) or not doc.get("contexts"):
        raise KubeconfigError(
            "the upload is not a kubeconfig (it needs `clusters:` and `contexts:` lists)", hint=_NOT_A_KUBECONFIG_HINT
        )
    _check_keys("", doc, _TOP_KEYS)
    wanted = context if context is not None else doc.get("current-context")
    if not wanted:
        raise KubeconfigError(
            "the kubeconfig has no `current-context`",
            key_path="current-context",
            hint="set current-context to the context the daemon should use",
        )
    wanted = _str("current-context", wanted, "a context name")
    ctx_where, ctx = _find(doc, "contexts", "context", wanted, "current-context" if context is None else "context")
    _check_keys(ctx_where, ctx, _CONTEXT_KEYS)
    cluster_name = _str(f"{ctx_where}.cluster", ctx.get("cluster"), "the name of an entry in `clusters`")
    cl_where, cl = _find(doc, "clusters", "cluster", cluster_name, f"{ctx_where}.cluster")
    _check_keys(cl_where, cl, _CLUSTER_KEYS)
    user: Mapping[Any, Any] = {}
    us_where = ""
    if ctx.get("user") is not None:
        user_name = _str(f"{ctx_where}.user", ctx.get("user"), "the name of an entry in `users`")
        us_where, user = _find(doc, "users", "user", user_name, f"{ctx_where}.user")
        _check_keys(us_where, user, _USER_KEYS)

    server = _server(f"{cl_where}.server", cl.get("server"))
    ca = (
        _b64(f"{cl_where}.certificate-authority-data", cl["certificate-authority-data"], "CA certificate")
        if cl.get("certificate-authority-data") is not None
        else None
    )
    insecure = cl.get("insecure-skip-tls-verify", False)
    if not isinstance(insecure, bool):
        raise KubeconfigError(
            f"the kubeconfig's `{cl_where}.insecure-skip-tls-verify` must be true or false",
            key_path=f"{cl_where}.insecure-skip-tls-verify",
        )
    sni = cl.get("tls-server-name")
    if sni is not None:
        sni = _str(f"{cl_where}.tls-server-name", sni, "a host name")
    token = user.get("token")
    if token is not None:
        # No value in the message: a wrongly typed token is still a credential.
        if not isinstance(token, str) or not token.strip() or any(c in token.strip() for c in "\r\n"):
            raise KubeconfigError(
                f"the kubeconfig's `{us_where}.token` must be a non-empty one-line string", key_path=f"{us_where}.token"
            )
        token = token.strip()
    cert = user.get("client-certificate-data")
    key = user.get("client-key-data")
    if (cert is None) != (key is None):
        missing = "client-key-data" if key is None else "client-certificate-data"
        raise KubeconfigError(
            f"the kubeconfig's `{us_where}` has a client certificate or key without its pair: `{missing}` is missing",
            key_path=f"{us_where}.{missing}",
            hint="give both client-certificate-data and client-key-data, or use a token",
        )
    cert_pem = _b64(f"{us_where}.client-certificate-data", cert, "client certificate") if cert is not None else None
    key_pem = _b64(f"{us_where}.client-key-data", key, "client key") if key is not None else None
    return ConnectionSpec(
        server=server,
        context=wanted,
        ca_data=ca,
        insecure_skip_tls_verify=insecure,
        tls_server_name=sni,
        token=token,
        client_cert_data=cert_pem,
        client_key_data=key_pem,
    )
