"""POST /v1/join and DELETE /v1/unjoin: the Go original's runtime membership routes.

Parameters are the Go original's (`cluster`, `insecure`, multipart field `kubeconfig`), plus a JSON body form
(`{"cluster", "kubeconfig", "insecure"}`) and `wait=false` to join a cluster that is not reachable yet. One
deliberate difference: `insecure` defaults to false (the Go original defaults to true, silently skipping TLS
verification for every uploaded kubeconfig).
"""

from __future__ import annotations

from typing import Protocol

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from multicluster.api.middleware import json_response
from multicluster.api.params import bool_param, str_param
from multicluster.errors import MembershipError, QueryError
from multicluster.types import JoinAnswer, UnjoinAnswer

MAX_KUBECONFIG = 1024 * 1024
_JSON_HINT = 'send {"cluster": NAME, "kubeconfig": "<the kubeconfig file as text>", "insecure": false}'


class MembershipBackend(Protocol):
    async def join(self, name: str, kubeconfig: bytes, *, insecure: bool = False,
                   wait: bool = True) -> JoinAnswer: ...

    async def unjoin(self, name: str) -> UnjoinAnswer: ...


# Set by whoever serves join/unjoin (the daemon: its Membership); an app without it answers these routes 501.
MEMBERSHIP: web.AppKey[MembershipBackend] = web.AppKey("membership")


def _membership(request: web.Request) -> MembershipBackend:
    m = request.app.get(MEMBERSHIP)
    if m is None:
        raise web.HTTPNotImplemented(text="cluster membership is not available in this daemon")
    return m


async def _read_body(request: web.Request) -> tuple[str | None, bytes, bool | None]:
    """(cluster, kubeconfig bytes, insecure) from a multipart upload, a JSON body, or a raw YAML body."""
    ctype = request.content_type
    if ctype.startswith("multipart/"):
        kubeconfig = b""
        try:
            reader = await request.multipart()
            async for part in reader:
                if getattr(part, "name", None) == "kubeconfig":
                    kubeconfig = bytes(await part.read(decode=False))  # type: ignore[union-attr]
                    if len(kubeconfig) > MAX_KUBECONFIG:
                        raise MembershipError("the kubeconfig is larger than 1 MiB")
        except (ValueError, HttpProcessingError) as exc:
            # aiohttp: no boundary, a boundary that never appears, a truncated part, a part with invalid headers.
            # The parser's own text quotes the request (headers, boundary); a short category is all the caller needs.
            detail = "a part has invalid headers" if isinstance(exc, HttpProcessingError) else "it is malformed"
            raise QueryError(f"the multipart body cannot be parsed: {detail}",
                             hint="send multipart/form-data with the file in a field named kubeconfig") from None
        if not kubeconfig:
            raise MembershipError("the upload has no `kubeconfig` field",
                                  hint="send multipart/form-data with the file in a field named kubeconfig")
        return None, kubeconfig, None
    raw = await request.read()
    if ctype == "application/json":
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            # Position only: orjson's message is short, but a body is the caller's kubeconfig and never echoed.
            at = f" (line {exc.lineno}, column {exc.colno})" if exc.lineno else ""
            raise QueryError(f"the JSON body cannot be parsed{at}", hint=_JSON_HINT) from None
        if not isinstance(body, dict):
            raise QueryError("the JSON body must be an object: {cluster, kubeconfig, insecure}", hint=_JSON_HINT)
        kc = body.get("kubeconfig")
        if not isinstance(kc, str):
            raise MembershipError("`kubeconfig` must be the kubeconfig file's text", hint=_JSON_HINT)
        cluster = body.get("cluster")
        insecure = body.get("insecure")
        return (str(cluster) if cluster is not None else None, kc.encode(),
                bool(insecure) if isinstance(insecure, bool) else None)
    return None, raw, None


async def join(request: web.Request) -> web.StreamResponse:
    """POST /v1/join?cluster=NAME[&insecure=false][&wait=true]."""
    body_cluster, kubeconfig, body_insecure = await _read_body(request)
    name = str_param(request.query, "cluster") or body_cluster or ""
    insecure = bool_param(request.query, "insecure", body_insecure if body_insecure is not None else False)
    wait = bool_param(request.query, "wait", True)
    result = await _membership(request).join(name, kubeconfig, insecure=insecure, wait=wait)
    return json_response(result)


async def unjoin(request: web.Request) -> web.StreamResponse:
    """DELETE /v1/unjoin?cluster=NAME."""
    name = str_param(request.query, "cluster") or ""
    if not name:
        raise MembershipError("cluster name is empty", hint="pass ?cluster=NAME")
    return json_response(await _membership(request).unjoin(name))
