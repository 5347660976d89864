"""Karmada-style overriders: per-cluster changes to the rendered template, named the way OverridePolicy names them.

    spec.overrideRules:
      - targetCluster: {clusterNames: [...], labelSelector: {...}, exclude: [...]}   # absent: every placed cluster
        overriders:
          imageOverrider:       [{component: Registry|Repository|Tag, operator: add|remove|replace, value,
                                  predicate: {path: /spec/template/spec/containers/0/image}}]
          commandOverrider:     [{containerName, operator: add|remove, value: [strings]}]
          argsOverrider:        [{containerName, operator: add|remove, value: [strings]}]
          labelsOverrider:      [{operator: add|remove|replace, value: {key: value}}]
          annotationsOverrider: [{operator: add|remove|replace, value: {key: value}}]
          plaintext:            [{path: /json/pointer, operator: add|remove|replace, value: any}]

Order (documented in docs/delivery.md): rules in list order; inside a rule image, command, args, labels,
annotations, plaintext (Karmada's order); the seed's `spec.customize` patches run after every rule (the most
specific, per-cluster word), and the ownership marks are stamped last so no overrider can remove them.

Semantics, as Karmada defines them where it does:
- image: the reference splits into registry (the first path part when it has a "." or ":" or is "localhost"),
  repository and tag/digest. `add` appends the value to the registry or repository and sets the tag; `replace` sets
  the component; `remove` empties it (a repository cannot be removed: nothing would be left to pull). Without a
  predicate every container and init container of a workload's Pod template is changed; with one, the image at
  that JSON pointer only.
- command/args: `add` appends the values to the named container's list, `remove` drops every entry equal to one
  of them; a container of that name must exist.
- labels/annotations: `add` sets the keys, `replace` sets keys that are already there (a missing key is an error:
  use add), `remove` deletes the keys (their values are ignored; a missing key is fine).
- plaintext: RFC 6902 with `operator` in place of `op`; the value is used as is (not read the seed's way).

Everything is checked before anything is applied: an error names the rule and field
(`spec.overrideRules[0].overriders.imageOverrider[1].component: ...`) and the copy is not written (phase
InvalidOverride). Pure: no I/O.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from multicluster.errors import ReconcileError

from . import selector
from .patches import Action, PatchError, apply_actions

OPERATORS = ("add", "remove", "replace")
COMPONENTS = ("Registry", "Repository", "Tag")
ORDER = ("imageOverrider", "commandOverrider", "argsOverrider", "labelsOverrider", "annotationsOverrider",
         "plaintext")

# Where each workload kind keeps its Pod spec (JSON pointer tokens).
POD_SPEC: dict[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "ReplicationController": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
CONTAINER_LISTS = ("initContainers", "containers")


class OverrideError(ReconcileError):
    """An override rule is malformed or does not fit the template; the message names the rule and field."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="InvalidOverride",
                         hint="fix spec.overrideRules (see `kubectl explain multiclusterresource.spec.overrideRules`)")


@dataclass(frozen=True, slots=True)
class Rule:
    where: str  # spec.overrideRules[i]
    target: dict[str, Any] | None  # targetCluster as written; None = every cluster
    overriders: dict[str, list[dict[str, Any]]]


# --------------------------------------------------------------------------------------------- checking


def _fail(where: str, message: str) -> OverrideError:
    return OverrideError(f"{where}: {message}")


