"""`kubectl multicluster`: query the daemon's API from the command line (typer).

Installed as the console script `kubectl-multicluster`, so kubectl's plugin mechanism runs it for
`kubectl multicluster ...`. It parses flags, calls the API through plugin.client and hands pages to
plugin.printers; it never talks to Kubernetes. Every failure ends as one red `error:` line on stderr (plus a
`hint:` line when there is one) and exit code 1 (2 for usage errors) — never a traceback.

Resource spellings are passed to the server untouched (pods, po, v1.pods, core.v1.pods, apps.v1.deployments,
v1.apps.deployments, apps/v1/deployments, deploy, cm, ...): the daemon resolves them against the clusters' own
discovery, so the plugin and the API can never disagree about a spelling (the seed's CLI/server mismatch).

Other commands (apply, create, delete, get, edit, join, unjoin) live in their own modules, each exposing
`register(app)`; load_extensions() imports and registers them by name. They are skipped for `list`, `describe`
and `completion`, whose start-up would otherwise pay for kubernetes_asyncio (~0.5 s) without using it. Errors
and warnings are printed by plugin.output.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console

from plugin import printers
from plugin.client import PAGE_SIZE, Client, find_endpoint
from plugin.crd_columns import CRDColumns
from plugin.output import UsageError, reported, warn
from plugin.output import stderr as _stderr

BUILTIN = frozenset({"list", "describe", "completion"})
PROG = "kubectl-multicluster"
COMPLETE_VAR = "_KUBECTL_MULTICLUSTER_COMPLETE"  # what typer reads to answer a completion request

app = typer.Typer(
    name="kubectl-multicluster",
    help="kubectl-multicluster: query (and deliver) Kubernetes resources across many clusters.\n\n"
    "Examples: kubectl multicluster list pods -c cluster1; kubectl multicluster list apps/v1/deployments -o wide; "
    "kubectl multicluster describe core.v1.pods --name web-0 -n default; kubectl multicluster list clusters",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class Freshness:
    """Collects the `clusters` blocks of a walk and warns once per stale/missing cluster."""

    def __init__(self, gvr: str) -> None:
        self.gvr = gvr
        self.warned: set[str] = set()
        self.state: dict[str, str] = {}

    def update(self, block: dict[str, Any] | None) -> None:
        if not block:
            return
        now = time.time()
        for name in block.get("fresh") or []:
            self.state.setdefault(name, "fresh")
        for s in block.get("stale") or []:
            name = str(s.get("name"))
            last = s.get("lastSync")
            ago = f"last sync {printers.human_duration(now - float(last))} ago" if last else "never synced"
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
    return Console(file=sys.stdout).is_terminal


def _check_output(output: str | None) -> None:
    if output is not None and output not in printers.OUTPUTS:
        raise UsageError(f'unknown output format "{output}"', hint="use -o wide, -o json, -o yaml or -o name")


def _require_resource(resource: str | None) -> str:
    if not resource or not resource.strip():
        raise UsageError("specify a resource type",
                         hint="e.g. pods, deployments, configmaps, apps/v1/deployments, batch.v1.jobs or clusters")
    return resource.strip()


# Typer option declarations shared by list and describe.
ClusterOpt = Annotated[list[str] | None, typer.Option("--cluster", "-c", help="Cluster name (repeatable)")]
ClusterNameOpt = Annotated[str | None, typer.Option("--clusterName", help="Cluster name (the original's flag)")]
NamespaceOpt = Annotated[str | None, typer.Option("--namespace", "-n", help="Namespace (default: all)")]
NameOpt = Annotated[str | None, typer.Option("--name", help="Exact object name")]
AllNsOpt = Annotated[bool, typer.Option("--all-namespaces", "-A", help="All namespaces (the default)")]
SelectorOpt = Annotated[str | None, typer.Option("--selector", "-l", help="Label selector, e.g. app=web,tier!=db")]
FieldOpt = Annotated[str | None, typer.Option("--field-selector", help="e.g. status.phase=Running")]
LimitOpt = Annotated[int, typer.Option("--limit", min=0, help="Stop after this many objects (0 = all)")]
ChunkOpt = Annotated[int, typer.Option("--chunk-size", min=1, max=5000,
                                       help="Objects per API request (pages are printed as they arrive)")]
ServerOpt = Annotated[str | None, typer.Option("--server", "-s", help="API address (default: env, config file)")]
TokenOpt = Annotated[str | None, typer.Option("--token", help="API bearer token (default: env, config file)")]
ResourceArg = Annotated[str | None, typer.Argument(help="Resource type in any spelling, or `clusters`",
                                                   metavar="RESOURCE", show_default=False)]
NameArg = Annotated[str | None, typer.Argument(help="Object name (same as --name)", metavar="[NAME]",
                                               show_default=False)]


def _filters(cluster: list[str] | None, cluster_name: str | None, namespace: str | None, all_namespaces: bool,
             name: str | None, name_arg: str | None) -> tuple[list[str], list[str], str | None]:
    clusters = [c for c in (cluster or []) if c]
    if cluster_name:
        clusters.append(cluster_name)
    namespaces = [] if all_namespaces or not namespace else [namespace]
    if name and name_arg and name != name_arg:
        raise UsageError(f'two different names given ("{name_arg}" and --name "{name}")')
    return clusters, namespaces, name or name_arg


@app.command("list")
def list_cmd(
    resource: ResourceArg = None,
    name_arg: NameArg = None,
    cluster: ClusterOpt = None,
    cluster_name: ClusterNameOpt = None,
    namespace: NamespaceOpt = None,
    name: NameOpt = None,
    all_namespaces: AllNsOpt = False,
    selector: SelectorOpt = None,
    field_selector: FieldOpt = None,
    output: Annotated[str | None, typer.Option("--output", "-o", help="wide, json, yaml or name")] = None,
    limit: LimitOpt = 0,
    chunk_size: ChunkOpt = PAGE_SIZE,
    no_headers: Annotated[bool, typer.Option("--no-headers", help="Omit the header row")] = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """List objects of one resource type across clusters (streams page by page)."""
    with reported():
        res_text = _require_resource(resource)
        _check_output(output)
        client = Client(find_endpoint(server, token))
        if res_text == "clusters":
            _list_clusters(client, output, no_headers)
            return
        clusters, namespaces, obj_name = _filters(cluster, cluster_name, namespace, all_namespaces, name, name_arg)
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
            _stderr().print("No resources found.")


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
        _stderr().print("No clusters found.")


@app.command("describe")
def describe_cmd(
    resource: ResourceArg = None,
    name_arg: NameArg = None,
    cluster: ClusterOpt = None,
    cluster_name: ClusterNameOpt = None,
    namespace: NamespaceOpt = None,
    name: NameOpt = None,
    all_namespaces: AllNsOpt = False,
    selector: SelectorOpt = None,
    field_selector: FieldOpt = None,
    limit: LimitOpt = 0,
    chunk_size: ChunkOpt = PAGE_SIZE,
    server: ServerOpt = None,
    token: TokenOpt = None,
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
            _stderr().print("No resources found.")


@app.command("completion")
def completion_cmd(
    shell: Annotated[str, typer.Argument(help="bash, zsh or fish", metavar="SHELL", show_default=False)],
) -> None:
    """Print a shell completion script: source <(kubectl-multicluster completion bash)."""
    from typer._completion_shared import get_completion_script  # typer has no public name for it

    with reported():
        if shell not in ("bash", "zsh", "fish"):
            raise UsageError(f'completion: unsupported shell "{shell}"', hint="use bash, zsh or fish")
        sys.stdout.write(get_completion_script(prog_name=PROG, complete_var=COMPLETE_VAR, shell=shell) + "\n")


def load_extensions(argv: list[str]) -> None:
    """Register the commands of other modules, unless argv names one of ours."""
    command = next((a for a in argv if not a.startswith("-")), None)
    if command in BUILTIN:
        return
    from plugin import edit_cmd, join_cmds, manifest_cmds

    for module in (manifest_cmds, edit_cmd, join_cmds):
        module.register(app)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    load_extensions(sys.argv[1:] if argv is None else argv)
    if os.environ.get(COMPLETE_VAR):
        # A completion request from the script `completion` printed: typer answers it once its shells are known.
        from typer._completion_classes import completion_init

        completion_init()
    try:
        app(args=argv, prog_name=PROG, complete_var=COMPLETE_VAR)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        # `kubectl multicluster list pods | head`: stop quietly, like kubectl.
        sys.stderr.close()
        sys.exit(0)


run: Callable[[], None] = main

if __name__ == "__main__":  # pragma: no cover
    main()
