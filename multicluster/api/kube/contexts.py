"""`multicluster kubeconfig`: kubectl contexts for the daemon's Kubernetes-compatible API.

Contexts: `multicluster` (all clusters, the `_all` scope) and `multicluster-<cluster>` (one each), all using the
user `multicluster`, which carries the daemon's bearer token when it has one. Each context's cluster entry is the
daemon's URL plus the scope's prefix: kubectl keeps a server URL's path and appends /api, /apis, /version to it.

Written to a new file (`--out`), or merged into the user's kubeconfig (the first file of $KUBECONFIG, else
~/.kube/config): our entries are replaced, everything else is kept as it was, and the previous file is copied to
`<file>.multicluster.bak` first. The file is written 0600 (it may hold the token) and replaced atomically.

kubectl (client-go) never sends a bearer token over plain HTTP: a daemon with a token must serve TLS
(server.certDir) for kubectl to authenticate, and the command says so when it sees an http:// URL and a token.
"""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from multicluster.api.kube.paths import ALL_CLUSTERS, PREFIX, scope_prefix
from multicluster.errors import ConfigError

NAME = "multicluster"


def entries(server: str, clusters: Sequence[str], token: str | None,
            ca_data: bytes | None = None) -> dict[str, list[dict[str, Any]]]:
    """The clusters, users and contexts entries for a daemon at `server` (e.g. https://localhost:31888);
    `ca_data` is the PEM of the CA that signed the daemon's certificate (None: the system's roots)."""
    base = server.rstrip("/")
    scopes = [(NAME, ALL_CLUSTERS)] + [(f"{NAME}-{c}", c) for c in clusters]
    user: dict[str, Any] = {"token": token} if token else {}
    tls = {"certificate-authority-data": base64.b64encode(ca_data).decode()} if ca_data else {}
    return {
        "clusters": [{"name": name, "cluster": {"server": base + scope_prefix(scope), **tls}}
                     for name, scope in scopes],
        "users": [{"name": NAME, "user": user}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": NAME}} for name, _ in scopes],
    }


_PATH_KEYS = ("certificate-authority", "client-certificate", "client-key", "tokenFile")


def via_master(kubeconfig: dict[str, Any], source: Path, context: str | None, clusters: Sequence[str], *,
               copy_user: bool) -> dict[str, list[dict[str, Any]]]:
    """Contexts that reach the daemon through the master's API server (the APIService): each cluster entry is
    the master's own (its server URL plus a scope's prefix, its TLS settings), each context uses the user of the
    master's context, so kubectl sends the user's own credentials and the master authenticates them. With
    `copy_user` (another file than `source`) the user entry is copied too, file paths made absolute."""
    name = context or str(kubeconfig.get("current-context") or "")
    ctx = _named(kubeconfig, "contexts", name, "context")
    cluster = _named(kubeconfig, "clusters", str(ctx.get("cluster", "")), "cluster")
    user_name = str(ctx.get("user", ""))
    server = str(cluster.get("server", "")).rstrip("/")
    if not server.startswith("https://"):
        raise ConfigError(f"context {name!r}: the master's server {server[:200]!r} is not an https:// URL")
    tls = {k: _absolute(k, v, source) for k, v in cluster.items() if k != "server" and k != "extensions"}
    scopes = [(NAME, ALL_CLUSTERS)] + [(f"{NAME}-{c}", c) for c in clusters]
    users = []
    if copy_user and user_name:
        user = _named(kubeconfig, "users", user_name, "user")
        users = [{"name": user_name, "user": {k: _absolute(k, v, source) for k, v in user.items()}}]
    return {
        "clusters": [{"name": n, "cluster": {"server": server + scope_prefix(scope), **tls}} for n, scope in scopes],
        "users": users,
        "contexts": [{"name": n, "context": {"cluster": n, "user": user_name}} for n, _ in scopes],
    }


def _named(doc: dict[str, Any], key: str, name: str, inner: str) -> dict[str, Any]:
    for entry in doc.get(key) or []:
        if isinstance(entry, dict) and entry.get("name") == name and isinstance(entry.get(inner), dict):
            return dict(entry[inner])
    raise ConfigError(f"the kubeconfig has no {inner} named {name!r}",
                      hint="name the master's context with --context (kubectl config get-contexts lists them)")


def _absolute(key: str, value: Any, source: Path) -> Any:
    if key in _PATH_KEYS and isinstance(value, str) and value and not os.path.isabs(value):
        return str((source.parent / value).resolve())
    return value


def _ours(entry: Any, servers: set[str]) -> bool:
    """An entry a previous run wrote: named multicluster or multicluster-*, pointing at a scope of ours."""
    if not isinstance(entry, dict):
        return False
    name = str(entry.get("name", ""))
    if name == NAME:
        return True
    if not name.startswith(NAME + "-"):
        return False
    server = str((entry.get("cluster") or {}).get("server", "")) if isinstance(entry.get("cluster"), dict) else ""
    context = entry.get("context")
    return PREFIX in server or (isinstance(context, dict) and context.get("cluster") in servers)


def merge(existing: dict[str, Any], new: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """`existing` with our previous entries replaced by `new`; current-context is left as it was."""
    out = dict(existing)
    out.setdefault("apiVersion", "v1")
    out.setdefault("kind", "Config")
    old_clusters = {str(c.get("name")) for c in existing.get("clusters") or [] if _ours(c, set())}
    for key in ("clusters", "users", "contexts"):
        current = existing.get(key) or []
        if not isinstance(current, list):
            raise ConfigError(f"the kubeconfig's `{key}` is not a list", hint="fix the file, or use --out FILE")
        names = {e["name"] for e in new[key]}
        kept = [e for e in current if not (isinstance(e, dict) and (e.get("name") in names or (
            key != "users" and _ours(e, old_clusters))))]
        out[key] = kept + new[key]
    return out


def write(path: Path, doc: dict[str, Any], *, backup: bool) -> Path | None:
    """Write `doc` to `path` (0600, atomically); with `backup`, copy the previous file aside first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    saved = None
    if backup and path.exists():
        saved = path.with_name(path.name + ".multicluster.bak")
        shutil.copy2(path, saved)
        os.chmod(saved, 0o600)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            yaml.safe_dump(doc, f, default_flow_style=False, sort_keys=False)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return saved


def empty() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Config", "clusters": [], "users": [], "contexts": []}


def load(path: Path) -> dict[str, Any]:
    if not path.exists():
        return empty()
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path} is not valid YAML{where}", hint="fix the file, or write elsewhere with --out FILE") \
            from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a kubeconfig (not a mapping)", hint="write elsewhere with --out FILE")
    return data
