"""The identity a request was authenticated as, and the reviews the master answers about identities."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from aiohttp import web

ReviewKind = Literal["tokenreviews", "subjectaccessreviews"]


@dataclass(frozen=True, slots=True)
class User:
    """A Kubernetes user as the master knows it. `via` says how the daemon learned it: a front-proxy request from
    the master's API server, or a bearer token the master vouched for."""

    name: str
    groups: tuple[str, ...] = ()
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()
    uid: str = ""
    via: Literal["front-proxy", "token"] = "token"


class Reviews(Protocol):
    """Creates a review object on the master (POST /apis/authentication.k8s.io/v1/tokenreviews or
    /apis/authorization.k8s.io/v1/subjectaccessreviews) and returns the object the master answered with. Errors
    are the project's own (ClusterError, KubeAPIError): the caller answers 503, never "allowed"."""

    async def review(self, kind: ReviewKind, body: dict[str, Any]) -> dict[str, Any]: ...


# The authenticated Kubernetes user of a request; absent for requests authenticated by a static token (or none).
IDENTITY: web.RequestKey[User] = web.RequestKey("identity", User)
