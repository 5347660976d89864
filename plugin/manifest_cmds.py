"""`kubectl-multicluster apply|create|delete|get`: manifests and objects against the MASTER cluster.

Unlike `list`/`describe` (which ask the daemon's API), these talk to the master cluster's API server directly
through plugin.master, as the Go original does (its apply/delete are kubectl's own commands bound to
`masterClusterKubeConfigPath`): creating a MultiClusterResource there is what makes the controller deliver it.

- apply: server-side apply (field manager `kubectl-multicluster`), multi-document YAML/JSON, `kind: List`,
  directories (`-R` to recurse), `-` for stdin. Prints `<type>/<name> created|configured|unchanged`.
- create -f: creates every object in the files; one that exists already is an error (kubectl create's rule).
- delete -f FILE, delete TYPE NAME..., delete TYPE/NAME..., delete TYPE -l SELECTOR, delete TYPE --all: by
  default waits until the objects are gone — for a MultiClusterResource that is after the controller removed its
  copies from every cluster (its finalizer). TYPE is any spelling the master serves (rr, mcr,
  multiclusterresources, multiclusterresources.mulitcluster.practice.com, cm, ...).
- get TYPE [NAME...] [-l SELECTOR]: for rr|mcr|multiclusterresources and cl|multiclusters the columns are the
  CRD's own printer columns (the packaged CRD), so the output matches `kubectl get rr` exactly; other types show
  NAME and AGE. `-o wide|yaml|json|name`, `-n`, `-A`.

Every failure is one red `error:` line (plus `hint:`), exit code 1; other documents are still processed.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any, cast

import orjson
import typer
import yaml

from multicluster import crds
from multicluster.columns import printer_columns
from multicluster.errors import Conflict, KubeAPIError, MulticlusterError, NotFound
from multicluster.types import KubeList, KubeObject, PrinterColumn
from plugin import printers
from plugin.manifests import Doc, Located, ManifestError, Selection, locate, named, read_docs, selection
from plugin.master import APPLY_PATCH, MasterClient, connect, resolve_type, server_message, type_name
from plugin.output import out, report, stderr

FIELD_MANAGER = "kubectl-multicluster"


# --------------------------------------------------------------------------------------------- apply, create


async def _each_doc(docs: list[Doc], act: Callable[[MasterClient, Doc, Located], Awaitable[None]], *,
                    kubeconfig: str | None, context: str | None, namespace: str | None, conflict_hint: str) -> int:
    """Run `act` on every document's object, reporting each failure and going on with the next; the number
    of failures."""
    client = await connect(kubeconfig, context)
    failures = 0
    try:
        for doc in docs:
            try:
                await act(client, doc, await locate(client, doc, namespace))
            except Conflict as exc:
                failures += 1
                report(ManifestError(f"{doc.source}: {server_message(exc)}", hint=conflict_hint))
            except KubeAPIError as exc:
                failures += 1
                report(ManifestError(f"{doc.source}: {server_message(exc)}"))
            except MulticlusterError as exc:
                failures += 1
                report(exc)
    finally:
        await client.close()
    return failures


async def _apply(docs: list[Doc], *, kubeconfig: str | None, context: str | None, namespace: str | None,
                 force: bool, dry_run: bool, field_manager: str) -> int:
    params: dict[str, Any] = {"fieldManager": field_manager}
    if force:
        params["force"] = True
    if dry_run:
        params["dryRun"] = "All"

    async def apply(client: MasterClient, doc: Doc, loc: Located) -> None:
        try:
            before: dict[str, Any] | None = await client.get(loc.path)
        except NotFound:
            before = None
        after = await client.request("PATCH", loc.path, params=params, body=doc.obj, content_type=APPLY_PATCH)
        rv0 = ((before or {}).get("metadata") or {}).get("resourceVersion")
        rv1 = (after.get("metadata") or {}).get("resourceVersion")
        verb = "created" if before is None else "unchanged" if rv0 == rv1 else "configured"
        out(f"{loc.ref} {verb}{' (server dry run)' if dry_run else ''}")

    return await _each_doc(docs, apply, kubeconfig=kubeconfig, context=context, namespace=namespace,
                           conflict_hint="another manager owns these fields; --force-conflicts takes them over")


async def _create(docs: list[Doc], *, kubeconfig: str | None, context: str | None, namespace: str | None,
                  dry_run: bool) -> int:
    params = {"dryRun": "All"} if dry_run else None

    async def create(client: MasterClient, doc: Doc, loc: Located) -> None:
        collection = loc.resource.gvr.path(loc.namespace if loc.resource.namespaced else None)
        await client.request("POST", collection, params=params, body=doc.obj)
        out(f"{loc.ref} created{' (server dry run)' if dry_run else ''}")

    return await _each_doc(docs, create, kubeconfig=kubeconfig, context=context, namespace=namespace,
                           conflict_hint="create makes new objects only; use apply to update an existing one")


# --------------------------------------------------------------------------------------------- delete


async def _delete_one(client: MasterClient, loc: Located, ignore_not_found: bool) -> bool:
    """DELETE one object; True when it is on its way out (to be waited for)."""
    try:
        await client.request("DELETE", loc.path)
    except NotFound:
        if not ignore_not_found:
            raise ManifestError(f'{type_name(loc.resource)} "{loc.name}" not found'
                                + (f' in namespace "{loc.namespace}"' if loc.namespace else "")) from None
        return False
    out(f'{type_name(loc.resource)} "{loc.name}" deleted')
    return True


async def _wait_gone(client: MasterClient, pending: list[Located], timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while pending:
        still = []
        for loc in pending:
            try:
                await client.get(loc.path)
                still.append(loc)
            except NotFound:
                pass
        pending = still
        if pending and time.monotonic() > deadline:
            for loc in pending:
                report(ManifestError(
                    f"timed out after {timeout:.0f}s waiting for {loc.ref} to be deleted",
                    hint="a MultiClusterResource goes away once its copies are removed from every cluster; "
                         f"see: kubectl describe {type_name(loc.resource)} {loc.name} -n {loc.namespace}"))
            return len(pending)
        if pending:
            await asyncio.sleep(0.25)
    return 0


async def _delete(docs: list[Doc], sel: Selection, *, kubeconfig: str | None, context: str | None,
                  namespace: str | None, all_namespaces: bool, ignore_not_found: bool, wait: bool,
                  timeout: float) -> int:
    client = await connect(kubeconfig, context)
    failures = 0
    pending: list[Located] = []
    try:
        targets: list[tuple[str, Doc | Located]] = []
        for doc in docs:
            targets.append((doc.source, doc))
        if sel.resource is not None:
            r, found = await named(client, sel, namespace, all_namespaces)
            if not found and not sel.names:
                stderr().print("No resources found" + (f" in {namespace or 'default'} namespace."
                                                     if r.namespaced and not all_namespaces else "."))
            targets += [(loc.ref, loc) for loc in found]
        for source, target in targets:
            try:
                loc = target if isinstance(target, Located) else await locate(client, target, namespace)
                if await _delete_one(client, loc, ignore_not_found):
                    pending.append(loc)
            except KubeAPIError as exc:
                failures += 1
                report(ManifestError(f"{source}: {server_message(exc)}"))
            except MulticlusterError as exc:
                failures += 1
                report(exc)
        if wait:
            failures += await _wait_gone(client, pending, timeout)
    finally:
        await client.close()
    return failures


# --------------------------------------------------------------------------------------------- get


def render_table(items: Sequence[KubeObject], kind: str | None, *, wide: bool = False, all_namespaces: bool = False,
                 now: float | None = None) -> str:
    """`kubectl get`'s table: the packaged CRD's printer columns for our kinds, NAME and AGE for other types."""
    cols: tuple[PrinterColumn, ...] = ()
    if kind is not None:
        crd = next(c for c in crds.load() if c.kind == kind)
        cols = printer_columns(crd.body, crd.body["spec"]["versions"][0]["name"])
    return printers.render_master_table(items, cols, wide=wide, all_namespaces=all_namespaces,
                                        now=time.time() if now is None else now)


async def _get(sel: Selection, *, kubeconfig: str | None, context: str | None, namespace: str | None,
               all_namespaces: bool, output: str) -> int:
    if sel.resource is None:
        raise ManifestError("get: specify a resource type", hint="e.g. get rr, get rr NAME, get cl, get cm -l app=web")
    if output not in ("", "wide", "yaml", "json", "name"):
        raise ManifestError(f'--output "{output}" is not supported', hint="use wide, yaml, json or name")
    client = await connect(kubeconfig, context)
    failures = 0
    try:
        r = await resolve_type(client, sel.resource)
        ns = None if all_namespaces or not r.namespaced else (namespace or "default")
        items: list[KubeObject] = []
        try:
            if sel.names:
                for name in sel.names:
                    try:
                        items.append(cast(KubeObject, await client.get(r.gvr.path(ns, name))))
                    except NotFound:
                        failures += 1
                        report(ManifestError(f'{type_name(r)} "{name}" not found'
                                              + (f' in namespace "{ns}"' if ns else "")))
            else:
                params = {"labelSelector": sel.selector} if sel.selector else None
                listed = cast(KubeList, await client.get(r.gvr.path(ns), params=params))
                items = list(listed.get("items") or [])
        except KubeAPIError as exc:
            raise ManifestError(server_message(exc)) from exc
    finally:
        await client.close()
    for it in items:
        it.setdefault("apiVersion", r.gvr.api_version)
        it.setdefault("kind", r.kind)
    kind = r.kind if r.gvr.group == crds.GROUP and r.kind in {c.kind for c in crds.load()} else None
    if output == "name":
        for it in items:
            out(f"{type_name(r)}/{it['metadata']['name']}")
    elif output in ("yaml", "json"):
        doc: KubeObject | KubeList = (items[0] if len(sel.names) == 1 and items
                                      else {"apiVersion": "v1", "kind": "List", "items": items})
        if output == "json":
            out(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
        else:
            sys.stdout.write(yaml.safe_dump(doc, sort_keys=False))
    elif not items:
        if not sel.names:
            stderr().print("No resources found" + (f" in {ns} namespace." if ns else "."))
    else:
        out(render_table(items, kind, wide=output == "wide", all_namespaces=all_namespaces))
    return 1 if failures else 0


# --------------------------------------------------------------------------------------------- commands

Files = Annotated[list[str], typer.Option("--filename", "-f", help="File, directory, or - for stdin (repeatable)")]
Kubeconfig = Annotated[str | None, typer.Option("--kubeconfig", help="Master cluster kubeconfig (default: "
                                                "masterClusterKubeConfigPath of the CLI config)")]
Context = Annotated[str | None, typer.Option("--context", help="kubeconfig context (default: current)")]
Namespace = Annotated[str | None, typer.Option("--namespace", "-n", help="Namespace for objects without one")]
Recursive = Annotated[bool, typer.Option("--recursive", "-R", help="Read directories recursively")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Validate on the server, change nothing")]


def _run(coro: Any) -> int:
    try:
        return int(asyncio.run(coro))
    except MulticlusterError as exc:
        report(exc)
        return 1


def _read_or_exit(filename: list[str], recursive: bool) -> list[Doc]:
    """The documents of -f, or the reason they cannot be read and exit code 1."""
    try:
        return read_docs(filename, recursive=recursive)
    except MulticlusterError as exc:
        report(exc)
        raise typer.Exit(1) from None


def apply_cmd(
    filename: Files,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
    namespace: Namespace = None,
    recursive: Recursive = False,
    force_conflicts: Annotated[bool, typer.Option("--force-conflicts", help="Take over others' fields")] = False,
    dry_run: DryRun = False,
    field_manager: Annotated[str, typer.Option("--field-manager")] = FIELD_MANAGER,
) -> None:
    """Create or update objects (e.g. MultiClusterResources) in the master cluster with server-side apply."""
    docs = _read_or_exit(filename, recursive)
    failures = _run(_apply(docs, kubeconfig=kubeconfig, context=context, namespace=namespace,
                           force=force_conflicts, dry_run=dry_run, field_manager=field_manager))
    if failures:
        raise typer.Exit(1)


def create_cmd(
    filename: Files,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
    namespace: Namespace = None,
    recursive: Recursive = False,
    dry_run: DryRun = False,
) -> None:
    """Create the objects in the files in the master cluster (an existing one is an error: use apply)."""
    docs = _read_or_exit(filename, recursive)
    if _run(_create(docs, kubeconfig=kubeconfig, context=context, namespace=namespace, dry_run=dry_run)):
        raise typer.Exit(1)


TypeArgs = Annotated[list[str] | None, typer.Argument(help="TYPE [NAME...] or TYPE/NAME...", metavar="TYPE NAME",
                                                      show_default=False)]
Selector = Annotated[str | None, typer.Option("--selector", "-l", help="Label selector, e.g. app=web,tier!=db")]
AllNamespaces = Annotated[bool, typer.Option("--all-namespaces", "-A", help="Every namespace")]


def delete_cmd(
    args: TypeArgs = None,
    filename: Annotated[list[str] | None, typer.Option("--filename", "-f", help="File, directory, or - for stdin "
                                                       "(repeatable)")] = None,
    selector: Selector = None,
    all_: Annotated[bool, typer.Option("--all", help="Every object of TYPE in the namespace")] = False,
    all_namespaces: AllNamespaces = False,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
    namespace: Namespace = None,
    recursive: Recursive = False,
    ignore_not_found: Annotated[bool, typer.Option("--ignore-not-found", help="Objects already gone are fine")] = False,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait until the objects are gone")] = True,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait")] = 120.0,
) -> None:
    """Delete objects from the master cluster (the controller removes the copies): -f FILE, TYPE NAME...,
    TYPE/NAME..., TYPE -l SELECTOR or TYPE --all."""
    try:
        sel = selection(list(args or []), selector, all_)
        given = [bool(sel.names), bool(sel.selector), sel.all]
        if sel.resource is None and not filename:
            raise ManifestError("nothing to delete",
                                hint="pass -f FILE, TYPE NAME..., TYPE/NAME..., TYPE -l SELECTOR or TYPE --all")
        if sel.resource is not None and sum(given) != 1:
            raise ManifestError(
                f'delete {sel.resource}: ' + ("name objects, or use -l or --all (one of them)" if any(given) else
                                               "no name was specified"),
                hint=f"e.g. delete {sel.resource} NAME, delete {sel.resource} -l app=web or delete "
                     f"{sel.resource} --all")
        if sel.resource is None and (sel.selector or sel.all):
            raise ManifestError("-l and --all need a TYPE", hint="e.g. delete rr -l app=web")
        docs = read_docs(filename, recursive=recursive) if filename else []
    except MulticlusterError as exc:
        report(exc)
        raise typer.Exit(1) from None
    failures = _run(_delete(docs, sel, kubeconfig=kubeconfig, context=context, namespace=namespace,
                            all_namespaces=all_namespaces, ignore_not_found=ignore_not_found, wait=wait,
                            timeout=timeout))
    if failures:
        raise typer.Exit(1)


def get_cmd(
    args: Annotated[list[str] | None, typer.Argument(
        help="TYPE [NAME...] or TYPE/NAME...: rr|mcr|multiclusterresources, cl|multiclusters, or any type the "
             "master serves", metavar="TYPE NAME", show_default=False)] = None,
    selector: Selector = None,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
    namespace: Annotated[str | None, typer.Option("--namespace", "-n", help="Namespace (default: default)")] = None,
    all_namespaces: AllNamespaces = False,
    output: Annotated[str, typer.Option("--output", "-o", help="wide|yaml|json|name")] = "",
) -> None:
    """Show MultiClusterResources (KIND, CLUSTERS, APPLIED, READY), MultiClusters or other objects of the master."""
    try:
        sel = selection(list(args or []), selector, False)
        if sel.names and sel.selector:
            raise ManifestError("get: name objects or use -l, not both")
    except MulticlusterError as exc:
        report(exc)
        raise typer.Exit(1) from None
    if _run(_get(sel, kubeconfig=kubeconfig, context=context, namespace=namespace, all_namespaces=all_namespaces,
                 output=output)):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add `apply`, `create`, `delete` and `get` to the plugin's typer app."""
    app.command("apply")(apply_cmd)
    app.command("create")(create_cmd)
    app.command("delete")(delete_cmd)
    app.command("get")(get_cmd)


def main(argv: list[str] | None = None) -> None:
    """Standalone entry (`python -m plugin.manifest_cmds ...`): the same commands without the query ones."""
    app = typer.Typer(name="kubectl-multicluster", no_args_is_help=True, add_completion=False,
                      pretty_exceptions_enable=False)
    register(app)
    app(args=argv, prog_name="kubectl-multicluster")


if __name__ == "__main__":  # pragma: no cover
    main()
