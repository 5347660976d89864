"""The typer application of `kubectl multicluster`: flags, help and usage errors of every command.

list, describe and completion are declared here; their bodies are in plugin.listing. The other commands'
modules register themselves on `app` (plugin.cli.load_extensions). plugin.cli runs a plain `list` without
building this app (importing typer, click and rich is most of a short command's run time).
"""

from __future__ import annotations

import inspect
import sys
from typing import Annotated, Any

import typer

from plugin import COMPLETE_VAR, PROG
from plugin.client import PAGE_SIZE
from plugin.listing import Selection, run_describe, run_list
from plugin.output import UsageError, reported

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
    watch: Annotated[bool, typer.Option("--watch", "-w", help="After the list, print each change as it happens "
                                                              "(Ctrl-C ends)")] = False,
    output_watch_events: Annotated[bool, typer.Option("--output-watch-events",
                                                      help="Watch, with an EVENT column (ADDED, MODIFIED, DELETED)")
                                   ] = False,
) -> None:
    """List objects of one resource type across clusters (streams page by page); -w then watches."""
    options = locals()  # the parameters, by name
    run_list(Selection.take(options), **options)


# list's options that shape its output or watch; describe takes every other one, declared once above.
_LIST_ONLY = frozenset({"output", "no_headers", "watch", "output_watch_events"})


def describe_cmd(**options: Any) -> None:
    """Print matching objects as YAML, each with a header naming its cluster, type and freshness."""
    run_describe(Selection.take(options))


_list_signature = inspect.signature(list_cmd, eval_str=True)
describe_cmd.__signature__ = _list_signature.replace(  # type: ignore[attr-defined]  # typer reads the signature
    parameters=[p for p in _list_signature.parameters.values() if p.name not in _LIST_ONLY])
app.command("describe")(describe_cmd)


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
