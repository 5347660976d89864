"""The one exception hierarchy.

Every boundary translates its failures into one of these exactly once (HTTP → KubeAPIError in kube.py, driver
errors → StoreError in store/, user input → ConfigError/GVRError/QueryError), so callers above a boundary never
need to know which library sat below it. Each error can carry a `hint`: the one sentence that tells a person how
to fix it, shown by the CLI and returned by the API as `{"error", "hint"}`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from multicluster.types import Status


class MulticlusterError(Exception):
    """Base of every error this project raises on purpose."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class ConfigError(MulticlusterError):
    """The configuration file, a flag or an environment variable is wrong."""


class GVRError(MulticlusterError):
    """A resource type spelled by a user cannot be resolved (unknown, excluded, or not listable/watchable)."""

    def __init__(self, message: str, *, hint: str | None = None, matches: list[str] | None = None) -> None:
        super().__init__(message, hint=hint)
        self.matches = matches or []


class QueryError(MulticlusterError):
    """A query parameter is invalid (bad selector, bad continue token, out-of-range limit)."""


class ClusterError(MulticlusterError):
    """A cluster cannot be reached or used; the message always starts with `cluster <name>:`."""

    def __init__(self, cluster: str, reason: str, *, hint: str | None = None) -> None:
        super().__init__(f"cluster {cluster}: {reason}", hint=hint)
        self.cluster = cluster
        self.reason = reason


class KubeAPIError(MulticlusterError):
    """A Kubernetes API server answered with an error status."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        reason: str = "",
        cluster: str = "",
        body: Status | None = None,
        retry_after: float | None = None,
    ) -> None:
        prefix = f"cluster {cluster}: " if cluster else ""
        super().__init__(f"{prefix}{message}")
        self.status = status
        self.reason = reason
        self.cluster = cluster
        self.body = body or {}
        self.retry_after = retry_after


class BadRequest(KubeAPIError):
    """400."""


class Unauthorized(KubeAPIError):
    """401."""


class Forbidden(KubeAPIError):
    """403."""


class NotFound(KubeAPIError):
    """404."""


class Conflict(KubeAPIError):
    """409: resourceVersion conflict, already exists, or a server-side-apply field conflict."""


class Gone(KubeAPIError):
    """410: the requested resourceVersion is older than etcd keeps; the caller must relist."""


class Invalid(KubeAPIError):
    """422: the object failed validation."""


class TooManyRequests(KubeAPIError):
    """429: priority-and-fairness or a rate limit; honour `retry_after`."""


class ServerError(KubeAPIError):
    """5xx."""


_BY_STATUS: dict[int, type[KubeAPIError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Gone,
    422: Invalid,
    429: TooManyRequests,
}


def kube_error(
    status: int,
    message: str,
    *,
    reason: str = "",
    cluster: str = "",
    body: Status | None = None,
    retry_after: float | None = None,
) -> KubeAPIError:
    """Build the KubeAPIError subclass that matches an HTTP status."""
    cls = _BY_STATUS.get(status, ServerError if status >= 500 else KubeAPIError)
    return cls(status, message, reason=reason, cluster=cluster, body=body, retry_after=retry_after)


class StoreError(MulticlusterError):
    """The resource store failed (connection lost, disk full, constraint broken)."""

    def __init__(self, message: str, *, hint: str | None = None, transient: bool = True) -> None:
        super().__init__(message, hint=hint)
        self.transient = transient


class ReconcileError(MulticlusterError):
    """Delivering a MultiClusterResource to one cluster failed; reported on the CR's status, never fatal."""

    def __init__(self, message: str, *, reason: str = "ReconcileError", hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.reason = reason


class MembershipError(MulticlusterError):
    """A join/unjoin request cannot be done; `http_status` says why (400 bad input, 404 unknown, 409 exists)."""

    def __init__(self, message: str, *, status: int = 400, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.http_status = status


class NotAuthenticated(MulticlusterError):
    """A request's credentials cannot be accepted (a front-proxy certificate with a name that is not allowed, a
    proxied request naming no user): answered 401."""


class AccessDenied(MulticlusterError):
    """The authenticated user may read none of what the request asks for: answered 403 (a Forbidden Status under
    the Kubernetes-compatible paths)."""


def yaml_syntax(exc: BaseException) -> str:
    """` at line L, column C: problem` for a YAML parser error, without the source line the parser's own message
    quotes (a kubeconfig's line may hold a token); "" parts are left out when the parser gives no position."""
    mark = getattr(exc, "problem_mark", None)
    at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{at}: {getattr(exc, 'problem', None) or 'invalid YAML'}"
