"""Health of delivered copies and the MultiClusterResource status built from per-cluster results (pure).

Status layout (also what `kubectl get rr` and `kubectl-multicluster get rr` print):

    status:
      observedGeneration: 3
      targetClusters: "cluster1,cluster2"      # CLUSTERS column: resolved placement (master when empty)
      applied: "2/2"                            # APPLIED column: placed clusters holding the current template
      ready: "1/2"                              # READY column: placed clusters whose copy is healthy
      message: "cluster2: Progressing: 0/2 replicas available"
      conditions: [{type: Applied, ...}, {type: Ready, ...}, {type: Denied, ...}]  # Denied once policy refused
      clusters:
        - {name, applied, ready, phase, message, lastAppliedTime, health, healthMessage,
           target: {apiVersion, kind, resource, namespace, name, uid}}

`target` records what was delivered where, so a later reconcile can remove copies after a placement change, a
rename or a kind change even across controller restarts. Times only move when something changes, so writing the
same status twice is detected (`same_status`) and skipped: a steady state costs no writes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from .model import ClusterResult, Phase, Target
from .types import ClusterStatus, Condition, MCRStatus

HEALTHY, PROGRESSING, DEGRADED, UNKNOWN = "Healthy", "Progressing", "Degraded", "Unknown"
_MAX_MESSAGE = 1024


def now_rfc3339(t: float | None = None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if t is None else t))


# --------------------------------------------------------------------------------------------- health


def _int(v: Any, default: int = 0) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else default


def _condition(status: dict[str, Any], ctype: str) -> dict[str, Any] | None:
    for c in status.get("conditions") or []:
        if isinstance(c, dict) and c.get("type") == ctype:
            return c
    return None


def health(obj: dict[str, Any]) -> tuple[str, str]:
    """(health, message) of a copy from its own status; kinds without a status are Healthy once they exist."""
    kind = obj.get("kind")
    status = obj.get("status")
    md = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    if kind in ("Deployment", "StatefulSet", "ReplicaSet", "DaemonSet", "Pod", "Job") and not status:
        return PROGRESSING, "waiting for the first status report"
    if not isinstance(status, dict):
        return HEALTHY, "exists (this kind reports no status)"
    observed = status.get("observedGeneration")
    if isinstance(observed, int) and observed < _int(md.get("generation")):
        return PROGRESSING, f"generation {md.get('generation')} not yet observed by its controller"
    if kind in ("Deployment", "ReplicaSet", "StatefulSet"):
        want = _int(spec.get("replicas"), 1)
        field = "readyReplicas" if kind == "StatefulSet" else "availableReplicas"
        have = _int(status.get(field))
        progressing = _condition(status, "Progressing")
        if progressing and progressing.get("reason") == "ProgressDeadlineExceeded":
            return DEGRADED, f"{have}/{want} replicas available; {progressing.get('message') or 'rollout stalled'}"
        if have >= want and _int(status.get("updatedReplicas"), want) >= want:
            return HEALTHY, f"{have}/{want} replicas available"
        return PROGRESSING, f"{have}/{want} replicas available"
    if kind == "DaemonSet":
        want, have = _int(status.get("desiredNumberScheduled")), _int(status.get("numberAvailable"))
        return (HEALTHY if have >= want else PROGRESSING), f"{have}/{want} pods available"
    if kind == "Pod":
        phase = str(status.get("phase") or "Unknown")
        if phase == "Running":
            ready = _condition(status, "Ready")
            if ready and ready.get("status") == "True":
                return HEALTHY, "Running and ready"
            return PROGRESSING, "Running, not ready"
        if phase == "Succeeded":
            return HEALTHY, "Succeeded"
        if phase == "Failed":
            return DEGRADED, f"Failed: {status.get('reason') or status.get('message') or 'pod failed'}"
        if phase == "Pending":
            sched = _condition(status, "PodScheduled")
            why = f" ({sched.get('reason')}: {sched.get('message')})" if sched and sched.get("status") == "False" \
                else "" if sched else " (not scheduled yet)"
            return PROGRESSING, f"Pending{why}"
        return UNKNOWN, phase
    if kind == "Job":
        if (c := _condition(status, "Complete")) and c.get("status") == "True":
            return HEALTHY, "Complete"
        if (c := _condition(status, "Failed")) and c.get("status") == "True":
            return DEGRADED, f"Failed: {c.get('message') or c.get('reason')}"
        return PROGRESSING, f"{_int(status.get('active'))} active, {_int(status.get('succeeded'))} succeeded"
    for ctype in ("Ready", "Available"):
        c = _condition(status, ctype)
        if c is not None:
            ok = c.get("status") == "True"
            detail = c.get("message") or c.get("reason") or ""
            return (HEALTHY if ok else PROGRESSING), f"{ctype}={c.get('status')}: {detail}".rstrip(": ")
    return HEALTHY, "exists"


# --------------------------------------------------------------------------------------------- status


def _entry(r: ClusterResult, previous: ClusterStatus | None) -> ClusterStatus:
    e: ClusterStatus = {"name": r.cluster, "applied": r.applied, "ready": r.ready, "phase": str(r.phase),
                         "message": r.message[:_MAX_MESSAGE]}
    last = r.last_applied or ((previous or {}).get("lastAppliedTime") if r.target else "")
    if last:
        e["lastAppliedTime"] = last
    if r.applied:
        e["health"] = r.health or UNKNOWN
        if r.health_message:
            e["healthMessage"] = r.health_message
    if r.target is not None:
        e["target"] = r.target.to_status(r.uid)
    return e


def _condition_entry(ctype: str, ok: bool, reason: str, message: str, generation: int,
                     previous: Condition | None) -> Condition:
    status = "True" if ok else "False"
    ltt = (previous or {}).get("lastTransitionTime") if (previous or {}).get("status") == status else None
    return {"type": ctype, "status": status, "reason": reason, "message": message[:_MAX_MESSAGE],
            "lastTransitionTime": ltt or now_rfc3339(), "observedGeneration": generation}


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
    return {
        "observedGeneration": generation,
        "targetClusters": ",".join(placed),
        "applied": f"{len(in_place) - len(not_applied)}/{len(placed)}",
        "ready": f"{sum(1 for r in in_place if r.ready)}/{len(placed)}",
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
