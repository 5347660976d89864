"""`spec.propagateDependencies: true`: the ConfigMaps, Secrets, ServiceAccounts and PVCs a workload references go
with it, read from the MCR's namespace on the master and written into the copy's namespace in each member.

References are found in the rendered Pod spec of Pod, Deployment, ReplicaSet, StatefulSet, DaemonSet, Job, CronJob
and ReplicationController templates: volumes (configMap, secret, persistentVolumeClaim, projected sources), env
valueFrom and envFrom of every container, init and ephemeral container, imagePullSecrets and serviceAccountName
(not `default`, which every namespace has). A reference marked `optional: true` that the master does not have is
skipped; any other missing one is named in the `Dependencies` condition and retried with backoff, so it is
delivered once it appears. Each dependency passes the same delivery policy check as the workload.

Sharing: one dependency can be needed by several MCRs (two Deployments mounting one ConfigMap). Each MCR marks
the copy with its own label `dependency.multicluster.practice.com/<MCR uid>: "true"` and writes it with its own
server-side apply field manager (`multicluster-dep-<uid>`), so the marks of different MCRs never overwrite each
other. An MCR that stops referencing it (or is deleted) takes only its own mark away (an apply of an empty object
by its manager); the copy is deleted only when no other MCR's mark is left, with the resourceVersion it was read
at as a precondition, so a mark added in between keeps it (the delete fails and is retried). With
`deletionPolicy: Orphan` the MCR's mark and ownership are removed and the copy stays.
What each cluster received is recorded in `status.clusters[].dependencies`, so cleanup works across restarts.
Hand edits of a dependency are corrected at the next reconcile of an MCR that uses it (no watch: dependencies are
few and small). Secret values are never logged or put into a message: errors name the object only.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from multicluster.config import DeliveryConfig
from multicluster.errors import ClusterError, KubeAPIError, NotFound
from multicluster.kube import APPLY_PATCH, MERGE_PATCH, ClusterClient

from . import apply, policy
from .events import NORMAL
from .model import CLUSTER_ANNOTATION, MANAGED_BY_LABEL, MANAGED_BY_VALUE, PREFIX, CRKey, Target
from .overriders import POD_SPEC
from .patches import digest
from .removal import why

RESOURCES = {"ConfigMap": "configmaps", "Secret": "secrets", "ServiceAccount": "serviceaccounts",
             "PersistentVolumeClaim": "persistentvolumeclaims"}
USER_LABEL_PREFIX = "dependency.multicluster.practice.com/"
SOURCE_ANNOTATION = f"{PREFIX}/dependency-source"  # "<master namespace>/<name>" it was copied from
# Reasons of the Dependencies condition and of the Warning Events that report a dependency problem.
MISSING, DENIED, FAILED = "DependencyMissing", "DependencyDenied", "DependencyFailed"
_CONTAINERS = ("initContainers", "containers", "ephemeralContainers")
# What is copied of each kind: the content, never server-set fields (PVC: no volumeName, which names a master PV).
_COPY = {"ConfigMap": ("data", "binaryData", "immutable"), "Secret": ("type", "data", "immutable"),
         "ServiceAccount": ("imagePullSecrets", "automountServiceAccountToken"),
         "PersistentVolumeClaim": ("spec",)}
_PVC_SPEC = ("accessModes", "resources", "storageClassName", "volumeMode", "selector")


@dataclass(frozen=True, slots=True, order=True)
class Ref:
    kind: str
    name: str
    optional: bool = field(default=False, compare=False)

    def describe(self) -> str:
        return f"{self.kind} {self.name}"


def references(obj: Mapping[str, Any]) -> list[Ref]:
    """The dependencies a workload object names (sorted, one per kind and name; required wins over optional)."""
    path = POD_SPEC.get(str(obj.get("kind") or ""))
    spec: Any = obj
    for tok in path or ():
        spec = spec.get(tok) if isinstance(spec, dict) else None
    if not path or not isinstance(spec, dict):
        return []
    found: dict[tuple[str, str], bool] = {}

    def add(kind: str, name: Any, optional: Any = False) -> None:
        if isinstance(name, str) and name:
            found[(kind, name)] = found.get((kind, name), True) and optional is True

    for v in spec.get("volumes") or []:
        if not isinstance(v, dict):
            continue
        cm, sec, pvc = v.get("configMap"), v.get("secret"), v.get("persistentVolumeClaim")
        if isinstance(cm, dict):
            add("ConfigMap", cm.get("name"), cm.get("optional"))
        if isinstance(sec, dict):
            add("Secret", sec.get("secretName"), sec.get("optional"))
        if isinstance(pvc, dict):
            add("PersistentVolumeClaim", pvc.get("claimName"))
        projected = v.get("projected")
        for src in (projected.get("sources") or []) if isinstance(projected, dict) else []:
            if isinstance(src, dict):
                for key, kind in (("configMap", "ConfigMap"), ("secret", "Secret")):
                    if isinstance(src.get(key), dict):
                        add(kind, src[key].get("name"), src[key].get("optional"))
    for key in _CONTAINERS:
        for c in spec.get(key) or []:
            if not isinstance(c, dict):
                continue
            for env in c.get("env") or []:
                vf = env.get("valueFrom") if isinstance(env, dict) else None
                if isinstance(vf, dict):
                    for ref_key, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
                        if isinstance(vf.get(ref_key), dict):
                            add(kind, vf[ref_key].get("name"), vf[ref_key].get("optional"))
            for ef in c.get("envFrom") or []:
                if isinstance(ef, dict):
                    for ref_key, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
                        if isinstance(ef.get(ref_key), dict):
                            add(kind, ef[ref_key].get("name"), ef[ref_key].get("optional"))
    for ips in spec.get("imagePullSecrets") or []:
        if isinstance(ips, dict):
            add("Secret", ips.get("name"))
    sa = spec.get("serviceAccountName") or spec.get("serviceAccount")
    if sa != "default":
        add("ServiceAccount", sa)
    return sorted(Ref(kind, name, optional) for (kind, name), optional in found.items())


def user_label(cr_uid: str) -> str:
    return f"{USER_LABEL_PREFIX}{cr_uid}"


def manager(field_manager: str, cr_uid: str) -> str:
    return f"{field_manager}-dep-{cr_uid}"


def target(ref: Ref, namespace: str) -> Target:
    return Target("v1", ref.kind, RESOURCES[ref.kind], namespace, ref.name)


def render(source: Mapping[str, Any], namespace: str, cr_namespace: str, cr_uid: str,
           cluster: str) -> dict[str, Any]:
    """The copy of a master object for one member: its content, its own labels and annotations, and our marks."""
    kind = str(source.get("kind"))
    md = source.get("metadata") or {}
    annotations = {k: v for k, v in (md.get("annotations") or {}).items()
                   if k != "kubectl.kubernetes.io/last-applied-configuration" and not k.startswith(PREFIX)}
    labels = {k: v for k, v in (md.get("labels") or {}).items()
              if not k.startswith(PREFIX) and not k.startswith(USER_LABEL_PREFIX)}
    out: dict[str, Any] = {"apiVersion": "v1", "kind": kind, "metadata": {
        "name": md.get("name"), "namespace": namespace,
        "labels": {**labels, MANAGED_BY_LABEL: MANAGED_BY_VALUE, user_label(cr_uid): "true"},
        "annotations": {**annotations, SOURCE_ANNOTATION: f"{cr_namespace}/{md.get('name')}",
                        CLUSTER_ANNOTATION: cluster}}}
    for key in _COPY.get(kind, ()):
        if key in source:
            out[key] = copy.deepcopy(source[key])
    if kind == "PersistentVolumeClaim" and isinstance(out.get("spec"), dict):
        out["spec"] = {k: v for k, v in out["spec"].items() if k in _PVC_SPEC}
    return out


def is_dependency(obj: Mapping[str, Any]) -> bool:
    md = obj.get("metadata") or {}
    return (md.get("labels") or {}).get(MANAGED_BY_LABEL) == MANAGED_BY_VALUE and \
        SOURCE_ANNOTATION in (md.get("annotations") or {})


def users(obj: Mapping[str, Any]) -> set[str]:
    """The uids of the MCRs whose mark a dependency copy carries."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return {k[len(USER_LABEL_PREFIX):] for k in labels if k.startswith(USER_LABEL_PREFIX)}


