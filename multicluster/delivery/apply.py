"""Put one rendered object into one member cluster, or take it out, and say exactly what happened.

Server-side apply with our field manager and WITHOUT force. A 409 conflict is then looked at field by field:
- every conflicting field belongs to an *Update* manager (kubectl edit/patch/replace, a script) and the object is
  ours (or being adopted): that is a hand edit of a delivered copy — drift — and it is reverted by applying again
  with force, recorded as a `DriftCorrected` Event (never silently);
- any field belongs to another *Apply* manager (another controller or a person using server-side apply on
  purpose): reported as phase Conflict and left alone.
An object that exists and is not ours (no managed-by label, or owned by another MultiClusterResource) is never
applied to; the CR annotation `multicluster.practice.com/adopt: "true"` takes over unmanaged objects when the
operator allows it (`delivery.allowAdopt`; never those of another MultiClusterResource: two CRs would then fight over
one object). An adopted copy carries `multicluster.practice.com/adopted: "true"`: it is released (our marks removed),
not deleted, when its MultiClusterResource lets go of it.
Every request goes through a `Member`: the daemon's client of that cluster, optionally impersonating the service
account the CR names (`spec.serviceAccountName`), so the member's own RBAC decides what the CR may write.
A namespace missing in the member cluster is reported (phase NamespaceMissing), not created: creating namespaces
as a side effect would leave the question of who deletes them; deliver a Namespace with its own CR instead.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from multicluster.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    Invalid,
    KubeAPIError,
    NotFound,
)
from multicluster.kube import APPLY_PATCH, MERGE_PATCH, ClusterClient

from .events import NORMAL, WARNING
from .health import summarize
from .lifecycle import keep_member_fields
from .model import (
    ADOPTED_ANNOTATION,
    CLUSTER_ANNOTATION,
    FIELD_MANAGER,
    MANAGED_BY_LABEL,
    OWNER_ANNOTATION,
    OWNER_UID_ANNOTATION,
    ClusterResult,
    CRKey,
    Phase,
    Target,
)
from .status import now_rfc3339
from .watches import owner_of

_MANAGER = re.compile(r'conflicts? with "([^"]+)"')


class Member:
    """One member cluster as one MultiClusterResource writes to it: as the daemon, or impersonating a service
    account (then every read and write below is authorized by the member as that account)."""

    def __init__(self, client: ClusterClient, impersonate: Mapping[str, str] | None = None) -> None:
        self.client = client
        self.name = client.name
        self.impersonate = dict(impersonate) if impersonate else None

    async def get(self, path: str, *, timeout: float | None = None) -> dict[str, Any]:
        return await self.client.request("GET", path, timeout=timeout, impersonate=self.impersonate)

    async def request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        return await self.client.request(method, path, impersonate=self.impersonate, **kwargs)

    def as_whom(self) -> str:
        user = (self.impersonate or {}).get("Impersonate-User")
        return f" as {user}" if user else ""


def is_adopted(obj: dict[str, Any] | None) -> bool:
    return str((((obj or {}).get("metadata") or {}).get("annotations") or {}).get(ADOPTED_ANNOTATION)) == "true"


def _mark_adopted(desired: dict[str, Any]) -> dict[str, Any]:
    md = desired.get("metadata") or {}
    return {**desired, "metadata": {**md, "annotations": {**(md.get("annotations") or {}), ADOPTED_ANNOTATION: "true"}}}


@dataclass(frozen=True, slots=True)
class Owner:
    """The MultiClusterResource a delivery is done for."""

    key: CRKey
    uid: str
    adopt: bool
    field_manager: str

    @property
    def ref(self) -> str:
        return f"{self.key[0]}/{self.key[1]}"


def _msg(exc: KubeAPIError) -> str:
    """The API server's own message (KubeAPIError.message is prefixed with the cluster name already)."""
    return str(exc.body.get("message") or exc.message)


def _rv(obj: dict[str, Any] | None) -> str:
    return str(((obj or {}).get("metadata") or {}).get("resourceVersion") or "")


def ownership(live: dict[str, Any], owner: Owner) -> tuple[bool, str]:
    """(may we apply to it, why not)."""
    current = owner_of(live)
    if current == owner.key:
        return True, ""
    if current is not None:
        return False, (f"already delivered by MultiClusterResource {current[0]}/{current[1]}; "
                       "not overwritten (two MultiClusterResources cannot share one object)")
    if owner.adopt:
        return True, ""
    return False, ("exists and is not managed by multicluster; not overwritten (spec.conflictResolution: "
                   'Overwrite, or the annotation multicluster.practice.com/adopt: "true", takes it over where the '
                   "operator allows it)")


