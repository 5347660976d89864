"""Install or upgrade our CRDs on a cluster (the master) with server-side apply.

A CRD is applied only when the cluster's copy is missing or carries a lower `crd-revision` label than the
packaged one, so an older controller never downgrades a newer schema. The apply uses force: CRDs are ours, and a
copy installed by the seed or by `kubectl apply` (client-side) owns the same fields under another manager.
Forbidden is turned into one error that says which permission is missing and how to install by hand.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from multicluster import crds
from multicluster.errors import Forbidden, NotFound, ReconcileError
from multicluster.kube import APPLY_PATCH, ClusterClient
from multicluster.logsetup import cluster_logger

log = logging.getLogger(__name__)

CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


def _forbidden(client: ClusterClient, crd: crds.CRD, verb: str, exc: Forbidden) -> ReconcileError:
    return ReconcileError(
        f"cluster {client.name}: not allowed to {verb} CustomResourceDefinition {crd.name}: {exc.message}",
        reason="CRDInstallForbidden",
        hint="grant get/create/patch on customresourcedefinitions.apiextensions.k8s.io to the daemon's credentials, "
             "or install them once by hand: kubectl apply --server-side -f manifests/crds.yaml",
    )


def _established(obj: dict[str, Any]) -> bool:
    conds = (obj.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conds if isinstance(c, dict))


async def _served(client: ClusterClient, crd: crds.CRD) -> bool:
    resources = await client.discover(refresh=True)
    return any(r.gvr.group == crds.GROUP and r.gvr.resource == crd.plural for r in resources)


async def install_crds(client: ClusterClient, *, field_manager: str = "multicluster",
                       timeout: float = 60.0) -> list[str]:
    """Make every packaged CRD present and current; returns what was done (`name: installed|upgraded|current`)."""
    done: list[str] = []
    for crd in crds.load():
        try:
            live: dict[str, Any] | None = await client.get(f"{CRD_PATH}/{crd.name}")
        except NotFound:
            live = None
        except Forbidden as exc:
            # Cannot even read CRDs: fine if an administrator installed them (discovery is open to everyone).
            if await _served(client, crd):
                cluster_logger(log, client.name).warning(
                    "cannot read CRD %s (%s); assuming the installed one is usable", crd.name, exc.message)
                done.append(f"{crd.name}: unverified")
                continue
            raise _forbidden(client, crd, "read", exc) from exc
        if live is not None and crds.revision_of(live) >= crd.revision:
            done.append(f"{crd.name}: current")
            continue
        try:
            applied = await client.request(
                "PATCH", f"{CRD_PATH}/{crd.name}", params={"fieldManager": field_manager, "force": True},
                body=crd.body, content_type=APPLY_PATCH)
        except Forbidden as exc:
            raise _forbidden(client, crd, "create or patch", exc) from exc
        action = "installed" if live is None else f"upgraded from revision {crds.revision_of(live)}"
        cluster_logger(log, client.name).info("CRD %s %s (revision %d)", crd.name, action, crd.revision)
        deadline = time.monotonic() + timeout
        while not _established(applied):
            if time.monotonic() > deadline:
                raise ReconcileError(f"cluster {client.name}: CRD {crd.name} not Established after {timeout:.0f}s",
                                     reason="CRDNotEstablished")
            await asyncio.sleep(0.2)
            applied = await client.get(f"{CRD_PATH}/{crd.name}")
        done.append(f"{crd.name}: {action}")
    return done
