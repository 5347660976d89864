"""The import rules of docs/architecture.md, read from the source (an AST walk, nothing is imported):

    config, errors, gvr, wire, ...  →  kube, sync.informer  →  store  →  sync  →  registry, membership
    feed (the change hub: store.base only)  →  api (reads the store and the feed, never a cluster)
    delivery (informers and clients, never the store)
    daemon (and its API wiring, serving), cli (and its kubeconfig command): composition, may import anything
    plugin: the HTTP API (plugin.client), plus the master cluster through plugin.master only

No import cycles anywhere (imports inside functions and under TYPE_CHECKING count too: a cycle hidden that
way still ties two modules together), and no importlib.import_module / __import__ outside the documented
places (none today).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("multicluster", "plugin")

# Modules everyone may import: no I/O of their own, no project imports beyond each other.
FOUNDATION = {
    "multicluster", "multicluster.errors", "multicluster.config", "multicluster.gvr", "multicluster.wire",
    "multicluster.retry", "multicluster.metrics", "multicluster.kubeconfig", "multicluster.cliconfig",
    "multicluster.crds", "multicluster.tasks", "multicluster.workqueue",
    "multicluster.memory", "multicluster.logsetup", "multicluster.jsonpath", "multicluster.columns",
    "multicluster.watchlines", "multicluster.types",
    # The config package: the schema's vocabulary, its checks, the schema, and the file, flag and environment layers.
    "multicluster.config.fields", "multicluster.config.checks", "multicluster.config.schema",
    "multicluster.config.loader", "multicluster.config.flags", "multicluster.config.env",
    "multicluster.config.exposure",
}
KUBE = {"multicluster.kube", "multicluster.kubeconn", "multicluster.sync.informer", "multicluster.leader"}

# Which modules each layer may import (prefixes; a module may always import its own package).
ALLOWED: dict[str, tuple[str, ...]] = {
    "multicluster.kubeconn": (),
    "multicluster.kube": ("multicluster.kubeconn",),
    "multicluster.sync.informer": ("multicluster.kube",),
    "multicluster.leader": ("multicluster.kube",),
    "multicluster.store": (),
    "multicluster.selectors": ("multicluster.store.base",),
    "multicluster.sync": ("multicluster.kube", "multicluster.store"),
    "multicluster.registry": ("multicluster.kube", "multicluster.store", "multicluster.sync", "multicluster.leader"),
    "multicluster.membership": ("multicluster.kube", "multicluster.registry"),
    "multicluster.feed": ("multicluster.store.base",),
    "multicluster.api": ("multicluster.store.base", "multicluster.selectors", "multicluster.feed"),
    "multicluster.delivery": ("multicluster.kube", "multicluster.sync.informer"),
    # The master's side of aggregation: a kube client, and the API group/version it registers.
    "multicluster.apiservice": ("multicluster.kube", "multicluster.api.kube.paths"),
}
# Composition: the daemon, the CLI, and the API's TLS and authentication wiring the daemon starts (serving).
UNRESTRICTED = ("multicluster.daemon", "multicluster.serving", "multicluster.cli", "multicluster.kubeconfig_cmd",
                "multicluster.__main__", "multicluster.demo", "multicluster.testing")
PLUGIN_MAY_IMPORT = ("plugin", "multicluster.errors", "multicluster.cliconfig", "multicluster.crds",
                     "multicluster.columns", "multicluster.jsonpath", "multicluster.types")
MASTER_MODULE = "plugin.master"
MASTER_MAY_ALSO_IMPORT = ("multicluster.kube", "multicluster.config", "multicluster.gvr")
DYNAMIC_IMPORT_ALLOWED: set[str] = set()


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The project module an import names (the longest known prefix), or None for third-party modules."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _imports(module: str, tree: ast.Module, *, top_level_only: bool) -> Iterator[tuple[str, int]]:
    """(imported project module, line) for every import; module-level ones (no TYPE_CHECKING) when asked."""
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]

    def visit(nodes: list[ast.stmt]) -> Iterator[ast.stmt]:
        for node in nodes:
            if isinstance(node, ast.If) and _is_type_checking(node):
                if not top_level_only:
                    yield from visit(node.body)
                continue
            if top_level_only and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                continue
            yield node
            for field in ("body", "orelse", "finalbody", "handlers"):
                inner = getattr(node, field, None)
                if isinstance(inner, list) and inner and isinstance(inner[0], ast.stmt | ast.ExceptHandler):
                    yield from visit([n for n in inner if isinstance(n, ast.stmt)]
                                     + [s for h in inner if isinstance(h, ast.ExceptHandler) for s in h.body])

    for node in visit(tree.body):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            names = [f"{base}.{a.name}" for a in node.names]
        for name in names:
            target = _resolve(name)
            if target is not None and target != module:
                yield target, node.lineno


TREES = {m: ast.parse(p.read_text(), str(p)) for m, p in MODULES.items()}


def _within(module: str, prefixes: tuple[str, ...] | set[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _layer(module: str) -> str | None:
    """The most specific ALLOWED key a module belongs to."""
    keys = [k for k in ALLOWED if _within(module, (k,))]
    return max(keys, key=len) if keys else None


def test_every_import_follows_the_layers() -> None:
    broken = []
    for module, tree in TREES.items():
        for target, line in sorted(set(_imports(module, tree, top_level_only=False))):
            where = f"{MODULES[module].relative_to(ROOT)}:{line}: {module} imports {target}"
            if module.startswith("plugin"):
                allowed = PLUGIN_MAY_IMPORT + (MASTER_MAY_ALSO_IMPORT if module == MASTER_MODULE else ())
                if not _within(target, allowed):
                    broken.append(f"{where} (the plugin uses the HTTP API, or plugin.master for the master)")
                continue
            if _within(module, UNRESTRICTED) or target in FOUNDATION or target.startswith("multicluster.testing"):
                continue
            layer = _layer(module)
            if layer is None:
                broken.append(f"{where} (a foundation module imports only foundation modules)")
                continue
            if _within(target, (layer,)) or _within(target, ALLOWED[layer]):
                continue
            broken.append(f"{where} ({layer} may import {', '.join(ALLOWED[layer]) or 'only the foundation'})")
    assert not broken, "imports against the layering:\n" + "\n".join(broken)


def test_no_import_cycles() -> None:
    graph = {m: sorted({t for t, _ in _imports(m, tree, top_level_only=False)}) for m, tree in TREES.items()}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def walk(m: str) -> None:
        state[m] = 1
        path.append(m)
        for t in graph[m]:
            # A package's __init__ importing its own submodules is how packages work, not a cycle.
            if m == t.rpartition(".")[0] and MODULES[m].name == "__init__.py":
                continue
            if state.get(t) == 1:
                cycles.append([*path[path.index(t):], t])
            elif t not in state:
                walk(t)
        path.pop()
        state[m] = 2

    for m in graph:
        if m not in state:
            walk(m)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_dynamic_imports() -> None:
    found = []
    for module, tree in TREES.items():
        if module in DYNAMIC_IMPORT_ALLOWED:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                f = node.func
                name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
                if name in ("import_module", "__import__"):
                    found.append(f"{MODULES[module].relative_to(ROOT)}:{node.lineno}")
    assert not found, "dynamic imports hide dependencies from readers and from this test: " + ", ".join(found)


def test_the_rules_see_the_modules_they_name() -> None:
    """A rule about a module that no longer exists would pass forever."""
    for name in [*ALLOWED, *KUBE, *FOUNDATION, MASTER_MODULE]:
        assert name in MODULES, name
    assert sum(1 for _ in _imports("multicluster.daemon", TREES["multicluster.daemon"], top_level_only=False)) > 5
