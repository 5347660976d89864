"""Helpers for the delivery tests: a real controller against the real harness clusters.

`make_env(...)` builds a Config the way the daemon does (parse_config over the harness kubeconfigs), ClusterClients
and a Controller scoped to the test's fresh namespace (so controllers of earlier tests never see this test's CRs),
and runs it in the test's event loop under a Supervisor. All test actions go through async ClusterClients: a
blocking call would freeze the controller running in the same loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from multicluster.config import Config
from multicluster.delivery import Controller, DeliveryOptions
from multicluster.errors import NotFound
from multicluster.kube import APPLY_PATCH, MERGE_PATCH, ClusterClient
from multicluster.tasks import Supervisor
from multicluster.testing.harness import ADMIN_TOKEN, Harness, free_port

MCR = "/apis/mulitcluster.practice.com/v1alpha1"
T = TypeVar("T")
# kubectl from PATH, else the one the harness builds next to its kube-apiserver (as tests/kube uses it).
KUBECTL = shutil.which("kubectl") or next((str(p) for p in sorted(
    (Path.home() / ".cache" / "multicluster" / "testbin").glob("k8s-*/kubectl"))), "")


async def eventually(fn: Callable[[], Awaitable[T]], *, timeout: float = 20.0, interval: float = 0.1,
                     what: str = "condition") -> T:
    """Poll `fn` until it returns something truthy; fail with the last value seen."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = await fn()
        except AssertionError as exc:
            last = exc
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout:.0f}s; last value: {last!r}")
        await asyncio.sleep(interval)


