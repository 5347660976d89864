"""Helpers for sync tests: build daemon configs for the harness and compare the store with the API servers."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from multicluster.config import Config, StoreConfig, SyncConfig, apply_env, load_config
from multicluster.daemon import Daemon
from multicluster.gvr import GVR
from multicluster.store.base import Store
from multicluster.testing.harness import Harness
from multicluster.testing.mariadb import MariaDB

CM = GVR("", "v1", "configmaps")
DEPLOY = GVR("apps", "v1", "deployments")
NS = GVR("", "v1", "namespaces")


def daemon_config(harness: Harness, store: StoreConfig, include: tuple[str, ...], **sync: Any) -> Config:
    cfg = apply_env(load_config(harness.write_config()))  # as `multicluster run` does: MULTICLUSTER_STATE_DIR, ...
    return replace(
        cfg,
        include=include,
        store=store,
        sync=replace(SyncConfig(), rediscover_seconds=2.0, **sync),
    )


def sqlite_store(tmp: Path) -> StoreConfig:
    return StoreConfig(type="sqlite", path=tmp / "store.db", batch_size=500, flush_interval=0.02)


def mysql_store(m: MariaDB, database: str) -> StoreConfig:
    return StoreConfig(
        type="mysql",
        host="127.0.0.1",
        port=m.port,
        user=m.user,
        password=m.password,
        database=database,
        batch_size=500,
        flush_interval=0.02,
    )


def api_index(harness: Harness, cluster: str, gvr: GVR, label: str | None = None) -> dict[tuple[str, str], int]:
    """(namespace, name) → RV of everything the API server has, paginated like a client would."""
    out: dict[tuple[str, str], int] = {}
    cont = ""
    while True:
        q = "?limit=500" + (f"&continue={cont}" if cont else "") + (f"&labelSelector={label}" if label else "")
        page = harness.request(cluster, "GET", gvr.path() + q)
        for item in page["items"]:
            md = item["metadata"]
            out[(md.get("namespace") or "", md["name"])] = int(md["resourceVersion"])
        cont = page["metadata"].get("continue") or ""
        if not cont:
            return out


async def store_index(store: Store, cluster: str, gvr: GVR) -> dict[tuple[str, str], int]:
    return await store.load_index(cluster, gvr)


async def wait_converged(daemon: Daemon, harness: Harness, gvrs: list[GVR], timeout: float = 60.0) -> None:
    """Wait until, for every cluster x gvr, the store holds exactly the API server's keys and RVs."""
    assert daemon.store is not None
    deadline = time.monotonic() + timeout
    diff: list[str] = []
    while time.monotonic() < deadline:
        diff = []
        for cluster in harness.servers:
            for gvr in gvrs:
                want = await asyncio.to_thread(api_index, harness, cluster, gvr)
                have = await store_index(daemon.store, cluster, gvr)
                if want != have:
                    missing = len(want.keys() - have.keys())
                    orphan = len(have.keys() - want.keys())
                    stale = sum(1 for k in want.keys() & have.keys() if want[k] != have[k])
                    diff.append(f"{cluster} {gvr}: {missing} missing, {orphan} orphan, {stale} stale")
        if not diff:
            return
        await asyncio.sleep(0.5)
    raise AssertionError("store did not converge: " + "; ".join(diff))