def to_status(refs: list[tuple[Ref, str]]) -> list[dict[str, str]]:
    return [{"kind": r.kind, "namespace": ns, "name": r.name} for r, ns in sorted(refs)]


def from_status(entries: Any) -> list[tuple[Ref, str]]:
    out: list[tuple[Ref, str]] = []
    for e in entries if isinstance(entries, list) else []:
        if isinstance(e, dict) and e.get("kind") in RESOURCES and isinstance(e.get("name"), str) and e["name"] \
                and isinstance(e.get("namespace"), str):
            out.append((Ref(e["kind"], e["name"]), e["namespace"]))
    return out


# --------------------------------------------------------------------------------------------- I/O


Sources = dict[tuple[str, Ref], "asyncio.Task[dict[str, Any] | None]"]


@dataclass(slots=True)
class Outcome:
    """One cluster's dependencies after a reconcile."""

    delivered: list[tuple[Ref, str]] = field(default_factory=list)  # (ref, namespace): recorded in the status
    problems: list[tuple[str, str]] = field(default_factory=list)  # (reason, message): the Dependencies condition
    events: list[tuple[str, str, str]] = field(default_factory=list)
    retry: bool = False


class Dependencies:
    """Delivers and releases dependency copies. Owns a memo of what was last applied per (MCR, cluster, copy), so
    a steady state does not re-apply them (the master copy is still read once per reconcile)."""

    def __init__(self, master: ClusterClient, field_manager: str, timeout: float, resync_seconds: float) -> None:
        self.master = master
        self.field_manager = field_manager
        self.timeout = timeout
        self.resync_seconds = resync_seconds
        self._memo: dict[tuple[CRKey, str, str], tuple[str, float]] = {}

    def forget(self, key: CRKey) -> None:
        for k in [k for k in self._memo if k[0] == key]:
            del self._memo[k]

    async def source(self, namespace: str, ref: Ref, impersonate: Mapping[str, str] | None) -> dict[str, Any] | None:
        """The master object a dependency is copied from; read as the MCR's service account when it names one,
        so an author cannot copy out what that account may not read."""
        try:
            return await apply.Member(self.master, impersonate).get(
                f"/api/v1/namespaces/{namespace}/{RESOURCES[ref.kind]}/{ref.name}", timeout=self.timeout)
        except NotFound:
            return None

    async def deliver(self, writer: apply.Member, key: CRKey, cr_uid: str, cluster: str, workload: Mapping[str, Any],
                      namespace: str, delivery_policy: DeliveryConfig, recorded: list[tuple[Ref, str]],
                      sources: Sources) -> Outcome:
        """Make `cluster` hold what `workload` references, and release what it no longer does."""
        out = Outcome()
        wanted = references(workload)
        for ref in wanted:
            if ref.kind == "Secret" and writer.impersonate is None \
                    and not delivery_policy.secrets_without_service_account:
                out.problems.append((DENIED, f"{cluster}: {ref.describe()}: SecretNeedsServiceAccount: a Secret is "
                                             "copied only for an MCR with spec.serviceAccountName (it is read on "
                                             "the master as that account), or when the operator sets "
                                             "delivery.secretsWithoutServiceAccount"))
                continue
            where = (key[0], ref)
            if where not in sources:
                sources[where] = asyncio.ensure_future(self.source(key[0], ref, writer.impersonate))
            try:
                src = await sources[where]
            except (ClusterError, KubeAPIError) as exc:
                out.problems.append((FAILED, f"{cluster}: {ref.describe()}: reading it on the master failed: "
                                             f"{why(exc)}"))
                out.retry = True
                continue
            if src is None:
                if not ref.optional:
                    out.problems.append((MISSING, f"{cluster}: {ref.describe()} does not exist in namespace {key[0]} "
                                                  "on the master (delivered once it is created)"))
                    out.retry = True
                continue
            denial = policy.check(delivery_policy, policy.Request(key[0], "", ref.kind, True, namespace))
            if denial is not None:
                out.problems.append((DENIED, f"{cluster}: {ref.describe()}: {denial.reason}: {denial.message}"))
                continue
            body = render(src, namespace, key[0], cr_uid, cluster)
            problem = await self._put(writer, key, cr_uid, cluster, ref, namespace, body, out)
            if problem is None:
                out.delivered.append((ref, namespace))
            else:
                out.problems.append((FAILED, problem))
                out.retry = True
        still = {(r.kind, r.name) for r in wanted}
        for ref, ns in recorded:
            if ns == namespace and (ref.kind, ref.name) in still:
                if (ref, ns) not in out.delivered:
                    out.delivered.append((ref, ns))  # still referenced, not delivered this time: keep tracking it
                continue
            try:
                what = await self.release(writer, key, cr_uid, ref, ns, orphan=False)
            except ClusterError:
                raise
            except KubeAPIError as exc:
                out.delivered.append((ref, ns))  # still ours to clean up
                out.problems.append((FAILED, f"{cluster}: removing {ref.describe()} failed: {why(exc)}"))
                out.retry = True
                continue
            if what in ("deleted", "released"):
                out.events.append((NORMAL, "DependencyRemoved", f"cluster {cluster}: {ref.describe()} in {ns} "
                                                                f"{what} (no longer referenced)"))
        return out

    async def _put(self, writer: apply.Member, key: CRKey, cr_uid: str, cluster: str, ref: Ref, namespace: str,
                   body: dict[str, Any], out: Outcome) -> str | None:
        want = digest(body)
        memo_key = (key, cluster, f"{ref.kind}/{namespace}/{ref.name}")
        memo = self._memo.get(memo_key)
        if memo is not None and memo[0] == want and time.monotonic() - memo[1] < self.resync_seconds * 0.9:
            return None
        t = target(ref, namespace)
        try:
            try:
                live: dict[str, Any] | None = await writer.get(t.path(), timeout=self.timeout)
            except NotFound:
                live = None
            if live is not None and not is_dependency(live):
                return (f"{cluster}: {t.describe()} exists and is not a dependency copy managed by multicluster; "
                        "not overwritten")
            if live is not None and (live.get("metadata") or {}).get("annotations", {}).get(SOURCE_ANNOTATION) \
                    != body["metadata"]["annotations"][SOURCE_ANNOTATION]:
                return f"{cluster}: {t.describe()} is a copy of another master object; not overwritten"
            await writer.request("PATCH", t.path(), params={"fieldManager": manager(self.field_manager, cr_uid),
                                                            "force": True},
                                 body=body, content_type=APPLY_PATCH, timeout=self.timeout)
        except ClusterError:
            raise
        except KubeAPIError as exc:
            return f"{cluster}: applying {t.describe()}{writer.as_whom()} failed: {why(exc)}"
        self._memo[memo_key] = (want, time.monotonic())
        if live is None:
            out.events.append((NORMAL, "DependencyDelivered", f"cluster {cluster}: {t.describe()} created"))
        return None

    async def release(self, writer: apply.Member, key: CRKey, cr_uid: str, ref: Ref, namespace: str, *,
                      orphan: bool) -> str:
        """Take this MCR's mark off a dependency copy; delete it when no other MCR uses it (unless `orphan`).
        Returns what happened; KubeAPIError/ClusterError propagate (the caller retries)."""
        t = target(ref, namespace)
        for k in [k for k in self._memo if k[0] == key and k[2] == f"{ref.kind}/{namespace}/{ref.name}"]:
            del self._memo[k]
        try:
            live = await writer.get(t.path(), timeout=self.timeout)
        except NotFound:
            return "already gone"
        if not is_dependency(live) or cr_uid not in users(live):
            return "not ours"
        md = live.get("metadata") or {}
        others = users(live) - {cr_uid}
        if not others and not orphan:
            try:
                await writer.request("DELETE", t.path(), body={
                    "apiVersion": "v1", "kind": "DeleteOptions",
                    "preconditions": {"uid": md.get("uid"), "resourceVersion": md.get("resourceVersion")}},
                    timeout=self.timeout)
            except NotFound:
                return "already gone"
            # Conflict (another MCR marked it after our read) propagates: the caller looks again next time.
            return "deleted"
        mgr = manager(self.field_manager, cr_uid)
        if others:
            # Our manager applies an empty object: our mark and our share of the fields go, others' stay.
            await writer.request("PATCH", t.path(), params={"fieldManager": mgr, "force": True},
                                 body={"apiVersion": "v1", "kind": ref.kind,
                                       "metadata": {"name": ref.name, "namespace": namespace}},
                                 content_type=APPLY_PATCH, timeout=self.timeout)
            return "released"
        # Orphan, last user: the copy stays with its content; every mark of ours and our field ownership go.
        managers = [m for m in md.get("managedFields") or [] if isinstance(m, dict) and m.get("manager") != mgr]
        body = {"metadata": {"uid": md.get("uid"), "labels": {MANAGED_BY_LABEL: None, user_label(cr_uid): None},
                             "annotations": {SOURCE_ANNOTATION: None, CLUSTER_ANNOTATION: None},
                             "managedFields": managers or [{}]}}
        await writer.request("PATCH", t.path(), params={"fieldManager": f"{self.field_manager}-release"},
                             body=body, content_type=MERGE_PATCH, timeout=self.timeout)
        return "released"