async def kubectl(harness: Harness, cluster: str, *args: str) -> str:
    """The real kubectl against one harness cluster (run as a process, so the event loop keeps serving)."""
    assert KUBECTL, "no kubectl: put one on PATH or let the harness build it (MC_BUILD_KUBECTL=1)"
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "KUBECACHEDIR": str(harness.workdir / "kubecache")}
    proc = await asyncio.create_subprocess_exec(KUBECTL, "--kubeconfig", str(harness.servers[cluster].kubeconfig),
                                                *args, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, f"kubectl {' '.join(args)} failed ({proc.returncode}): {err.decode()}"
    return out.decode()


async def kubectl_table(harness: Harness, cluster: str, *args: str) -> dict[str, dict[str, str]]:
    """`kubectl get ...` as printed, one row per NAME: {column header: cell}, cut at the header's columns."""
    lines = (await kubectl(harness, cluster, *args)).splitlines()
    starts = [m.start() for m in re.finditer(r"\S+", lines[0])]
    heads = lines[0].split()
    rows = {}
    for line in lines[1:]:
        cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
        row = dict(zip(heads, cells, strict=True))
        rows[row["NAME"]] = row
    return rows


def dead_kubeconfig(directory: Path, name: str) -> Path:
    """A kubeconfig for a cluster whose API server is not running (a free loopback port): really unreachable."""
    doc = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": f"https://127.0.0.1:{free_port()}",
                                                "insecure-skip-tls-verify": True}}],
        "users": [{"name": name, "user": {"token": ADMIN_TOKEN}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
    }
    path = directory / f"{name}.kubeconfig"
    path.write_text(yaml.safe_dump(doc))
    return path


@dataclass
class Env:
    harness: Harness
    ns: str
    config: Config
    clients: dict[str, ClusterClient]
    controller: Controller
    names: dict[str, str]  # config name → harness cluster
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def master(self) -> ClusterClient:
        return self.controller.master

    def client(self, name: str) -> ClusterClient:
        return self.clients[name]

    # --------------------------------------------------------------- CRs

    def cr_path(self, name: str | None = None) -> str:
        base = f"{MCR}/namespaces/{self.ns}/multiclusterresources"
        return f"{base}/{name}" if name else base

    def load_cr(self, text: str) -> dict[str, Any]:
        """A manifest with `namespace: default` moved into this test's namespace."""
        doc = yaml.safe_load(text.replace("namespace: default", f"namespace: {self.ns}"))
        assert isinstance(doc, dict)
        return doc

    def cr(self, name: str, template: dict[str, Any], clusters: list[str] | None = None,
           customize: list[dict[str, Any]] | None = None, annotations: Mapping[str, str] | None = None
           ) -> dict[str, Any]:
        spec: dict[str, Any] = {"template": template}
        if clusters is not None:
            spec["placement"] = {"clusters": [{"name": c} for c in clusters]}
        if customize is not None:
            spec["customize"] = {"clusters": customize}
        md: dict[str, Any] = {"name": name, "namespace": self.ns}
        if annotations:
            md["annotations"] = dict(annotations)
        return {"apiVersion": "mulitcluster.practice.com/v1alpha1", "kind": "MultiClusterResource",
                "metadata": md, "spec": spec}

    async def apply_cr(self, obj: dict[str, Any]) -> dict[str, Any]:
        name = obj["metadata"]["name"]
        return await self.master.request("PATCH", self.cr_path(name), params={"fieldManager": "test", "force": True},
                                         body=obj, content_type=APPLY_PATCH)

    async def patch_cr(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return await self.master.request("PATCH", self.cr_path(name), body=patch, content_type=MERGE_PATCH)

    async def get_cr(self, name: str) -> dict[str, Any] | None:
        try:
            return await self.master.get(self.cr_path(name))
        except NotFound:
            return None

    async def delete_cr(self, name: str) -> None:
        await self.master.request("DELETE", self.cr_path(name))

    async def status(self, name: str) -> dict[str, Any]:
        cr = await self.get_cr(name)
        return (cr or {}).get("status") or {}

    async def entry(self, name: str, cluster: str) -> dict[str, Any]:
        for e in (await self.status(name)).get("clusters") or []:
            if e.get("name") == cluster:
                return dict(e)
        return {}

    async def wait_applied(self, name: str, expect: str, timeout: float = 20.0) -> dict[str, Any]:
        """Until status.applied == expect (e.g. "3/3") for the current generation."""
        async def check() -> dict[str, Any] | None:
            cr = await self.get_cr(name)
            st = (cr or {}).get("status") or {}
            gen = ((cr or {}).get("metadata") or {}).get("generation")
            return st if st.get("applied") == expect and st.get("observedGeneration") == gen else None
        return await eventually(check, timeout=timeout, what=f"{name} applied {expect}")

    async def events(self, reason: str | None = None) -> list[dict[str, Any]]:
        items = (await self.master.get(f"/api/v1/namespaces/{self.ns}/events")).get("items") or []
        return [e for e in items if reason is None or e.get("reason") == reason]

    async def event(self, reason: str, contains: str = "", timeout: float = 10.0) -> dict[str, Any]:
        """Wait for an Event with that reason whose message contains `contains` (events follow the status)."""
        async def check() -> dict[str, Any] | None:
            return next((e for e in await self.events(reason) if contains in e.get("message", "")), None)
        return await eventually(check, timeout=timeout, what=f"event {reason} containing {contains!r}")

    # --------------------------------------------------------------- member objects

    async def get(self, cluster: str, path: str) -> dict[str, Any] | None:
        try:
            return await self.clients[cluster].get(path)
        except NotFound:
            return None

    def cm_path(self, name: str, ns: str | None = None) -> str:
        return f"/api/v1/namespaces/{ns or self.ns}/configmaps/{name}"

    # --------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        self.tasks.append(asyncio.create_task(self.controller.run(), name="test-controller"))
        await self.controller.wait_synced(60)

    async def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        for t in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(t, 15)
        self.tasks.clear()
        await self.controller.supervisor.stop_all()

    async def restart(self, **opts: Any) -> None:
        """A new controller process, same config: only what the cluster holds (status, labels) carries over."""
        await self.stop()
        options = DeliveryOptions(**{**default_options(self.ns), **opts})
        self.controller = Controller(self.config, self.clients, Supervisor("test"), options)
        await self.start()


def default_options(ns: str) -> dict[str, Any]:
    return {"namespace": ns, "task_prefix": f"delivery-{ns}", "resync_seconds": 60.0, "cleanup_timeout": 60.0}


MakeEnv = Callable[..., Awaitable[Env]]
