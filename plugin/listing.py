"""The bodies of `list` and `describe`, free of typer and rich so that a `list` can run without loading them.

plugin.app declares these commands' flags for typer; plugin.cli calls run_list directly when it can parse the
arguments itself (see plugin.cli.fast_list), which is the common short `kubectl multicluster list ...`.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

import orjson

from multicluster.columns import human_duration
from plugin import printers
from plugin.client import PAGE_SIZE, Client, find_endpoint
from plugin.crd_columns import CRDColumns
from plugin.output import UsageError, is_terminal, note, reported, warn

# Types only: importing multicluster.types would be start-up time of `kubectl multicluster list`.
if TYPE_CHECKING:
    from multicluster.types import Freshness as FreshnessBlock


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


def _check_output(output: str | None) -> None:
    if output is not None and output not in printers.OUTPUTS:
        raise UsageError(f'unknown output format "{output}"', hint="use -o wide, -o json, -o yaml or -o name")


def _require_resource(resource: str | None) -> str:
    if not resource or not resource.strip():
        raise UsageError("specify a resource type",
                         hint="e.g. pods, deployments, configmaps, apps/v1/deployments, batch.v1.jobs or clusters")
    return resource.strip()


def _filters(cluster: list[str] | None, cluster_name: str | None, namespace: str | None, all_namespaces: bool,
             name: str | None, name_arg: str | None) -> tuple[list[str], list[str], str | None]:
    clusters = [c for c in (cluster or []) if c]
    if cluster_name:
        clusters.append(cluster_name)
    namespaces = [] if all_namespaces or not namespace else [namespace]
    if name and name_arg and name != name_arg:
        raise UsageError(f'two different names given ("{name_arg}" and --name "{name}")')
    return clusters, namespaces, name or name_arg


def run_list(
    resource: str | None = None,
    name_arg: str | None = None,
    cluster: list[str] | None = None,
    cluster_name: str | None = None,
    namespace: str | None = None,
    name: str | None = None,
    all_namespaces: bool = False,
    selector: str | None = None,
    field_selector: str | None = None,
    output: str | None = None,
    limit: int = 0,
    chunk_size: int = PAGE_SIZE,
    no_headers: bool = False,
    server: str | None = None,
    token: str | None = None,
    watch: bool = False,
    output_watch_events: bool = False,
) -> None:
    """List objects of one resource type across clusters, printing each page as it arrives; with `watch`, then
    every change (plugin/watching.py)."""
    with reported():
        res_text = _require_resource(resource)
        _check_output(output)
        client = Client(find_endpoint(server, token))
        if res_text == "clusters":
            _list_clusters(client, output, no_headers)
            return
        clusters, namespaces, obj_name = _filters(cluster, cluster_name, namespace, all_namespaces, name, name_arg)
        if watch or output_watch_events:
            _watch(client, res_text, clusters, namespaces, obj_name, selector, field_selector, output,
                   output_watch_events, no_headers, chunk_size, limit)
            return
        fresh = Freshness(res_text)
        crd_columns = CRDColumns(client)
        printer: printers.Printer | None = None
        count = 0
        for page in client.resources(res_text, clusters=clusters, namespaces=namespaces, name=obj_name,
                                     label_selector=selector, field_selector=field_selector, limit=limit,
                                     page_size=chunk_size):
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


def _watch(client: Client, resource: str, clusters: list[str], namespaces: list[str], name: str | None,
           selector: str | None, field_selector: str | None, output: str | None, events: bool, no_headers: bool,
           chunk_size: int, limit: int) -> None:
    if limit:
        raise UsageError("--limit cannot be combined with --watch", hint="drop --limit: a watch shows every change")
    from plugin import watching

    base: list[tuple[str, str]] = [("gvr", resource), *(("cluster", c) for c in clusters),
                                   *(("namespace", n) for n in namespaces)]
    for key, value in (("name", name), ("labelSelector", selector), ("fieldSelector", field_selector)):
        if value:
            base.append((key, value))
    watching.run(client, base, output, events=events, no_headers=no_headers, chunk_size=chunk_size, color=_color())


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


def run_describe(
    resource: str | None = None,
    name_arg: str | None = None,
    cluster: list[str] | None = None,
    cluster_name: str | None = None,
    namespace: str | None = None,
    name: str | None = None,
    all_namespaces: bool = False,
    selector: str | None = None,
    field_selector: str | None = None,
    limit: int = 0,
    chunk_size: int = PAGE_SIZE,
    server: str | None = None,
    token: str | None = None,
) -> None:
    """Print matching objects as YAML, each with a header naming its cluster, type and freshness."""
    with reported():
        res_text = _require_resource(resource)
        client = Client(find_endpoint(server, token))
        clusters, namespaces, obj_name = _filters(cluster, cluster_name, namespace, all_namespaces, name, name_arg)
        fresh = Freshness(res_text)
        count = 0
        out = sys.stdout
        for page in client.resources(res_text, clusters=clusters, namespaces=namespaces, name=obj_name,
                                     label_selector=selector, field_selector=field_selector, limit=limit,
                                     page_size=chunk_size):
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
