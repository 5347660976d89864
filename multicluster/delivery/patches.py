"""Pure functions from a MultiClusterResource spec to the object one cluster should hold.

    template ──render──▶ object in the CR's namespace ──customize actions (RFC 6902)──▶ stamp ownership ──▶ apply

Seed compatibility, exactly as the Go original converted `value` (a list there):
  ["nginx:1.19.0-alpine"] → "nginx:1.19.0-alpine"    the last element wins
  [2]                     → 2
  ["foo=bar", "a=b"]      → {"foo": "bar", "a": "b"}  strings with "=" merge into one map (split at the first "=")
  []                      → no value                  (for remove)
A value that is not a list is a plain RFC 6902 value and used as is. To send a real list, wrap it: [[1, 2]].

Where we deliberately differ from the seed (inventory section 8, item 8):
- `add` creates missing parent maps, so `add /metadata/annotations/x` works on an object without annotations;
- `replace` of a path the template does not set becomes `add`: the seed patched the live, defaulted object
  (replace /spec/replicas worked without replicas in the template), we patch the template before applying it;
- actions are validated up front and every error names the action (`spec.customize.clusters[0].action[1]`).
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jsonpatch
import orjson

from multicluster.errors import ReconcileError

from .model import CLUSTER_ANNOTATION, MANAGED_BY_LABEL, MANAGED_BY_VALUE, OWNER_ANNOTATION, OWNER_UID_ANNOTATION
from .types import MCRSpec

OPS = ("add", "remove", "replace", "move", "copy", "test")
_NEEDS_VALUE = ("add", "replace", "test")
_SERVER_FIELDS = ("resourceVersion", "uid", "creationTimestamp", "managedFields", "generation", "selfLink",
                  "deletionTimestamp", "deletionGracePeriodSeconds")


class PatchError(ReconcileError):
    """A customize action is malformed or does not fit the template."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="InvalidPatch",
                         hint="fix spec.customize; paths are RFC 6901 JSON pointers into the template")


class TemplateError(ReconcileError):
    def __init__(self, message: str) -> None:
        super().__init__(message, reason="InvalidTemplate")


@dataclass(frozen=True, slots=True)
class Action:
    """One customize action, already converted to an RFC 6902 operation, with where it came from."""

    where: str  # spec.customize.clusters[i].action[j]
    op: dict[str, Any]

    def describe(self) -> str:
        return f"{self.where} ({self.op.get('op')} {self.op.get('path')})"


# --------------------------------------------------------------------------------------------- seed values

_NO_VALUE = object()


def seed_value(raw: Any) -> tuple[bool, Any]:
    """Convert an action's `value` the way the seed did; returns (has_value, value)."""
    if not isinstance(raw, list):
        return True, raw
    if not raw:
        return False, None
    merged: dict[str, Any] = {}
    result: Any = _NO_VALUE
    for item in raw:
        if isinstance(item, str) and "=" in item:
            key, _, val = item.partition("=")
            merged[key] = val
            result = merged
        else:
            result = item
    return True, result


def to_operation(action: Any, where: str) -> Action:
    """Validate one seed/RFC 6902 action and return it as an RFC 6902 operation."""
    if not isinstance(action, dict):
        raise PatchError(f"{where}: expected a mapping with op and path, got {type(action).__name__}")
    op = action.get("op")
    if not isinstance(op, str) or op.lower() not in OPS:
        raise PatchError(f"{where}: op {op!r} is not one of {', '.join(OPS)}")
    op = op.lower()
    path = action.get("path")
    if not isinstance(path, str) or not path.startswith("/"):
        raise PatchError(f"{where}: path {path!r} must be a JSON pointer starting with '/' "
                         "(replacing the whole object is not allowed)")
    out: dict[str, Any] = {"op": op, "path": path}
    if op in ("move", "copy"):
        src = action.get("from")
        if not isinstance(src, str) or not src.startswith("/"):
            raise PatchError(f"{where}: {op} needs `from`, a JSON pointer starting with '/'")
        out["from"] = src
    if op in _NEEDS_VALUE:
        has, value = seed_value(action.get("value")) if "value" in action else (False, None)
        if not has:
            raise PatchError(f"{where}: {op} {path} needs a value")
        out["value"] = value
    return Action(where, out)


def customize_for(spec: MCRSpec, cluster: str) -> list[Action]:
    """All actions for one cluster (several entries with the same name are concatenated, in order).

    Entries for clusters that are not placed are simply never asked for: the seed patched them anyway and
    failed forever; here they are ignored.
    """
    customize = spec.get("customize") or {}
    entries = customize.get("clusters") if isinstance(customize, dict) else None
    if not isinstance(entries, list):
        return []
    out: list[Action] = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or entry.get("name") != cluster:
            continue
        actions = entry.get("action")
        if actions is None:
            continue
        if not isinstance(actions, list):
            raise PatchError(f"spec.customize.clusters[{i}].action: expected a list of actions")
        out += [to_operation(a, f"spec.customize.clusters[{i}].action[{j}]") for j, a in enumerate(actions)]
    return out


# --------------------------------------------------------------------------------------------- applying


def _tokens(path: str) -> list[str]:
    return [t.replace("~1", "/").replace("~0", "~") for t in path.split("/")[1:]]


