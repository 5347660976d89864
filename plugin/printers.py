"""Turn API pages into what `kubectl multicluster` prints: tables, a List in JSON/YAML, or `cluster/type/name`.

Output is streamed: every printer takes pages as they arrive from the continue-token walk and writes them at
once, so `list pods` over a million rows starts printing immediately and never holds more than a page. Tables
are laid out like kubectl's (left-aligned, three spaces between columns, no borders); colour is added only when
stdout is a terminal, so pipes and scripts see exactly the same columns kubectl users expect. Column widths are
computed per page, which is what kubectl's own chunked output does too.

The per-kind columns keep the Go original's layout (pods: NODE, POD IP, STATUS, CONTAINER, IMAGE) with English headers
and all containers instead of only the first. Every other type gets CLUSTER NAME [NAMESPACE] AGE, and a custom
resource also its CRD's additionalPrinterColumns (listing.py fetches them through plugin.crd_columns; their
cells come from multicluster.columns, which the daemon's Kubernetes tables use too).
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TextIO, cast

import orjson

from multicluster.columns import age, human_duration, printer_cell, priority
from multicluster.columns import get as _get
from multicluster.columns import text as _s

# Types only: importing multicluster.types would be start-up time of `kubectl multicluster list`.
if TYPE_CHECKING:
    from typing import TypeAlias

    from multicluster.types import ClusterInfo, KubeObject, ObjectMeta, PrinterColumn, ResourceBlock

    Obj: TypeAlias = Mapping[str, Any]  # a KubeObject, or an object the plugin read some other way
    Item: TypeAlias = tuple[str, Obj]  # (cluster, object)
    Cell: TypeAlias = Callable[[str, Obj, float], str]  # (cluster, object, now) -> text

CLUSTER_ANNOTATION = "multicluster.io/cluster"
GAP = "   "


@dataclass(frozen=True, slots=True)
class ResourceInfo:
    """What the API said about the resolved resource type (the `resource` block of /v1/resources)."""

    group: str
    version: str
    resource: str
    kind: str
    namespaced: bool = True
    printer_columns: tuple[PrinterColumn, ...] = field(default=())

    @property
    def gvr(self) -> str:
        return f"{self.group}/{self.version}/{self.resource}" if self.group else f"{self.version}/{self.resource}"

    @property
    def type_name(self) -> str:
        """kubectl's -o name prefix: `pod`, `deployment.apps`."""
        kind = self.kind.lower() or self.resource
        return f"{kind}.{self.group}" if self.group else kind

    @classmethod
    def from_api(cls, data: ResourceBlock) -> ResourceInfo:
        return cls(
            group=str(data.get("group") or ""),
            version=str(data.get("version") or ""),
            resource=str(data.get("resource") or ""),
            kind=str(data.get("kind") or ""),
            namespaced=bool(data.get("namespaced", True)),
            printer_columns=tuple(c for c in data.get("printerColumns") or [] if isinstance(c, dict)),
        )


# --------------------------------------------------------------------------------------------------- formatting


# --------------------------------------------------------------------------------------------------- columns


def _meta(key: str) -> Cell:
    return lambda c, o, now: _s(_get(o, "metadata", key))


def _field(*path: str | int, default: str = "") -> Cell:
    def cell(c: str, o: Obj, now: float) -> str:
        v = _get(o, *path)
        return default if v is None else _s(v)

    return cell


def _containers(key: str) -> Cell:
    return lambda c, o, now: ",".join(
        _s(x.get(key)) for x in _get(o, "spec", "containers") or [] if isinstance(x, dict)
    )


def _pod_status(c: str, o: Obj, now: float) -> str:
    """Close to kubectl's STATUS: Terminating, a container's waiting/terminated reason, else the phase."""
    if _get(o, "metadata", "deletionTimestamp"):
        return "Terminating"
    reason = _get(o, "status", "reason")
    for st in _get(o, "status", "containerStatuses") or []:
        state = st.get("state") or {} if isinstance(st, dict) else {}
        for k in ("waiting", "terminated"):
            r = _get(state, k, "reason")
            if r and r != "Completed":
                reason = r
    return _s(reason or _get(o, "status", "phase"))


def _pod_ready(c: str, o: Obj, now: float) -> str:
    statuses = _get(o, "status", "containerStatuses") or []
    total = len(_get(o, "spec", "containers") or [])
    return f"{sum(1 for s in statuses if isinstance(s, dict) and s.get('ready'))}/{total}"


def _pod_restarts(c: str, o: Obj, now: float) -> str:
    return str(sum(int(s.get("restartCount") or 0) for s in _get(o, "status", "containerStatuses") or []
                   if isinstance(s, dict)))


