"""`kubectl multicluster list ... -w`: the real plugin process against a real API server over a real store whose
commits feed the hub. The table first, then a row per change; a daemon restart is bridged with Last-Event-ID
(nothing missed, nothing printed twice); Ctrl-C exits without a traceback; bad input is one line and exit 1."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from aiohttp.test_utils import TestServer

from multicluster.api import ClusterView, build_app
from multicluster.config import StoreConfig
from multicluster.feed.hub import Hub
from multicluster.gvr import GVR, APIResource
from multicluster.store import Delete, Row, Store, open_store
from multicluster.sync import to_row
from plugin.printers import CLUSTER_ANNOTATION
from tests.api.helpers import Backend
from tests.store.helpers import PODS

POD = APIResource(PODS, "Pod", True, frozenset({"list", "watch", "get"}), ("po",), "pod")
WIDGETS = GVR("example.com", "v1", "widgets")
WIDGET = APIResource(WIDGETS, "Widget", True, frozenset({"list", "watch", "get"}), (), "widget")
CRDS = GVR("apiextensions.k8s.io", "v1", "customresourcedefinitions")
CRD = APIResource(CRDS, "CustomResourceDefinition", False, frozenset({"list", "watch", "get"}), ("crd",),
                  "customresourcedefinition")
PLUGIN = "from plugin.cli import main\nmain()\n"


def pod(cluster: str, name: str, rv: int, phase: str = "Running") -> Row:
    obj = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": "default", "uid": f"u-{cluster}-{name}",
                        "resourceVersion": str(rv), "creationTimestamp": "2026-01-01T00:00:00Z"},
           "spec": {"containers": [{"name": "c", "image": "nginx"}]},
           "status": {"phase": phase, "containerStatuses": [{"name": "c", "ready": phase == "Running",
                                                             "restartCount": 0}]}}
    return to_row(cluster, PODS, obj, rv)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = open_store(StoreConfig(type="sqlite", path=tmp_path / "w.db"))
    await s.open()
    yield s
    await s.close()


@pytest.fixture
async def backend(store: Store) -> AsyncIterator[Backend]:
    hub = Hub()
    hub.start({c: p.last for c, p in (await store.log_positions()).items()})
    store.listen(hub.publish)
    views = [ClusterView(name=c, is_master=False, host="https://127.0.0.1:1", reachable=True, ready=True,
                         last_sync=time.time()) for c in ("c1", "c2")]
    yield Backend(store, [POD, WIDGET, CRD], views, hub=hub)
    store.listen(None)
    hub.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Plugin:
    """The plugin as a process; its output read line by line."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []

    async def line(self) -> str:
        assert self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), 120)
        assert raw, f"the plugin ended: {await self.stderr()}"
        self.lines.append(raw.decode().rstrip("\n"))
        return self.lines[-1]

    async def lines_until(self, text: str) -> list[str]:
        start = len(self.lines)
        while text not in await self.line():
            pass
        return self.lines[start:]

    async def stderr(self) -> str:
        assert self.proc.stderr is not None
        return (await self.proc.stderr.read()).decode()


