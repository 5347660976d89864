"""Kubernetes `Status` objects: how every error under the Kubernetes-compatible paths is answered.

kubectl and client-go read a failed request's body as a meta/v1 Status and print its message with the reason
(`Error from server (NotFound): pods "web" not found in cluster c1`); a `{error, hint}` body would be printed
as an unknown response. The API middleware still decides the HTTP status of every failure (auth, Host, Origin,
bad parameters, store outages); under the Kubernetes prefix it hands its answer to `from_error` instead, which
keeps the status and folds the hint into the message, so the fix is still shown.
"""

from __future__ import annotations

import orjson
from aiohttp import web
from aiohttp.typedefs import LooseHeaders

from multicluster.types import Status, StatusDetails

# The reasons apimachinery uses for each code (metav1.StatusReason).
REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    408: "Timeout",
    409: "Conflict",
    410: "Expired",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


def status_body(code: int, message: str, details: StatusDetails | None = None) -> Status:
    body: Status = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": REASONS.get(code, "Unknown" if code < 500 else "InternalError"),
        "code": code,
    }
    if details:
        body["details"] = details
    return body


def status_response(code: int, message: str, details: StatusDetails | None = None,
                    headers: LooseHeaders | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(status_body(code, message, details)), status=code,
                        content_type="application/json", headers=headers)


def read_only(method: str, path: str) -> str:
    return (f"the multicluster Kubernetes API is read-only: {method} is not allowed on {path[:300]}; change the "
            "object in its member cluster (or deliver it with a MultiClusterResource on the master)")


def from_error(resp: web.StreamResponse, method: str = "GET", path: str = "") -> web.StreamResponse:
    """The middleware's `{error, hint}` answer as a Status with the same code and headers. The routes under the
    prefix take GET only, so a 405 is always a write verb: it says the API is read-only."""
    if not isinstance(resp, web.Response) or resp.status < 400 or resp.content_type != "application/json":
        return resp
    body = resp.body
    try:
        data = orjson.loads(body if isinstance(body, bytes) else b"")
    except orjson.JSONDecodeError:
        return resp
    if not isinstance(data, dict) or "error" not in data or data.get("kind") == "Status":
        return resp
    message = str(data["error"])
    if resp.status == 405:
        message = read_only(method, path)
    elif data.get("hint"):
        message += f" (hint: {data['hint']})"
    details: StatusDetails = {}
    retry = resp.headers.get("Retry-After", "")
    if retry.isdigit():
        details["retryAfterSeconds"] = int(retry)
    headers = {k: v for k, v in resp.headers.items() if k.lower() in ("www-authenticate", "retry-after")}
    if resp.status == 405:
        headers["Allow"] = "GET"
    out = status_response(resp.status, message, details or None, headers)
    if resp.keep_alive is False:
        out.force_close()
    return out
