"""Placement by label (pure): spec.placement.clusterSelector over the labels of the member clusters.

    placement = spec.placement.clusters (names, in order), then the clusters matching clusterSelector (sorted)

The selector is a Kubernetes LabelSelector with Kubernetes' meaning: every matchLabels entry and every
matchExpressions term (In, NotIn, Exists, DoesNotExist) must hold, and an empty selector (`{}`) matches every
cluster. It selects among the clusters this daemon delivers to, by the labels of their MultiCluster objects on the
master (clusterlabels.py). Without a clusterSelector, placement is the seed's: the names, or the master alone when
there are none; with one, placement is exactly the union, which may be empty.

A selector that does not parse is a problem naming the field (`spec.placement.clusterSelector.matchExpressions[0]
.operator: ...`) and selects nothing new; reconcile.py keeps the copies already delivered where they are until it
is fixed, so a typo never removes copies.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .patches import placement as named_placement
from .types import MCRSpec

FIELD = "spec.placement.clusterSelector"
OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")
_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_PREFIX = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    operator: str
    values: frozenset[str]

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.operator == "In":
            return present and labels[self.key] in self.values
        if self.operator == "NotIn":
            return not present or labels[self.key] not in self.values
        if self.operator == "Exists":
            return present
        return not present  # DoesNotExist


@dataclass(frozen=True, slots=True)
class Selector:
    """A parsed LabelSelector: all requirements must hold (none: matches everything)."""

    requirements: tuple[Requirement, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)


class SelectorError(ValueError):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _key_problem(key: Any) -> str | None:
    if not isinstance(key, str) or not key:
        return "a label key must be a non-empty string"
    prefix, sep, name = key.rpartition("/")
    if sep and (not prefix or len(prefix) > 253 or not _PREFIX.match(prefix)):
        return f"{key!r}: the prefix before '/' must be a DNS subdomain (e.g. example.com)"
    if len(name) > 63 or not _NAME.match(name):
        return (f"{key!r}: the name part must be at most 63 characters: letters, digits, '-', '_' or '.', starting "
                "and ending with a letter or digit")
    return None


def _value_problem(value: Any) -> str | None:
    if not isinstance(value, str):
        return f"{value!r} is not a string"
    if value and (len(value) > 63 or not _NAME.match(value)):
        return (f"{value!r}: a label value must be empty or at most 63 characters: letters, digits, '-', '_' or "
                "'.', starting and ending with a letter or digit")
    return None


def parse(raw: Any, where: str = FIELD) -> Selector:
    """A LabelSelector from the CR, or SelectorError naming the field that is wrong and why."""
    if not isinstance(raw, dict):
        raise SelectorError(f"{where}: expected a label selector {{matchLabels: {{KEY: VALUE}}, matchExpressions: "
                            "[{key, operator, values}]}")
    unknown = sorted(set(raw) - {"matchLabels", "matchExpressions"})
    if unknown:
        raise SelectorError(f"{where}: unknown field {unknown[0]!r} (a label selector has matchLabels and "
                            "matchExpressions)")
    reqs: list[Requirement] = []
    ml = raw.get("matchLabels")
    if ml is not None:
        if not isinstance(ml, dict):
            raise SelectorError(f"{where}.matchLabels: expected a map of label keys to values")
        for k, v in ml.items():
            if (problem := _key_problem(k)) or (problem := _value_problem(v)):
                raise SelectorError(f"{where}.matchLabels: {problem}")
            reqs.append(Requirement(k, "In", frozenset([v])))
    exprs = raw.get("matchExpressions")
    if exprs is not None and not isinstance(exprs, list):
        raise SelectorError(f"{where}.matchExpressions: expected a list of {{key, operator, values}}")
    for i, e in enumerate(exprs or []):
        w = f"{where}.matchExpressions[{i}]"
        if not isinstance(e, dict):
            raise SelectorError(f"{w}: expected {{key, operator, values}}")
        if problem := _key_problem(e.get("key")):
            raise SelectorError(f"{w}.key: {problem}")
        op = e.get("operator")
        if op not in OPERATORS:
            raise SelectorError(f"{w}.operator: {op!r} is not one of {', '.join(OPERATORS)}")
        values = e.get("values")
        if values is not None and not isinstance(values, list):
            raise SelectorError(f"{w}.values: expected a list of strings")
        for v in values or []:
            if problem := _value_problem(v):
                raise SelectorError(f"{w}.values: {problem}")
        if op in ("In", "NotIn") and not values:
            raise SelectorError(f"{w}.values: {op} needs at least one value")
        if op in ("Exists", "DoesNotExist") and values:
            raise SelectorError(f"{w}.values: {op} takes no values")
        reqs.append(Requirement(e["key"], op, frozenset(values or [])))
    return Selector(tuple(reqs))


def cluster_selector(spec: MCRSpec) -> Any:
    """The raw spec.placement.clusterSelector, or None when placement does not select by label."""
    pl = spec.get("placement")
    return pl.get("clusterSelector") if isinstance(pl, dict) else None


def uses_labels(spec: MCRSpec) -> bool:
    """Whether cluster labels decide where (or how) this CR is delivered: a relabel must reconcile it again."""
    return cluster_selector(spec) is not None or bool(spec.get("overrideRules"))


@dataclass(frozen=True, slots=True)
class Resolved:
    clusters: list[str]
    problems: list[str]
    selector_invalid: bool = False  # the selector did not parse: keep what was delivered (see the module doc)


def resolve(spec: MCRSpec, master: str, labels: Mapping[str, Mapping[str, str]],
            known: Iterable[str]) -> Resolved:
    """Where the CR goes: its named clusters, then the known clusters its selector matches (sorted)."""
    raw = cluster_selector(spec)
    if raw is None:
        names, problems = named_placement(spec, master)
        return Resolved(names, problems)
    names, problems = named_placement(spec, master, default_master=False)
    try:
        sel = parse(raw)
    except SelectorError as exc:
        return Resolved(names, [*problems, exc.message], selector_invalid=True)
    known_set = set(known)
    chosen = sorted(n for n, lbl in labels.items() if n in known_set and sel.matches(lbl))
    return Resolved([*names, *(n for n in chosen if n not in names)], problems)
