"""A user's own Kubernetes bearer token on the daemon's port (server.auth: kubernetes), checked with a TokenReview
against the master.

The token itself is never kept: the cache key is its SHA-256, and neither the token nor the digest reaches a log
line. A token the master rejects is remembered for a shorter time than one it accepts, so a user who just got a
new token waits seconds, not minutes.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from multicluster.api.auth.cache import ExpiringCache
from multicluster.api.auth.identity import Reviews, User

log = logging.getLogger(__name__)

_NOBODY = User(name="")  # the cached answer for a token the master rejected


class TokenReviewer:
    def __init__(self, reviews: Reviews, *, ttl: float = 10.0, negative_ttl: float = 2.0,
                 max_entries: int = 4096, audiences: tuple[str, ...] = ()) -> None:
        self._reviews = reviews
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.audiences = audiences
        self.cache: ExpiringCache[bytes, User] = ExpiringCache(max_entries)

    async def authenticate(self, token: bytes) -> User | None:
        """The user the master says this token belongs to, or None when it does not know the token. Raises the
        client's error when the master cannot be asked (the caller answers 503: not knowing is not "no")."""
        key = hashlib.sha256(token).digest()
        user = await self.cache.get_or_load(key, lambda: self._review(token),
                                            lambda u: self.ttl if u.name else self.negative_ttl)
        return user if user.name else None

    async def _review(self, token: bytes) -> User:
        spec: dict[str, Any] = {"token": token.decode("utf-8", "replace")}
        if self.audiences:
            spec["audiences"] = list(self.audiences)
        answer = await self._reviews.review("tokenreviews", {
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec})
        status = answer.get("status") or {}
        if not isinstance(status, dict) or not status.get("authenticated"):
            return _NOBODY
        info = status.get("user") or {}
        if not isinstance(info, dict) or not isinstance(info.get("username"), str) or not info["username"]:
            return _NOBODY
        return User(name=info["username"], groups=_strings(info.get("groups")), extra=_extra(info.get("extra")),
                    uid=str(info.get("uid") or ""), via="token")


def _strings(value: object) -> tuple[str, ...]:
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()


def _extra(value: object) -> tuple[tuple[str, tuple[str, ...]], ...]:
    if not isinstance(value, dict):
        return ()
    return tuple(sorted((str(k), _strings(v)) for k, v in value.items()))
