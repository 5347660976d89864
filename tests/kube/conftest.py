"""A daemon syncing the real harness clusters, objects that differ per cluster, and the real kubectl binary.

One daemon per test module (with a bearer token, so every kubectl call also proves the token in the generated
kubeconfig works); each module's objects live in a namespace of its own. `multicluster kubeconfig --out` writes
the contexts every kubectl call uses, so the command is exercised by every test.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import ssl
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from typer.testing import CliRunner

from multicluster.config import ServerConfig
from multicluster.daemon import Daemon
from multicluster.gvr import GVR
from multicluster.testing.harness import Harness, free_port
from multicluster.testing.objects import crd
from tests.conftest import _unavailable
from tests.sync.helpers import daemon_config, sqlite_store, wait_converged

pytestmark = pytest.mark.integration

# kubectl from PATH, else one built next to the harness's kube-apiserver.
KUBECTL = shutil.which("kubectl") or next((str(p) for p in sorted(
    (Path.home() / ".cache" / "multicluster" / "testbin").glob("k8s-*/kubectl"))), "")
TOKEN = "kube-api-test-token"
CRD_GROUP = "kt.example.com"
GADGET_COLUMNS = [
    {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
    {"name": "Color", "type": "string", "jsonPath": ".spec.color", "priority": 1},
    {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]
INCLUDE = ("pods", "deployments", "replicasets", "services", "namespaces", "configmaps", "jobs", "cronjobs",
           "statefulsets", "daemonsets", "serviceaccounts", "customresourcedefinitions", f"gadgets.{CRD_GROUP}")
GVRS = [GVR("", "v1", "pods"), GVR("apps", "v1", "deployments"), GVR("", "v1", "services"),
        GVR("", "v1", "configmaps"), GVR("batch", "v1", "jobs"), GVR(CRD_GROUP, "v1", "gadgets")]

# Pods per cluster: (name, labels). Different on every cluster so a row from the wrong cluster shows.
PODS = {
    "cluster1": [("web-1", {"app": "web", "tier": "front"}), ("web-2", {"app": "web", "tier": "front"}),
                 ("db-1", {"app": "db"}), ("batch-1", {"app": "batch"})],
    "cluster2": [("web-1", {"app": "web", "tier": "front"}), ("db-1", {"app": "db"}), ("db-2", {"app": "db"})],
    "cluster3": [("cache-1", {"app": "cache"})],
}


@dataclass
class Env:
    harness: Harness
    daemon: Daemon
    url: str
    namespace: str
    kubeconfig: Path
    cache: Path

    async def restart(self, while_down: Callable[[], Awaitable[None]] | None = None) -> None:
        """Stop the daemon, run `while_down`, and start a new one on the same store and port."""
        cfg = self.daemon.config
        await self.daemon.shutdown(5)
        if while_down is not None:
            await while_down()
        self.daemon = Daemon(cfg)
        await self.daemon.start(controller=False)
        assert await self.daemon.wait_ready(90)

    async def kubectl(self, *args: str, context: str = "multicluster", ok: bool = True) -> tuple[int, str, str]:
        """Run the real kubectl against a scope of the daemon (the event loop keeps serving meanwhile)."""
        return await run_kubectl(["--kubeconfig", str(self.kubeconfig), "--context", context, *args], self.cache,
                                 ok=ok)

    def http(self) -> aiohttp.ClientSession:
        """A client of the daemon's API with its token and the CA of its certificate."""
        ctx = ssl.create_default_context(cafile=str(self.harness.pki / "ca.crt"))
        return aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"},
                                     connector=aiohttp.TCPConnector(ssl=ctx))

    async def direct(self, cluster: str, *args: str) -> str:
        """kubectl straight against one harness cluster: what the daemon's answer is compared with."""
        _, out, _ = await run_kubectl(["--kubeconfig", str(self.harness.servers[cluster].kubeconfig), *args],
                                      self.cache)
        return out


async def run_kubectl(args: list[str], cache: Path, ok: bool = True) -> tuple[int, str, str]:
    env = {**os.environ, "KUBECACHEDIR": str(cache), "NO_PROXY": "127.0.0.1,localhost"}
    proc = await asyncio.create_subprocess_exec(KUBECTL, *args, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    code = proc.returncode or 0
    if ok:
        assert code == 0, f"kubectl {' '.join(args[4:])} failed ({code}): {err.decode()}"
    return code, out.decode(), err.decode()


def _pod(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{"name": "main", "image": f"registry.example/{name.split('-')[0]}:1"}]}}


def _create(h: Harness, cluster: str, path: str, body: dict[str, Any]) -> None:
    try:
        h.request(cluster, "POST", path, body)
    except Exception as exc:  # an object of the session (the CRD) may exist from another module
        if "409" not in str(exc):
            raise


