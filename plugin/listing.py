"""The bodies of `list` and `describe`, free of typer and rich so that a `list` can run without loading them.

plugin.app declares these commands' flags for typer; plugin.cli calls run_list directly when it can parse the
arguments itself (see plugin.cli.fast_list), which is the common short `kubectl multicluster list ...`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import orjson

from multicluster.columns import human_duration
from plugin import printers
from plugin.client import PAGE_SIZE, Client, find_endpoint
from plugin.crd_columns import CRDColumns
from plugin.output import UsageError, is_terminal, note, reported, warn

# Types only: importing multicluster.types would be start-up time of `kubectl multicluster list`.
if TYPE_CHECKING:
    from multicluster.types import Freshness as FreshnessBlock
    from multicluster.types import ResourcesPage


class Freshness:
    """Collects the `clusters` blocks of a walk and warns once per stale/missing cluster."""

    def __init__(self, gvr: str) -> None:
        self.gvr = gvr
        self.warned: set[str] = set()
        self.state: dict[str, str] = {}

    def update(self, block: FreshnessBlock | None) -> None:
        if not block:
            return
        now = time.time()
        for name in block.get("fresh") or []:
            self.state.setdefault(name, "fresh")
        for s in block.get("stale") or []:
            name = str(s.get("name"))
            last = s.get("lastSync")
            ago = f"last sync {human_duration(now - float(last))} ago" if last else "never synced"
            err = s.get("error") or ""
            self.state[name] = f"stale ({ago}{': ' + err if err else ''})"
            if name not in self.warned:
                self.warned.add(name)
                warn(f"cluster {name} is stale ({ago}{': ' + err if err else ''})")
        for name in block.get("missing") or []:
            self.state[name] = "missing"
            if name not in self.warned:
                self.warned.add(name)
                warn(f"cluster {name} is missing (unknown to the daemon, or {self.gvr} never synced there)")


def _color() -> bool:
    return is_terminal(sys.stdout)


@dataclass(frozen=True, slots=True)
class Selection:
    """What `list` and `describe` both take: which objects, how many per request, and the API to ask."""

    resource: str | None = None
    name_arg: str | None = None
    cluster: list[str] | None = None
    cluster_name: str | None = None
    namespace: str | None = None
    name: str | None = None
    all_namespaces: bool = False
    selector: str | None = None
    field_selector: str | None = None
    limit: int = 0
    chunk_size: int = PAGE_SIZE
    server: str | None = None
    token: str | None = None

    @classmethod
    def take(cls, options: dict[str, Any]) -> Selection:
        """The Selection among a command's `options`, removed from them (what is left is the command's own)."""
        return cls(**{f.name: options.pop(f.name) for f in fields(cls) if f.name in options})


def _check_output(output: str | None) -> None:
    if output is not None and output not in printers.OUTPUTS:
        raise UsageError(f'unknown output format "{output}"', hint="use -o wide, -o json, -o yaml or -o name")


def _require_resource(resource: str | None) -> str:
    if not resource or not resource.strip():
        raise UsageError("specify a resource type",
                         hint="e.g. pods, deployments, configmaps, apps/v1/deployments, batch.v1.jobs or clusters")
    return resource.strip()


@dataclass(frozen=True, slots=True)
class _Where:
    """A Selection's filters as the API takes them."""

    clusters: list[str]
    namespaces: list[str]
    name: str | None


def _where(sel: Selection) -> _Where:
    clusters = [c for c in (sel.cluster or []) if c]
    if sel.cluster_name:
        clusters.append(sel.cluster_name)
    namespaces = [] if sel.all_namespaces or not sel.namespace else [sel.namespace]
    if sel.name and sel.name_arg and sel.name != sel.name_arg:
        raise UsageError(f'two different names given ("{sel.name_arg}" and --name "{sel.name}")')
    return _Where(clusters, namespaces, sel.name or sel.name_arg)


def _pages(client: Client, resource: str, sel: Selection, where: _Where) -> Iterator[ResourcesPage]:
    return client.resources(resource, clusters=where.clusters, namespaces=where.namespaces, name=where.name,
                            label_selector=sel.selector, field_selector=sel.field_selector, limit=sel.limit,
                            page_size=sel.chunk_size)