def _template_containers(key: str) -> Cell:
    return lambda c, o, now: ",".join(
        _s(x.get(key)) for x in _get(o, "spec", "template", "spec", "containers") or [] if isinstance(x, dict)
    )


def _selector(c: str, o: Obj, now: float) -> str:
    labels = _get(o, "spec", "selector", "matchLabels") or {}
    return ",".join(f"{k}={v}" for k, v in labels.items()) if isinstance(labels, dict) else ""


def _data_count(c: str, o: Obj, now: float) -> str:
    return str(len(o.get("data") or {}) + len(o.get("binaryData") or {}))


def _age(c: str, o: Obj, now: float) -> str:
    return age(o, now)


def _mcr_clusters(c: str, o: Obj, now: float) -> str:
    """The controller's resolved placement (status.targetClusters) once it has reconciled, else the spec's."""
    target = _get(o, "status", "targetClusters")
    if isinstance(target, str) and target:
        return target
    names = [_s(x.get("name")) for x in _get(o, "spec", "placement", "clusters") or [] if isinstance(x, dict)]
    return ",".join(names) or "<master>"


def _mcr_status_count(key: str) -> Cell:
    """APPLIED/READY of a MultiClusterResource: counts from status.clusters (list or map) if the controller
    reports them, or from status.<key> when it writes a summary number."""

    def cell(c: str, o: Obj, now: float) -> str:
        status = o.get("status") or {}
        if not isinstance(status, dict):
            return ""
        direct = status.get(key)
        if isinstance(direct, int | str) and not isinstance(direct, bool):
            return str(direct)
        per = status.get("clusters")
        entries = list(per.values()) if isinstance(per, dict) else per if isinstance(per, list) else []
        if not entries:
            return ""
        n = 0
        for e in entries:
            if not isinstance(e, dict):
                continue
            v = e.get(key)
            phase = str(e.get("phase", "")).lower()
            if v is None:
                # No explicit flag: a per-cluster phase implies it (Ready implies Applied).
                v = phase == "ready" or (key == "applied" and phase == "applied")
            if v is True or (isinstance(v, str) and v.lower() in ("true", "yes")):
                n += 1
        return f"{n}/{len(entries)}"

    return cell


def printer_column(col: PrinterColumn) -> Cell:
    """One CRD additionalPrinterColumn: the text of the cell the API server would send (multicluster.columns)."""
    return lambda c, o, now: _s(printer_cell(col, o, now))


CLUSTER: tuple[str, Cell] = ("CLUSTER", lambda c, o, now: c)
NAME: tuple[str, Cell] = ("NAME", _meta("name"))
NAMESPACE: tuple[str, Cell] = ("NAMESPACE", _meta("namespace"))
AGE: tuple[str, Cell] = ("AGE", _age)


def columns_for(res: ResourceInfo, wide: bool = False) -> list[tuple[str, Cell]]:
    """Headers and cell functions for one resource type."""
    kind, group = res.kind, res.group
    base = [CLUSTER, NAME, NAMESPACE] if res.namespaced else [CLUSTER, NAME]
    if kind == "Pod" and group == "":
        cols = [*base, ("NODE", _field("spec", "nodeName")), ("POD IP", _field("status", "podIP")),
                ("STATUS", _pod_status), ("CONTAINER", _containers("name")), ("IMAGE", _containers("image"))]
        if wide:
            cols += [("READY", _pod_ready), ("RESTARTS", _pod_restarts), AGE]
        return cols
    if kind == "Deployment" and group == "apps":
        cols = [*base, ("TOTAL", _field("status", "replicas", default="0")),
                ("AVAILABLE", _field("status", "availableReplicas", default="0")),
                ("READY", _field("status", "readyReplicas", default="0"))]
        if wide:
            cols += [("UP-TO-DATE", _field("status", "updatedReplicas", default="0")), AGE,
                     ("CONTAINERS", _template_containers("name")), ("IMAGES", _template_containers("image")),
                     ("SELECTOR", _selector)]
        return cols
    if kind == "ConfigMap" and group == "":
        cols = [*base, ("DATA", _data_count)]
        return [*cols, AGE] if wide else cols
    if kind == "MultiClusterResource":
        cols = [*base, ("KIND", _field("spec", "template", "kind")), ("CLUSTERS", _mcr_clusters),
                ("APPLIED", _mcr_status_count("applied")), ("READY", _mcr_status_count("ready")), AGE]
        return cols
    # Everything else: CLUSTER NAME [NAMESPACE], a CRD's additionalPrinterColumns (priority 0 always, the rest
    # with -o wide, like kubectl), AGE last (a CRD's own Age column is that same AGE).
    cols = list(base)
    for col in res.printer_columns:
        if priority(col) > 0 and not wide:
            continue
        name = str(col.get("name") or "").upper()
        if name and name != "AGE" and name not in {h for h, _ in cols}:
            cols.append((name, printer_column(col)))
    return [*cols, AGE]


