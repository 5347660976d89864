"""Row builders shared by the store contract tests."""

from __future__ import annotations

from collections.abc import Mapping

from multicluster.gvr import GVR
from multicluster.store import Row

PODS = GVR("", "v1", "pods")
DEPLOYS = GVR("apps", "v1", "deployments")


def row(
    name: str,
    rv: int = 1,
    *,
    cluster: str = "c1",
    namespace: str = "default",
    gvr: GVR = PODS,
    labels: Mapping[str, str] | None = None,
    fields: Mapping[str, str] | None = None,
    created_at: str = "2026-01-01T00:00:00Z",
    body: bytes | None = None,
) -> Row:
    return Row(
        cluster=cluster, gvr=gvr, namespace=namespace, name=name, uid=f"uid-{cluster}-{namespace}-{name[:60]}",
        kind="Pod" if gvr == PODS else "Deployment", resource_version=rv,
        object=body if body is not None else f'{{"metadata":{{"name":"{name}","rv":{rv}}}}}'.encode(),
        labels=dict(labels or {}), fields=dict(fields or {}), owner="owner-uid", created_at=created_at,
    )
