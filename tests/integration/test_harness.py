"""The harness is real: separate clusters, watch, pagination, CRDs and discovery, all through our ClusterClient."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiomysql
import pytest

from multicluster.config import ClusterConfig
from multicluster.errors import ClusterError, NotFound
from multicluster.gvr import GVR, resolve
from multicluster.kube import ClusterClient
from multicluster.testing import objects
from multicluster.testing.harness import Harness
from multicluster.testing.mariadb import MariaDB

pytestmark = pytest.mark.integration

CM = GVR("", "v1", "configmaps")


@pytest.fixture
async def clients(harness: Harness) -> AsyncIterator[dict[str, ClusterClient]]:
    out = {n: ClusterClient(ClusterConfig(n, s.kubeconfig)) for n, s in harness.servers.items()}
    yield out
    for c in out.values():
        await c.close()


async def make_ns(c: ClusterClient, name: str) -> None:
    await c.request("POST", "/api/v1/namespaces", body={"metadata": {"name": name}})


async def test_every_kubeconfig_style_connects(clients: dict[str, ClusterClient]) -> None:
    # cluster1: CA data + token, cluster2: insecure-skip-tls-verify, cluster3: client certificate.
    for c in clients.values():
        v = await c.server_version()
        assert v["gitVersion"].startswith("v1.")


async def test_insecure_flag_overrides_ca_data(harness: Harness) -> None:
    """The Go original refused insecure: true with a CA-carrying kubeconfig; we skip verification instead."""
    c = ClusterClient(ClusterConfig("cluster1", harness.servers["cluster1"].kubeconfig, insecure=True))
    try:
        assert (await c.get("/version"))["gitVersion"]
    finally:
        await c.close()


async def test_clusters_are_isolated(clients: dict[str, ClusterClient], unique: str) -> None:
    a, b = clients["cluster1"], clients["cluster2"]
    ns = f"iso-{unique}"
    await make_ns(a, ns)
    await a.request("POST", CM.path(ns), body={"metadata": {"name": "only-in-a"}, "data": {"k": "v"}})
    assert (await a.get(CM.path(ns, "only-in-a")))["data"] == {"k": "v"}
    with pytest.raises(NotFound):
        await b.get(CM.path(ns, "only-in-a"))


async def test_watch_and_pagination(clients: dict[str, ClusterClient], unique: str) -> None:
    c = clients["cluster3"]
    ns = f"page-{unique}"
    await make_ns(c, ns)
    for i in range(7):
        await c.request("POST", CM.path(ns), body={"metadata": {"name": f"cm-{i}", "labels": {"t": "1"}}})
    names: list[str] = []
    cont = None
    pages = 0
    while True:
        params = {"limit": 3, "labelSelector": "t=1", **({"continue": cont} if cont else {})}
        page = await c.get(CM.path(ns), params=params)
        pages += 1
        names += [i["metadata"]["name"] for i in page["items"]]
        cont = page["metadata"].get("continue")
        if not cont:
            break
    assert pages == 3 and sorted(names) == [f"cm-{i}" for i in range(7)]
    rv = page["metadata"]["resourceVersion"]

    async def first_event() -> dict[str, object]:
        async for ev in c.watch(
            CM.path(ns), {"resourceVersion": rv, "timeoutSeconds": 10, "labelSelector": "t=1"}, timeout=20
        ):
            return ev
        raise AssertionError("watch ended without events")

    task = asyncio.create_task(first_event())
    await asyncio.sleep(0.3)
    await c.request("POST", CM.path(ns), body={"metadata": {"name": "watched", "labels": {"t": "1"}}})
    ev = await asyncio.wait_for(task, 15)
    assert ev["type"] == "ADDED" and ev["object"]["metadata"]["name"] == "watched"  # type: ignore[index]


async def test_crd_is_discovered(clients: dict[str, ClusterClient], unique: str) -> None:
    c = clients["cluster2"]
    group = f"g{unique}.example.com"
    crd = objects.crd(group, "gadgets", "Gadget", short_names=["gd"])
    await c.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", body=crd)
    for _ in range(100):
        res = await c.discover(refresh=True)
        try:
            r = resolve(f"gadgets.{group}", res)
            break
        except Exception:
            await asyncio.sleep(0.2)
    else:
        raise AssertionError("CRD never appeared in discovery")
    assert r.kind == "Gadget" and r.gvr == GVR(group, "v1", "gadgets") and r.listable
    assert resolve("gd", res).gvr == r.gvr


async def test_unreachable_cluster_is_named(tmp_path: Path, harness: Harness) -> None:
    kc = tmp_path / "dead.kubeconfig"
    kc.write_text(
        harness.servers["cluster1"].kubeconfig.read_text().replace(f":{harness.servers['cluster1'].port}", ":1")
    )
    c = ClusterClient(ClusterConfig("deadone", kc))
    try:
        with pytest.raises(ClusterError, match=r"^cluster deadone: cannot connect"):
            await c.get("/version")
    finally:
        await c.close()


@pytest.mark.mariadb
async def test_mariadb_accepts_connections(mariadb_server: MariaDB, mariadb_database: str) -> None:
    conn = await aiomysql.connect(
        host="127.0.0.1",
        port=mariadb_server.port,
        user=mariadb_server.user,
        password=mariadb_server.password,
        db=mariadb_database,
    )
    try:
        async with conn.cursor() as cur:
            await cur.execute("SELECT VERSION()")
            (version,) = await cur.fetchone()
        assert "MariaDB" in version
    finally:
        conn.close()
