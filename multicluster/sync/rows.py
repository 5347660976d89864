"""Object → Row: what the store keeps of an API object (managedFields and Secret values stripped, the indexed
label and field values extracted). Called once per object on the informers' hot path."""

from __future__ import annotations

from typing import Any

from multicluster.gvr import GVR
from multicluster.store.base import Row
from multicluster.wire import WireObject

SECRETS = GVR("", "v1", "secrets")


def to_row(
    cluster: str,
    gvr: GVR,
    obj: dict[str, Any] | WireObject,
    rv: int,
    *,
    drop_managed_fields: bool = True,
    store_secrets: bool = False,
    new: bool = False,
) -> Row:
    """Shape an API object into a Row: strip what we must not or need not keep, extract the indexed values."""
    w = obj if isinstance(obj, WireObject) else WireObject.from_dict(obj)
    if gvr == SECRETS and not store_secrets:
        w = WireObject.from_dict(_without_secret_values(w.as_dict()))
    fields: dict[str, str] = {}
    if w.phase is not None:
        fields["status.phase"] = w.phase
    if w.node_name is not None:
        fields["spec.nodeName"] = w.node_name
    # Positional, in Row's field order: keyword arguments made this call 1.7 µs instead of 0.5 (once per object).
    return Row(cluster, gvr, w.namespace, w.name, w.uid, w.kind or "", rv,
               w.stored_json(drop_managed_fields=drop_managed_fields), w.labels, fields, w.owner, w.created_at, new)


def _without_secret_values(obj: dict[str, Any]) -> dict[str, Any]:
    """Keep the key names (DATA column, "which keys exist") but never the values; the last-applied annotation
    would carry them too."""
    md = obj.get("metadata") or {}
    ann = dict(md.get("annotations") or {})
    ann.pop("kubectl.kubernetes.io/last-applied-configuration", None)
    md = {**md, "annotations": ann} if ann else {k: v for k, v in md.items() if k != "annotations"}
    out = {**obj, "metadata": md, "data": dict.fromkeys(obj.get("data") or {}, "")}
    out.pop("stringData", None)
    return out
