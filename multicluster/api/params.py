"""Query-string parsing and continue tokens for the HTTP API.

Every parameter is validated here and turned into typed values or a QueryError that names the parameter, so
handlers only assemble a store Query (which the store binds as SQL parameters; nothing here builds SQL).

Continue tokens are urlsafe base64 (unpadded) of JSON `{"v": 1, "a": [last sort key...], "f": fingerprint}`.
The fingerprint hashes every filter and the order (not the page size), so a token replayed with different
filters is refused instead of silently skipping or repeating rows. The token is not secret and needs no
signature: it only carries a sort key the client has already seen, which the store binds as a parameter.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from typing import Any, cast, get_args

import orjson

from multicluster.errors import QueryError
from multicluster.selectors import format_requirements
from multicluster.store.base import Query, SortOrder

MAX_PARAM_BYTES = 4096
MAX_QUERY_BYTES = 16384
ORDERS: tuple[str, ...] = get_args(SortOrder)
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


def check_sizes(query: Mapping[str, str]) -> None:
    """Refuse oversized parameters before anything parses them (the middleware maps a long URL to 414)."""
    for key, value in query.items():
        if len(key.encode()) > MAX_PARAM_BYTES or len(value.encode()) > MAX_PARAM_BYTES:
            raise QueryError(
                f"parameter {key[:64]!s}: value is too long ({len(value.encode())} bytes; max {MAX_PARAM_BYTES})",
                hint="no name, selector or token needs more than 4 KB; check how the URL was built",
            )


def check_terms(name: str, count: int, limit: int) -> None:
    """Refuse a selector (or list of clusters, namespaces) with more terms than server.maxSelectorTerms: each
    term is a join or a bound parameter in the store's query."""
    if count > limit:
        raise QueryError(f"parameter {name}: {count} terms is more than the limit of {limit}",
                         hint="narrow the query (a set-based selector like `key in (a,b)` counts one term per "
                         "value), or raise server.maxSelectorTerms in the daemon's config")


def int_param(query: Mapping[str, str], name: str, default: int, *, minimum: int = 0,
              maximum: int | None = None) -> int:
    raw = query.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip(), 10)
    except ValueError:
        raise QueryError(f'parameter {name}: "{raw[:64]}" is not an integer',
                         hint=f"pass a whole number, e.g. {name}={default}") from None
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise QueryError(f"parameter {name}: {value} is out of range (must be {bounds})",
                         hint="page through larger results with the continue token" if maximum
                         else f"use {minimum} or more")
    return value


def bool_param(query: Mapping[str, str], name: str, default: bool = False) -> bool:
    raw = query.get(name)
    if raw is None:
        return default
    low = raw.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise QueryError(f'parameter {name}: "{raw[:64]}" is not a boolean', hint=f"use {name}=true or {name}=false")


def multi_param(query: Any, name: str) -> tuple[str, ...]:
    """A repeatable parameter; each occurrence may also be comma-separated (`cluster=a,b&cluster=c`)."""
    out: list[str] = []
    for raw in query.getall(name, []):
        out += [p.strip() for p in str(raw).split(",") if p.strip()]
    return tuple(dict.fromkeys(out))


def str_param(query: Mapping[str, str], name: str) -> str | None:
    raw = query.get(name)
    return raw if raw else None


def required(query: Mapping[str, str], name: str, example: str) -> str:
    raw = (query.get(name) or "").strip()
    if not raw:
        raise QueryError(f"parameter {name} is required", hint=f"e.g. ?{name}={example}")
    return raw


def order_param(query: Mapping[str, str], default: SortOrder = "cluster") -> SortOrder:
    raw = (query.get("order") or "").strip()
    if not raw:
        return default
    if raw not in ORDERS:
        raise QueryError(f'parameter order: "{raw[:64]}" is not a sort order', hint="use one of: " + ", ".join(ORDERS))
    return cast(SortOrder, raw)


def _key_len(order: SortOrder) -> int:
    return 4 if order in ("created", "-created") else 3


def fingerprint(q: Query) -> str:
    """A short hash of everything that decides which rows a query matches and in what order."""
    doc = [
        str(q.gvr),
        sorted(q.clusters),
        sorted(q.namespaces),
        q.name,
        q.name_prefix,
        q.name_contains,
        format_requirements(q.labels),
        format_requirements(q.fields),
        q.order,
    ]
    return hashlib.sha256(orjson.dumps(doc)).hexdigest()[:16]


def encode_continue(q: Query, after: tuple[str, ...], resource_version: str = "") -> str:
    """`resource_version`: what the first page answered (the Kubernetes-compatible API), carried to the next."""
    data: dict[str, Any] = {"v": 1, "a": list(after), "f": fingerprint(q)}
    if resource_version:
        data["r"] = resource_version
    return base64.urlsafe_b64encode(orjson.dumps(data)).rstrip(b"=").decode()


def continue_resource_version(token: str) -> str:
    """The resourceVersion a continue token carries ("" if none, or if the token is malformed: decode_continue
    is the one that says so)."""
    try:
        padded = token.strip() + "=" * (-len(token.strip()) % 4)
        data = orjson.loads(base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        return ""
    rv = data.get("r") if isinstance(data, dict) else None
    return rv if isinstance(rv, str) else ""


_BAD_TOKEN_HINT = (
    "pass the `continue` value of the previous response unchanged, or drop it to start from the first page"
)


def decode_continue(token: str, q: Query) -> tuple[str, ...]:
    """The sort key to resume after; QueryError when the token is malformed or belongs to another query."""
    try:
        padded = token.strip() + "=" * (-len(token.strip()) % 4)
        raw = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
        data = orjson.loads(raw)
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        raise QueryError("parameter continue: the token is malformed", hint=_BAD_TOKEN_HINT) from None
    if not isinstance(data, dict) or data.get("v") != 1 or not isinstance(data.get("f"), str):
        raise QueryError("parameter continue: the token is malformed", hint=_BAD_TOKEN_HINT)
    after = data.get("a")
    if (not isinstance(after, list) or len(after) != _key_len(q.order)
            or not all(isinstance(x, str) for x in after)):
        if data["f"] != fingerprint(q):
            raise _mismatch()
        raise QueryError("parameter continue: the token is malformed", hint=_BAD_TOKEN_HINT)
    if data["f"] != fingerprint(q):
        raise _mismatch()
    return tuple(after)


def _mismatch() -> QueryError:
    return QueryError(
        "parameter continue: the token was issued for a different query",
        hint="repeat exactly the gvr, cluster, namespace, name*, selector and order parameters of the request that "
        "returned it (limit may change), or drop continue to start over",
    )
