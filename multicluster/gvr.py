"""Resource types: parse every spelling users type, and resolve it against a cluster's discovery.

Spellings accepted (all case-insensitive for the resource part):
  pods, po, Pod                       resource, short name or kind; any group
  v1.pods, core.v1.pods, v1/pods      the Go original's dotted and slash forms; `core` means the legacy group ""
  apps.v1.deployments, apps/v1/deployments, batch.v1.jobs
  v1.apps.deployments                 the Go original's README's version-first form
  deployments.apps, deployments.v1.apps, multiclusterresources.mulitcluster.practice.com   kubectl's forms

Parsing is pure and yields candidate readings; discovery decides which one names a real resource, so a
spelling that could be read two ways (`apps.deployments`) still resolves to the one that exists.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from multicluster.errors import GVRError
from multicluster.types import PrinterColumn

_VERSION = re.compile(r"^v\d+((alpha|beta)\d+)?$")
_TOKEN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", re.IGNORECASE)
# What Kubernetes allows in the parts of a resource type (a group is a DNS subdomain, a version and a resource a DNS
# label): a member's discovery is held to it, since the names it serves become request paths, stored rows and
# metric labels, and no API server serves other names.
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"(?=.{1,253}\Z)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")

# Groups whose resources are virtual (reviews, metrics): never stored, and we say so instead of "not found".
UNSUPPORTED_GROUPS = frozenset({"metrics.k8s.io", "authentication.k8s.io", "authorization.k8s.io"})


@dataclass(frozen=True, slots=True, order=True)
class GVR:
    group: str
    version: str
    resource: str
    # Hashed once: every queue key and store identity holds a GVR, and the generated __hash__ (a Python call
    # building a tuple) ran ~11 times per object of an initial sync.
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((self.group, self.version, self.resource)))

    def __hash__(self) -> int:
        return self._hash

    def __reduce__(self) -> tuple[type[GVR], tuple[str, str, str]]:
        # Rebuilt, not restored: string hashes differ between processes, so a pickled _hash would be wrong.
        return GVR, (self.group, self.version, self.resource)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        """The REST path of a collection (or one object), e.g. /apis/apps/v1/namespaces/ns/deployments/x."""
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.resource}"
        if name:
            base += f"/{name}"
        return base

    def __str__(self) -> str:
        """Slash form, the one the Go original's API takes: `apps/v1/deployments`, `v1/pods`."""
        return f"{self.group}/{self.version}/{self.resource}" if self.group else f"{self.version}/{self.resource}"

    @property
    def dotted(self) -> str:
        """kubectl's form: `deployments.v1.apps`, `pods.v1`."""
        return f"{self.resource}.{self.version}.{self.group}" if self.group else f"{self.resource}.{self.version}"


@dataclass(frozen=True, slots=True)
class APIResource:
    """One entry of discovery: what a cluster serves for a GVR."""

    gvr: GVR
    kind: str
    namespaced: bool
    verbs: frozenset[str] = frozenset()
    short_names: tuple[str, ...] = ()
    singular: str = ""
    preferred: bool = True
    printer_columns: tuple[PrinterColumn, ...] = field(default=(), compare=False)

    @property
    def listable(self) -> bool:
        return {"list", "watch"} <= self.verbs

    def names(self) -> set[str]:
        out = {self.gvr.resource.lower(), self.kind.lower()}
        if self.singular:
            out.add(self.singular.lower())
        out.update(s.lower() for s in self.short_names)
        return out


@dataclass(frozen=True, slots=True)
class GVRQuery:
    """One reading of a user's spelling. None means "any"."""

    resource: str
    group: str | None = None
    version: str | None = None

    def matches(self, r: APIResource) -> bool:
        if self.group is not None and self.group != r.gvr.group:
            return False
        if self.version is not None and self.version != r.gvr.version:
            return False
        return self.resource in r.names()


def _group(tokens: Sequence[str]) -> str:
    g = ".".join(tokens).lower()
    return "" if g == "core" else g