def conflict_managers(exc: Conflict) -> tuple[dict[str, list[str]], bool]:
    """({manager: [fields]}, whether every conflicting manager made imperative Update writes).

    The API server words each cause `conflict with "M" using v1` when M's fields come from an Update (kubectl
    edit/patch, scripts) and `conflict with "M"` when they come from an Apply (apiserver printManager). The
    manager name alone is not enough: the same name can own fields both ways.
    """
    by_manager: dict[str, list[str]] = {}
    imperative = True
    causes = [c for c in (exc.body.get("details") or {}).get("causes") or [] if isinstance(c, dict)]
    for c in causes:
        text = str(c.get("message") or "")
        m = _MANAGER.search(text)
        mgr = m.group(1) if m else "?"
        by_manager.setdefault(mgr, []).append(str(c.get("field") or "?"))
        imperative = imperative and m is not None and " using " in text[m.end():]
    if not causes:
        imperative = False
        m = _MANAGER.search(exc.message)
        by_manager["?" if m is None else m.group(1)] = []
    return by_manager, imperative


def _fields_text(by_manager: dict[str, list[str]]) -> str:
    return "; ".join(f"{mgr}: {', '.join(fields) or '?'}" for mgr, fields in sorted(by_manager.items()))


class _UidMismatch(Exception):
    """The copy the watch told us about was replaced: redo the full ownership check."""


def _is_uid_mismatch(exc: KubeAPIError) -> bool:
    """The uid or resourceVersion precondition in the applied body failed (the object changed meanwhile)."""
    text = _msg(exc)
    if isinstance(exc, Conflict):
        return "uid mismatch" in text or "the object has been modified" in text
    return isinstance(exc, Invalid) and "metadata.uid" in text


async def deliver(client: Member, owner: Owner, desired: dict[str, Any], target: Target, *,
                  timeout: float, known: tuple[str, str] | None = None, adopted: bool = False,
                  gate: asyncio.Future[Any] | None = None,
                  retain: Sequence[str] = ()) -> tuple[ClusterResult, dict[str, Any] | None]:
    """Apply `desired` as `target` in the client's cluster. Returns the result and the object as now stored.

    `known` = (uid, resourceVersion) of our copy as the drift watch last saw it: then the GET is skipped and the
    uid goes into the applied object as a precondition (the API server answers 422/409 if the object was
    replaced meanwhile, and we fall back to reading it). `gate` is awaited before anything is written: the
    finalizer patch, so no copy can exist before the CR's cleanup is guaranteed. ClusterError propagates: the
    caller owns the per-cluster circuit breaker. `adopted`: the known copy carries the adopted mark (kept).
    `retain`: JSON pointers the member owns once the copy exists (lifecycle.py): their live values are sent back
    and the apply is pinned to the resourceVersion they were read at, so it always needs the GET.
    """
    res = ClusterResult(client.name, Phase.APPLIED, target=None)
    if known is not None and not retain:
        pinned = {**desired, "metadata": {**desired["metadata"], "uid": known[0]}}
        if adopted:
            pinned = _mark_adopted(pinned)
        try:
            return await _apply(client, owner, pinned, target, res, exists=True, before_rv=known[1],
                                adopting=False, timeout=timeout, gate=gate)
        except _UidMismatch:
            res = ClusterResult(client.name, Phase.APPLIED, target=None)
    try:
        live: dict[str, Any] | None = await client.get(target.path(), timeout=timeout)
    except NotFound:
        live = None
    except Forbidden as exc:
        return _fail(res, Phase.FORBIDDEN, f"cannot read {target.describe()}{client.as_whom()}: {_msg(exc)}",
                     retry=True), None
    adopting = live is not None and owner_of(live) != owner.key
    if adopting or is_adopted(live):
        desired = _mark_adopted(desired)
    if live is not None:
        ok, why = ownership(live, owner)
        if not ok:
            return _fail(res, Phase.NOT_OWNED, f"{target.describe()} {why}", retry=True), None
        if (live.get("metadata") or {}).get("deletionTimestamp"):
            return _fail(res, Phase.FAILED, f"{target.describe()} is being deleted; it will be recreated",
                         retry=True), None
        if retain:
            desired = keep_member_fields(desired, live, retain)
            desired = {**desired, "metadata": {**desired["metadata"], "resourceVersion": _rv(live)}}
    try:
        return await _apply(client, owner, desired, target, res, exists=live is not None, before_rv=_rv(live),
                            adopting=adopting, timeout=timeout, gate=gate)
    except _UidMismatch:  # only with retain's resourceVersion pin: the member changed it meanwhile
        return _fail(res, Phase.FAILED, f"{target.describe()} changed while applying; retrying with its new state",
                     retry=True), None


