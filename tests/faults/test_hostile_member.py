"""A hostile member cluster joined next to the real harness clusters: whatever it sends, the daemon keeps serving
the real clusters, no task crashes, and the hostile cluster is reported with the reason."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from multicluster import metrics
from multicluster.config import ServerConfig, load_config
from multicluster.daemon import Daemon
from multicluster.gvr import GVR
from multicluster.testing.harness import Harness, free_port
from multicluster.testing.hostile import HOSTILE_GROUP, HostileServer
from tests.faults.helpers import get_json, until
from tests.sync.helpers import sqlite_store

pytestmark = [pytest.mark.integration, pytest.mark.faults]


def _rejected(cluster: str) -> float:
    return sum(s.value for m in metrics.OBJECTS_REJECTED.collect() for s in m.samples
               if s.name.endswith("_total") and s.labels.get("cluster") == cluster)


@pytest.fixture
async def with_hostile(request: pytest.FixtureRequest, harness: Harness,
                       tmp_path: Path) -> AsyncIterator[tuple[Daemon, HostileServer, str]]:
    # A scenario, or (scenario, sync settings[, HostileServer options]).
    params = request.param if isinstance(request.param, tuple) else (request.param,)
    scenario, sync, options = (*params, {}, {})[:3]
    hostile = HostileServer(scenario, **options).start()
    doc = yaml.safe_load(harness.write_config().read_text())
    doc["clusters"].append({"metadata": {"clusterName": "hostile", "configPath": str(hostile.kubeconfig(
        tmp_path / "hostile.kubeconfig"))}})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(doc))
    port = free_port()
    include = {"forbidden-type": ("configmaps", "secrets"),
               "long-names": ("configmaps", HOSTILE_GROUP)}.get(scenario, ("configmaps",))
    cfg = load_config(path)
    cfg = replace(cfg, include=include, store=sqlite_store(tmp_path), server=ServerConfig(port=port),
                  sync=replace(cfg.sync, **sync))
    d = Daemon(cfg)
    await d.start(controller=False)
    try:
        yield d, hostile, f"http://127.0.0.1:{port}"
    finally:
        await d.shutdown()
        hostile.stop()


async def _real_clusters_served(url: str, harness: Harness) -> None:
    async def served() -> bool:
        body = await get_json(f"{url}/v1/resources?gvr=configmaps&name=kube-root-ca.crt&namespace=default",
                          ok_only=False)
        return body is not None and {o["cluster"] for o in body["items"]} >= set(harness.servers)
    await until(served)


async def _hostile_error(url: str) -> str:
    async def error() -> str:
        for c in (await get_json(f"{url}/v1/clusters"))["clusters"]:
            if c["name"] == "hostile":
                texts = [c.get("error") or ""] + [r.get("error") or "" for r in c.get("resources", [])]
                return " | ".join(t for t in texts if t)
        return ""
    return str(await until(error))


@pytest.mark.parametrize("with_hostile", ["bad-json", "non-object", "error-event"], indirect=True)
async def test_a_member_sending_garbage_on_its_watch_is_a_cluster_fault(
    with_hostile: tuple[Daemon, HostileServer, str], harness: Harness
) -> None:
    """Invalid JSON or a non-object event raised ValueError/AttributeError out of the informer (a crash loop)."""
    d, hostile, url = with_hostile
    await _real_clusters_served(url, harness)
    reason = await _hostile_error(url)
    if hostile.scenario == "error-event":  # the member's own message, cut to a bounded length
        assert "xxxxx" in reason and len(reason) < 2_000, reason
    else:
        assert "watch event" in reason, reason
    await until(lambda: asyncio.sleep(0, hostile.watches >= 2))  # it keeps retrying, with backoff
    assert not d.supervisor.failing(), d.supervisor.failing()
    # The store still holds what the hostile cluster listed correctly.
    body = await get_json(f"{url}/v1/resources?gvr=configmaps&cluster=hostile")
    assert "ok" in {o["object"]["metadata"]["name"] for o in body["items"]}


@pytest.mark.parametrize("with_hostile", ["bad-rv"], indirect=True)
async def test_resource_versions_no_store_can_hold_are_skipped_and_counted(
    with_hostile: tuple[Daemon, HostileServer, str], harness: Harness
) -> None:
    d, _, url = with_hostile
    before = _rejected("hostile")
    await _real_clusters_served(url, harness)

    async def listed() -> bool:
        body = await get_json(f"{url}/v1/resources?gvr=configmaps&cluster=hostile")
        return {o["object"]["metadata"]["name"] for o in body["items"]} == {"ok"}
    await until(listed)
    await until(lambda: asyncio.sleep(0, _rejected("hostile") >= before + 3))
    reason = await _hostile_error(url)
    assert "resourceVersion" in reason, reason
    assert not d.supervisor.failing(), d.supervisor.failing()


@pytest.mark.parametrize("with_hostile", ["forbidden-type"], indirect=True)
async def test_a_type_rbac_forbids_is_reported_for_that_type_only(
    with_hostile: tuple[Daemon, HostileServer, str], harness: Harness
) -> None:
    """A 403 for one type marked the whole cluster unreachable (every query called its data stale) and kept the
    daemon unready until the start-up grace ran out."""
    d, _, url = with_hostile
    await _real_clusters_served(url, harness)

    async def forbidden_reported() -> dict[str, Any]:
        for c in (await get_json(f"{url}/v1/clusters"))["clusters"]:
            if c["name"] == "hostile":
                states = {r["gvr"]: r for r in c["resources"]}
                if "forbidden" in (states.get("v1/secrets") or {}).get("error", ""):
                    return dict(c)
        return {}
    cluster = await until(forbidden_reported)
    assert cluster["reachable"] and not cluster["error"], cluster
    assert {r["gvr"]: r["status"] for r in cluster["resources"]}["v1/configmaps"] == "synced"
    assert await d.wait_ready(20), "a forbidden type must not hold readiness until the start-up grace is over"
    body = await get_json(f"{url}/v1/resources?gvr=configmaps&cluster=hostile")
    assert body["clusters"]["fresh"] == ["hostile"], body["clusters"]


def _limit_hits(cluster: str, limit: str) -> float:
    return sum(s.value for m in metrics.MEMBER_LIMITS.collect() for s in m.samples
               if s.name.endswith("_total") and s.labels == {"cluster": cluster, "limit": limit})


async def _hostile_resource(url: str, gvr: str = "v1/configmaps") -> dict[str, Any]:
    for c in (await get_json(f"{url}/v1/clusters"))["clusters"]:
        if c["name"] == "hostile":
            return next((r for r in c["resources"] if r["gvr"] == gvr), {})
    return {}


@pytest.mark.parametrize("with_hostile", [("big-items", {"max_list_page_bytes": 1024 * 1024,
                                                         "max_object_bytes": 512 * 1024})], indirect=True)
async def test_a_list_page_over_the_byte_limit_is_asked_again_in_smaller_pages(
    with_hostile: tuple[Daemon, HostileServer, str], harness: Harness
) -> None:
    """A page was read whole whatever its size. Ten 300 KiB objects in a page of 500 are 3 MiB, over a 1 MiB
    maxListPageBytes: the informer asks for pages of 50, 5, then 1, and stores every object."""
    d, hostile, url = with_hostile
    before = _limit_hits("hostile", "maxListPageBytes")
    await _real_clusters_served(url, harness)

    async def listed() -> bool:
        body = await get_json(f"{url}/v1/resources?gvr=configmaps&cluster=hostile")
        return {o["object"]["metadata"]["name"] for o in body["items"]} == {f"big{i}" for i in range(10)}
    await until(listed)
    assert any("limit=1&" in r or r.endswith("limit=1") for r in hostile.requests), hostile.requests
    assert _limit_hits("hostile", "maxListPageBytes") >= before + 3
    body = await get_json(f"{url}/v1/resources?gvr=configmaps&cluster=hostile")
    assert body["clusters"]["fresh"] == ["hostile"], body["clusters"]
    assert not d.supervisor.failing(), d.supervisor.failing()


@pytest.mark.parametrize("with_hostile", ["giant-object"], indirect=True)
async def test_an_object_over_max_object_bytes_is_skipped_counted_and_reported(
    with_hostile: tuple[Daemon, HostileServer, str], harness: Harness
) -> None:
    """A 6 MiB object went to the store (on MySQL past max_allowed_packet: retried forever as transient). Now it
    is skipped, from a list and from a watch, counted, and shown for its type in /v1/clusters."""
    d, _, url = with_hostile
    before = _limit_hits("hostile", "maxObjectBytes")
    await _real_clusters_served(url, harness)

    async def reported() -> dict[str, Any]:
        r = await _hostile_resource(url)
        return r if r.get("skipped") else {}
    resource = await until(reported)
    assert "maxObjectBytes" in resource["skippedReason"], resource
    await until(lambda: asyncio.sleep(0, _limit_hits("hostile", "maxObjectBytes") >= before + 2))
    body = await get_json(f"{url}/v1/resources?gvr=configmaps&cluster=hostile")
    assert {o["object"]["metadata"]["name"] for o in body["items"]} == {"ok"}
    assert not d.supervisor.failing(), d.supervisor.failing()


@pytest.mark.parametrize("with_hostile", ["bad-discovery"], indirect=True)
async def test_a_malformed_discovery_document_is_a_cluster_fault(
    with_hostile: tuple[Daemon, HostileServer, str], harness: Harness
) -> None:
    """A discovery document of an unexpected shape raised AttributeError out of the cluster's task (a crash loop
    the Supervisor reported as the daemon's own failure)."""
    d, hostile, url = with_hostile
    await _real_clusters_served(url, harness)
    reason = await _hostile_error(url)
    assert "discovery answer is malformed" in reason, reason
    await until(lambda: asyncio.sleep(0, sum(r == "/apis" for r in hostile.requests) >= 2))  # retried
    assert not d.supervisor.failing(), d.supervisor.failing()


