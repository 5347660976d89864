"""Big and odd objects through the whole pipeline (API server → informer → store → query API): a ~1 MiB ConfigMap
and a ~1.4 MB custom resource (etcd's per-object limit is ~1.5 MiB), unicode in annotations and data (label values
cannot hold any: the API server refuses them), names of the maximum length, thousands of namespaces, a CRD serving
several versions, and CRDs deleted while watched. Each scenario ends with the store equal to the API servers and a
healthy daemon."""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.error
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from multicluster.config import ClusterConfig, Config, ServerConfig, StoreConfig, SyncConfig
from multicluster.daemon import Daemon
from multicluster.gvr import GVR
from multicluster.store import Query, Requirement
from multicluster.testing.harness import Harness, free_port
from multicluster.testing.mariadb import MariaDB
from tests.faults.helpers import assert_daemon_healthy, bulk, mkns, rmns
from tests.sync.helpers import CM, NS, daemon_config, mysql_store, sqlite_store, wait_converged

pytestmark = [pytest.mark.integration, pytest.mark.faults]

log = logging.getLogger(__name__)

MAX_NAME = ".".join(["a" * 63] * 3) + "." + "z" * 61  # 253 characters: the DNS subdomain maximum
assert len(MAX_NAME) == 253
# A label key at its maximum: a 253-character DNS prefix, "/", a 63-character name (317 characters).
MAX_LABEL_KEY = ".".join(["p" * 63] * 3) + "." + "q" * 61 + "/" + "k" * 63
MAX_LABEL_VALUE = "v" * 63
UNICODE = "é ñ 日本語 한국어 עברית \u202eRTL\u202c e\u0301 😀🏳️‍🌈 \U0001f9ea \u0000 \ufeff ' OR 1=1 -- \" \\ %_"
# ~1 MiB of data (the API server's ConfigMap limit is 1,048,576 bytes), multi-byte characters included.
BIG_DATA = "0123456789abcdef" * 65_000 + "é😀" * 1000
assert len(BIG_DATA.encode()) < 1_048_576


def _strip(obj: dict[str, Any]) -> dict[str, Any]:
    """What the store keeps of an API object: everything but managedFields."""
    md = {k: v for k, v in obj["metadata"].items() if k != "managedFields"}
    return {**obj, "metadata": md}


async def _same_as_api(d: Daemon, harness: Harness, cluster: str, gvr: GVR, ns: str, name: str) -> bytes:
    want = _strip(await asyncio.to_thread(harness.request, cluster, "GET", gvr.path(ns, name)))
    got = await d.store.get(cluster, gvr, ns, name)
    assert got is not None, (gvr, ns, name)
    assert orjson.loads(got.object) == want, (gvr, ns, name)
    return got.object


@pytest.fixture(params=["sqlite", pytest.param("mariadb", marks=pytest.mark.mariadb)])
def store_cfg(request: pytest.FixtureRequest, tmp_path: Path) -> StoreConfig:
    if request.param == "sqlite":
        return sqlite_store(tmp_path)
    m: MariaDB = request.getfixturevalue("mariadb_server")
    return mysql_store(m, request.getfixturevalue("mariadb_database"))


