"""A delivered copy's own status, summarised, and its health verdict (pure).

`summarize(obj)` reads what the member's controllers report about one copy and keeps a few numbers and short
conditions (a `CopySummary`, small and bounded: the watch index holds one per copy, never the object) plus a
verdict:

- Healthy: the copy does what it was created for (rolled out, complete, bound, load balancer assigned, exists);
- Progressing: its controller has not caught up yet (a new generation, replicas not available yet, a Job still
  running, a PVC not bound, a Pod pending) — it may still become healthy on its own;
- Unhealthy: its controller reports that it gave up (progress deadline exceeded, replica failure, Job failed,
  Pod failed, PVC lost);
- Unknown: the copy reports a state we cannot read (a Pod in phase Unknown).

Kinds: Deployment and ReplicaSet (available and updated replicas), StatefulSet (ready and updated replicas),
DaemonSet (available and updated pods), Job (Complete / Failed / running), Service (type LoadBalancer: ingress
assigned), PersistentVolumeClaim (Bound), Pod (Running and Ready, or Succeeded). Every other kind is Healthy once
it exists. A Deployment scaled to 0 replicas is Healthy (nothing to roll out), as `kubectl rollout status` says.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .types import ClusterStatus, CopyCondition

HEALTHY, PROGRESSING, UNHEALTHY, UNKNOWN = "Healthy", "Progressing", "Unhealthy", "Unknown"
VERDICTS = (HEALTHY, PROGRESSING, UNHEALTHY, UNKNOWN)
MAX_CONDITIONS = 8  # per copy, in status.clusters[].conditions and in the watch index
_MAX_TEXT = 64  # condition type/status/reason are short CamelCase words; anything longer is cut
_MAX_MESSAGE = 256
_WORKLOADS = ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job", "Pod")


@dataclass(frozen=True, slots=True)
class CopySummary:
    """What status.clusters[] shows of one copy's own status. Counts are None where the kind has none."""

    health: str
    message: str
    generation: int | None = None
    observed_generation: int | None = None
    replicas: int | None = None
    ready_replicas: int | None = None
    available_replicas: int | None = None
    updated_replicas: int | None = None
    conditions: tuple[tuple[str, str, str], ...] = ()  # (type, status, reason)

    def to_status(self) -> ClusterStatus:
        """The fields of a status.clusters[] entry this summary fills (only those the copy reports)."""
        out: ClusterStatus = {"health": self.health}
        if self.message:
            out["healthMessage"] = self.message
        if self.generation is not None:
            out["generation"] = self.generation
        if self.observed_generation is not None:
            out["observedGeneration"] = self.observed_generation
        if self.replicas is not None:
            out["replicas"] = self.replicas
        if self.ready_replicas is not None:
            out["readyReplicas"] = self.ready_replicas
        if self.available_replicas is not None:
            out["availableReplicas"] = self.available_replicas
        if self.updated_replicas is not None:
            out["updatedReplicas"] = self.updated_replicas
        if self.conditions:
            out["conditions"] = [_short(t, s, r) for t, s, r in self.conditions]
        return out


def _short(ctype: str, status: str, reason: str) -> CopyCondition:
    c: CopyCondition = {"type": ctype, "status": status}
    if reason:
        c["reason"] = reason
    return c


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _n(v: Any, default: int = 0) -> int:
    i = _int(v)
    return default if i is None else i


def _text(v: Any, limit: int = _MAX_TEXT) -> str:
    return v[:limit] if isinstance(v, str) else ""


def _condition(status: Mapping[str, Any], ctype: str) -> Mapping[str, Any] | None:
    conds = status.get("conditions")
    for c in conds if isinstance(conds, list) else []:
        if isinstance(c, dict) and c.get("type") == ctype:
            return c
    return None


def _is_true(c: Mapping[str, Any] | None) -> bool:
    return c is not None and c.get("status") == "True"


def _detail(c: Mapping[str, Any]) -> str:
    return _text(c.get("message"), _MAX_MESSAGE) or _text(c.get("reason"))


def _short_conditions(status: Mapping[str, Any]) -> tuple[tuple[str, str, str], ...]:
    conds = status.get("conditions")
    out = [(_text(c.get("type")), _text(c.get("status")), _text(c.get("reason")))
           for c in (conds if isinstance(conds, list) else []) if isinstance(c, dict) and c.get("type")]
    return tuple(out[:MAX_CONDITIONS])


def summarize(obj: Mapping[str, Any]) -> CopySummary:
    """The summary and health verdict of one copy as its cluster reports it."""
    kind = obj.get("kind")
    raw_status = obj.get("status")
    status: Mapping[str, Any] = raw_status if isinstance(raw_status, dict) else {}
    md = obj.get("metadata")
    raw_spec = obj.get("spec")
    spec: Mapping[str, Any] = raw_spec if isinstance(raw_spec, dict) else {}
    generation = _int(md.get("generation")) if isinstance(md, dict) else None
    observed = _int(status.get("observedGeneration"))
    counts = _counts(kind, status)
    health, message = _verdict(kind, spec, status, generation, observed)
    return CopySummary(health, message[:_MAX_MESSAGE], generation if kind in _WORKLOADS else None, observed,
                       *counts, conditions=_short_conditions(status))


