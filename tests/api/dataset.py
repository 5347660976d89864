"""A realistic multi-cluster dataset for the API and plugin tests, made by real kube-apiservers.

Objects are created in the harness's three API servers (pods with node names and patched statuses, deployments
the controller-manager works on, configmaps, a MultiClusterResource CRD and its objects), then listed back, so
every byte the store holds is what a real server serves (uids, timestamps, defaults). Discovery comes from the
same servers through ClusterClient.discover(). The store is filled with multicluster.sync.to_row, the informers'
own conversion. A reference filter (`expected`) re-implements the query semantics in Python for the assertions.
"""

from __future__ import annotations

import asyncio
import copy
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from multicluster.config import ClusterConfig
from multicluster.errors import Conflict
from multicluster.gvr import GVR, APIResource, resolve
from multicluster.kube import ClusterClient
from multicluster.store import Row, Store, SyncState
from multicluster.sync import to_row
from multicluster.testing.harness import Harness

PODS = GVR("", "v1", "pods")
CMS = GVR("", "v1", "configmaps")
DEPLOYS = GVR("apps", "v1", "deployments")
NAMESPACES = GVR("", "v1", "namespaces")
MCR = GVR("mulitcluster.practice.com", "v1alpha1", "multiclusterresources")
ORIGIN = "api-test"

CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "multiclusterresources.mulitcluster.practice.com", "labels": {"version": "0.1"}},
    "spec": {
        "group": "mulitcluster.practice.com",
        "scope": "Namespaced",
        "names": {"plural": "multiclusterresources", "singular": "multiclusterresource",
                  "kind": "MultiClusterResource", "listKind": "MultiClusterResourceList", "shortNames": ["rr"]},
        "versions": [{
            "name": "v1alpha1", "served": True, "storage": True, "subresources": {"status": {}},
            "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
        }],
    },
}


@dataclass
class Dataset:
    resources: list[APIResource]
    namespaces: tuple[str, str]  # (a, b), present in every cluster
    objects: dict[tuple[str, GVR], list[dict[str, Any]]] = field(default_factory=dict)
    clusters: tuple[str, ...] = ()

    def resource(self, spelling: str) -> APIResource:
        return resolve(spelling, self.resources)

    def items(self, gvr: GVR) -> list[tuple[str, dict[str, Any]]]:
        return [(c, o) for c in self.clusters for o in self.objects.get((c, gvr), [])]

    def rows(self) -> list[Row]:
        out = []
        for (cluster, gvr), objs in self.objects.items():
            for o in objs:
                out.append(to_row(cluster, gvr, o, int(o["metadata"]["resourceVersion"])))
        return out

    def sync_states(self, cluster: str, now: float) -> list[SyncState]:
        return [SyncState(cluster, gvr, "synced", resource_version=1, synced_at=now, objects=len(objs))
                for (c, gvr), objs in self.objects.items() if c == cluster]


async def _create(c: ClusterClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    try:
        return await c.request("POST", path, body=body)
    except Conflict:
        return {}


def _pod(name: str, ns: str, *, app: str, tier: str, node: str, containers: Sequence[tuple[str, str]],
         extra_labels: dict[str, str] | None = None) -> dict[str, Any]:
    labels = {"app": app, "tier": tier, "origin": ORIGIN, **(extra_labels or {})}
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"nodeName": node, "containers": [{"name": n, "image": i} for n, i in containers]},
    }


async def _populate_cluster(c: ClusterClient, idx: int, ns_a: str, ns_b: str) -> None:
    for ns in (ns_a, ns_b):
        await _create(c, "/api/v1/namespaces", {"metadata": {"name": ns, "labels": {"origin": ORIGIN}}})
    pods = [
        (_pod("web-0", ns_a, app="web", tier="frontend", node="node-1",
              containers=[("nginx", "nginx:1.25"), ("sidecar", "envoyproxy/envoy:v1.30")]), "Running"),
        (_pod("web-1", ns_a, app="web", tier="frontend", node="node-2", containers=[("nginx", "nginx:1.25")],
              extra_labels={"canary": "true"}), "Running"),
        (_pod(f"web-{idx}x", ns_a, app="web", tier="frontend", node="node-1", containers=[("nginx", "nginx:1.24")],
              extra_labels={"app.kubernetes.io/name": "web"}), "Pending"),
        (_pod("db-0", ns_b, app="db", tier="backend", node=f"node-{idx}",
              containers=[("mariadb", "mariadb:10.11")]), "Running"),
        (_pod("job-a1", ns_b, app="batch", tier="backend", node="node-2",
              containers=[("work", "busybox:1.36")]), "Succeeded" if idx != 2 else "Failed"),
    ]
    for i, (pod, phase) in enumerate(pods):
        created = await _create(c, PODS.path(ns_a if pod["metadata"]["namespace"] == ns_a else ns_b), pod)
        if not created:
            continue
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        ip = f"10.{idx}.0.{i + 10}"
        await c.request("PATCH", PODS.path(ns, name) + "/status", content_type="application/merge-patch+json",
                        body={"status": {"phase": phase, "podIP": ip, "podIPs": [{"ip": ip}],
                                         "hostIP": f"192.168.{idx}.1", "hostIPs": [{"ip": f"192.168.{idx}.1"}]}})
    for name, replicas in (("web", 2), ("api", idx)):
        await _create(c, DEPLOYS.path(ns_a), {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns_a, "labels": {"app": name, "origin": ORIGIN}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": name, "image": f"example/{name}:v{idx}"}]}}},
        })
    cms = [("settings", ns_a, {"a": "1", "b": "2"}), ("settings-extra", ns_a, {"x": "y"}),
           (f"only-in-cluster{idx}", ns_b, {}), ("percent-literal", ns_b, {"k": "v"})]
    for name, ns, data in cms:
        await _create(c, CMS.path(ns), {"apiVersion": "v1", "kind": "ConfigMap",
                                        "metadata": {"name": name, "namespace": ns,
                                                     "labels": {"origin": ORIGIN, "cfg": name.split("-")[0]}},
                                        "data": data})
    placement = [{"name": f"cluster{j}"} for j in range(1, 4) if j != idx]
    await _create(c, MCR.path(ns_a), {
        "apiVersion": "mulitcluster.practice.com/v1alpha1", "kind": "MultiClusterResource",
        "metadata": {"name": "mypod.pod", "namespace": ns_a, "labels": {"origin": ORIGIN}},
        "spec": {"template": {"apiVersion": "v1", "kind": "Pod",
                              "metadata": {"name": "multicluster-pod", "namespace": ns_a},
                              "spec": {"containers": [{"name": "busybox", "image": "busybox"}]}},
                 "placement": {"clusters": placement}},
    })