def parse(text: str) -> list[GVRQuery]:
    """All plausible readings of a spelling, most likely first. Raises GVRError for text no reading can fit."""
    raw = (text or "").strip()
    if not raw:
        raise GVRError("no resource type given", hint="name one, e.g. pods, apps.v1.deployments or apps/v1/deployments")
    if "/" in raw:
        parts = [p for p in raw.split("/")]
        if any(not p for p in parts) or len(parts) > 3:
            raise GVRError(
                f'"{raw}" is not a resource type', hint="slash form is GROUP/VERSION/RESOURCE or VERSION/RESOURCE"
            )
        if len(parts) == 2:
            group, version, resource = "", parts[0], parts[1]
        else:
            group, version, resource = _group([parts[0]]), parts[1], parts[2]
        _check_tokens(raw, [version, resource, *group.split(".")] if group else [version, resource])
        if not _VERSION.match(version.lower()):
            raise GVRError(
                f'"{raw}": "{version}" is not an API version', hint="versions look like v1, v1beta1, v2alpha1"
            )
        return [GVRQuery(resource.lower(), group, version.lower())]
    tokens = raw.split(".")
    _check_tokens(raw, tokens)
    low = [t.lower() for t in tokens]
    if len(tokens) == 1:
        return [GVRQuery(low[0])]
    out: list[GVRQuery] = []
    versions = [i for i, t in enumerate(low) if _VERSION.match(t)]
    if versions:
        vi = versions[0]
        version = low[vi]
        rest = low[:vi] + low[vi + 1 :]
        if not rest:
            raise GVRError(f'"{raw}" names a version but no resource')
        if vi == 0:
            # v1.pods / v1.apps.deployments (the Go original's form): version first, then group, resource last.
            out.append(GVRQuery(rest[-1], _group(rest[:-1]), version))
        # apps.v1.deployments / core.v1.pods: group before the version, resource last.
        if vi > 0 and vi == len(low) - 2:
            out.append(GVRQuery(low[-1], _group(low[:vi]), version))
        # deployments.v1.apps / pods.v1: kubectl's resource.version.group.
        if vi == 1:
            out.append(GVRQuery(low[0], _group(low[2:]), version))
    else:
        # deployments.apps (kubectl) or apps.deployments (group.resource).
        out.append(GVRQuery(low[0], _group(low[1:])))
        out.append(GVRQuery(low[-1], _group(low[:-1])))
    if not out:
        raise GVRError(
            f'"{raw}" is not a resource type spelling',
            hint="use RESOURCE, VERSION.RESOURCE, GROUP.VERSION.RESOURCE, GROUP/VERSION/RESOURCE or RESOURCE.GROUP",
        )
    return list(dict.fromkeys(out))


def _check_tokens(raw: str, tokens: Iterable[str]) -> None:
    for t in tokens:
        if not t or not _TOKEN.match(t) or len(t) > 253:
            raise GVRError(
                f'"{raw}" is not a resource type',
                hint="resource types are made of letters, digits, '-' and '.', e.g. apps.v1.deployments",
            )


def resolve(text: str, resources: Sequence[APIResource], *, require_list_watch: bool = True) -> APIResource:
    """Pick the one served resource a spelling names.

    Prefers the group's preferred version and, for an unqualified name, the legacy core group first (like kubectl:
    `events` means core/v1 events, not events.k8s.io).
    """
    queries = parse(text)
    for q in queries:
        hits = [r for r in resources if q.matches(r)]
        if not hits:
            continue
        # Exact plural beats kind/short-name, core group beats others, preferred version beats the rest.
        hits.sort(key=lambda r: (r.gvr.resource != q.resource, r.gvr.group != "", not r.preferred, r.gvr.group))
        best = hits[0]
        if best.gvr.group in UNSUPPORTED_GROUPS:
            raise GVRError(
                f'"{text}" ({best.gvr}) belongs to {best.gvr.group}, whose resources are virtual and cannot be stored',
                hint="metrics.k8s.io, authentication.k8s.io and authorization.k8s.io are not supported",
            )
        if require_list_watch and not best.listable:
            verbs = ", ".join(sorted(best.verbs)) or "none"
            raise GVRError(
                f'"{text}" ({best.gvr}) does not support list and watch (verbs: {verbs})',
                hint="only resources that can be listed and watched can be synced and queried",
            )
        return best
    names = sorted({n for r in resources for n in (r.gvr.resource, r.gvr.dotted)})
    wanted = queries[0].resource
    close = difflib.get_close_matches(wanted, names, n=3, cutoff=0.6)
    if queries[0].group is not None and any(queries[0].resource in r.names() for r in resources):
        hint = "that resource exists, but not in that group/version; check the group and version"
    elif close:
        hint = "did you mean: " + ", ".join(close) + "?"
    else:
        hint = "run `kubectl api-resources` against the cluster to see what it serves"
    raise GVRError(f'unknown resource type "{text}"', hint=hint, matches=close)


