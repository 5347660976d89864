"""One CR for one member: who owns the copy, which client writes it, what the policy is asked, the object itself.

Kinds are resolved through the member's discovery (never lower(kind)+"s", a seed bug): a kind the member does not
serve is an UnknownKind result naming the versions it does serve. The template is rendered twice when the
cluster's customize entries change apiVersion or kind, so namespacing follows the kind actually delivered.
Reconcile (what to deliver) and finalize (what a deletion must remove) both render through here.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any

from multicluster.errors import ReconcileError
from multicluster.gvr import APIResource
from multicluster.kube import ClusterClient

from . import apply, overriders, policy
from .model import ADOPT_ANNOTATION, CRKey, Target
from .patches import apply_actions, check_template, customize_for, render, stamp
from .types import MCR, MCRSpec

_SA_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_REDISCOVER_EVERY = 5.0  # seconds: a missing kind refreshes a member's discovery at most this often


def cr_owner(key: CRKey, cr: MCR, field_manager: str) -> apply.Owner:
    md = cr.get("metadata") or {}
    # spec.conflictResolution: Overwrite and the adopt annotation ask for the same thing (lifecycle.py).
    spec = cr.get("spec") if isinstance(cr.get("spec"), dict) else {}
    adopt = str((md.get("annotations") or {}).get(ADOPT_ANNOTATION, "")).lower() == "true" \
        or (spec or {}).get("conflictResolution") == "Overwrite"
    return apply.Owner(key, str(md.get("uid") or ""), adopt, field_manager)


def member(client: ClusterClient, cr: MCR) -> apply.Member | None:
    """The client this CR writes through: impersonating spec.serviceAccountName when set (None: invalid)."""
    spec = cr.get("spec")
    sa = spec.get("serviceAccountName") if isinstance(spec, dict) else None
    if sa is None or sa == "":
        return apply.Member(client)
    if not isinstance(sa, str) or not _SA_NAME.match(sa):
        return None
    ns = str((cr.get("metadata") or {}).get("namespace") or "")
    return apply.Member(client, policy.impersonation(ns, sa))


def remover(client: ClusterClient, cr: MCR) -> apply.Member:
    # An invalid serviceAccountName never delivered anything as a service account; what this CR's owner
    # annotation marks was written by the daemon, so the daemon removes it.
    return member(client, cr) or apply.Member(client)


def policy_request(owner: apply.Owner, resource: APIResource, target: Target) -> policy.Request:
    return policy.Request(owner.key[0], resource.gvr.group, resource.kind, resource.namespaced, target.namespace)


class Renderer:
    """Owns when each member's discovery was last refreshed for a missing kind."""

    def __init__(self) -> None:
        self._rediscovered: dict[str, float] = {}

    async def render(self, client: ClusterClient, spec: MCRSpec, owner: apply.Owner, cluster: str,
                     labels: Mapping[str, str] | None = None) -> tuple[dict[str, Any], Target, APIResource]:
        """The object for `cluster`: template → overrideRules (overriders.py) → the seed's customize patches →
        ownership marks. `labels`: the cluster's labels, for rules that select clusters by label."""
        template = spec["template"]
        api_version, kind, _ = check_template(template)
        rules = overriders.parse(spec)
        resource = await self.resolve(client, api_version, kind)
        obj = render(template, owner.key[0], namespaced=resource.namespaced)
        obj = overriders.apply(obj, rules, cluster, labels or {})
        obj = apply_actions(obj, customize_for(spec, cluster))
        api_version2, kind2, name = check_template(obj)
        if (api_version2, kind2) != (api_version, kind):
            resource = await self.resolve(client, api_version2, kind2)
        obj = render(obj, owner.key[0], namespaced=resource.namespaced)
        obj = stamp(obj, cr_namespace=owner.key[0], cr_name=owner.key[1], cr_uid=owner.uid, cluster=cluster)
        ns = str(obj["metadata"].get("namespace") or "") if resource.namespaced else ""
        return obj, Target(api_version2, kind2, resource.gvr.resource, ns, name), resource

    async def resolve(self, client: ClusterClient, api_version: str, kind: str) -> APIResource:
        """kind → resource through the member's discovery (refreshed at most every 5 s when a kind is missing)."""
        group, _, version = api_version.rpartition("/")

        def find(resources: list[APIResource]) -> APIResource | None:
            return next((r for r in resources if r.gvr.group == group and r.gvr.version == version
                         and r.kind == kind), None)

        resources = await client.discover()
        found = find(resources)
        if found is None and time.monotonic() - self._rediscovered.get(client.name, 0.0) > _REDISCOVER_EVERY:
            self._rediscovered[client.name] = time.monotonic()
            resources = await client.discover(refresh=True)
            found = find(resources)
        if found is None:
            served = sorted({r.gvr.api_version for r in resources if r.kind == kind})
            why = f"{kind} is served there as {', '.join(served)}" if served else \
                f"no API group there serves kind {kind} (is its CRD installed?)"
            raise ReconcileError(f"{api_version} {kind} is not served by this cluster: {why}",
                                 reason="UnknownKind")
        return found