def render_master_table(items: Sequence[Obj], printer_columns: Sequence[PrinterColumn], *, wide: bool,
                        all_namespaces: bool, now: float) -> str:
    """`kubectl get`'s table of objects read from one cluster (the master): [NAMESPACE] NAME, then the CRD's
    printer columns in their own order (priority > 0 only with wide), or AGE for a type without any."""
    cols = ([NAMESPACE] if all_namespaces else []) + [NAME]
    cols += [(str(col.get("name") or "").upper(), printer_column(col)) for col in printer_columns
             if wide or priority(col) == 0] or [AGE]
    buf = io.StringIO()
    table = TablePrinter([h for h, _ in cols], buf)
    table.rows([[fn("", o, now) for _, fn in cols] for o in items])
    return buf.getvalue().rstrip("\n")


def uses_printer_columns(res: ResourceInfo) -> bool:
    """Whether the table of this type is the generic one, where a CRD's printer columns are shown."""
    return (res.kind, res.group) not in _OWN_LAYOUTS and res.kind != "MultiClusterResource"


_OWN_LAYOUTS = {("Pod", ""), ("Deployment", "apps"), ("ConfigMap", "")}


# --------------------------------------------------------------------------------------------------- printers


class Printer(Protocol):
    def page(self, items: Sequence[Item]) -> None: ...

    def close(self) -> None: ...


_STATUS_STYLE = {
    "Running": "green", "Succeeded": "green", "Ready": "green", "Completed": "green",
    "Pending": "yellow", "ContainerCreating": "yellow", "Terminating": "yellow", "Syncing": "yellow",
    "Failed": "red", "Error": "red", "CrashLoopBackOff": "red", "ImagePullBackOff": "red", "ErrImagePull": "red",
    "Unreachable": "red", "Stale": "yellow",
}


def _plain(cells: Sequence[str], widths: Sequence[int]) -> str:
    last = len(cells) - 1
    return GAP.join([c if i == last else c.ljust(widths[i]) for i, c in enumerate(cells)]).rstrip() + "\n"


class TablePrinter:
    """kubectl-style table; headers once, widths per page."""

    def __init__(
        self,
        headers: Sequence[str],
        out: TextIO,
        *,
        no_headers: bool = False,
        color: bool = False,
    ) -> None:
        self.headers = list(headers)
        self.out = out
        self.no_headers = no_headers
        self.color = color
        self.console: Any = None
        if color:
            # rich is loaded for colour only: its import would be much of a short `list`'s run time.
            from rich.console import Console

            self.console = Console(file=out, force_terminal=True, highlight=False, soft_wrap=True)
        self.rows_printed = 0
        self._header_done = no_headers

    def rows(self, rows: Iterable[Sequence[str]]) -> None:
        rows = [list(r) for r in rows]
        if not rows:
            return
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(self.headers)]
        lines = rows if self._header_done else [self.headers, *rows]
        if self.console is None:
            # One write per page: a write per row is a large part of printing a big list.
            self.out.write("".join(_plain(r, widths) for r in lines))
        else:
            for n, r in enumerate(lines):
                self._line(r, widths, header=not self._header_done and n == 0)
        self._header_done = True
        self.rows_printed += len(rows)
        self.out.flush()

    def _line(self, cells: Sequence[str], widths: Sequence[int], header: bool = False) -> None:
        last = len(cells) - 1
        from rich.text import Text

        text = Text()
        for i, c in enumerate(cells):
            style = "bold" if header else ("cyan" if i == 0 else _STATUS_STYLE.get(c, ""))
            text.append(c, style=style)
            if i != last:
                text.append(" " * (widths[i] - len(c)) + GAP)
        self.console.print(text, crop=False, no_wrap=True, overflow="ignore")

    def close(self) -> None:
        self.out.flush()


class ObjectTablePrinter:
    def __init__(self, res: ResourceInfo, out: TextIO, *, wide: bool, no_headers: bool, color: bool) -> None:
        self.cols = columns_for(res, wide)
        self.table = TablePrinter([h for h, _ in self.cols], out, no_headers=no_headers, color=color)

    @property
    def rows_printed(self) -> int:
        return self.table.rows_printed

    def page(self, items: Sequence[Item]) -> None:
        now = time.time()
        self.table.rows([[fn(cluster, obj, now) for _, fn in self.cols] for cluster, obj in items])

    def close(self) -> None:
        self.table.close()


_FIRST = ("apiVersion", "kind", "metadata")