def shortened(name: str, length: int = 60) -> str:
    """A name a member sent, cut for a log line or an error (it may be megabytes long)."""
    return repr(name) if len(name) <= length else f"{name[:length]!r}... ({len(name)} characters)"


def invalid_group_version(group_version: str) -> str | None:
    """Why a group-version from discovery (`v1`, `apps/v1`) is not one Kubernetes allows, or None."""
    group, slash, version = group_version.rpartition("/")
    if slash and not _DNS_SUBDOMAIN.fullmatch(group):
        return f"group {shortened(group)} is not a DNS subdomain"
    if not _DNS_LABEL.fullmatch(version):
        return f"version {shortened(version)} is not a DNS label"
    return None


def parse_discovery(group_version: str, body: dict[str, object], preferred: bool = True,
                    limit: int | None = None, invalid: list[str] | None = None) -> list[APIResource]:
    """Turn one /api/v1 or /apis/G/V APIResourceList into APIResources (subresources like pods/log dropped), at
    most `limit` of them. A resource name that is not a DNS label is skipped, and added (shortened) to `invalid`."""
    group, _, version = group_version.rpartition("/")
    out: list[APIResource] = []
    items = body.get("resources") or []
    assert isinstance(items, list)
    for item in items:
        if limit is not None and len(out) >= limit:
            break
        if not isinstance(item, dict):
            continue
        name = str(item.get("name", ""))
        if not name or "/" in name:
            continue
        if not _DNS_LABEL.fullmatch(name):
            if invalid is not None:
                invalid.append(shortened(name))
            continue
        out.append(
            APIResource(
                gvr=GVR(group, version, name),
                kind=str(item.get("kind", "")),
                namespaced=bool(item.get("namespaced", False)),
                verbs=frozenset(str(v) for v in item.get("verbs") or []),
                short_names=tuple(str(s) for s in item.get("shortNames") or []),
                singular=str(item.get("singularName") or ""),
                preferred=preferred,
            )
        )
    return out


def selected(resources: Sequence[APIResource], include: Sequence[str], exclude: Sequence[str]) -> list[APIResource]:
    """The resources a cluster should sync: preferred versions that can be listed and watched, filtered.

    `include` empty means everything. Entries of either list are a group name (`policy`, `metrics.k8s.io`) or any
    resource spelling (`pods`, `apps/v1/deployments`). An include entry that names nothing raises GVRError so a
    typo in the config is reported instead of silently syncing nothing.
    """
    candidates = [r for r in resources if r.listable and r.gvr.group not in UNSUPPORTED_GROUPS]
    if include:
        chosen: dict[GVR, APIResource] = {}
        for spelling in include:
            group_hits = [r for r in candidates if r.preferred and r.gvr.group == spelling]
            if group_hits:
                chosen.update((r.gvr, r) for r in group_hits)
                continue
            r = resolve(spelling, resources)
            chosen[r.gvr] = r
        candidates = list(chosen.values())
    else:
        candidates = [r for r in candidates if r.preferred]

    def excluded(r: APIResource) -> bool:
        for spelling in exclude:
            if spelling == r.gvr.group or (spelling == "core" and r.gvr.group == ""):
                return True
            try:
                if any(q.matches(r) for q in parse(spelling)):
                    return True
            except GVRError:
                continue
        return False

    return sorted((r for r in candidates if not excluded(r)), key=lambda r: r.gvr)
