"""A custom resource's printer columns, read from its CustomResourceDefinition through the daemon.

kubectl shows a CRD's additionalPrinterColumns because the API server renders the table; the plugin only ever
talks to the daemon, which syncs CustomResourceDefinitions like any other type. So for a type that may be a
custom resource, `list` fetches the CRD object once (GET /v1/resources/{cluster}/customresourcedefinitions.
apiextensions.k8s.io/_/{plural}.{group}) from a cluster whose objects it is about to print, and keeps the answer
for the rest of the command. A CRD that cannot be read (not synced, excluded, or gone) just means the generic
columns: printer columns are cosmetic and never fail a listing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Protocol

from multicluster.columns import printer_columns
from plugin.client import ApiError
from plugin.printers import ResourceInfo, uses_printer_columns

# Types only: importing multicluster.types would be start-up time of `kubectl multicluster list`.
if TYPE_CHECKING:
    from multicluster.types import KubeObject, PrinterColumn

CRD_TYPE = "customresourcedefinitions.apiextensions.k8s.io"

# Built-in API groups with a dot in their name (a CRD's group must contain one, so dot-less groups such as apps,
# batch, policy or autoscaling are built in). Groups like gateway.networking.k8s.io are CRDs and not listed.
BUILTIN_GROUPS = frozenset({
    "admissionregistration.k8s.io", "apiextensions.k8s.io", "apiregistration.k8s.io",
    "authentication.k8s.io", "authorization.k8s.io", "certificates.k8s.io", "coordination.k8s.io",
    "discovery.k8s.io", "events.k8s.io", "flowcontrol.apiserver.k8s.io", "internal.apiserver.k8s.io",
    "metrics.k8s.io", "networking.k8s.io", "node.k8s.io", "rbac.authorization.k8s.io", "resource.k8s.io",
    "scheduling.k8s.io", "storage.k8s.io", "storagemigration.k8s.io",
})


class ObjectGetter(Protocol):
    def get_object(self, cluster: str, gvr: str, namespace: str, name: str) -> KubeObject: ...


def may_be_custom(res: ResourceInfo) -> bool:
    return "." in res.group and res.group not in BUILTIN_GROUPS and bool(res.resource)


def crd_name(res: ResourceInfo) -> str:
    return f"{res.resource}.{res.group}"


class CRDColumns:
    """Printer columns per resource type, fetched at most once per type for the life of the object."""

    def __init__(self, client: ObjectGetter) -> None:
        self.client = client
        self._cache: dict[str, tuple[PrinterColumn, ...]] = {}
        self.fetches = 0

    def columns(self, res: ResourceInfo, clusters: Iterable[str]) -> tuple[PrinterColumn, ...]:
        """The CRD's columns for `res`, asking the given clusters in order until one has the CRD."""
        if not may_be_custom(res):
            return ()
        if res.gvr in self._cache:
            return self._cache[res.gvr]
        found: tuple[PrinterColumn, ...] = ()
        for cluster in dict.fromkeys(c for c in clusters if c):
            self.fetches += 1
            try:
                crd = self.client.get_object(cluster, CRD_TYPE, "", crd_name(res))
            except ApiError as exc:
                if exc.status == 404:
                    continue  # not synced from this cluster (yet): another may have it
                break  # CRDs not synced at all (excluded type), or the API refuses: generic columns
            found = printer_columns(crd, res.version)
            break
        self._cache[res.gvr] = found
        return found

    def apply(self, res: ResourceInfo, clusters: Iterable[str]) -> ResourceInfo:
        """`res` with its CRD's printer columns, when its table is the generic one and the CRD has any."""
        if not uses_printer_columns(res):
            return res
        cols = self.columns(res, clusters)
        return replace(res, printer_columns=cols) if cols else res
