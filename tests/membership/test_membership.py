"""Join/unjoin at runtime (persisted), health probes, SIGHUP reload — against real API servers."""

from __future__ import annotations

import asyncio
import stat
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from multicluster.config import StoreConfig
from multicluster.daemon import Daemon
from multicluster.errors import MembershipError
from multicluster.testing.harness import Harness
from tests.sync.helpers import CM, api_index, daemon_config, sqlite_store

pytestmark = pytest.mark.integration


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "state"
    monkeypatch.setenv("MULTICLUSTER_STATE_DIR", str(d))
    return d


async def start(harness: Harness, store: StoreConfig) -> Daemon:
    d = Daemon(daemon_config(harness, store, ("configmaps", "namespaces")))
    await d.start(api=False, controller=False)
    assert await d.wait_ready(60)
    assert d.membership is not None
    d.membership.interval = 0.5
    return d


@pytest.fixture
async def fourth(harness: Harness) -> AsyncIterator[str]:
    """A 4th real cluster that is NOT in the daemon's config (removed from the harness again afterwards)."""
    await asyncio.to_thread(harness.add_cluster, "cluster4", "insecure-token")
    kubeconfig = harness.servers["cluster4"].kubeconfig.read_bytes()
    server = harness.servers.pop("cluster4")  # keep it out of configs written by other helpers
    harness.servers_extra = {"cluster4": server}  # type: ignore[attr-defined]
    yield kubeconfig.decode()
    harness.servers["cluster4"] = server
    harness.remove_cluster("cluster4")


async def rows(d: Daemon, cluster: str) -> int:
    return sum(n for (c, _g), n in (await d.store.counts()).items() if c == cluster)


