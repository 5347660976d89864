"""What removing copies shares between reconcile (renames, clusters leaving the placement) and finalize (deletion).

Targets come from two sources that describe the same object differently: status entries know the kind, the
delivered-copy index does not. Only our copies are ever removed (apply.remove checks the owner annotation);
NotFound is success.
"""

from __future__ import annotations

from multicluster.errors import ClusterError, KubeAPIError, MulticlusterError

from .model import CRKey, Target
from .watches import DeliveredIndex

# apply.remove's outcome → the Event reason that reports it
REASON = {"deleted": "Removed", "released": "Released"}


def why(exc: MulticlusterError) -> str:
    """An error's text without the `cluster X:` prefix (the caller says which cluster)."""
    if isinstance(exc, ClusterError):
        return exc.reason
    if isinstance(exc, KubeAPIError):
        return str(exc.body.get("message") or exc.message)
    return exc.message


def unique(targets: list[Target]) -> list[Target]:
    """One entry per object (status entries know the kind, index entries do not; the first one wins)."""
    out: dict[str, Target] = {}
    for t in targets:
        out.setdefault(t.path(), t)
    return list(out.values())


def describe(t: Target) -> str:
    return t.describe() if t.kind else f"{t.resource} {t.namespace + '/' if t.namespace else ''}{t.name}"


def indexed_targets(index: DeliveredIndex, key: CRKey, cluster: str) -> list[Target]:
    """The copies of CR `key` the watches have seen in `cluster`."""
    return [Target(g.api_version, "", g.resource, ns, name) for c, g, ns, name in index.owned_by(key) if c == cluster]