async def start(url: str, tmp_path: Path, *args: str) -> Plugin:
    env = {**os.environ, "MULTICLUSTER_SERVER": url, "MULTICLUSTER_CLI_CONFIG": str(tmp_path / "none"),
           "NO_PROXY": "127.0.0.1", "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}
    for name in ("MULTICLUSTER_TOKEN", "FORCE_COLOR", "TTY_COMPATIBLE"):
        env.pop(name, None)
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", PLUGIN, *args, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    return Plugin(proc)


def cells(line: str) -> list[str]:
    return line.split()


async def test_watch_prints_the_table_then_each_change_across_a_daemon_restart(
        store: Store, backend: Backend, tmp_path: Path) -> None:
    await store.apply([pod("c1", "a", 1), pod("c2", "b", 1)])
    port = free_port()
    server = TestServer(build_app(backend), host="127.0.0.1", port=port)
    await server.start_server()
    p = await start(f"http://127.0.0.1:{port}", tmp_path, "list", "pods", "-w", "--output-watch-events")
    try:
        header = await p.line()
        assert cells(header)[:4] == ["EVENT", "CLUSTER", "NAME", "NAMESPACE"], header
        first = [cells(await p.line()) for _ in range(2)]
        assert [(r[0], r[1], r[2]) for r in first] == [("ADDED", "c1", "a"), ("ADDED", "c2", "b")]
        await store.apply([pod("c1", "a", 2, phase="Pending"), pod("c2", "c", 1)])
        got = [cells(await p.line()) for _ in range(2)]
        assert [(r[0], r[1], r[2]) for r in got] == [("MODIFIED", "c1", "a"), ("ADDED", "c2", "c")]
        assert "Pending" in got[0]
        # The daemon goes away; changes happen meanwhile; it comes back on the same address.
        await server.close()
        await store.apply([Delete("c2", PODS, "default", "b", 2), pod("c1", "d", 1)])
        server = TestServer(build_app(backend), host="127.0.0.1", port=port)
        await server.start_server()
        resumed = [cells(await p.line()) for _ in range(2)]
        assert sorted((r[0], r[1], r[2]) for r in resumed) == [("ADDED", "c1", "d"), ("DELETED", "c2", "b")]
        await store.apply([pod("c1", "a", 3)])
        (after,) = [cells(await p.line())]
        assert (after[0], after[1], after[2]) == ("MODIFIED", "c1", "a")
        # Ctrl-C: the exit code of an interrupted command, and no traceback.
        p.proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(p.proc.wait(), 60) == 130
        err = await p.stderr()
        assert "Traceback" not in err and "reconnect" in err, err
        assert p.proc.stdout is not None
        assert await p.proc.stdout.read() == b""  # nothing was printed twice
    finally:
        if p.proc.returncode is None:
            p.proc.kill()
            await p.proc.wait()
        await server.close()


async def test_watch_json_prints_events(store: Store, backend: Backend, tmp_path: Path) -> None:
    await store.apply([pod("c1", "a", 1)])
    server = TestServer(build_app(backend), host="127.0.0.1")
    await server.start_server()
    p = await start(f"http://127.0.0.1:{server.port}", tmp_path, "list", "pods", "--watch", "-o", "json",
                    "--output-watch-events")
    try:
        docs = []
        for _ in range(2):
            text = "\n".join(await p.lines_until("}"))
            while text.count("{") != text.count("}"):
                text += "\n" + "\n".join(await p.lines_until("}"))
            docs.append(orjson.loads(text))
            if len(docs) == 1:
                await store.apply([Delete("c1", PODS, "default", "a", 2)])
        assert [(d["type"], d["object"]["metadata"]["name"]) for d in docs] == [("ADDED", "a"), ("DELETED", "a")]
        assert docs[0]["object"]["metadata"]["annotations"][CLUSTER_ANNOTATION] == "c1"
        p.proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(p.proc.wait(), 60) == 130
    finally:
        if p.proc.returncode is None:
            p.proc.kill()
            await p.proc.wait()
        await server.close()


def widget(name: str, size: int, rv: int) -> Row:
    obj = {"apiVersion": "example.com/v1", "kind": "Widget",
           "metadata": {"name": name, "namespace": "default", "uid": f"u-{name}", "resourceVersion": str(rv),
                        "creationTimestamp": "2026-01-01T00:00:00Z"},
           "spec": {"size": size}}
    return to_row("c1", WIDGETS, obj, rv)


async def test_watch_of_a_custom_resource_uses_its_crds_printer_columns(store: Store, backend: Backend,
                                                                         tmp_path: Path) -> None:
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "widgets.example.com", "uid": "u-crd", "resourceVersion": "1",
                        "creationTimestamp": "2026-01-01T00:00:00Z"},
           "spec": {"group": "example.com", "names": {"plural": "widgets", "kind": "Widget"}, "scope": "Namespaced",
                    "versions": [{"name": "v1", "served": True, "storage": True, "additionalPrinterColumns": [
                        {"name": "Size", "type": "integer", "jsonPath": ".spec.size"}]}]}}
    await store.apply([to_row("c1", CRDS, crd, 1), widget("w1", 3, 1)])
    server = TestServer(build_app(backend), host="127.0.0.1")
    await server.start_server()
    p = await start(f"http://127.0.0.1:{server.port}", tmp_path, "list", "widgets.example.com", "-w")
    try:
        header = cells(await p.line())
        assert "SIZE" in header, header
        size = header.index("SIZE")
        assert cells(await p.line())[size] == "3"
        await store.apply([widget("w1", 7, 2)])
        assert cells(await p.line())[size] == "7"
        p.proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(p.proc.wait(), 60) == 130
    finally:
        if p.proc.returncode is None:
            p.proc.kill()
            await p.proc.wait()
        await server.close()


@pytest.mark.parametrize("args,message", [
    (["list", "pods", "-w", "-l", "app in (x"], "labelSelector"),
    (["list", "nosuchthings", "-w"], "nosuchthings"),
    (["list", "pods", "-w", "--limit", "3"], "--limit"),
])
async def test_watch_bad_input_is_one_line_and_exit_1(backend: Backend, tmp_path: Path, args: list[str],
                                                      message: str) -> None:
    server = TestServer(build_app(backend), host="127.0.0.1")
    await server.start_server()
    try:
        p = await start(f"http://127.0.0.1:{server.port}", tmp_path, *args)
        code = await asyncio.wait_for(p.proc.wait(), 60)
        err = await p.stderr()
        assert code in (1, 2) and err.startswith("error: ") and message in err.splitlines()[0], (code, err)
        assert "Traceback" not in err
    finally:
        await server.close()