def run_list(sel: Selection, output: str | None = None, no_headers: bool = False, watch: bool = False,
             output_watch_events: bool = False) -> None:
    """List objects of one resource type across clusters, printing each page as it arrives; with `watch`, then
    every change (plugin/watching.py)."""
    with reported():
        res_text = _require_resource(sel.resource)
        _check_output(output)
        client = Client(find_endpoint(sel.server, sel.token))
        if res_text == "clusters":
            _list_clusters(client, output, no_headers)
            return
        where = _where(sel)
        if watch or output_watch_events:
            _watch(client, res_text, sel, where, output, output_watch_events, no_headers)
            return
        fresh = Freshness(res_text)
        crd_columns = CRDColumns(client)
        printer: printers.Printer | None = None
        count = 0
        for page in _pages(client, res_text, sel, where):
            info = printers.ResourceInfo.from_api(page.get("resource") or {})
            fresh.gvr = info.gvr or res_text
            fresh.update(page.get("clusters"))
            items = [(str(i.get("cluster", "")), i.get("object") or {}) for i in page.get("items") or []]
            if printer is None:
                if output in (None, "wide"):
                    # A custom resource's table gets its CRD's printer columns, read from a cluster it came from.
                    info = crd_columns.apply(info, [c for c, _ in items])
                printer = printers.make_printer(output, info, sys.stdout, no_headers=no_headers, color=_color())
            count += len(items)
            printer.page(items)
        if printer is not None:
            printer.close()
        if count == 0 and output not in ("json", "yaml"):
            note("No resources found.")


def _watch(client: Client, resource: str, sel: Selection, where: _Where, output: str | None, events: bool,
           no_headers: bool) -> None:
    if sel.limit:
        raise UsageError("--limit cannot be combined with --watch", hint="drop --limit: a watch shows every change")
    from plugin import watching

    base: list[tuple[str, str]] = [("gvr", resource), *(("cluster", c) for c in where.clusters),
                                   *(("namespace", n) for n in where.namespaces)]
    for key, value in (("name", where.name), ("labelSelector", sel.selector), ("fieldSelector", sel.field_selector)):
        if value:
            base.append((key, value))
    watching.run(client, base, output, events=events, no_headers=no_headers, chunk_size=sel.chunk_size,
                 color=_color())


def _list_clusters(client: Client, output: str | None, no_headers: bool) -> None:
    clusters = client.clusters()
    if output == "json":
        sys.stdout.write(orjson.dumps({"apiVersion": "multicluster/v1", "clusters": clusters},
                                      option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    if output == "yaml":
        sys.stdout.write(printers.to_yaml({"apiVersion": "multicluster/v1", "clusters": clusters}))
        return
    if output == "name":
        for c in clusters:
            sys.stdout.write(f"cluster/{c.get('name')}\n")
        return
    table = printers.TablePrinter(printers.CLUSTER_HEADERS, sys.stdout, no_headers=no_headers, color=_color())
    table.rows(printers.cluster_rows(clusters))
    table.close()
    if not clusters:
        note("No clusters found.")


def run_describe(sel: Selection) -> None:
    """Print matching objects as YAML, each with a header naming its cluster, type and freshness."""
    with reported():
        res_text = _require_resource(sel.resource)
        client = Client(find_endpoint(sel.server, sel.token))
        where = _where(sel)
        fresh = Freshness(res_text)
        count = 0
        out = sys.stdout
        for page in _pages(client, res_text, sel, where):
            info = printers.ResourceInfo.from_api(page.get("resource") or {})
            fresh.gvr = info.gvr or res_text
            fresh.update(page.get("clusters"))
            for item in page.get("items") or []:
                cl = str(item.get("cluster", ""))
                if count:
                    out.write("---\n")
                out.write(f"# cluster: {cl}   resource: {info.gvr}   freshness: {fresh.state.get(cl, 'unknown')}\n")
                out.write(printers.to_yaml(item.get("object") or {}))
                count += 1
            out.flush()
        if count == 0:
            note("No resources found.")