def _str_list(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _fail(where, "expected a list of strings")
    return list(value)


def _operator(item: dict[str, Any], where: str, allowed: tuple[str, ...] = OPERATORS) -> str:
    op = item.get("operator")
    if op not in allowed:
        raise _fail(f"{where}.operator", f"{op!r} is not one of {', '.join(allowed)}")
    assert isinstance(op, str)
    return op


def _check_selector(sel: Any, where: str) -> None:
    try:
        selector.parse(sel, where)
    except selector.SelectorError as exc:
        raise OverrideError(exc.message) from None


def _check_item(kind: str, item: Any, where: str) -> None:
    if not isinstance(item, dict):
        raise _fail(where, "expected a mapping")
    if kind == "imageOverrider":
        if item.get("component") not in COMPONENTS:
            raise _fail(f"{where}.component", f"{item.get('component')!r} is not one of {', '.join(COMPONENTS)}")
        op = _operator(item, where)
        value = item.get("value", "")
        if not isinstance(value, str) or (op != "remove" and not value):
            raise _fail(f"{where}.value", f"{op} needs a non-empty string")
        if op == "remove" and item["component"] == "Repository":
            raise _fail(f"{where}.operator", "the repository cannot be removed (nothing would be left to pull)")
        pred = item.get("predicate")
        if pred is not None:
            path = pred.get("path") if isinstance(pred, dict) else None
            if not isinstance(path, str) or not path.startswith("/"):
                raise _fail(f"{where}.predicate.path", "must be a JSON pointer starting with '/'")
    elif kind in ("commandOverrider", "argsOverrider"):
        if not isinstance(item.get("containerName"), str) or not item["containerName"]:
            raise _fail(f"{where}.containerName", "is required")
        _operator(item, where, ("add", "remove"))
        _str_list(item.get("value"), f"{where}.value")
    elif kind in ("labelsOverrider", "annotationsOverrider"):
        _operator(item, where)
        value = item.get("value")
        if not isinstance(value, dict) or not all(isinstance(k, str) and k for k in value):
            raise _fail(f"{where}.value", "expected a map of keys to strings")
        if item["operator"] != "remove" and not all(isinstance(v, str) for v in value.values()):
            raise _fail(f"{where}.value", f"{item['operator']} needs string values")
    else:  # plaintext
        op = _operator(item, where)
        path = item.get("path")
        if not isinstance(path, str) or not path.startswith("/"):
            raise _fail(f"{where}.path", "must be a JSON pointer starting with '/' (the whole object cannot be "
                                         "replaced)")
        if op != "remove" and "value" not in item:
            raise _fail(f"{where}.value", f"{op} needs a value")


def parse(spec: Mapping[str, Any]) -> list[Rule]:
    """Every rule of spec.overrideRules, checked (OverrideError names the first problem)."""
    raw = spec.get("overrideRules")
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise _fail("spec.overrideRules", "expected a list of rules")
    rules: list[Rule] = []
    for i, r in enumerate(raw):
        where = f"spec.overrideRules[{i}]"
        if not isinstance(r, dict):
            raise _fail(where, "expected a mapping with targetCluster and overriders")
        target = r.get("targetCluster")
        if target is not None:
            if not isinstance(target, dict):
                raise _fail(f"{where}.targetCluster", "expected {clusterNames, labelSelector, exclude}")
            _str_list(target.get("clusterNames") or [], f"{where}.targetCluster.clusterNames")
            _str_list(target.get("exclude") or [], f"{where}.targetCluster.exclude")
            if target.get("labelSelector") is not None:
                _check_selector(target["labelSelector"], f"{where}.targetCluster.labelSelector")
        ov = r.get("overriders")
        if not isinstance(ov, dict):
            raise _fail(f"{where}.overriders", "is required: a mapping of overrider lists")
        unknown = sorted(set(ov) - set(ORDER))
        if unknown:
            raise _fail(f"{where}.overriders", f"unknown overrider {unknown[0]!r} (known: {', '.join(ORDER)})")
        checked: dict[str, list[dict[str, Any]]] = {}
        for kind in ORDER:
            items = ov.get(kind)
            if items is None:
                continue
            if not isinstance(items, list):
                raise _fail(f"{where}.overriders.{kind}", "expected a list")
            for j, item in enumerate(items):
                _check_item(kind, item, f"{where}.overriders.{kind}[{j}]")
            checked[kind] = items
        rules.append(Rule(where, target, checked))
    return rules


# --------------------------------------------------------------------------------------------- targeting


def selector_matches(sel: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A checked label selector against one cluster's labels (selector.py: Kubernetes semantics)."""
    return selector.parse(sel).matches(labels)


def targets(rule: Rule, cluster: str, labels: Mapping[str, str]) -> bool:
    """Karmada's cluster affinity: not excluded, and matching the selector and the names when they are given."""
    t = rule.target
    if t is None:
        return True
    if cluster in (t.get("exclude") or []):
        return False
    if t.get("labelSelector") is not None and not selector_matches(t["labelSelector"], labels):
        return False
    names = t.get("clusterNames") or []
    return not names or cluster in names


# --------------------------------------------------------------------------------------------- images


@dataclass(slots=True)
class Image:
    registry: str
    repository: str
    delimiter: str  # ":" before a tag, "@" before a digest, "" when neither
    tag: str

    @classmethod
    def parse(cls, ref: str) -> Image:
        registry, repo = "", ref
        first, sep, rest = ref.partition("/")
        if sep and ("." in first or ":" in first or first == "localhost"):
            registry, repo = first, rest
        if "@" in repo:
            repo, _, digest = repo.partition("@")
            return cls(registry, repo, "@", digest)
        colon = repo.rfind(":")
        if colon > repo.rfind("/"):
            return cls(registry, repo[:colon], ":", repo[colon + 1:])
        return cls(registry, repo, "", "")

    def __str__(self) -> str:
        out = f"{self.registry}/{self.repository}" if self.registry else self.repository
        return f"{out}{self.delimiter}{self.tag}" if self.tag else out


def override_image(ref: str, component: str, operator: str, value: str) -> str:
    img = Image.parse(ref)
    if component == "Registry":
        img.registry = "" if operator == "remove" else img.registry + value if operator == "add" else value
    elif component == "Repository":
        img.repository = img.repository + value if operator == "add" else value
    elif operator == "remove":
        img.tag, img.delimiter = "", ""
    else:
        img.tag, img.delimiter = value, "@" if value.startswith("sha256:") else ":"
    return str(img)


# --------------------------------------------------------------------------------------------- applying


def _tokens(path: str) -> list[str]:
    return [t.replace("~1", "/").replace("~0", "~") for t in path.split("/")[1:]]


def _at(doc: Any, tokens: list[str]) -> tuple[Any, str | int] | None:
    """(parent, key) of the value at `tokens`, or None when the path does not exist."""
    cur = doc
    for tok in tokens[:-1]:
        if isinstance(cur, dict) and tok in cur:
            cur = cur[tok]
        elif isinstance(cur, list) and tok.isdigit() and int(tok) < len(cur):
            cur = cur[int(tok)]
        else:
            return None
    last = tokens[-1] if tokens else ""
    if isinstance(cur, dict) and last in cur:
        return cur, last
    if isinstance(cur, list) and last.isdigit() and int(last) < len(cur):
        return cur, int(last)
    return None


def _pod_spec(obj: dict[str, Any], where: str) -> dict[str, Any]:
    kind = str(obj.get("kind") or "")
    path = POD_SPEC.get(kind)
    if path is None:
        raise _fail(where, f"kind {kind} has no Pod template (the kinds with one: {', '.join(POD_SPEC)}); "
                           "name the field with predicate.path or a plaintext overrider")
    cur: Any = obj
    for tok in path:
        cur = cur.get(tok) if isinstance(cur, dict) else None
    if not isinstance(cur, dict):
        raise _fail(where, f"the template has no Pod spec at /{'/'.join(path)}")
    return cur


def _containers(obj: dict[str, Any], where: str) -> list[dict[str, Any]]:
    spec = _pod_spec(obj, where)
    return [c for key in CONTAINER_LISTS for c in spec.get(key) or [] if isinstance(c, dict)]


def _image(obj: dict[str, Any], item: dict[str, Any], where: str) -> None:
    component, op, value = item["component"], item["operator"], str(item.get("value") or "")
    pred = item.get("predicate")
    if pred is not None:
        found = _at(obj, _tokens(pred["path"]))
        current = found[0][found[1]] if found is not None else None
        if found is None or not isinstance(current, str):
            raise _fail(f"{where}.predicate.path", f"{pred['path']} is not an image (a string) in the template")
        found[0][found[1]] = override_image(current, component, op, value)
        return
    changed = 0
    for c in _containers(obj, where):
        if isinstance(c.get("image"), str):
            c["image"] = override_image(c["image"], component, op, value)
            changed += 1
    if not changed:
        raise _fail(where, "the template's Pod spec has no container with an image")


def _command_args(obj: dict[str, Any], item: dict[str, Any], where: str, field: str) -> None:
    name = item["containerName"]
    found = [c for c in _containers(obj, where) if c.get("name") == name]
    if not found:
        names = ", ".join(str(c.get("name")) for c in _containers(obj, where)) or "none"
        raise _fail(f"{where}.containerName", f"no container named {name!r} in the template (containers: {names})")
    for c in found:
        current = c.get(field) or []
        if not isinstance(current, list):
            raise _fail(where, f"container {name}'s {field} is not a list")
        if item["operator"] == "add":
            c[field] = [*current, *item["value"]]
        else:
            c[field] = [v for v in current if v not in item["value"]]


def _labels(obj: dict[str, Any], item: dict[str, Any], where: str, field: str) -> None:
    md = obj.setdefault("metadata", {})
    current = md.get(field)
    if current is None:
        current = md[field] = {}
    if not isinstance(current, dict):
        raise _fail(where, f"metadata.{field} of the template is not a map")
    op = item["operator"]
    for k, v in item["value"].items():
        if op == "add":
            current[k] = v
        elif op == "replace":
            if k not in current:
                raise _fail(f"{where}.value", f"replace: {field[:-1]} {k!r} is not set on the template (use add)")
            current[k] = v
        else:
            current.pop(k, None)


def _plaintext(obj: dict[str, Any], item: dict[str, Any], where: str) -> dict[str, Any]:
    op: dict[str, Any] = {"op": item["operator"], "path": item["path"]}
    if item["operator"] != "remove":
        op["value"] = item["value"]
    try:
        return apply_actions(obj, [Action(where, op)])
    except PatchError as exc:
        raise OverrideError(exc.message) from exc


_APPLY: dict[str, Callable[[dict[str, Any], dict[str, Any], str], dict[str, Any] | None]] = {
    "imageOverrider": _image,
    "commandOverrider": lambda o, i, w: _command_args(o, i, w, "command"),
    "argsOverrider": lambda o, i, w: _command_args(o, i, w, "args"),
    "labelsOverrider": lambda o, i, w: _labels(o, i, w, "labels"),
    "annotationsOverrider": lambda o, i, w: _labels(o, i, w, "annotations"),
    "plaintext": _plaintext,
}


def apply(obj: dict[str, Any], rules: list[Rule], cluster: str, labels: Mapping[str, str]) -> dict[str, Any]:
    """`obj` with every rule that targets `cluster` applied, in the documented order (a new object)."""
    doc = copy.deepcopy(obj)
    for rule in rules:
        if not targets(rule, cluster, labels):
            continue
        for kind in ORDER:
            for j, item in enumerate(rule.overriders.get(kind) or []):
                result = _APPLY[kind](doc, item, f"{rule.where}.overriders.{kind}[{j}]")
                if result is not None:
                    doc = result
    return doc
