"""Discovery for one scope (a cluster, or all of them): which groups, versions and resources it serves.

A scope serves the union of the types its clusters sync (never a type no cluster in it syncs: a list of it would
be empty for a reason kubectl could not show). Each type keeps what the clusters' own discovery says about it
(kind, scope, singular, short names) so `kubectl get po` resolves as it does against a cluster, and its
categories: the built-in `all` membership below, and a custom resource's `spec.names.categories` read from its
CustomResourceDefinition when the store holds it. Verbs are `get` and `list`: the API is read-only and serves no
watches.

Two shapes answer the same data: the per-group documents (/api, /api/v1, /apis, /apis/{g}, /apis/{g}/{v}) and
aggregated discovery (`Accept: application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList`), which
current kubectl asks for first and which saves it one request per group version.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import orjson

from multicluster import types as kt
from multicluster.api.backend import ApiBackend, ClusterView
from multicluster.columns import printer_columns
from multicluster.errors import GVRError, MulticlusterError
from multicluster.gvr import GVR, APIResource
from multicluster.types import KubeObject, PrinterColumn

log = logging.getLogger(__name__)

VERBS = ("get", "list", "watch")
CRDS = GVR("apiextensions.k8s.io", "v1", "customresourcedefinitions")
# The built-in types in the `all` category (what `kubectl get all` lists against a cluster).
BUILTIN_CATEGORIES: dict[tuple[str, str], tuple[str, ...]] = {
    ("", "pods"): ("all",),
    ("", "replicationcontrollers"): ("all",),
    ("", "services"): ("all",),
    ("apps", "daemonsets"): ("all",),
    ("apps", "deployments"): ("all",),
    ("apps", "replicasets"): ("all",),
    ("apps", "statefulsets"): ("all",),
    ("autoscaling", "horizontalpodautoscalers"): ("all",),
    ("batch", "cronjobs"): ("all",),
    ("batch", "jobs"): ("all",),
}
AGGREGATED = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
AGGREGATED_V2BETA1 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"


@dataclass(frozen=True, slots=True)
class KubeResource:
    """A type served in a scope: its discovery entry, categories, and a CRD's printer columns (if any)."""

    res: APIResource
    categories: tuple[str, ...] = ()
    printer_columns: tuple[PrinterColumn, ...] = ()
    custom: bool = False  # defined by a CustomResourceDefinition the store holds

    @property
    def gvr(self) -> GVR:
        return self.res.gvr


async def _resolve(backend: ApiBackend, gvr: GVR) -> APIResource | None:
    try:
        res = backend.resolve(str(gvr))
        if inspect.isawaitable(res):
            res = await res
    except GVRError:
        return None
    return res if res.gvr == gvr and res.kind else None


async def _crd(backend: ApiBackend, clusters: Sequence[str], gvr: GVR) -> KubeObject | None:
    """The CustomResourceDefinition of `gvr` from the first cluster in scope whose store rows hold it."""
    if "." not in gvr.group:
        return None
    for cluster in clusters:
        try:
            obj = await backend.store.get(cluster, CRDS, "", f"{gvr.resource}.{gvr.group}")
        except MulticlusterError as exc:  # printer columns and categories are cosmetic: never fail discovery
            log.debug("reading the CRD of %s failed: %s", gvr, exc)
            return None
        if obj is not None:
            data = orjson.loads(obj.object)
            return cast(KubeObject, data) if isinstance(data, dict) else None
    return None


async def _describe(backend: ApiBackend, views: Sequence[ClusterView], gvr: GVR) -> KubeResource | None:
    res = await _resolve(backend, gvr)
    if res is None:
        return None
    cats = BUILTIN_CATEGORIES.get((gvr.group, gvr.resource), ())
    crd = await _crd(backend, [v.name for v in views], gvr)
    cols: tuple[PrinterColumn, ...] = ()
    if crd is not None:
        spec_names = (crd.get("spec") or {}).get("names") or {}
        cats = tuple(str(c) for c in spec_names.get("categories") or () if isinstance(c, str))
        cols = printer_columns(crd, gvr.version)
    return KubeResource(res, cats, cols, custom=crd is not None)


async def served(backend: ApiBackend, views: Sequence[ClusterView]) -> list[KubeResource]:
    """The types the clusters of a scope sync, each with its discovery entry, sorted by group/version/name."""
    out: list[KubeResource] = []
    for gvr in sorted({s.gvr for v in views for s in v.syncs}):
        k = await _describe(backend, views, gvr)
        if k is not None:
            out.append(k)
    return out


async def find(backend: ApiBackend, views: Sequence[ClusterView], gvr: GVR) -> KubeResource | None:
    """One type of the scope (what a list or get needs), without describing every other type."""
    if not any(s.gvr == gvr for v in views for s in v.syncs):
        return None
    return await _describe(backend, views, gvr)


def _entry(k: KubeResource) -> kt.APIResource:
    r = k.res
    e: kt.APIResource = {"name": r.gvr.resource, "singularName": r.singular or r.kind.lower(),
                         "namespaced": r.namespaced, "kind": r.kind, "verbs": list(VERBS)}
    if r.short_names:
        e["shortNames"] = list(r.short_names)
    if k.categories:
        e["categories"] = list(k.categories)
    return e


