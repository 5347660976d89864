"""What the API middleware and the handlers call: the authenticators a daemon was configured with, the identity
of a request, and the read scope of an authenticated user.

A request is authenticated, in this order, by a front-proxy client certificate (the master's API server, via
the APIService), by the daemon's own static tokens (middleware.Access), or by a bearer token the master's
TokenReview accepts (server.auth: kubernetes). Only the first and the last give a User, and a User's reads are
filtered by `scope_of` (see access.py); a static token reads everything, as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aiohttp import web

from multicluster.api.auth.access import Authorizer, Check, Grant, read_scope
from multicluster.api.auth.frontproxy import FrontProxy
from multicluster.api.auth.identity import IDENTITY, User
from multicluster.api.auth.tokens import TokenReviewer
from multicluster.errors import AccessDenied
from multicluster.gvr import GVR
from multicluster.store.base import Store


@dataclass(frozen=True, slots=True)
class Authenticators:
    front_proxy: FrontProxy | None = None  # --apiservice
    tokens: TokenReviewer | None = None  # server.auth: kubernetes
    authorizer: Authorizer | None = None  # either of them


AUTH: web.AppKey[Authenticators] = web.AppKey("auth", Authenticators)


async def identify(request: web.Request, token: bytes | None) -> User | None:
    """The Kubernetes user a request is made by or for, or None (no such credential: the static tokens decide).
    Raises NotAuthenticated for a front-proxy certificate we cannot take a user from, and the master client's
    errors when a TokenReview cannot be made."""
    auth = request.app.get(AUTH)
    if auth is None:
        return None
    user = auth.front_proxy.identity(request) if auth.front_proxy is not None else None
    if user is None and token is not None and auth.tokens is not None:
        user = await auth.tokens.authenticate(token)
    return user


async def require(request: web.Request, check: Check, what: str) -> None:
    """For a request with a Kubernetes identity: AccessDenied unless the master's RBAC allows `check` (routes
    outside the per-object filter, such as /v1/clusters). Nothing to check for the static tokens."""
    user = request.get(IDENTITY)
    if user is None:
        return
    authorizer = request.app[AUTH].authorizer
    if authorizer is None or not await authorizer.allowed(user, check):
        raise AccessDenied(f'User "{user.name[:200]}" cannot {check.verb} {what}',
                           hint=f"ask for `{check.verb}` on {check.resource}.{check.group} on the master, or use the "
                           "daemon's token")


async def scope_of(request: web.Request, store: Store, verb: str, gvr: GVR, *, namespaced: bool, namespace: str,
                   clusters: Sequence[str]) -> Grant | None:
    """Where the request's user may `verb` this type among `clusters`: None for a request without a Kubernetes
    identity (nothing to filter), else a Grant; AccessDenied when the user may read none of it."""
    user = request.get(IDENTITY)
    if user is None:
        return None
    authorizer = request.app[AUTH].authorizer
    if authorizer is None:  # an identity needs an authorizer: build_app's callers configure both or neither
        raise RuntimeError("a request has a Kubernetes identity but the API has no authorizer")

    async def namespaces_of(names: Sequence[str]) -> Sequence[tuple[str, str]]:
        return await store.namespaces(gvr, names)

    return await read_scope(authorizer, user, verb, gvr, namespaced=namespaced, namespace=namespace,
                            clusters=clusters, namespaces_of=namespaces_of)
