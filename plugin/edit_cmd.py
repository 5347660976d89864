"""`kubectl-multicluster edit TYPE NAME`: edit one object of the MASTER cluster in $KUBE_EDITOR / $EDITOR, like
`kubectl edit` (the Go original bound kubectl's own edit command to masterClusterKubeConfigPath).

The object is fetched, written as YAML (or JSON with -o json) without managedFields to a private temp file, the
editor runs on it, and the result is sent back with PUT carrying the fetched resourceVersion: if someone changed
the object meanwhile the server answers 409 and the plugin says so, keeping the edited file for a retry instead of
overwriting their change. A file left unchanged (or emptied) changes nothing: "Edit cancelled, no changes made."
"""

from __future__ import annotations

import asyncio
import os
import shlex
import subprocess
import tempfile
from pathlib import Path
from typing import Annotated, Any, cast

import orjson
import typer
import yaml

from multicluster.errors import Conflict, KubeAPIError, MulticlusterError, NotFound
from multicluster.types import KubeObject
from plugin.manifest_cmds import Context, Kubeconfig
from plugin.manifests import Located, ManifestError, selection
from plugin.master import connect, resolve_type, server_message, type_name
from plugin.output import out, report

HEADER = (
    "# Please edit the object below. Lines beginning with a '#' will be ignored,\n"
    "# and an empty file will abort the edit. The object is written back to the master cluster.\n"
    "#\n"
)


def editor_command() -> list[str]:
    """$KUBE_EDITOR, then $EDITOR, then vi (kubectl's order); the value may carry arguments (`code --wait`)."""
    raw = os.environ.get("KUBE_EDITOR") or os.environ.get("EDITOR") or "vi"
    return shlex.split(raw)


async def _fetch(kubeconfig: str | None, context: str | None, resource: str, name: str,
                 namespace: str | None) -> tuple[Located, KubeObject]:
    client = await connect(kubeconfig, context)
    try:
        r = await resolve_type(client, resource)
        loc = Located(r, (namespace or "default") if r.namespaced else "", name)
        try:
            obj = cast(KubeObject, await client.get(loc.path))
        except NotFound:
            raise ManifestError(f'{type_name(r)} "{name}" not found'
                                + (f' in namespace "{loc.namespace}"' if loc.namespace else "")) from None
    finally:
        await client.close()
    obj.setdefault("apiVersion", r.gvr.api_version)
    obj.setdefault("kind", r.kind)
    (obj.get("metadata") or {}).pop("managedFields", None)
    return loc, obj


async def _put(kubeconfig: str | None, context: str | None, loc: Located, obj: KubeObject) -> None:
    client = await connect(kubeconfig, context)
    try:
        await client.request("PUT", loc.path, body=obj)
    finally:
        await client.close()


def _render(obj: KubeObject, output: str) -> str:
    if output == "json":
        return HEADER + orjson.dumps(obj, option=orjson.OPT_INDENT_2).decode() + "\n"
    return HEADER + yaml.safe_dump(obj, sort_keys=False)


def _parse(text: str, path: Path) -> KubeObject | None:
    """The edited object, or None for an empty file (comment lines do not count)."""
    body = "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("#"))
    if not body.strip():
        return None
    try:
        obj = yaml.safe_load(body)  # JSON is YAML too
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ManifestError(f"the edited object is not valid YAML{where}: {getattr(exc, 'problem', None) or exc}",
                            hint=f"your changes are kept in {path}; fix them and apply with: "
                                 f"kubectl-multicluster apply -f {path}") from None
    if not isinstance(obj, dict):
        raise ManifestError(f"the edited file holds {type(obj).__name__}, not an object",
                            hint=f"your changes are kept in {path}")
    return cast(KubeObject, obj)


def _identity(obj: KubeObject) -> tuple[Any, ...]:
    md = obj.get("metadata")
    if not isinstance(md, dict):
        md = {}
    return obj.get("apiVersion"), obj.get("kind"), md.get("name"), md.get("namespace")


def edit(resource: str, name: str, *, kubeconfig: str | None, context: str | None, namespace: str | None,
         output: str) -> int:
    loc, original = asyncio.run(_fetch(kubeconfig, context, resource, name, namespace))
    fd, tmp = tempfile.mkstemp(prefix="kubectl-multicluster-edit-", suffix=".json" if output == "json" else ".yaml")
    path = Path(tmp)
    with os.fdopen(fd, "w") as f:
        f.write(_render(original, output))
    keep = True
    try:
        cmd = [*editor_command(), str(path)]
        try:
            done = subprocess.run(cmd, check=False)
        except OSError as exc:
            raise ManifestError(f"cannot run the editor {cmd[0]!r}: {exc.strerror or exc}",
                                hint="set KUBE_EDITOR or EDITOR to an editor installed here") from None
        if done.returncode != 0:
            raise ManifestError(f"the editor {cmd[0]!r} exited with {done.returncode}; nothing was changed")
        edited = _parse(path.read_text(), path)
        if edited is None or edited == original:
            keep = False
            out("Edit cancelled, no changes made.")
            return 0
        if _identity(edited) != _identity(original):
            raise ManifestError("apiVersion, kind, name and namespace cannot be changed by edit",
                                hint=f"your changes are kept in {path}; to make a new object use: "
                                     f"kubectl-multicluster create -f {path}")
        try:
            asyncio.run(_put(kubeconfig, context, loc, edited))
        except Conflict as exc:
            raise ManifestError(
                f'{loc.ref} was changed by someone else while you edited it: {server_message(exc)}',
                hint=f"your changes are kept in {path}; run edit again (it loads the current version) and redo "
                     "them") from None
        except KubeAPIError as exc:
            raise ManifestError(f"{loc.ref}: {server_message(exc)}", hint=f"your changes are kept in {path}") from None
        keep = False
        out(f"{loc.ref} edited")
        return 0
    finally:
        if not keep:
            path.unlink(missing_ok=True)


def edit_cmd(
    args: Annotated[list[str], typer.Argument(help="TYPE NAME or TYPE/NAME", metavar="TYPE NAME",
                                              show_default=False)],
    kubeconfig: Kubeconfig = None,
    context: Context = None,
    namespace: Annotated[str | None, typer.Option("--namespace", "-n", help="Namespace (default: default)")] = None,
    output: Annotated[str, typer.Option("--output", "-o", help="yaml or json: the format to edit in")] = "yaml",
) -> None:
    """Edit an object of the master cluster (e.g. a MultiClusterResource) in $KUBE_EDITOR or $EDITOR."""
    try:
        sel = selection(args, None, False)
        if sel.resource is None or len(sel.names) != 1:
            raise ManifestError("edit takes one object: TYPE NAME or TYPE/NAME", hint="e.g. edit rr web -n default")
        if output not in ("yaml", "json"):
            raise ManifestError(f'--output "{output}" is not supported', hint="use yaml or json")
        code = edit(sel.resource, sel.names[0], kubeconfig=kubeconfig, context=context, namespace=namespace,
                    output=output)
    except MulticlusterError as exc:
        report(exc)
        raise typer.Exit(1) from None
    if code:
        raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command("edit")(edit_cmd)