DISCOVERY_CAP = 1_000


@pytest.mark.parametrize("with_hostile", [
    ("huge-discovery", {"max_discovered_resources": DISCOVERY_CAP}, {"types": 50_000, "groups": 2_000}),
    ("huge-discovery", {"max_discovered_resources": DISCOVERY_CAP}, {"types": 0, "groups": 5_000}),  # empty ones
], indirect=True)
async def test_discovery_past_max_discovered_resources_is_cut_and_the_other_clusters_keep_syncing(
    with_hostile: tuple[Daemon, HostileServer, str], harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """A member advertising 50,000 resource types over 2,000 group-versions (or 5,000 empty group-versions): the
    daemon keeps the first sync.maxDiscoveredResources types (core first, then the groups in the member's order),
    fetches no more group-versions than that, warns once naming the cluster, and keeps serving the real clusters."""
    caplog.set_level(logging.WARNING, logger="multicluster.kube")
    d, hostile, url = with_hostile
    await _real_clusters_served(url, harness)
    client = d.clients["hostile"]
    per_group = hostile.types // hostile.groups
    expected = [GVR("", "v1", "configmaps"), GVR("", "v1", "secrets")] + [
        GVR(f"g{g}.{HOSTILE_GROUP}", "v1", f"things{i}") for g in range(hostile.groups) for i in range(per_group)]
    for refresh in (False, True):  # rediscovery cuts at the same place and does not warn again
        assert [r.gvr for r in await client.discover(refresh=refresh)] == expected[:DISCOVERY_CAP]
    fetched = [p for p in hostile.requests if p.startswith("/apis/g")]  # by both discoveries
    assert 0 < len(fetched) <= 2 * DISCOVERY_CAP, len(fetched)
    warnings = [r for r in caplog.records if "sync.maxDiscoveredResources" in r.getMessage()]
    assert [getattr(r, "cluster", None) for r in warnings] == ["hostile"], [r.getMessage() for r in warnings]
    assert sum(s.value for m in metrics.MEMBER_LIMITS.collect() for s in m.samples if s.name.endswith("_total")
               and s.labels == {"cluster": "hostile", "limit": "maxDiscoveredResources"}) >= 1
    await _real_clusters_served(url, harness)
    assert not d.supervisor.failing(), d.supervisor.failing()


@pytest.mark.parametrize("with_hostile", ["long-names"], indirect=True)
async def test_names_kubernetes_does_not_allow_are_skipped_and_reach_no_metric_label(
    with_hostile: tuple[Daemon, HostileServer, str], harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """A member's discovery names a group and a resource type 1 MiB long (and types no API server accepts): the
    names of its synced types become request paths, rows and Prometheus labels, so they are checked where they
    enter; the bad ones are skipped with a short warning naming the cluster, the valid type of the group syncs."""
    caplog.set_level(logging.WARNING, logger="multicluster.kube")
    d, _, url = with_hostile
    await _real_clusters_served(url, harness)
    good = GVR(HOSTILE_GROUP, "v1", "things0")
    await until(lambda: asyncio.sleep(0, good in d.syncs["hostile"].informers), "the valid type synced")
    assert [g for g in d.syncs["hostile"].informers if g.group] == [good]
    labels = [v for m in metrics.REGISTRY.collect() for s in m.samples for v in s.labels.values()]
    assert max(map(len, labels)) <= 300, max(map(len, labels))
    warnings = [r for r in caplog.records if "Kubernetes does not allow" in r.getMessage()]
    assert warnings and {getattr(r, "cluster", None) for r in warnings} == {"hostile"}
    assert max(len(r.getMessage()) for r in caplog.records) < 2_000
    assert not d.supervisor.failing(), d.supervisor.failing()
