"""What one watcher wants to see, and how a change looks to it.

Label and field requirements come from multicluster.selectors (the list path's parser) and are evaluated here
with the semantics the store's SQL gives them (store/queries.py): `!=` and `notin` also match an object without the
key; a missing field reads as "" (`spec.nodeName=` matches unscheduled pods); metadata.name and
metadata.namespace are the object's identity.

Kubernetes watch semantics with a selector: a change is judged against the object's new and previous selector
values (each change log entry carries both), so an object that starts matching arrives as ADDED, one that stops
matching leaves as DELETED, and one that matches neither before nor after is not sent at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from multicluster.gvr import GVR
from multicluster.store.base import Change, EventType, Requirement

FIELD_IDENTITY = ("metadata.name", "metadata.namespace")


@dataclass(frozen=True, slots=True)
class Filter:
    gvr: GVR
    clusters: frozenset[str] = frozenset()  # empty = every cluster
    namespace: str = ""  # "" = every namespace
    labels: tuple[Requirement, ...] = ()
    fields: tuple[Requirement, ...] = ()
    # Where the watcher may read (Query.allowed: per cluster, every namespace (None) or the listed ones);
    # None = anywhere.
    allowed: tuple[tuple[str, tuple[str, ...] | None], ...] | None = None

    def routes(self, change: Change) -> bool:
        """The cheap part: the change is of this watcher's type, cluster and namespace, and it may read it."""
        return (change.gvr == self.gvr and not change.superseded
                and (not self.clusters or change.cluster in self.clusters)
                and (not self.namespace or change.namespace == self.namespace)
                and (self.allowed is None or any(c == change.cluster and (ns is None or change.namespace in ns)
                                                 for c, ns in self.allowed)))

    def selects(self, change: Change, labels: Mapping[str, str], fields: Mapping[str, str]) -> bool:
        return (all(_label(r, labels) for r in self.labels)
                and all(_field(r, change, fields) for r in self.fields))

    def event(self, change: Change) -> EventType | None:
        """The event this watcher sees for `change` (routes() already true), or None."""
        if not self.labels and not self.fields:
            return change.type
        now = self.selects(change, change.labels, change.fields)
        if change.type == "DELETED":
            return "DELETED" if now else None
        before = change.prev_labels is not None and self.selects(change, change.prev_labels,
                                                                 change.prev_fields or {})
        if now:
            return "MODIFIED" if before else "ADDED"
        return "DELETED" if before else None


def _label(req: Requirement, labels: Mapping[str, str]) -> bool:
    op = "=" if req.op == "==" else req.op
    value = labels.get(req.key)
    if op == "=":
        return value is not None and value == req.values[0]
    if op == "!=":
        return value is None or value != req.values[0]
    if op == "in":
        return value is not None and value in req.values
    if op == "notin":
        return value is None or value not in req.values
    if op == "exists":
        return value is not None
    return value is None  # "!"


def _field(req: Requirement, change: Change, fields: Mapping[str, str]) -> bool:
    op = "=" if req.op == "==" else req.op
    if req.key == "metadata.name":
        value = change.name
    elif req.key == "metadata.namespace":
        value = change.namespace
    else:
        value = fields.get(req.key, "")
    wanted = req.values[0] if req.values else ""
    return value == wanted if op == "=" else value != wanted