def health(obj: Mapping[str, Any]) -> tuple[str, str]:
    """(verdict, message) of one copy."""
    s = summarize(obj)
    return s.health, s.message


def _counts(kind: Any, status: Mapping[str, Any]) -> tuple[int | None, int | None, int | None, int | None]:
    """(replicas, ready, available, updated) as the copy's status reports them."""
    if kind in ("Deployment", "ReplicaSet", "StatefulSet"):
        return (_n(status.get("replicas")), _n(status.get("readyReplicas")), _n(status.get("availableReplicas")),
                _n(status.get("updatedReplicas")))
    if kind == "DaemonSet":
        return (_n(status.get("desiredNumberScheduled")), _n(status.get("numberReady")),
                _n(status.get("numberAvailable")), _n(status.get("updatedNumberScheduled")))
    return None, None, None, None


def _verdict(kind: Any, spec: Mapping[str, Any], status: Mapping[str, Any], generation: int | None,
             observed: int | None) -> tuple[str, str]:
    if kind in _WORKLOADS and not status:
        return PROGRESSING, "waiting for the first status report"
    if observed is not None and generation is not None and observed < generation:
        return PROGRESSING, f"generation {generation} not yet observed by its controller"
    if kind in ("Deployment", "ReplicaSet", "StatefulSet"):
        return _replicated(kind, spec, status)
    if kind == "DaemonSet":
        want, have = _n(status.get("desiredNumberScheduled")), _n(status.get("numberAvailable"))
        updated = _n(status.get("updatedNumberScheduled"), want)
        return (HEALTHY if have >= want and updated >= want else PROGRESSING), f"{have}/{want} pods available"
    if kind == "Job":
        if _is_true(c := _condition(status, "Complete")):
            return HEALTHY, "Complete"
        if _is_true(c := _condition(status, "Failed")) and c is not None:
            return UNHEALTHY, f"Failed: {_detail(c)}"
        return PROGRESSING, f"running: {_n(status.get('active'))} active, {_n(status.get('succeeded'))} succeeded"
    if kind == "Pod":
        return _pod(status)
    if kind == "Service":
        if spec.get("type") != "LoadBalancer":
            return HEALTHY, "exists"
        lb = status.get("loadBalancer")
        ingress = lb.get("ingress") if isinstance(lb, dict) else None
        addresses = [str(i.get("ip") or i.get("hostname") or "") for i in ingress or [] if isinstance(i, dict)]
        if any(addresses):
            return HEALTHY, f"load balancer: {', '.join(a for a in addresses if a)}"
        return PROGRESSING, "waiting for a load balancer address"
    if kind == "PersistentVolumeClaim":
        phase = _text(status.get("phase")) or "Pending"
        if phase == "Bound":
            return HEALTHY, "Bound"
        if phase == "Lost":
            return UNHEALTHY, "Lost: its volume is gone"
        return PROGRESSING, f"{phase}: no volume bound yet"
    return HEALTHY, "exists"


def _replicated(kind: Any, spec: Mapping[str, Any], status: Mapping[str, Any]) -> tuple[str, str]:
    want = _n(spec.get("replicas"), 1)
    field = "readyReplicas" if kind == "StatefulSet" else "availableReplicas"
    have = _n(status.get(field))
    word = "ready" if kind == "StatefulSet" else "available"
    progressing = _condition(status, "Progressing")
    if progressing is not None and progressing.get("reason") == "ProgressDeadlineExceeded":
        return UNHEALTHY, f"{have}/{want} replicas {word}; {_detail(progressing) or 'rollout stalled'}"
    failure = _condition(status, "ReplicaFailure")
    if _is_true(failure) and failure is not None:
        return UNHEALTHY, f"{have}/{want} replicas {word}; {_detail(failure)}"
    if have >= want and _n(status.get("updatedReplicas"), want) >= want:
        return HEALTHY, f"{have}/{want} replicas {word}"
    return PROGRESSING, f"{have}/{want} replicas {word}"


def _pod(status: Mapping[str, Any]) -> tuple[str, str]:
    phase = _text(status.get("phase")) or "Unknown"
    if phase == "Running":
        return (HEALTHY, "Running and ready") if _is_true(_condition(status, "Ready")) else \
            (PROGRESSING, "Running, not ready")
    if phase == "Succeeded":
        return HEALTHY, "Succeeded"
    if phase == "Failed":
        why = _text(status.get("reason")) or _text(status.get("message"), _MAX_MESSAGE) or "pod failed"
        return UNHEALTHY, f"Failed: {why}"
    if phase == "Pending":
        sched = _condition(status, "PodScheduled")
        why = f" ({sched.get('reason')}: {sched.get('message')})" if sched and sched.get("status") == "False" \
            else "" if sched else " (not scheduled yet)"
        return PROGRESSING, f"Pending{why}"
    return UNKNOWN, f"phase {phase}"