def kube_order(obj: Mapping[str, Any]) -> KubeObject:
    """apiVersion, kind, metadata first, like kubectl's JSON (list items are stored with apiVersion/kind last)."""
    ordered = {k: obj[k] for k in _FIRST if k in obj}
    ordered.update((k, v) for k, v in obj.items() if k not in ordered)
    return cast("KubeObject", ordered)


def with_cluster(cluster: str, obj: Obj) -> KubeObject:
    """The object annotated with the cluster it came from (a List item has nowhere else to say it)."""
    meta: ObjectMeta = {**(obj.get("metadata") or {})}
    meta["annotations"] = {**(meta.get("annotations") or {}), CLUSTER_ANNOTATION: cluster}
    return kube_order({**obj, "metadata": meta})


class JSONListPrinter:
    """A kubectl `kind: List`, written item by item."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.count = 0

    def page(self, items: Sequence[Item]) -> None:
        for cluster, obj in items:
            body = orjson.dumps(with_cluster(cluster, obj), option=orjson.OPT_INDENT_2).decode()
            body = "\n".join("        " + line for line in body.splitlines()).lstrip()
            lead = '{\n    "apiVersion": "v1",\n    "items": [\n        ' if self.count == 0 else ",\n        "
            self.out.write(lead + body)
            self.count += 1
        self.out.flush()

    def close(self) -> None:
        if self.count == 0:
            self.out.write('{\n    "apiVersion": "v1",\n    "items": [],\n')
        else:
            self.out.write("\n    ],\n")
        self.out.write('    "kind": "List",\n    "metadata": {\n        "resourceVersion": ""\n    }\n}\n')
        self.out.flush()


class YAMLListPrinter:
    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.count = 0

    def page(self, items: Sequence[Item]) -> None:
        if not items:
            return
        if self.count == 0:
            self.out.write("apiVersion: v1\nitems:\n")
        docs = [with_cluster(c, o) for c, o in items]
        self.out.write(to_yaml(docs))
        self.count += len(items)
        self.out.flush()

    def close(self) -> None:
        if self.count == 0:
            self.out.write("apiVersion: v1\nitems: []\n")
        self.out.write('kind: List\nmetadata:\n  resourceVersion: ""\n')
        self.out.flush()


class NamePrinter:
    def __init__(self, res: ResourceInfo, out: TextIO) -> None:
        self.prefix = res.type_name
        self.out = out

    def page(self, items: Sequence[Item]) -> None:
        for cluster, obj in items:
            self.out.write(f"{cluster}/{self.prefix}/{_get(obj, 'metadata', 'name') or ''}\n")
        self.out.flush()

    def close(self) -> None:
        self.out.flush()


OUTPUTS = ("wide", "json", "yaml", "name")


def make_printer(
    output: str | None, res: ResourceInfo, out: TextIO, *, no_headers: bool = False, color: bool = False
) -> Printer:
    if output == "json":
        return JSONListPrinter(out)
    if output == "yaml":
        return YAMLListPrinter(out)
    if output == "name":
        return NamePrinter(res, out)
    return ObjectTablePrinter(res, out, wide=output == "wide", no_headers=no_headers, color=color)


def to_yaml(obj: Any) -> str:
    """YAML with sorted keys, as kubectl and the Go original (JSONToYAML) print it."""
    import yaml  # only -o yaml and describe need it; a table's start-up does not pay for it

    # libyaml when present: ~10x faster for big YAML dumps.
    dumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump(obj, Dumper=dumper, sort_keys=True, default_flow_style=False, allow_unicode=True,
                     width=1 << 20)


# --------------------------------------------------------------------------------------------------- clusters


CLUSTER_HEADERS = ("NAME", "VERSION", "HOST", "PLATFORM", "ISMASTER", "STATUS", "OBJECTS", "LASTSYNC")


def cluster_status(c: ClusterInfo) -> str:
    if not c.get("reachable", False):
        return "Unreachable"
    if any(r.get("status") == "error" for r in c.get("resources") or [] if isinstance(r, dict)) or c.get("error"):
        return "Error"
    return "Ready" if c.get("ready") else "Syncing"


def cluster_rows(clusters: Iterable[ClusterInfo], now: float | None = None) -> list[list[str]]:
    now = time.time() if now is None else now
    rows = []
    for c in clusters:
        last = c.get("lastSync")
        rows.append([
            _s(c.get("name")),
            _s(c.get("version")),
            _s(c.get("host")),
            _s(c.get("platform")),
            "true" if c.get("isMaster") else "false",
            cluster_status(c),
            _s(c.get("objects", 0)),
            human_duration(now - float(last)) + " ago" if isinstance(last, int | float) and last else "never",
        ])
    return rows