async def test_big_unicode_and_max_length_objects(harness: Harness, store_cfg: StoreConfig, unique: str) -> None:
    ns = f"odd-{unique}"
    await asyncio.to_thread(mkns, harness, ns, ["cluster1"])

    def cm(name: str, **extra: Any) -> tuple[str, str, dict[str, Any]]:
        return ("POST", CM.path(ns), {"metadata": {"name": name, **extra.pop("metadata", {})}, **extra})

    # One big object arrives through the initial list, the rest through the watch.
    await bulk(harness, "cluster1", [cm("big-listed", data={"v": BIG_DATA})])
    port = free_port()
    d = Daemon(replace(daemon_config(harness, store_cfg, ("configmaps",)), server=ServerConfig(port=port)))
    await d.start(controller=False)
    try:
        assert await d.wait_ready(60)
        await bulk(harness, "cluster1", [
            cm("big-watched", data={"v": BIG_DATA[::-1]}),
            cm(MAX_NAME, data={"k": "v"}),
            cm("unicode", metadata={"annotations": {"example.com/u": UNICODE, "plain": UNICODE[::-1]}},
               data={"u": UNICODE, "empty": ""}, binaryData={"b": "AAEC/w=="}),
            cm("max-label", metadata={"labels": {MAX_LABEL_KEY: MAX_LABEL_VALUE, "e": ""}}),
        ])
        # Unicode label values never reach us: the API server refuses them.
        with pytest.raises(urllib.error.HTTPError) as refused:
            await asyncio.to_thread(harness.request, "cluster1", "POST", CM.path(ns),
                                    {"metadata": {"name": "unicode-label", "labels": {"k": "é"}}})
        assert refused.value.code == 422
        # The 1 MiB row is replaced through the watch, too.
        await bulk(harness, "cluster1", [("PATCH", CM.path(ns, "big-listed"),
                                          orjson.dumps({"data": {"v": BIG_DATA.upper()}}))])
        await wait_converged(d, harness, [CM])

        for name in ("big-listed", "big-watched", MAX_NAME, "unicode", "max-label"):
            await _same_as_api(d, harness, "cluster1", CM, ns, name)
        widest = Requirement(MAX_LABEL_KEY, "=", (MAX_LABEL_VALUE,))
        page = await d.store.query(Query(gvr=CM, namespaces=(ns,), labels=(widest,), limit=10))
        assert [i.name for i in page.items] == ["max-label"]

        # Served back byte for byte by the query API (1 MiB as JSON and as YAML, the longest name, the widest label).
        url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:
            for name in ("big-listed", MAX_NAME, "unicode"):
                async with http.get(f"{url}/v1/resources/cluster1/configmaps/{ns}/{name}") as r:
                    assert r.status == 200
                    assert orjson.loads(await r.read()) == _strip(
                        await asyncio.to_thread(harness.request, "cluster1", "GET", CM.path(ns, name)))
            async with http.get(f"{url}/v1/resources/cluster1/configmaps/{ns}/big-watched?output=yaml") as r:
                assert r.status == 200 and len(await r.read()) > 1_000_000
            params = {"gvr": "configmaps", "namespace": ns, "labelSelector": f"{MAX_LABEL_KEY}={MAX_LABEL_VALUE}"}
            async with http.get(f"{url}/v1/resources", params=params) as r:
                assert r.status == 200
                assert [i["object"]["metadata"]["name"] for i in (await r.json())["items"]] == ["max-label"]
            async with http.get(f"{url}/v1/list", params={"gvr": "configmaps", "namespace": ns, "limit": "0"}) as r:
                names = {o["metadata"]["name"] for o in await r.json()}
                assert r.status == 200 and names >= {"big-listed", "big-watched", MAX_NAME, "unicode", "max-label"}
        await assert_daemon_healthy(d, harness)
    finally:
        await d.shutdown()
        await asyncio.to_thread(rmns, harness, ns, ["cluster1"])


# ------------------------------------------------------------------------------------------------- namespaces

# Creating namespaces on this 2-core machine runs at ~400-500/s (16 keep-alive connections; the API server is the
# bottleneck), so 5,000 — the number — take ~10-15 s and the whole test ~30 s.
NAMESPACES = 5000


async def test_thousands_of_namespaces(harness: Harness, tmp_path: Path) -> None:
    """Namespaces by the thousand, created while watched, on an API server of their own (no controller-manager:
    5,000 namespaces would otherwise get 5,000 ConfigMaps and ServiceAccounts, and the shared clusters would carry
    them through every later test)."""
    name = "nsflood"
    harness.controller_manager = False
    try:
        server = await asyncio.to_thread(harness.add_cluster, name, "ca-token")
    finally:
        harness.controller_manager = True
    view = Harness(harness.workdir, clusters=0)
    view.servers = {name: server}
    d: Daemon | None = None
    try:
        cfg = Config(clusters=(ClusterConfig(name, server.kubeconfig),), include=("namespaces",),
                     store=sqlite_store(tmp_path), sync=replace(SyncConfig(), rediscover_seconds=2.0))
        d = Daemon(cfg)
        await d.start(api=False, controller=False)
        assert await d.wait_ready(60)
        t0 = time.monotonic()
        await bulk(harness, name, [("POST", "/api/v1/namespaces", {"metadata": {"name": f"ns-{i:05d}",
                                                                                "labels": {"flood": "yes"}}})
                                   for i in range(NAMESPACES)])
        created = time.monotonic() - t0
        await wait_converged(d, view, [NS], timeout=60)
        synced = time.monotonic() - t0
        log.warning("%d namespaces: created in %.1f s, store converged %.1f s after the first", NAMESPACES, created,
                    synced)
        page = await d.store.query(Query(gvr=NS, labels=(Requirement("flood", "=", ("yes",)),), limit=1,
                                         count_remaining=True))
        assert page.remaining == NAMESPACES - 1
        assert await d.wait_ready(5) and d.writer is not None and d.writer.healthy
        assert d.tracker.cluster(name).reachable
    finally:
        if d is not None:
            await d.shutdown()
        await asyncio.to_thread(harness.remove_cluster, name)


# ------------------------------------------------------------------------------------------------- CRDs

GROUP = "odd.faults.test"
SCHEMA = {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}


