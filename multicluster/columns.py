"""Printer columns, shared by the daemon's Kubernetes tables (api/kube/tables.py) and the plugin (plugin/printers.py).

Both render what `kubectl get` shows: ages in apimachinery's HumanDuration spelling and a CRD's
additionalPrinterColumns (the first value a JSONPath selects, typed by the column). The daemon sends the typed
cell in a meta.k8s.io Table; the plugin prints its text. This module is pure (no I/O, no project imports beyond
the foundation) so that both sides use one implementation without the daemon importing the plugin or the other
way round, and it imports nothing heavy: it is on the start-up path of `kubectl multicluster list`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

import orjson

from multicluster import jsonpath

# Types only: importing multicluster.types would be start-up time of `kubectl multicluster list`.
if TYPE_CHECKING:
    from multicluster.types import PrinterColumn


def get(obj: Any, *path: str | int) -> Any:
    """The value at a path of keys and list indexes, or None where the path does not exist."""
    for p in path:
        if isinstance(p, int):
            if not isinstance(obj, list) or not -len(obj) <= p < len(obj):
                return None
            obj = obj[p]
        else:
            if not isinstance(obj, dict):
                return None
            obj = obj.get(p)
    return obj


def human_duration(seconds: float) -> str:
    """apimachinery's duration.HumanDuration: 45s, 3m20s, 15m, 5h10m, 20h, 3d4h, 40d, 2y30d, 9y."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m" if s % 60 == 0 else f"{minutes}m{s % 60}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        return f"{hours}h" if minutes % 60 == 0 else f"{hours}h{minutes % 60}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d" if hours % 24 == 0 else f"{hours // 24}d{hours % 24}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if days == 0 else f"{hours // 24 // 365}y{days}d"
    return f"{hours // 24 // 365}y"


def parse_time(ts: Any) -> float | None:
    """RFC 3339 as Kubernetes writes it (`2024-01-18T15:14:48Z`, maybe with fractions) → unix seconds."""
    if not isinstance(ts, str) or not ts:
        return None
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def since(ts: Any, now: float) -> str:
    """The age of a timestamp as kubectl prints it, or <unknown> when it is missing or not a timestamp."""
    t = parse_time(ts)
    return "<unknown>" if t is None else human_duration(now - t)


def age(obj: Any, now: float) -> str:
    """The AGE column: the time since metadata.creationTimestamp."""
    return since(get(obj, "metadata", "creationTimestamp"), now)


def printer_columns(crd: Mapping[str, Any], version: str) -> tuple[PrinterColumn, ...]:
    """The additionalPrinterColumns of one served version of a CRD object: apiextensions/v1 keeps them per
    version; objects written through v1beta1 may have one list for all versions at the top of the spec.
    Entries without a name or a jsonPath cannot be shown and are left out."""
    spec = crd.get("spec")
    if not isinstance(spec, dict):
        return ()
    cols: Any = None
    for v in spec.get("versions") or []:
        if isinstance(v, dict) and v.get("name") == version:
            cols = v.get("additionalPrinterColumns")
            break
    if cols is None:
        cols = spec.get("additionalPrinterColumns")
    if not isinstance(cols, list):
        return ()
    return tuple(cast("PrinterColumn", c) for c in cols if isinstance(c, dict) and c.get("name") and c.get("jsonPath"))


def priority(col: PrinterColumn) -> int:
    """A column's priority (0 = always shown, more = only with `-o wide`); a malformed one counts as 0."""
    try:
        return int(col.get("priority") or 0)
    except (TypeError, ValueError):
        return 0


def printer_cell(col: PrinterColumn, obj: Any, now: float) -> Any:
    """One CRD printer column's Table cell: the first value its JSONPath selects, as the column's type says
    (date → age text, integer → int, number and boolean as they are, string → text; objects and lists as JSON).
    None when nothing is selected or the expression is outside the supported subset: a column is cosmetic."""
    value = jsonpath.first(obj, str(col.get("jsonPath") or ""))
    if value is None:
        return None
    kind = col.get("type")
    if kind == "date":
        return since(value, now)
    if kind == "integer" and isinstance(value, float) and value.is_integer():
        return int(value)
    if kind in ("integer", "number", "boolean"):
        return value
    return text(value)


def text(value: Any) -> str:
    """A cell value as a table prints it: JSON spelling for booleans, objects and lists; empty for None."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return str(value)
