"""The MultiClusterResource status built from per-cluster results (pure).

Status layout (also what `kubectl get rr` and `kubectl-multicluster get rr` print):

    status:
      observedGeneration: 3
      targetClusters: "cluster1,cluster2"      # CLUSTERS column: resolved placement (master when empty)
      placedClusters: 2, appliedClusters: 2, readyClusters: 1
      applied: "2/2"                            # APPLIED column: placed clusters holding the current template
      ready: "1/2"                              # READY column: placed clusters whose copy is healthy
      message: "cluster2: Progressing: 0/2 replicas available"
      conditions: [{type: Applied}, {type: Ready}, {type: Denied}, {type: Invalid}]  # the last two once they occur
      clusters:
        - {name, applied, ready, phase, message, lastAppliedTime, target: {apiVersion, kind, resource, namespace,
           name, uid}, health, healthMessage, generation, observedGeneration, replicas, readyReplicas,
           availableReplicas, updatedReplicas, conditions: [{type, status, reason}]}   # the copy's own status

Ready is True only when every placed copy is applied and Healthy (health.py); otherwise its message lists the
clusters that are not, in placement order, each with its verdict and why ("cluster2: Progressing: 0/2 replicas
available"), so the first one named is the first unhealthy cluster.

`target` records what was delivered where, so a later reconcile can remove copies after a placement change, a
rename or a kind change even across controller restarts. Times only move when something changes, so writing the
same status twice is detected (`same_status`) and skipped: a steady state costs no writes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from .health import UNKNOWN
from .model import ClusterResult, Phase, Target
from .types import ClusterStatus, Condition, MCRStatus

_MAX_MESSAGE = 1024


def now_rfc3339(t: float | None = None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if t is None else t))


# --------------------------------------------------------------------------------------------- status


def _entry(r: ClusterResult, previous: ClusterStatus | None) -> ClusterStatus:
    e: ClusterStatus = {"name": r.cluster, "applied": r.applied, "ready": r.ready, "phase": str(r.phase),
                         "message": r.message[:_MAX_MESSAGE]}
    last = r.last_applied or ((previous or {}).get("lastAppliedTime") if r.target else "")
    if last:
        e["lastAppliedTime"] = last
    if r.applied:
        e.update(r.summary.to_status() if r.summary is not None else {"health": UNKNOWN})
    if r.target is not None:
        e["target"] = r.target.to_status(r.uid)
    if r.dependencies:
        e["dependencies"] = [{"kind": d["kind"], "namespace": d["namespace"], "name": d["name"]}
                             for d in r.dependencies]
    return e


def _condition_entry(ctype: str, ok: bool, reason: str, message: str, generation: int,
                     previous: Condition | None) -> Condition:
    status = "True" if ok else "False"
    ltt = (previous or {}).get("lastTransitionTime") if (previous or {}).get("status") == status else None
    return {"type": ctype, "status": status, "reason": reason, "message": message[:_MAX_MESSAGE],
            "lastTransitionTime": ltt or now_rfc3339(), "observedGeneration": generation}


condition_entry = _condition_entry  # for the conditions lifecycle.py adds


def _reason(failed: Sequence[ClusterResult], fallback: str) -> str:
    phases = {str(r.phase) for r in failed}
    return phases.pop() if len(phases) == 1 else fallback


def build_status(
    *,
    generation: int,
    placed: Sequence[str],
    results: Sequence[ClusterResult],
    problems: Sequence[str],
    previous: MCRStatus | None,
) -> MCRStatus:
    """The full status. `results` holds placed clusters and clusters whose copy is still being removed."""
    prev: MCRStatus = previous if isinstance(previous, dict) else {}
    prev_entries = {e.get("name"): e for e in prev.get("clusters") or [] if isinstance(e, dict)}
    prev_conds = {c.get("type"): c for c in prev.get("conditions") or [] if isinstance(c, dict)}
    placed_set = set(placed)
    in_place = [r for r in results if r.cluster in placed_set]
    not_applied = [r for r in in_place if not r.applied]
    not_ready = [r for r in in_place if r.applied and not r.ready]
    removing = [r for r in results if r.cluster not in placed_set]

    msgs = list(problems) + [f"{r.cluster}: {r.phase}: {r.message}" for r in not_applied]
    msgs += [f"{r.cluster}: still holds a copy ({r.phase}: {r.message})" for r in removing]
    applied_ok = not not_applied and not problems and not removing
    applied_reason = "Applied" if applied_ok else ("InvalidSpec" if problems and not not_applied
                                                   else _reason(not_applied or removing, "NotApplied"))
    applied_msg = "; ".join(msgs) if msgs else f"applied to {len(in_place)} cluster(s)"

    ready_msgs = [f"{r.cluster}: {r.health}: {r.health_message}" for r in not_ready]
    ready_count = sum(1 for r in in_place if r.ready)
    ready_ok = applied_ok and not not_ready
    ready_reason = "Ready" if ready_ok else ("NotApplied" if not applied_ok else "NotReady")
    ready_msg = "; ".join(ready_msgs) or ("all copies healthy" if ready_ok else "not all copies applied")

    denied = [r for r in in_place if r.phase == Phase.DENIED]
    rules = {r.denied_by for r in denied}
    denied_reason = "Allowed" if not denied else rules.pop() if len(rules) == 1 else "Denied"
    denied_msg = "; ".join(f"{r.cluster}: {r.message}" for r in denied) or "the delivery policy allows every copy"

    order = {name: i for i, name in enumerate(placed)}
    entries = [_entry(r, prev_entries.get(r.cluster)) for r in
               sorted(results, key=lambda r: (order.get(r.cluster, len(order)), r.cluster))]
    conditions = [
        _condition_entry("Applied", applied_ok, applied_reason, applied_msg, generation, prev_conds.get("Applied")),
        _condition_entry("Ready", ready_ok, ready_reason, ready_msg, generation, prev_conds.get("Ready")),
    ]
    if denied or "Denied" in prev_conds:  # shown from the first refusal on (then False once nothing is refused)
        conditions.append(_condition_entry("Denied", bool(denied), denied_reason, denied_msg, generation,
                                           prev_conds.get("Denied")))
    if problems or "Invalid" in prev_conds:  # the same: from the first invalid spec on
        conditions.append(_condition_entry("Invalid", bool(problems), "InvalidSpec" if problems else "Valid",
                                           "; ".join(problems) or "the spec is valid", generation,
                                           prev_conds.get("Invalid")))
    applied_count = len(in_place) - len(not_applied)
    return {
        "observedGeneration": generation,
        "targetClusters": ",".join(placed),
        "placedClusters": len(placed),
        "appliedClusters": applied_count,
        "readyClusters": ready_count,
        "applied": f"{applied_count}/{len(placed)}",
        "ready": f"{ready_count}/{len(placed)}",
        "message": ("; ".join(msgs + ready_msgs))[:_MAX_MESSAGE],
        "conditions": conditions,
        "clusters": entries,
    }


def same_status(a: Any, b: Any) -> bool:
    """Equal for our purposes: fields we own compare equal (extra fields others may have written are ignored)."""
    if not isinstance(a, dict) or not isinstance(b, dict):
        return False
    return all(a.get(k) == b.get(k) for k in a)


def recorded_targets(status: Any) -> dict[str, Target]:
    """cluster → the copy a previous reconcile delivered there (from status.clusters[].target)."""
    out: dict[str, Target] = {}
    if not isinstance(status, dict):
        return out
    for e in status.get("clusters") or []:
        if isinstance(e, dict) and isinstance(e.get("name"), str):
            t = Target.from_status(e.get("target"))
            if t is not None:
                out[e["name"]] = t
    return out


def previous_entry(status: Any, cluster: str) -> dict[str, Any]:
    if isinstance(status, dict):
        for e in status.get("clusters") or []:
            if isinstance(e, dict) and e.get("name") == cluster:
                return e
    return {}


def is_failure(phase: Phase) -> bool:
    return phase != Phase.APPLIED