def resource_list(resources: Sequence[KubeResource], group: str, version: str) -> kt.APIResourceList | None:
    """/api/v1 or /apis/{g}/{v}: an APIResourceList, or None when the scope serves nothing there."""
    items = [_entry(k) for k in resources if k.gvr.group == group and k.gvr.version == version]
    if not items:
        return None
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": items}


def api_versions(resources: Sequence[KubeResource]) -> kt.APIVersions:
    """/api: the legacy group's versions."""
    versions = sorted({k.gvr.version for k in resources if not k.gvr.group}) or ["v1"]
    return {"kind": "APIVersions", "versions": versions,
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}]}


def _groups(resources: Sequence[KubeResource]) -> dict[str, list[str]]:
    """group -> versions, the preferred one first."""
    out: dict[str, list[str]] = {}
    for k in resources:
        if not k.gvr.group:
            continue
        versions = out.setdefault(k.gvr.group, [])
        if k.gvr.version not in versions:
            if k.res.preferred:
                versions.insert(0, k.gvr.version)
            else:
                versions.append(k.gvr.version)
    return out


def _group_doc(name: str, versions: list[str]) -> kt.APIGroup:
    vs: list[kt.GroupVersion] = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": vs, "preferredVersion": vs[0]}


def api_groups(resources: Sequence[KubeResource]) -> kt.APIGroupList:
    """/apis: an APIGroupList."""
    groups = [_group_doc(g, vs) for g, vs in sorted(_groups(resources).items())]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(resources: Sequence[KubeResource], group: str) -> kt.APIGroup | None:
    """/apis/{g}: an APIGroup, or None when the scope serves nothing of it."""
    versions = _groups(resources).get(group)
    if not versions:
        return None
    doc = _group_doc(group, versions)
    return {"kind": "APIGroup", "apiVersion": "v1", "name": doc["name"], "versions": doc["versions"],
            "preferredVersion": doc["preferredVersion"]}


def aggregated(resources: Sequence[KubeResource], legacy: bool, api_version: str) -> kt.APIGroupDiscoveryList:
    """An APIGroupDiscoveryList: the legacy group alone (for /api) or every named group (for /apis)."""
    by_group: dict[str, dict[str, list[kt.APIResourceDiscovery]]] = {}
    order: dict[str, list[str]] = {"": sorted({k.gvr.version for k in resources if not k.gvr.group})}
    order.update(_groups(resources))
    for k in resources:
        if bool(k.gvr.group) == legacy:
            continue
        r = k.res
        e: kt.APIResourceDiscovery = {
            "resource": r.gvr.resource,
            "responseKind": {"group": r.gvr.group, "version": r.gvr.version, "kind": r.kind},
            "scope": "Namespaced" if r.namespaced else "Cluster",
            "singularResource": r.singular or r.kind.lower(),
            "verbs": list(VERBS),
        }
        if r.short_names:
            e["shortNames"] = list(r.short_names)
        if k.categories:
            e["categories"] = list(k.categories)
        by_group.setdefault(r.gvr.group, {}).setdefault(r.gvr.version, []).append(e)
    items: list[kt.APIGroupDiscovery] = []
    for group in sorted(by_group):
        versions: list[kt.APIVersionDiscovery] = [
            {"version": v, "resources": by_group[group][v], "freshness": "Current"}
            for v in order.get(group, sorted(by_group[group])) if v in by_group[group]]
        items.append({"metadata": {"name": group, "creationTimestamp": None}, "versions": versions})
    return {"kind": "APIGroupDiscoveryList", "apiVersion": api_version, "metadata": {}, "items": items}


def wants_aggregated(accept: str) -> str | None:
    """The aggregated-discovery media type the client accepts (v2 preferred), or None for the legacy shape."""
    for part in accept.split(","):
        params = {p.strip() for p in part.split(";")}
        if "as=APIGroupDiscoveryList" in params and "g=apidiscovery.k8s.io" in params:
            if "v=v2" in params:
                return AGGREGATED
            if "v=v2beta1" in params:
                return AGGREGATED_V2BETA1
    return None


def version_doc(views: Sequence[ClusterView]) -> kt.VersionInfo:
    """/version: the oldest Kubernetes version among the scope's clusters (what every one of them supports)."""
    known = [v for v in views if v.version.startswith("v")]

    def key(v: ClusterView) -> tuple[int, ...]:
        nums = v.version[1:].split("-")[0].split(".")
        return tuple(int(n) if n.isdigit() else 0 for n in nums)

    oldest = min(known, key=key) if known else None
    git = oldest.version if oldest else "v0.0.0"
    nums = git[1:].split("-")[0].split(".")
    return {
        "major": nums[0] if nums else "0",
        "minor": nums[1] if len(nums) > 1 else "0",
        "gitVersion": git,
        "gitCommit": "",
        "gitTreeState": "",
        "buildDate": "",
        "goVersion": "",
        "compiler": "",
        "platform": oldest.platform if oldest else "",
    }