async def _wait_crd(c: ClusterClient, timeout: float = 60.0) -> list[APIResource]:
    deadline = time.monotonic() + timeout
    while True:
        found = await c.discover(refresh=True)
        if any(r.gvr == MCR for r in found):
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"CRD {MCR} not served by {c.name}")
        await asyncio.sleep(0.5)


_CACHE: dict[str, Dataset] = {}


async def build(harness: Harness) -> Dataset:
    """Create (once per harness) and snapshot the dataset."""
    key = str(harness.workdir)
    if key in _CACHE:
        return _CACHE[key]
    u = uuid.uuid4().hex[:6]
    ns_a, ns_b = f"api-{u}-a", f"api-{u}-b"
    names = sorted(harness.servers)
    clients = [ClusterClient(ClusterConfig(n, harness.servers[n].kubeconfig)) for n in names]
    try:
        for c in clients:
            await _create(c, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", copy.deepcopy(CRD))
        discovered = await asyncio.gather(*(_wait_crd(c) for c in clients))
        union: dict[GVR, APIResource] = {}
        for found in discovered:
            for r in found:
                union.setdefault(r.gvr, r)
        await asyncio.gather(*(_populate_cluster(c, i + 1, ns_a, ns_b) for i, c in enumerate(clients)))
        # Let the controller-manager act on the deployments (status.replicas), as a live cluster would.
        await asyncio.sleep(2.0)
        ds = Dataset(resources=list(union.values()), namespaces=(ns_a, ns_b), clusters=tuple(names))
        for c in clients:
            for gvr in (PODS, CMS, DEPLOYS, MCR):
                objs: list[dict[str, Any]] = []
                for ns in (ns_a, ns_b):
                    page = await c.get(gvr.path(ns), params={"labelSelector": f"origin={ORIGIN}"})
                    objs += page.get("items") or []
                for o in objs:  # list items carry no apiVersion/kind; the informer adds them the same way
                    o.setdefault("apiVersion", gvr.api_version)
                    o.setdefault("kind", {PODS: "Pod", CMS: "ConfigMap", DEPLOYS: "Deployment",
                                          MCR: "MultiClusterResource"}[gvr])
                ds.objects[(c.name, gvr)] = objs
            nss = (await c.get(NAMESPACES.path()))["items"]
            for o in nss:
                o.setdefault("apiVersion", "v1")
                o.setdefault("kind", "Namespace")
            ds.objects[(c.name, NAMESPACES)] = nss
    finally:
        for c in clients:
            await c.close()
    _CACHE[key] = ds
    return ds


async def fill(store: Store, rows: Iterable[Row], batch: int = 500) -> None:
    rows = list(rows)
    for i in range(0, len(rows), batch):
        await store.apply(rows[i : i + batch])


# --------------------------------------------------------------------------------------------------- reference


def _labels(o: dict[str, Any]) -> dict[str, str]:
    return dict((o.get("metadata") or {}).get("labels") or {})


def _field(o: dict[str, Any], key: str) -> str:
    cur: Any = o
    for part in key.split("."):
        cur = cur.get(part) if isinstance(cur, dict) else None
    return cur if isinstance(cur, str) else ""


def label_match(labels: dict[str, str], key: str, op: str, values: Sequence[str]) -> bool:
    has = key in labels
    v = labels.get(key)
    if op == "=":
        return has and v == values[0]
    if op == "!=":
        return not has or v != values[0]
    if op == "in":
        return has and v in values
    if op == "notin":
        return not has or v not in values
    return has if op == "exists" else not has


def expected(ds: Dataset, gvr: GVR, *, clusters: Sequence[str] = (), namespaces: Sequence[str] = (),
             name: str | None = None, prefix: str | None = None, contains: str | None = None,
             labels: Sequence[tuple[str, str, Sequence[str]]] = (),
             fields: Sequence[tuple[str, str, str]] = ()) -> set[tuple[str, str, str]]:
    """(cluster, namespace, name) of every object the API must return, computed independently of the store."""
    out = set()
    for cluster, o in ds.items(gvr):
        md = o["metadata"]
        ns, nm = md.get("namespace", ""), md["name"]
        if clusters and cluster not in clusters:
            continue
        if namespaces and ns not in namespaces:
            continue
        if name is not None and nm != name:
            continue
        if prefix is not None and not nm.startswith(prefix):
            continue
        if contains is not None and contains not in nm:
            continue
        if not all(label_match(_labels(o), k, op, vals) for k, op, vals in labels):
            continue
        if not all((_field(o, k) == v) == (op == "=") for k, op, v in fields):
            continue
        out.add((cluster, ns, nm))
    return out