async def wait_for(cond: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        res = cond()  # type: ignore[operator]
        if asyncio.iscoroutine(res):
            res = await res
        if res:
            return
        await asyncio.sleep(0.2)
    raise AssertionError("condition not met in time")


async def test_join_persist_restart_unjoin(
    harness: Harness, tmp_path: Path, state_dir: Path, fourth: str, unique: str
) -> None:
    store = sqlite_store(tmp_path)
    d = await start(harness, store)
    try:
        assert d.membership is not None
        res = await d.membership.join("cluster4", fourth.encode(), insecure=True)
        assert res["version"].startswith("v1.")
        await wait_for(lambda: d.syncs["cluster4"].synced(), 30)
        await wait_for(lambda: _has_rows(d, "cluster4"), 15)
        saved = state_dir / "cluster4.kubeconfig"
        assert stat.S_IMODE(saved.stat().st_mode) == 0o600
        assert yaml.safe_load((state_dir / "members.yaml").read_text())[0]["name"] == "cluster4"
    finally:
        await d.shutdown()

    d = await start(harness, store)  # restart: the joined cluster comes back from the state dir
    try:
        assert "cluster4" in d.syncs
        await wait_for(lambda: d.syncs["cluster4"].synced(), 30)
        await wait_for(lambda: _has_rows(d, "cluster4"), 15)
        assert d.membership is not None
        out = await d.membership.unjoin("cluster4")
        assert out["rowsDeleted"] > 0
        assert await rows(d, "cluster4") == 0
        # The cluster keeps changing; nothing flows back into the store.
        server = harness.servers_extra["cluster4"]  # type: ignore[attr-defined]
        harness.servers["cluster4"] = server
        try:
            ns = f"after-{unique}"
            harness.request("cluster4", "POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
            for i in range(5):
                harness.request("cluster4", "POST", CM.path(ns), {"metadata": {"name": f"x{i}"}})
        finally:
            harness.servers.pop("cluster4")
        await asyncio.sleep(2)
        assert await rows(d, "cluster4") == 0
        assert not (state_dir / "cluster4.kubeconfig").exists()
        assert yaml.safe_load((state_dir / "members.yaml").read_text()) == []
    finally:
        await d.shutdown()


async def test_bad_joins_change_nothing(harness: Harness, tmp_path: Path, state_dir: Path) -> None:
    d = await start(harness, sqlite_store(tmp_path))
    m = d.membership
    assert m is not None
    good = harness.servers["cluster2"].kubeconfig.read_bytes()
    dead = good.replace(f":{harness.servers['cluster2'].port}".encode(), b":1")
    cases = [
        ("", good, 400, "empty"),
        ("Bad_Name", good, 400, "not a valid cluster name"),
        ("cluster1", good, 409, "already a member"),
        ("newone", b"", 400, "kubeconfig is empty"),
        ("newone", b"{not: [yaml", 400, "not a kubeconfig"),
        ("newone", b"apiVersion: v1\nkind: Config\n", 400, "not a kubeconfig"),
        ("newone", dead, 400, "cannot be reached"),
    ]
    try:
        for name, kc, status, text in cases:
            with pytest.raises(MembershipError) as err:
                await m.join(name, kc)
            assert err.value.http_status == status, (name, err.value)
            assert text in str(err.value)
            assert "token" not in str(err.value)  # never echo credentials
        with pytest.raises(MembershipError) as err:
            await m.unjoin("cluster1")
        assert err.value.http_status == 400 and "master" in str(err.value)
        with pytest.raises(MembershipError) as err:
            await m.unjoin("nope")
        assert err.value.http_status == 404
        assert set(d.syncs) == {"cluster1", "cluster2", "cluster3"}
        assert not (state_dir / "members.yaml").exists()
        assert not list(state_dir.glob("*.kubeconfig")) if state_dir.exists() else True
        # wait=false joins an unreachable cluster anyway; it is then reported, not fatal.
        await m.join("later", dead, wait=False)
        assert "later" in d.syncs
        await wait_for(lambda: m.probes.get("later") is not None and m.probes["later"].status == "Unreachable", 20)
        view = next(v for v in d.clusters() if v.name == "later")
        assert not view.reachable and "later" in view.error
        await m.unjoin("later")
    finally:
        await d.shutdown()


async def test_health_turns_notready_and_back(harness: Harness, tmp_path: Path, state_dir: Path) -> None:
    d = await start(harness, sqlite_store(tmp_path))
    m = d.membership
    assert m is not None
    try:
        await wait_for(lambda: m.probes.get("cluster3") is not None and m.probes["cluster3"].status == "Ready")
        await asyncio.to_thread(harness.kill_server, "cluster3")
        t0 = time.monotonic()
        try:
            await wait_for(lambda: m.probes["cluster3"].status == "Unreachable", 20)
            detected = time.monotonic() - t0
            assert detected < 10  # 3 failures x 0.5 s interval + timeouts
            views = {v.name: v for v in d.clusters()}
            assert not views["cluster3"].reachable and views["cluster1"].reachable
            assert d.tracker.cluster("cluster3").status == "Unreachable"
        finally:
            await asyncio.to_thread(harness.start_server, "cluster3")
            await asyncio.to_thread(harness.wait_ready, "cluster3")
        await wait_for(lambda: m.probes["cluster3"].status == "Ready", 20)
        await wait_for(lambda: {v.name: v for v in d.clusters()}["cluster3"].reachable, 20)
    finally:
        await d.shutdown()


async def test_sighup_reload_adds_and_removes_clusters(harness: Harness, tmp_path: Path, state_dir: Path) -> None:
    cfg = daemon_config(harness, sqlite_store(tmp_path), ("configmaps",))
    cfg_file = tmp_path / "config.yaml"
    all_clusters = [
        {"metadata": {"clusterName": c.name, "configPath": str(c.config_path), "isMaster": c.is_master}}
        for c in cfg.clusters
    ]
    doc = {
        "clusters": all_clusters,
        "resources": {"include": ["configmaps"]},
        "store": {"type": "sqlite", "path": str(tmp_path / "store.db")},
    }
    cfg_file.write_text(yaml.safe_dump(doc))
    from multicluster.config import apply_env, load_config

    cfg = replace(apply_env(load_config(cfg_file)), sync=cfg.sync)
    d = Daemon(cfg)
    await d.start(api=False, controller=False)
    try:
        assert await d.wait_ready(60)
        await wait_for(lambda: _has_rows(d, "cluster3"), 15)
        cfg_file.write_text(yaml.safe_dump({**doc, "clusters": all_clusters[:2]}))
        await d.reload()
        assert "cluster3" not in d.syncs and await rows(d, "cluster3") == 0
        cfg_file.write_text(yaml.safe_dump(doc))
        await d.reload()
        await wait_for(lambda: "cluster3" in d.syncs and d.syncs["cluster3"].synced(), 30)
        want = await asyncio.to_thread(api_index, harness, "cluster3", CM)
        await wait_for(lambda: _index_equal(d, want), 30)
        cfg_file.write_text("clusters: [")  # a broken edit keeps the running config
        await d.reload()
        assert set(d.syncs) == {"cluster1", "cluster2", "cluster3"}
    finally:
        await d.shutdown()


async def _has_rows(d: Daemon, cluster: str) -> bool:
    return await rows(d, cluster) > 0


async def _index_equal(d: Daemon, want: dict[tuple[str, str], int]) -> bool:
    return await d.store.load_index("cluster3", CM) == want


async def test_multicluster_objects_on_the_master(harness: Harness, tmp_path: Path, state_dir: Path) -> None:
    """The master holds a MultiCluster object per member whose status follows the real health probe."""
    d = Daemon(daemon_config(harness, sqlite_store(tmp_path), ("namespaces",)))
    await d.start(api=False, controller=True)  # the controller installs the CRDs on the master
    m = d.membership
    assert m is not None
    m.interval = 0.5
    path = "/apis/mulitcluster.practice.com/v1alpha1/namespaces/default/multiclusters"

    def objects() -> dict[str, dict[str, object]]:
        try:
            items = harness.request("cluster1", "GET", path)["items"]
        except Exception:
            return {}
        return {i["metadata"]["name"]: i for i in items}

    def status_of(name: str) -> str:
        obj = objects().get(name) or {}
        return str((obj.get("status") or {}).get("status", ""))  # type: ignore[union-attr]

    try:
        await wait_for(lambda: all(status_of(c) == "Ready" for c in ("cluster1", "cluster2", "cluster3")), 60)
        spec = objects()["cluster1"]["spec"]
        assert spec["isMaster"] == "true" and spec["version"].startswith("v1.")  # type: ignore[index]
        assert objects()["cluster2"]["spec"]["isMaster"] == "false"  # type: ignore[index]
        await asyncio.to_thread(harness.kill_server, "cluster3")
        t0 = time.monotonic()
        try:
            await wait_for(lambda: status_of("cluster3") == "Unreachable", 20)
            assert time.monotonic() - t0 < 15
            assert objects()["cluster3"]["status"]["reason"]  # type: ignore[index]
        finally:
            await asyncio.to_thread(harness.start_server, "cluster3")
            await asyncio.to_thread(harness.wait_ready, "cluster3")
        await wait_for(lambda: status_of("cluster3") == "Ready", 30)
    finally:
        await d.shutdown()