def seed(h: Harness, ns: str) -> None:
    for i, cluster in enumerate(h.servers):
        _create(h, cluster, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                crd(CRD_GROUP, "gadgets", "Gadget", short_names=["gd"], printer_columns=GADGET_COLUMNS))
        _create(h, cluster, "/api/v1/namespaces", {"metadata": {"name": ns}})
        for name, labels in PODS.get(cluster, []):
            _create(h, cluster, f"/api/v1/namespaces/{ns}/pods", _pod(name, labels))
        _create(h, cluster, f"/apis/apps/v1/namespaces/{ns}/deployments", {
            "metadata": {"name": "front"},
            "spec": {"replicas": i + 1, "selector": {"matchLabels": {"app": "front"}},
                     "template": {"metadata": {"labels": {"app": "front"}},
                                  "spec": {"containers": [{"name": "c", "image": "registry.example/front:2"}]}}}})
        _create(h, cluster, f"/api/v1/namespaces/{ns}/services", {
            "metadata": {"name": "front"},
            "spec": {"selector": {"app": "front"}, "ports": [{"port": 80 + i, "protocol": "TCP"}]}})
        _create(h, cluster, f"/api/v1/namespaces/{ns}/configmaps",
                {"metadata": {"name": f"settings-{cluster}"}, "data": {"a": "1", "b": str(i)}})
        _create(h, cluster, f"/apis/batch/v1/namespaces/{ns}/jobs", {
            "metadata": {"name": "once"},
            "spec": {"template": {"spec": {"restartPolicy": "Never",
                                           "containers": [{"name": "c", "image": "registry.example/job:1"}]}}}})
    wait_crd(h)
    for i, cluster in enumerate(h.servers):
        for j in range(i + 1):
            _create(h, cluster, f"/apis/{CRD_GROUP}/v1/namespaces/{ns}/gadgets", {
                "apiVersion": f"{CRD_GROUP}/v1", "kind": "Gadget", "metadata": {"name": f"g{j}"},
                "spec": {"size": 10 * (j + 1), "color": ["red", "blue", "green"][j]},
                "status": {"conditions": [{"type": "Ready", "status": "True" if j % 2 == 0 else "False"}]}})


def wait_crd(h: Harness) -> None:
    import time

    for cluster in h.servers:
        deadline = time.monotonic() + 30
        while True:
            try:
                h.request(cluster, "GET", f"/apis/{CRD_GROUP}/v1/gadgets")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


@pytest.fixture(scope="module")
async def env(harness: Harness, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Env]:
    if not KUBECTL or not os.access(KUBECTL, os.X_OK):
        _unavailable("kubectl", FileNotFoundError("no kubectl on PATH or in ~/.cache/multicluster/testbin/k8s-*/"))
    tmp = tmp_path_factory.mktemp("kube")
    ns = f"kt-{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(seed, harness, ns)
    port = free_port()
    # kubectl sends a bearer token over TLS only: the daemon serves the harness's 127.0.0.1 certificate.
    tls = tmp / "tls"
    tls.mkdir()
    shutil.copy(harness.pki / "server.crt", tls / "tls.crt")
    shutil.copy(harness.pki / "server.key", tls / "tls.key")
    cfg = replace(daemon_config(harness, sqlite_store(tmp), INCLUDE),
                  server=ServerConfig(port=port, token=TOKEN, cert_dir=tls))
    d = Daemon(cfg)
    await d.start(controller=False)
    url = f"https://127.0.0.1:{port}"
    made: list[Env] = []
    try:
        assert await d.wait_ready(90)
        await wait_converged(d, harness, GVRS, 60)
        kubeconfig = tmp / "kubeconfig"
        from multicluster.cli import app

        result = await asyncio.to_thread(CliRunner().invoke, app, [
            "kubeconfig", "--out", str(kubeconfig), "--server", url, "--certificate-authority",
            str(harness.pki / "ca.crt")], env={"MULTICLUSTER_TOKEN": TOKEN})
        assert result.exit_code == 0, result.output
        made.append(Env(harness, d, url, ns, kubeconfig, tmp / "kube-cache"))
        yield made[0]
    finally:
        # A test may have restarted the daemon (Env.restart): stop the one running now.
        await (made[0].daemon if made else d).shutdown(5)
        for cluster in harness.servers:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(harness.request, cluster, "DELETE", f"/api/v1/namespaces/{ns}")


def table(text: str) -> list[list[str]]:
    """kubectl's table output as rows of cells (columns are separated by at least 2 spaces... or 3 when a
    cell is empty, which the callers avoid)."""
    import re

    return [re.split(r"\s{2,}", line.strip()) for line in text.strip().splitlines()]