def crd(plural: str, kind: str, versions: list[dict[str, Any]], group: str = GROUP) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {"group": group, "scope": "Namespaced",
                 "names": {"plural": plural, "singular": kind.lower(), "kind": kind},
                 "versions": [{"schema": SCHEMA, **v} for v in versions]},
    }


def create_crd(harness: Harness, cluster: str, body: dict[str, Any]) -> None:
    harness.request(cluster, "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", body)
    name = body["metadata"]["name"]
    for _ in range(200):
        got = harness.request(cluster, "GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
        conditions = (got.get("status") or {}).get("conditions") or []
        if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
            return
        time.sleep(0.1)
    raise AssertionError(f"CRD {name} not established")


def delete_crd(harness: Harness, cluster: str, name: str) -> None:
    path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"
    harness.request(cluster, "DELETE", path)
    for _ in range(300):
        try:
            harness.request(cluster, "GET", path)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return
            raise
        time.sleep(0.1)
    raise AssertionError(f"CRD {name} still exists")


def without(harness: Harness, cluster: str) -> Harness:
    view = Harness(harness.workdir, clusters=0)
    view.servers = {n: s for n, s in harness.servers.items() if n != cluster}
    return view


def one_cluster(harness: Harness, cluster: str) -> Harness:
    view = Harness(harness.workdir, clusters=0)
    view.servers = {cluster: harness.servers[cluster]}
    return view


@pytest.fixture
async def everything_daemon(harness: Harness, tmp_path: Path) -> AsyncIterator[Daemon]:
    """A daemon syncing every resource type cluster1 serves (the default: no include list)."""
    cfg = daemon_config(harness, sqlite_store(tmp_path), ())
    d = Daemon(replace(cfg, clusters=tuple(c for c in cfg.clusters if c.name == "cluster1")))
    await d.start(api=False, controller=False)
    assert await d.wait_ready(90)
    yield d
    await d.shutdown()


async def test_more_resource_types_than_pooled_connections(harness: Harness, tmp_path: Path, unique: str) -> None:
    """A cluster serving ~80 resource types, all synced (the default): every informer holds one watch connection for
    as long as it runs, and that must not starve lists, discovery and health probes of connections (a plain 1.37
    cluster already serves 63 listable types; a few CRDs more used to exhaust a 64-connection pool)."""
    group = f"many{unique}.faults.test"
    names = [f"things{i}.{group}" for i in range(16)]
    for i in range(len(names)):
        body = crd(f"things{i}", f"Thing{i}", [{"name": "v1", "served": True, "storage": True}], group)
        await asyncio.to_thread(create_crd, harness, "cluster1", body)
    cfg = daemon_config(harness, sqlite_store(tmp_path), ())
    d = Daemon(replace(cfg, clusters=tuple(c for c in cfg.clusters if c.name == "cluster1")))
    await d.start(api=False, controller=False)
    try:
        t0 = time.monotonic()
        assert await d.wait_ready(60), "initial sync of every type did not finish"
        assert len(d.syncs["cluster1"].informers) > 64
        ready = time.monotonic() - t0
        assert ready < 30, f"ready only after {ready:.0f} s"
        thing = GVR(group, "v1", "things3")
        await bulk(harness, "cluster1", [("POST", thing.path("default"), {"apiVersion": f"{group}/v1",
                                                                          "kind": "Thing3", "metadata": {"name": "t"}}),
                                         ("POST", CM.path("default"), {"metadata": {"name": f"many-{unique}"}})])
        await wait_converged(d, one_cluster(harness, "cluster1"), [thing, CM, NS], timeout=30)
        assert d.tracker.cluster("cluster1").reachable and d.writer is not None and d.writer.healthy
    finally:
        await d.shutdown()
        for name in names:
            await asyncio.to_thread(delete_crd, harness, "cluster1", name)


async def _gvrs_of_group(d: Daemon, cluster: str = "cluster1") -> dict[GVR, int]:
    return {g: n for (c, g), n in (await d.store.counts()).items() if g.group == GROUP and c == cluster}


async def _wait(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        res = cond()
        if asyncio.iscoroutine(res):
            res = await res
        if res:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


async def test_crd_served_versions_then_deleted_while_watched(
    everything_daemon: Daemon, harness: Harness, unique: str
) -> None:
    """Only the preferred version of a CRD with several served versions is synced (v1: the highest-priority served
    version, which is what discovery prefers; the storage version is v1beta1, v2alpha1 is not served); objects
    written through any version land under it. Then the CRD is deleted while watched: its rows go."""
    d = everything_daemon
    plural = f"gadgets{unique}"
    body = crd(plural, f"Gadget{unique}", [
        {"name": "v1alpha1", "served": True, "storage": False},
        {"name": "v1beta1", "served": True, "storage": True},
        {"name": "v1", "served": True, "storage": False},
        {"name": "v2alpha1", "served": False, "storage": False},
    ])
    await asyncio.to_thread(create_crd, harness, "cluster1", body)
    group = await asyncio.to_thread(harness.request, "cluster1", "GET", f"/apis/{GROUP}")
    assert group["preferredVersion"]["version"] == "v1"
    ns = f"crd-{unique}"
    await asyncio.to_thread(mkns, harness, ns, ["cluster1"])
    d.syncs["cluster1"].kick()  # rediscover now instead of within rediscoverSeconds

    ops = []
    for version in ("v1alpha1", "v1beta1", "v1"):
        gvr = GVR(GROUP, version, plural)
        ops += [("POST", gvr.path(ns), {"apiVersion": f"{GROUP}/{version}", "kind": body["spec"]["names"]["kind"],
                                         "metadata": {"name": f"via-{version}-{i}"}, "spec": {"i": i}})
                for i in range(20)]
    # ~1.4 MB: near etcd's ~1.5 MiB request limit, far above the 1 MiB ConfigMap limit.
    ops.append(("POST", GVR(GROUP, "v1", plural).path(ns),
                {"apiVersion": f"{GROUP}/v1", "kind": body["spec"]["names"]["kind"],
                 "metadata": {"name": "huge"}, "spec": {"blob": "x" * 1_400_000}}))
    await bulk(harness, "cluster1", ops)
    preferred = GVR(GROUP, "v1", plural)
    await wait_converged(d, one_cluster(harness, "cluster1"), [preferred, CM])
    assert await _gvrs_of_group(d) == {preferred: 61}
    stored = await d.store.get("cluster1", preferred, ns, "via-v1alpha1-3")
    assert stored is not None and orjson.loads(stored.object)["apiVersion"] == f"{GROUP}/v1"
    await _same_as_api(d, harness, "cluster1", preferred, ns, "huge")

    await asyncio.to_thread(delete_crd, harness, "cluster1", body["metadata"]["name"])
    # The CRD's finalizer deletes the objects first (watch events remove the rows); the next rediscovery then
    # stops the informer and forgets the type, including its persisted sync state.
    await _wait(lambda: _forgotten(d), 30, "the deleted CRD's rows and sync state to disappear")
    await wait_converged(d, one_cluster(harness, "cluster1"), [CM, NS])
    assert await d.wait_ready(5) and d.writer is not None and d.writer.healthy
    assert d.tracker.cluster("cluster1").reachable


async def _forgotten(d: Daemon, cluster: str = "cluster1") -> bool:
    if await _gvrs_of_group(d, cluster) or any(g.group == GROUP for (c, g) in d.tracker.states if c == cluster):
        return False
    return not any(s.gvr.group == GROUP and s.cluster == cluster for s in await d.store.sync_states())


async def test_included_crd_deleted_while_watched(harness: Harness, tmp_path: Path, unique: str) -> None:
    """A CRD named in resources.include (so served by every cluster) is deleted from one cluster while watched: its
    rows there go, and that cluster's other types keep syncing (the vanished include entry must not stop it)."""
    plural = f"widgets{unique}"
    body = crd(plural, f"Widget{unique}", [{"name": "v1", "served": True, "storage": True}])
    gvr = GVR(GROUP, "v1", plural)
    for c in harness.servers:
        await asyncio.to_thread(create_crd, harness, c, body)
    ns = f"incl-{unique}"
    await asyncio.to_thread(mkns, harness, ns)
    await bulk(harness, "cluster1", [("POST", gvr.path(ns), {"apiVersion": f"{GROUP}/v1", "kind": f"Widget{unique}",
                                                             "metadata": {"name": f"w{i}"}}) for i in range(10)])
    d = Daemon(daemon_config(harness, sqlite_store(tmp_path), ("configmaps", f"{plural}.{GROUP}")))
    await d.start(api=False, controller=False)
    try:
        assert await d.wait_ready(60)
        await wait_converged(d, harness, [gvr, CM])
        await asyncio.to_thread(delete_crd, harness, "cluster1", body["metadata"]["name"])
        await _wait(lambda: _forgotten(d, "cluster1"), 30, "the deleted CRD's rows and sync state to disappear")
        await wait_converged(d, without(harness, "cluster1"), [gvr])
        # The other types of that cluster are still synced, and the cluster is not reported as failing.
        for c in harness.servers:
            await bulk(harness, c, [("POST", CM.path(ns), {"metadata": {"name": "after-delete"}})])
        await wait_converged(d, harness, [CM])
        await asyncio.sleep(3)  # a couple of rediscoveries later
        await assert_daemon_healthy(d, harness)
        assert not d.tracker.cluster("cluster1").error, d.tracker.cluster("cluster1").error
    finally:
        await d.shutdown()
        for c in ("cluster2", "cluster3"):
            await asyncio.to_thread(delete_crd, harness, c, body["metadata"]["name"])
