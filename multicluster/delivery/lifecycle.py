"""Conflict and lifecycle switches of a MultiClusterResource, read from its spec (pure).

- `spec.conflictResolution`: `Abort` (default) leaves an object that exists in a member and is not ours alone:
  phase NotOwned for that cluster and a `Conflict` condition naming cluster and object; nothing is written there.
  `Overwrite` takes such an object over. It is the same operation as the annotation
  `multicluster.practice.com/adopt: "true"` (either one asks for it) and needs the same operator switch,
  `delivery.allowAdopt`; a taken-over object is marked adopted and released (our marks removed), not deleted, when
  the MCR lets go of it. An object delivered by another MCR is never overwritten.
- `spec.suspend: true`: nothing in the members is changed (no apply, no removal, no drift correction); the copies
  stay as they are, the status keeps its last per-cluster entries and shows `Suspended`. Deleting a suspended MCR
  still cleans up (by `deletionPolicy`): deletion is its own explicit request.
- `spec.deletionPolicy`: `Delete` (default) removes the copies when the MCR is deleted; `Orphan` leaves them,
  released: our label, annotations and field ownership are removed, the content stays.
- `spec.retain`: JSON pointers (`/spec/replicas`) of fields the members own once the copy exists: the value the
  member holds is sent back unchanged with every apply (so server-side apply neither changes nor drops it), and
  the apply is pinned to the resourceVersion that value was read at, so a member-side change made meanwhile is
  never reverted (the apply fails with a conflict and is retried with the newer value).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .model import ClusterResult, Phase
from .status import condition_entry
from .types import MCRStatus

ABORT, OVERWRITE = "Abort", "Overwrite"
# Paths that cannot be retained: the object's identity and the maps that carry our ownership marks.
_WHOLE = frozenset({"/", "/apiVersion", "/kind", "/metadata", "/metadata/name", "/metadata/namespace",
                    "/metadata/labels", "/metadata/annotations"})
DELETE, ORPHAN = "Delete", "Orphan"

CONFLICT_PHASES = frozenset({Phase.NOT_OWNED, Phase.CONFLICT})


@dataclass(frozen=True, slots=True)
class Lifecycle:
    suspend: bool = False
    conflict_resolution: str = ABORT
    deletion_policy: str = DELETE
    retain: tuple[str, ...] = ()
    propagate_dependencies: bool = False

    @property
    def overwrite(self) -> bool:
        return self.conflict_resolution == OVERWRITE

    @property
    def orphan(self) -> bool:
        return self.deletion_policy == ORPHAN


def parse(spec: Mapping[str, Any]) -> tuple[Lifecycle, list[str]]:
    """The switches and what is wrong with them (each problem names the field). The CRD schema refuses most bad
    values already; these checks cover a CRD that has not been upgraded yet."""
    problems: list[str] = []
    suspend = spec.get("suspend", False)
    if not isinstance(suspend, bool):
        problems.append(f"spec.suspend: expected true or false, got {suspend!r}")
        suspend = False
    conflict = spec.get("conflictResolution") or ABORT
    if conflict not in (ABORT, OVERWRITE):
        problems.append(f"spec.conflictResolution: {conflict!r} is not one of {ABORT}, {OVERWRITE}")
        conflict = ABORT
    deletion = spec.get("deletionPolicy") or DELETE
    if deletion not in (DELETE, ORPHAN):
        problems.append(f"spec.deletionPolicy: {deletion!r} is not one of {DELETE}, {ORPHAN}")
        deletion = DELETE
    raw = spec.get("retain") or []
    retain: list[str] = []
    if not isinstance(raw, list):
        problems.append("spec.retain: expected a list of JSON pointers such as /spec/replicas")
        raw = []
    for i, path in enumerate(raw):
        if not isinstance(path, str) or not path.startswith("/") or path in _WHOLE:
            problems.append(f"spec.retain[{i}]: {path!r} must be a JSON pointer to a field of the object such as "
                            "/spec/replicas (not its identity or whole metadata maps)")
            continue
        retain.append(path)
    propagate = spec.get("propagateDependencies", False)
    if not isinstance(propagate, bool):
        problems.append(f"spec.propagateDependencies: expected true or false, got {propagate!r}")
        propagate = False
    return Lifecycle(bool(suspend), str(conflict), str(deletion), tuple(retain), propagate), problems


# --------------------------------------------------------------------------------------------- retain


def _tokens(path: str) -> list[str]:
    return [t.replace("~1", "/").replace("~0", "~") for t in path.split("/")[1:]]


_MISSING = object()


def _get(doc: Any, tokens: Sequence[str]) -> Any:
    cur = doc
    for tok in tokens:
        if isinstance(cur, dict) and tok in cur:
            cur = cur[tok]
        elif isinstance(cur, list) and tok.isdigit() and int(tok) < len(cur):
            cur = cur[int(tok)]
        else:
            return _MISSING
    return cur


def keep_member_fields(desired: dict[str, Any], live: dict[str, Any], paths: Sequence[str]) -> dict[str, Any]:
    """`desired` with each retained path set to the member's value (or absent when the member has none).

    Only map keys are written (a list index in a retained path is followed when both sides have it); a path whose
    parent is missing on our side is created as maps."""
    out = copy.deepcopy(desired)
    for path in paths:
        tokens = _tokens(path)
        if not tokens:
            continue
        theirs = _get(live, tokens)
        parent = _get(out, tokens[:-1])
        last = tokens[-1]
        if theirs is _MISSING:
            if isinstance(parent, dict):
                parent.pop(last, None)
            elif isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
                parent.pop(int(last))
            continue
        if parent is _MISSING:
            cur: Any = out
            for tok in tokens[:-1]:
                if isinstance(cur, list) and tok.isdigit() and int(tok) < len(cur):
                    cur = cur[int(tok)]
                elif isinstance(cur, dict):
                    if not isinstance(cur.get(tok), (dict, list)):
                        cur[tok] = {}
                    cur = cur[tok]
                else:
                    break
            parent = cur
        if isinstance(parent, dict):
            parent[last] = copy.deepcopy(theirs)
        elif isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
            parent[int(last)] = copy.deepcopy(theirs)
    return out


# --------------------------------------------------------------------------------------------- conditions


def conflict_condition(results: Sequence[ClusterResult]) -> tuple[bool, str, str] | None:
    """(status, reason, message) of the `Conflict` condition, or None when no cluster has one."""
    hit = [r for r in results if r.phase in CONFLICT_PHASES]
    if not hit:
        return None
    reason = "NotOwned" if any(r.phase == Phase.NOT_OWNED for r in hit) else "FieldConflict"
    return True, reason, "; ".join(f"{r.cluster}: {r.message}" for r in hit)


def no_conflict(conflict_resolution: str) -> tuple[bool, str, str]:
    return False, "NoConflict", f"no object in the way (conflictResolution {conflict_resolution})"


INVALID_PHASES = frozenset({Phase.INVALID_TEMPLATE, Phase.INVALID_PATCH, Phase.INVALID_OVERRIDE, Phase.INVALID_SPEC})


def _set(status: MCRStatus, previous: MCRStatus, ctype: str, state: tuple[bool, str, str] | None,
         off: tuple[bool, str, str] | None, generation: int) -> None:
    """Put condition `ctype` into `status`: `state` when given; otherwise `off`, but only once the condition has
    been shown before (a condition appears with the first problem and then stays, False once it is gone)."""
    prev = {c.get("type"): c for c in previous.get("conditions") or [] if isinstance(c, dict)}
    if state is None:
        if ctype not in prev or off is None:
            return
        state = off
    ok, reason, message = state
    conds = [c for c in status.get("conditions") or [] if c.get("type") != ctype]
    conds.append(condition_entry(ctype, ok, reason, message, generation, prev.get(ctype)))
    status["conditions"] = conds


def add_conditions(status: MCRStatus, previous: MCRStatus, generation: int, results: Sequence[ClusterResult],
                   life: Lifecycle, problems: Sequence[str]) -> MCRStatus:
    """The `Conflict` and `Suspended` conditions of a reconcile that delivered (not suspended), and the `Invalid`
    condition widened from spec problems (status.py) to every cluster whose copy cannot be rendered."""
    placed = [r for r in results if r.phase != Phase.REMOVING]
    _set(status, previous, "Conflict", conflict_condition(placed), no_conflict(life.conflict_resolution), generation)
    invalid = [r for r in placed if r.phase in INVALID_PHASES]
    if invalid:
        reasons = {str(r.phase) for r in invalid} | ({"InvalidSpec"} if problems else set())
        message = "; ".join([*problems, *(f"{r.cluster}: {r.message}" for r in invalid)])
        _set(status, previous, "Invalid", (True, reasons.pop() if len(reasons) == 1 else "Invalid", message), None,
             generation)
    _set(status, previous, "Suspended", None, (False, "Delivering", "spec.suspend is false"), generation)
    dep_problems = [p for r in placed for p in r.dependency_problems]
    dep_reasons = {reason for reason, _ in dep_problems}
    reason = "Delivered" if not dep_problems else dep_reasons.pop() if len(dep_reasons) == 1 else "DependencyProblems"
    _set(status, previous, "Dependencies",
         (not dep_problems, reason, "; ".join(m for _, m in dep_problems) or "every referenced ConfigMap, Secret, "
                                                                             "ServiceAccount and PersistentVolumeClaim "
                                                                             "is delivered")
         if life.propagate_dependencies else None,
         (True, "NotPropagated", "spec.propagateDependencies is off"), generation)
    return status


def suspended_status(previous: MCRStatus, generation: int) -> MCRStatus:
    """A suspended MCR's status: the last per-cluster entries as they were, and `Suspended` True."""
    status: MCRStatus = {**previous, "observedGeneration": generation}
    _set(status, previous, "Suspended", (True, "Suspended", "spec.suspend is true: members are not changed (no "
                                         "apply, removal or drift correction); the entries below are from the last "
                                         "delivery"), (False, "", ""), generation)
    return status