async def _apply(client: Member, owner: Owner, body: dict[str, Any], target: Target, res: ClusterResult, *,
                 exists: bool, before_rv: str, adopting: bool, timeout: float,
                 gate: asyncio.Future[Any] | None) -> tuple[ClusterResult, dict[str, Any] | None]:
    cluster = client.name
    if gate is not None:
        try:
            await asyncio.shield(gate)
        except Exception:
            return _fail(res, Phase.FAILED, "not applied: the finalizer could not be added", retry=True), None
    path = target.path()
    params: dict[str, Any] = {"fieldManager": owner.field_manager}
    try:
        try:
            stored = await client.request("PATCH", path, params=params, body=body, content_type=APPLY_PATCH,
                                          timeout=timeout)
        except Conflict as exc:
            if _is_uid_mismatch(exc):
                raise _UidMismatch from exc
            by_manager, imperative = conflict_managers(exc)
            if not exists or not imperative:
                why = f"fields set by another server-side applier ({_fields_text(by_manager)}); not forced"
                return _fail(res, Phase.CONFLICT, f"{target.describe()}: {why}", retry=True), None
            stored = await client.request("PATCH", path, params={**params, "force": True}, body=body,
                                          content_type=APPLY_PATCH, timeout=timeout)
            edits = _fields_text(by_manager)
            res.events.append((NORMAL, "DriftCorrected",
                               f"cluster {cluster}: reverted hand edits of {target.describe()} ({edits})"))
    except NotFound as exc:
        details = exc.body.get("details") or {}
        if details.get("kind") == "namespaces":
            return _fail(res, Phase.NAMESPACE_MISSING,
                         f"namespace {target.namespace} does not exist there (create it, or deliver a Namespace "
                         "with another MultiClusterResource)", retry=True), None
        return _fail(res, Phase.UNKNOWN_KIND, f"{target.describe()}: {_msg(exc)}", retry=True), None
    except (Invalid, BadRequest) as exc:
        if _is_uid_mismatch(exc):
            raise _UidMismatch from exc
        return _fail(res, Phase.INVALID, f"rejected {target.describe()}: {_msg(exc)}"), None
    except Forbidden as exc:
        return _fail(res, Phase.FORBIDDEN, f"not allowed to apply {target.describe()}{client.as_whom()}: "
                                           f"{_msg(exc)}", retry=True), None
    except KubeAPIError as exc:
        return _fail(res, Phase.FAILED, f"applying {target.describe()} failed: {_msg(exc)}", retry=True), None
    res.target = target
    res.uid = str((stored.get("metadata") or {}).get("uid") or "")
    res.changed = not exists or before_rv != _rv(stored)
    if res.changed:
        res.last_applied = now_rfc3339()
        verb = "adopted" if adopting else "updated" if exists else "created"
        if not any(reason == "DriftCorrected" for _, reason, _ in res.events):
            res.events.append((NORMAL, "Delivered", f"cluster {cluster}: {target.describe()} {verb}"))
    res.summary = summarize(stored)
    return res, stored


def _fail(res: ClusterResult, phase: Phase, message: str, *, retry: bool = False) -> ClusterResult:
    res.phase = phase
    res.message = message
    res.retry = retry
    res.events.append((WARNING, str(phase), f"cluster {res.cluster}: {message}"))
    return res


async def remove(client: Member, owner: CRKey, target: Target, *, timeout: float,
                 field_manager: str = FIELD_MANAGER, release: bool = False) -> str:
    """Delete our copy; returns what happened. NotFound is success; an object that is not ours is left alone;
    an adopted one, and every one when `release` (deletionPolicy Orphan), is released: our label, annotations
    and field ownership are removed and the object stays.

    KubeAPIError/ClusterError propagate so the caller can retry (or give up after the cleanup timeout).
    """
    path = target.path()
    try:
        live = await client.get(path, timeout=timeout)
    except NotFound:
        return "already gone"
    if owner_of(live) != owner:
        return "left in place: not managed by this MultiClusterResource"
    uid = (live.get("metadata") or {}).get("uid")
    if release or is_adopted(live):
        return await _release(client, live, path, timeout=timeout, field_manager=field_manager)
    try:
        await client.request("DELETE", path, body={"apiVersion": "v1", "kind": "DeleteOptions",
                                                   "propagationPolicy": "Background",
                                                   "preconditions": {"uid": uid}}, timeout=timeout)
    except NotFound:
        return "already gone"
    return "deleted"



async def _release(client: Member, live: dict[str, Any], path: str, *, timeout: float, field_manager: str) -> str:
    """Give an adopted object back: it keeps its content, loses our marks and our manager's field ownership (so
    whoever applies it next is not in conflict with us). The uid pins the object we read."""
    md = live.get("metadata") or {}
    managers = [m for m in md.get("managedFields") or [] if isinstance(m, dict)
                and (m.get("manager"), m.get("operation")) != (field_manager, "Apply")]
    marks = (OWNER_ANNOTATION, OWNER_UID_ANNOTATION, CLUSTER_ANNOTATION, ADOPTED_ANNOTATION)
    body = {"metadata": {"uid": md.get("uid"), "labels": {MANAGED_BY_LABEL: None},
                         "annotations": dict.fromkeys(marks),
                         "managedFields": managers or [{}]}}  # [{}] is the API's way to clear the list
    try:
        await client.request("PATCH", path, params={"fieldManager": f"{field_manager}-release"}, body=body,
                             content_type=MERGE_PATCH, timeout=timeout)
    except NotFound:
        return "already gone"
    return "released"
