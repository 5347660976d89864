"""`kubectl-multicluster apply|delete -f FILE|DIR` and `get rr|cl`: manifests against the MASTER cluster.

Unlike `list`/`describe` (which ask the daemon's API), these talk to the master cluster's API server directly,
like the seed did (its apply/delete were kubectl's own commands bound to `masterClusterKubeConfigPath`): creating
a MultiClusterResource there is what makes the controller deliver it. The master is found, in order, from
`--kubeconfig`, or `masterClusterKubeConfigPath` in the CLI config file (~/.multi-cluster-operator/config, moved
by MULTICLUSTER_CLI_CONFIG). There is deliberately no fallback to ~/.kube/config: applying to whatever cluster
happens to be current is how CRs end up in the wrong place.

- apply: server-side apply (field manager `kubectl-multicluster`), multi-document YAML/JSON, `kind: List`,
  directories (`-R` to recurse), `-` for stdin. Prints `<type>/<name> created|configured|unchanged`.
- delete: deletes every object named in the files; by default waits until they are gone — for a
  MultiClusterResource that is after the controller removed its copies from every cluster (its finalizer).
- get rr|mcr|multiclusterresources [NAME], get cl|multiclusters: columns are the CRD's own printer columns (the
  packaged CRD), so the output matches `kubectl get rr` exactly. `-o wide|yaml|json|name`, `-n`, `-A`.

Every failure is one red `error:` line (plus `hint:`), exit code 1; other documents are still processed.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
import yaml
from rich.console import Console
from rich.markup import escape

from multicluster import crds
from multicluster.cliconfig import config_path, load_cli_config
from multicluster.config import ClusterConfig
from multicluster.errors import ConfigError, Conflict, KubeAPIError, MulticlusterError, NotFound
from multicluster.gvr import APIResource
from multicluster.kube import APPLY_PATCH, ClusterClient
from plugin.printers import human_duration, jsonpath, parse_time

FIELD_MANAGER = "kubectl-multicluster"
_EXTENSIONS = (".yaml", ".yml", ".json")
_RR = {"rr", "mcr", "multiclusterresource", "multiclusterresources",
       f"multiclusterresources.{crds.GROUP}", f"multiclusterresource.{crds.GROUP}"}
_CL = {"cl", "multicluster", "multiclusters", f"multiclusters.{crds.GROUP}", f"multicluster.{crds.GROUP}"}


class ManifestError(MulticlusterError):
    """A file, document or flag the plugin cannot use."""


# --------------------------------------------------------------------------------------------- output


def _err() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def _report(exc: MulticlusterError) -> None:
    err = _err()
    err.print(f"[bold red]error:[/] [red]{escape(exc.message)}[/]")
    if exc.hint:
        err.print(f"[dim]hint: {escape(exc.hint)}[/]")


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")


# --------------------------------------------------------------------------------------------- inputs


@dataclass(frozen=True, slots=True)
class Doc:
    source: str  # file:index, for error messages
    obj: dict[str, Any]


def _files(paths: list[str], recursive: bool) -> Iterator[Path | None]:
    """Each path, or the manifests in a directory (sorted); None stands for stdin."""
    for p in paths:
        if p == "-":
            yield None
            continue
        path = Path(os.path.expanduser(p))
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            found = sorted(f for f in path.glob(pattern) if f.is_file() and f.suffix in _EXTENSIONS)
            if not found:
                raise ManifestError(f"{p}: no .yaml, .yml or .json files in this directory",
                                    hint="use -R to include subdirectories" if not recursive else None)
            yield from found
        elif path.exists():
            yield path
        else:
            raise ManifestError(f"{p}: no such file or directory")


def read_docs(paths: list[str], *, recursive: bool = False) -> list[Doc]:
    """All objects in the given files/directories, in order; `kind: List` is expanded, empty documents skipped."""
    if not paths:
        raise ManifestError("no manifests given", hint="pass -f FILE, -f DIR or -f - (stdin)")
    docs: list[Doc] = []
    for f in _files(paths, recursive):
        name = "stdin" if f is None else str(f)
        try:
            text = sys.stdin.read() if f is None else f.read_text(encoding="utf-8")
            loaded = list(yaml.safe_load_all(text))
        except OSError as exc:
            raise ManifestError(f"{name}: cannot be read: {exc.strerror or exc}") from exc
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            raise ManifestError(f"{name}: YAML syntax error{where}: {getattr(exc, 'problem', None) or exc}") from exc
        for i, obj in enumerate(loaded):
            if obj is None:
                continue
            if not isinstance(obj, dict):
                raise ManifestError(f"{name} (document {i + 1}): expected an object, got {type(obj).__name__}")
            items = obj.get("items") if str(obj.get("kind", "")).endswith("List") else None
            if isinstance(items, list):
                docs += [Doc(f"{name} (document {i + 1}, item {j + 1})", it) for j, it in enumerate(items)
                         if isinstance(it, dict)]
            else:
                docs.append(Doc(f"{name} (document {i + 1})", obj))
    return docs


def master_kubeconfig(flag: str | None) -> Path:
    """--kubeconfig, else masterClusterKubeConfigPath from the CLI config file."""
    if flag:
        return Path(os.path.expanduser(flag))
    cfg = load_cli_config()
    where = config_path()
    if cfg is None:
        raise ConfigError(f"no master cluster: {where} does not exist and --kubeconfig was not given",
                          hint="pass --kubeconfig FILE, or put `masterClusterKubeConfigPath: FILE` in that file")
    if not cfg.master_kubeconfig:
        raise ConfigError(f"no master cluster: {where} has no masterClusterKubeConfigPath",
                          hint="add `masterClusterKubeConfigPath: /path/to/master/kubeconfig`, or pass --kubeconfig")
    path = Path(os.path.expanduser(cfg.master_kubeconfig))
    return path if path.is_absolute() else where.parent / path


async def _connect(kubeconfig: str | None, context: str | None) -> ClusterClient:
    path = master_kubeconfig(kubeconfig)
    if not path.exists():
        raise ConfigError(f"master kubeconfig {path} does not exist")
    client = ClusterClient(ClusterConfig(name="master", config_path=path, context=context))
    await client.connect()
    return client


def _find(resources: list[APIResource], api_version: str, kind: str) -> APIResource | None:
    group, _, version = api_version.rpartition("/")
    return next((r for r in resources if r.gvr.group == group and r.gvr.version == version and r.kind == kind), None)


def _type_name(r: APIResource) -> str:
    return f"{r.kind.lower()}.{r.gvr.group}" if r.gvr.group else r.kind.lower()


def _server_message(exc: KubeAPIError) -> str:
    return str(exc.body.get("message") or exc.message)


@dataclass(frozen=True, slots=True)
class Located:
    resource: APIResource
    namespace: str
    name: str

    @property
    def path(self) -> str:
        return self.resource.gvr.path(self.namespace if self.resource.namespaced else None, self.name)

    @property
    def ref(self) -> str:
        return f"{_type_name(self.resource)}/{self.name}"


async def _locate(client: ClusterClient, doc: Doc, namespace: str | None) -> Located:
    obj = doc.obj
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    md = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    assert isinstance(md, dict)
    name = md.get("name")
    if not isinstance(api_version, str) or not isinstance(kind, str) or not api_version or not kind:
        raise ManifestError(f"{doc.source}: apiVersion and kind are required")
    if not isinstance(name, str) or not name:
        raise ManifestError(f"{doc.source}: metadata.name is required")
    resources = await client.discover()
    r = _find(resources, api_version, kind) or _find(await client.discover(refresh=True), api_version, kind)
    if r is None:
        hint = None
        if api_version.startswith(crds.GROUP):
            hint = ("the CRDs are installed by the daemon's controller when it starts on the master; "
                    "or: kubectl apply --server-side -f manifests/crds.yaml")
        raise ManifestError(f'{doc.source}: no matches for kind "{kind}" in version "{api_version}" '
                            "on the master cluster", hint=hint)
    ns = ""
    if r.namespaced:
        own = md.get("namespace")
        if namespace and own and own != namespace:
            raise ManifestError(f'{doc.source}: the namespace from the object ("{own}") does not match '
                                f'--namespace "{namespace}"')
        ns = str(own or namespace or "default")
        md["namespace"] = ns
    return Located(r, ns, name)


# --------------------------------------------------------------------------------------------- apply


async def _apply(docs: list[Doc], *, kubeconfig: str | None, context: str | None, namespace: str | None,
                 force: bool, dry_run: bool, field_manager: str) -> int:
    client = await _connect(kubeconfig, context)
    failures = 0
    try:
        for doc in docs:
            try:
                loc = await _locate(client, doc, namespace)
                try:
                    before: dict[str, Any] | None = await client.get(loc.path)
                except NotFound:
                    before = None
                params: dict[str, Any] = {"fieldManager": field_manager}
                if force:
                    params["force"] = True
                if dry_run:
                    params["dryRun"] = "All"
                after = await client.request("PATCH", loc.path, params=params, body=doc.obj, content_type=APPLY_PATCH)
                rv0 = ((before or {}).get("metadata") or {}).get("resourceVersion")
                rv1 = (after.get("metadata") or {}).get("resourceVersion")
                verb = "created" if before is None else "unchanged" if rv0 == rv1 else "configured"
                _out(f"{loc.ref} {verb}{' (server dry run)' if dry_run else ''}")
            except Conflict as exc:
                failures += 1
                _report(ManifestError(f"{doc.source}: {_server_message(exc)}",
                                      hint="another manager owns these fields; --force-conflicts takes them over"))
            except KubeAPIError as exc:
                failures += 1
                _report(ManifestError(f"{doc.source}: {_server_message(exc)}"))
            except MulticlusterError as exc:
                failures += 1
                _report(exc)
    finally:
        await client.close()
    return failures


# --------------------------------------------------------------------------------------------- delete


async def _delete(docs: list[Doc], *, kubeconfig: str | None, context: str | None, namespace: str | None,
                  ignore_not_found: bool, wait: bool, timeout: float) -> int:
    client = await _connect(kubeconfig, context)
    failures = 0
    pending: list[Located] = []
    try:
        for doc in docs:
            try:
                loc = await _locate(client, doc, namespace)
                try:
                    await client.request("DELETE", loc.path)
                except NotFound:
                    if not ignore_not_found:
                        failures += 1
                        _report(ManifestError(f'{_type_name(loc.resource)} "{loc.name}" not found'
                                              + (f' in namespace "{loc.namespace}"' if loc.namespace else "")))
                    continue
                _out(f'{_type_name(loc.resource)} "{loc.name}" deleted')
                pending.append(loc)
            except KubeAPIError as exc:
                failures += 1
                _report(ManifestError(f"{doc.source}: {_server_message(exc)}"))
            except MulticlusterError as exc:
                failures += 1
                _report(exc)
        deadline = time.monotonic() + timeout
        while wait and pending:
            still = []
            for loc in pending:
                try:
                    await client.get(loc.path)
                    still.append(loc)
                except NotFound:
                    pass
            pending = still
            if pending and time.monotonic() > deadline:
                failures += len(pending)
                for loc in pending:
                    _report(ManifestError(
                        f"timed out after {timeout:.0f}s waiting for {loc.ref} to be deleted",
                        hint="a MultiClusterResource goes away once its copies are removed from every cluster; "
                             f"see: kubectl describe {_type_name(loc.resource)} {loc.name} -n {loc.namespace}"))
                break
            if pending:
                await asyncio.sleep(0.25)
    finally:
        await client.close()
    return failures


# --------------------------------------------------------------------------------------------- get


def _columns(kind: str, wide: bool, all_namespaces: bool) -> list[tuple[str, str]]:
    crd = next(c for c in crds.load() if c.kind == kind)
    version = crd.body["spec"]["versions"][0]
    cols = [("NAMESPACE", ".metadata.namespace")] if all_namespaces else []
    cols.append(("NAME", ".metadata.name"))
    for col in version.get("additionalPrinterColumns") or []:
        if int(col.get("priority") or 0) == 0 or wide:
            cols.append((str(col["name"]).upper(), ("date:" if col.get("type") == "date" else "") + col["jsonPath"]))
    return cols


def _cell(obj: dict[str, Any], spec: str, now: float) -> str:
    if spec.startswith("date:"):
        t = parse_time(jsonpath(obj, spec[5:]))
        return "<unknown>" if t is None else human_duration(now - t)
    v = jsonpath(obj, spec)
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return v if isinstance(v, str) else orjson.dumps(v).decode()


def render_table(items: list[dict[str, Any]], kind: str, *, wide: bool = False, all_namespaces: bool = False,
                 now: float | None = None) -> str:
    """kubectl-style table (left aligned, three spaces between columns) of CRD printer columns."""
    now = time.time() if now is None else now
    cols = _columns(kind, wide, all_namespaces)
    rows = [[h for h, _ in cols]] + [[_cell(o, p, now) for _, p in cols] for o in items]
    widths = [max(len(r[i]) for r in rows) for i in range(len(cols))]
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


async def _get(resource: str, name: str | None, *, kubeconfig: str | None, context: str | None,
               namespace: str | None, all_namespaces: bool, output: str) -> int:
    low = resource.lower()
    if low in _RR:
        crd = crds.multiclusterresource()
    elif low in _CL:
        crd = next(c for c in crds.load() if c.kind == "MultiCluster")
    else:
        raise ManifestError(f'get: unknown resource type "{resource}"',
                            hint="get shows rr (MultiClusterResources) and cl (MultiClusters); "
                                 "use `list` for everything else")
    if output not in ("", "wide", "yaml", "json", "name"):
        raise ManifestError(f'--output "{output}" is not supported', hint="use wide, yaml, json or name")
    client = await _connect(kubeconfig, context)
    try:
        r = next((x for x in await client.discover() if x.gvr.group == crds.GROUP and x.gvr.resource == crd.plural),
                 None)
        if r is None:
            raise ManifestError(f"{crd.name} is not installed on the master cluster",
                                hint="it is installed when the daemon's controller starts")
        ns = None if all_namespaces else (namespace or "default")
        try:
            if name:
                items = [await client.get(r.gvr.path(ns, name))]
            else:
                items = list((await client.get(r.gvr.path(ns))).get("items") or [])
        except NotFound as exc:
            raise ManifestError(f'{_type_name(r)} "{name}" not found'
                                + (f' in namespace "{ns}"' if ns else "")) from exc
        except KubeAPIError as exc:
            raise ManifestError(_server_message(exc)) from exc
    finally:
        await client.close()
    for it in items:
        it.setdefault("apiVersion", r.gvr.api_version)
        it.setdefault("kind", r.kind)
    if output == "name":
        for it in items:
            _out(f"{_type_name(r)}/{it['metadata']['name']}")
    elif output in ("yaml", "json"):
        doc: dict[str, Any] = items[0] if name else {"apiVersion": "v1", "kind": "List", "items": items}
        if output == "json":
            _out(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
        else:
            sys.stdout.write(yaml.safe_dump(doc, sort_keys=False))
    elif not items:
        _err().print("No resources found" + (f" in {ns} namespace." if ns else "."))
    else:
        _out(render_table(items, crd.kind, wide=output == "wide", all_namespaces=all_namespaces))
    return 0


# --------------------------------------------------------------------------------------------- commands

Files = Annotated[list[str], typer.Option("--filename", "-f", help="File, directory, or - for stdin (repeatable)")]
Kubeconfig = Annotated[str | None, typer.Option("--kubeconfig", help="Master cluster kubeconfig (default: "
                                                "masterClusterKubeConfigPath of the CLI config)")]
Context = Annotated[str | None, typer.Option("--context", help="kubeconfig context (default: current)")]
Namespace = Annotated[str | None, typer.Option("--namespace", "-n", help="Namespace for objects without one")]
Recursive = Annotated[bool, typer.Option("--recursive", "-R", help="Read directories recursively")]


def _run(coro: Any) -> int:
    try:
        return int(asyncio.run(coro))
    except MulticlusterError as exc:
        _report(exc)
        return 1


def apply_cmd(
    filename: Files,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
    namespace: Namespace = None,
    recursive: Recursive = False,
    force_conflicts: Annotated[bool, typer.Option("--force-conflicts", help="Take over others' fields")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate on the server, change nothing")] = False,
    field_manager: Annotated[str, typer.Option("--field-manager")] = FIELD_MANAGER,
) -> None:
    """Create or update objects (e.g. MultiClusterResources) in the master cluster with server-side apply."""
    try:
        docs = read_docs(filename, recursive=recursive)
    except MulticlusterError as exc:
        _report(exc)
        raise typer.Exit(1) from None
    failures = _run(_apply(docs, kubeconfig=kubeconfig, context=context, namespace=namespace,
                           force=force_conflicts, dry_run=dry_run, field_manager=field_manager))
    if failures:
        raise typer.Exit(1)


def delete_cmd(
    filename: Files,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
    namespace: Namespace = None,
    recursive: Recursive = False,
    ignore_not_found: Annotated[bool, typer.Option("--ignore-not-found", help="Objects already gone are fine")] = False,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait until the objects are gone")] = True,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait")] = 120.0,
) -> None:
    """Delete the objects named in the files from the master cluster (the controller removes the copies)."""
    try:
        docs = read_docs(filename, recursive=recursive)
    except MulticlusterError as exc:
        _report(exc)
        raise typer.Exit(1) from None
    failures = _run(_delete(docs, kubeconfig=kubeconfig, context=context, namespace=namespace,
                            ignore_not_found=ignore_not_found, wait=wait, timeout=timeout))
    if failures:
        raise typer.Exit(1)


def get_cmd(
    resource: Annotated[str, typer.Argument(help="rr|mcr|multiclusterresources or cl|multiclusters")],
    name: Annotated[str | None, typer.Argument(help="One object by name")] = None,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
    namespace: Annotated[str | None, typer.Option("--namespace", "-n", help="Namespace (default: default)")] = None,
    all_namespaces: Annotated[bool, typer.Option("--all-namespaces", "-A")] = False,
    output: Annotated[str, typer.Option("--output", "-o", help="wide|yaml|json|name")] = "",
) -> None:
    """Show MultiClusterResources (KIND, CLUSTERS, APPLIED, READY) or MultiClusters from the master cluster."""
    if _run(_get(resource, name, kubeconfig=kubeconfig, context=context, namespace=namespace,
                 all_namespaces=all_namespaces, output=output)):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add `apply`, `delete` and `get` to the plugin's typer app."""
    app.command("apply")(apply_cmd)
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