def _prepare(doc: Any, op: dict[str, Any]) -> dict[str, Any]:
    """Create missing parent maps for add/replace; turn replace of a missing leaf into add."""
    if op["op"] not in ("add", "replace"):
        return op
    tokens = _tokens(op["path"])
    cur = doc
    for tok in tokens[:-1]:
        if isinstance(cur, dict):
            if tok not in cur or cur[tok] is None:
                cur[tok] = {}
            cur = cur[tok]
        elif isinstance(cur, list) and tok.isdigit() and int(tok) < len(cur):
            cur = cur[int(tok)]
        else:
            return op  # let jsonpatch report the bad path
    if op["op"] == "replace" and isinstance(cur, dict) and tokens[-1] not in cur:
        return {**op, "op": "add"}
    return op


def apply_actions(obj: dict[str, Any], actions: Sequence[Action]) -> dict[str, Any]:
    """Apply the actions in order to a copy of `obj`; a failing action raises PatchError naming it."""
    doc = copy.deepcopy(obj)
    for action in actions:
        try:
            op = _prepare(doc, copy.deepcopy(action.op))
            doc = jsonpatch.apply_patch(doc, [op], in_place=True)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
            raise PatchError(f"{action.describe()}: {exc}") from exc
        except (TypeError, ValueError, KeyError, IndexError) as exc:
            raise PatchError(f"{action.describe()}: cannot be applied ({type(exc).__name__}: {exc})") from exc
        if not isinstance(doc, dict):
            raise PatchError(f"{action.describe()}: the result is no longer an object")
    return doc


# --------------------------------------------------------------------------------------------- templates


def check_template(template: Any) -> tuple[str, str, str]:
    """(apiVersion, kind, name) of a usable template, or TemplateError saying what is missing."""
    if not isinstance(template, dict) or not template:
        raise TemplateError("spec.template is missing or not an object")
    api_version, kind = template.get("apiVersion"), template.get("kind")
    if not isinstance(api_version, str) or not api_version:
        raise TemplateError("spec.template.apiVersion is missing")
    if not isinstance(kind, str) or not kind:
        raise TemplateError("spec.template.kind is missing")
    md = template.get("metadata")
    if not isinstance(md, dict):
        raise TemplateError("spec.template.metadata is missing")
    name = md.get("name")
    if not isinstance(name, str) or not name:
        hint = ""
        if md.get("generateName"):
            hint = " (generateName is not supported: each cluster's copy needs a stable name)"
        raise TemplateError(f"spec.template.metadata.name is missing{hint}")
    return api_version, kind, name


def render(template: dict[str, Any], cr_namespace: str, *, namespaced: bool) -> dict[str, Any]:
    """The template as an object to apply: a namespaced object without a namespace goes to the CR's namespace;
    a cluster-scoped one loses any namespace; server-owned fields and status are dropped."""
    obj = copy.deepcopy(template)
    obj.pop("status", None)
    md = obj.setdefault("metadata", {})
    for f in _SERVER_FIELDS:
        md.pop(f, None)
    if namespaced:
        if not md.get("namespace"):
            md["namespace"] = cr_namespace
    else:
        md.pop("namespace", None)
    return obj


def stamp(obj: dict[str, Any], *, cr_namespace: str, cr_name: str, cr_uid: str, cluster: str) -> dict[str, Any]:
    """Mark a copy as ours (after the customize actions, so no action can remove the marks)."""
    md = obj.setdefault("metadata", {})
    for key in ("labels", "annotations"):
        if md.get(key) is None:
            md[key] = {}
        if not isinstance(md[key], dict):
            raise PatchError(f"metadata.{key} must be a map after customization, got {type(md[key]).__name__}")
    md["labels"][MANAGED_BY_LABEL] = MANAGED_BY_VALUE
    md["annotations"][OWNER_ANNOTATION] = f"{cr_namespace}/{cr_name}"
    md["annotations"][OWNER_UID_ANNOTATION] = cr_uid
    md["annotations"][CLUSTER_ANNOTATION] = cluster
    return obj


def digest(obj: Any) -> str:
    return hashlib.sha256(orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


# --------------------------------------------------------------------------------------------- placement


def placement(spec: MCRSpec, master: str, *, default_master: bool = True) -> tuple[list[str], list[str]]:
    """(cluster names in order without duplicates, problems). Empty or absent placement means the master only,
    like the seed: a CR always lands somewhere visible (not when `default_master` is False: a clusterSelector
    decides the rest, selector.py)."""
    pl = spec.get("placement")
    entries = pl.get("clusters") if isinstance(pl, dict) else None
    problems: list[str] = []
    names: list[str] = []
    if entries is not None and not isinstance(entries, list):
        problems.append("spec.placement.clusters must be a list of {name: CLUSTER}")
        entries = []
    for i, entry in enumerate(entries or []):
        name = entry.get("name") if isinstance(entry, dict) else entry if isinstance(entry, str) else None
        if not isinstance(name, str) or not name:
            problems.append(f"spec.placement.clusters[{i}] has no name")
            continue
        if name not in names:
            names.append(name)
    if not names and not problems and default_master:
        names = [master]
    return names, problems
