"""Manifests and object names for the commands that act on the master cluster (apply, create, delete, get, edit).

`read_docs` turns files, directories and stdin into the objects they hold (multi-document YAML or JSON, `kind:
List` expanded); `locate` finds where one of them lives on the master (its type through discovery, its namespace
from the object or `-n`); `selection` and `named` read kubectl's `TYPE NAME...`, `TYPE/NAME...` and `-l`/`--all`
forms. Every problem is a ManifestError naming the file and document, or the argument, it comes from.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import yaml

from multicluster import crds
from multicluster.errors import KubeAPIError
from multicluster.types import KubeObject
from plugin.master import APIResource, MasterClient, MasterError, find_kind, resolve_type, server_message, type_name

_EXTENSIONS = (".yaml", ".yml", ".json")


class ManifestError(MasterError):
    """A file, document or flag the plugin cannot use."""


@dataclass(frozen=True, slots=True)
class Doc:
    source: str  # file:index, for error messages
    obj: KubeObject


def files(paths: list[str], recursive: bool) -> Iterator[Path | None]:
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
    for f in files(paths, recursive):
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
                docs += [Doc(f"{name} (document {i + 1}, item {j + 1})", cast(KubeObject, it))
                         for j, it in enumerate(items) if isinstance(it, dict)]
            else:
                docs.append(Doc(f"{name} (document {i + 1})", cast(KubeObject, obj)))
    return docs


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
        return f"{type_name(self.resource)}/{self.name}"


async def locate(client: MasterClient, doc: Doc, namespace: str | None) -> Located:
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
    r = find_kind(resources, api_version, kind) or find_kind(await client.discover(refresh=True), api_version, kind)
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



@dataclass(frozen=True, slots=True)
class Selection:
    """What `delete`/`get` name on the command line: a type and names, or a type and a selector (or --all)."""

    resource: str | None
    names: tuple[str, ...] = ()
    selector: str | None = None
    all: bool = False


def selection(args: list[str], selector: str | None, all_: bool) -> Selection:
    """kubectl's TYPE NAME... and TYPE/NAME... forms."""
    if not args:
        return Selection(None, (), selector, all_)
    if "/" in args[0] and len(args[0].split("/")) == 2 and all("/" in a for a in args):
        types = {a.split("/", 1)[0] for a in args}
        if len(types) > 1:
            raise ManifestError("TYPE/NAME arguments of different types", hint="give one type per command")
        names = tuple(a.split("/", 1)[1] for a in args)
        if any(not n for n in names):
            raise ManifestError(f'"{args[0]}" names no object', hint="use TYPE/NAME, e.g. rr/web")
        return Selection(types.pop(), names, selector, all_)
    return Selection(args[0], tuple(args[1:]), selector, all_)


async def named(client: MasterClient, sel: Selection, namespace: str | None,
                 all_namespaces: bool) -> tuple[APIResource, list[Located]]:
    """The objects a Selection names (listing the master for a selector or --all)."""
    assert sel.resource is not None
    r = await resolve_type(client, sel.resource)
    ns = (namespace or "default") if r.namespaced else ""
    if sel.names:
        return r, [Located(r, ns, n) for n in sel.names]
    params = {"labelSelector": sel.selector} if sel.selector else None
    try:
        listed = await client.get(r.gvr.path(None if all_namespaces or not ns else ns), params=params)
    except KubeAPIError as exc:
        raise ManifestError(server_message(exc)) from exc
    found = []
    for it in listed.get("items") or []:
        md = it.get("metadata") or {}
        found.append(Located(r, str(md.get("namespace") or ""), str(md.get("name"))))
    return r, found
