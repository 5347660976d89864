"""Helpers for the fault scenarios: fast bulk writes to the API servers, daemon-process configs, and the one check
every scenario ends with (the store holds exactly what the API servers hold, and the daemon is healthy)."""

from __future__ import annotations

import asyncio
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

import aiohttp
import orjson

from multicluster.config import StoreConfig
from multicluster.daemon import Daemon
from multicluster.gvr import GVR
from multicluster.store import Store, open_store
from multicluster.testing.daemonproc import DaemonProc
from multicluster.testing.harness import ADMIN_TOKEN, Harness
from multicluster.testing.mariadb import MariaDB
from tests.sync.helpers import wait_converged

Op = tuple[str, str, Any]  # method, path, body (dict → JSON; bytes → merge patch)


async def bulk(harness: Harness, cluster: str, ops: Iterable[Op], *, concurrency: int = 16,
               ok: Sequence[int] = ()) -> list[int]:
    """Run many API requests against one API server over keep-alive connections (urllib opens a TLS connection per
    request: ~100 requests/s on 2 cores; this does ~400-1000). Fails on any status >= 300 not listed in `ok`."""
    server = harness.servers[cluster]
    ctx = ssl.create_default_context(cafile=str(harness.pki / "ca.crt"))
    sem = asyncio.Semaphore(concurrency)
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    connector = aiohttp.TCPConnector(ssl=ctx, limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as http:

        async def one(method: str, path: str, body: Any) -> int:
            kwargs: dict[str, Any] = {}
            if isinstance(body, bytes):
                kwargs = {"data": body, "headers": {"Content-Type": "application/merge-patch+json"}}
            elif body is not None:
                kwargs = {"data": orjson.dumps(body), "headers": {"Content-Type": "application/json"}}
            async with sem:
                for attempt in range(5):
                    async with http.request(method, server.url + path, **kwargs) as r:
                        text = await r.read()
                        if r.status == 429 or (r.status >= 500 and attempt < 4):  # an overloaded API server
                            await asyncio.sleep(0.5 * (attempt + 1))
                            continue
                        if r.status >= 300 and r.status not in ok:
                            raise AssertionError(f"{method} {path}: {r.status} {text[:300]!r}")
                        return r.status
            raise AssertionError(f"{method} {path}: still failing after retries")

        return list(await asyncio.gather(*(one(m, p, b) for m, p, b in ops)))


def mkns(harness: Harness, ns: str, clusters: Iterable[str] | None = None) -> None:
    for c in clusters or list(harness.servers):
        harness.request(c, "POST", "/api/v1/namespaces", {"metadata": {"name": ns}})


def rmns(harness: Harness, ns: str, clusters: Iterable[str] | None = None) -> None:
    """Delete a namespace a test filled (its objects would otherwise ride along in every later test's sync)."""
    for c in clusters or list(harness.servers):
        try:
            harness.request(c, "DELETE", f"/api/v1/namespaces/{ns}")
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise


async def converged(store: Store, harness: Harness, gvrs: list[GVR], timeout: float = 90.0) -> None:
    """wait_converged for a store we opened ourselves (the daemon under test runs in another process)."""
    await wait_converged(SimpleNamespace(store=store), harness, gvrs, timeout=timeout)  # type: ignore[arg-type]


@asynccontextmanager
async def opened(cfg: StoreConfig) -> AsyncIterator[Store]:
    """Our own connection to the store a daemon process writes (reads only)."""
    store = open_store(cfg)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def assert_daemon_healthy(d: Daemon, harness: Harness) -> None:
    """In-process daemon: ready, the writer healthy, every harness cluster reachable and synced."""
    assert await d.wait_ready(30), "daemon not ready"
    assert d.writer is not None and d.writer.healthy, "writer reports unhealthy"
    views = {v.name: v for v in d.clusters()}
    for name in harness.servers:
        assert views[name].reachable and views[name].ready, (name, views[name])


def http_get(url: str, token: str | None = None, timeout: float = 10) -> tuple[int, bytes]:
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return int(r.status), bytes(r.read())
    except urllib.error.HTTPError as e:
        return int(e.code), bytes(e.read())


def assert_proc_healthy(p: DaemonProc, harness: Harness, token: str | None = None) -> None:
    """Daemon process: alive, /healthz and /readyz 200, every harness cluster reachable and ready."""
    assert p.alive(), f"daemon exited; see {p.log_path}"
    assert http_get(p.url + "/healthz")[0] == 200
    assert http_get(p.url + "/readyz")[0] == 200
    status, body = http_get(p.url + "/v1/clusters", token)
    assert status == 200, body[:300]
    views = {c["name"]: c for c in orjson.loads(body)["clusters"]}
    for name in harness.servers:
        assert views[name]["reachable"] and views[name]["ready"], views[name]


def proc_config(harness: Harness, store: dict[str, Any], include: list[str], **sync: Any) -> dict[str, Any]:
    """A daemon config (YAML dict) for DaemonProc over every harness cluster."""
    return {
        "clusters": [
            {"metadata": {"clusterName": n, "configPath": str(s.kubeconfig), "isMaster": n == "cluster1"}}
            for n, s in harness.servers.items()
        ],
        "resources": {"include": include},
        "store": store,
        "sync": {"rediscoverSeconds": 2, **sync},
    }


def sqlite_doc(path: Any) -> dict[str, Any]:
    return {"type": "sqlite", "path": str(path)}


def mysql_doc(db: MariaDB, database: str) -> dict[str, Any]:
    return {"type": "mysql", "host": "127.0.0.1", "port": db.port, "user": db.user, "password": db.password,
            "database": database}


def store_config(doc: dict[str, Any]) -> StoreConfig:
    if doc["type"] == "sqlite":
        return StoreConfig(type="sqlite", path=Path(doc["path"]))
    return StoreConfig(type="mysql", host=doc["host"], port=doc["port"], user=doc["user"], password=doc["password"],
                       database=doc["database"])


def wait_for(cond: Any, timeout: float, what: str, interval: float = 0.05) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cond():
            return time.monotonic() - t0
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


T = TypeVar("T")


async def until(check: Callable[[], Awaitable[T]], what: str = "condition", *, timeout: float = 60.0,
                interval: float = 0.25) -> T:
    """Poll `check` until it returns something truthy and return that; fail naming `what` and the last value. The
    timeout only keeps a broken daemon from hanging the test: it is not what the test measures."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last  # type: ignore[no-any-return]
        await asyncio.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout}s (last: {last!r})")


async def get_json(url: str, *, ok_only: bool = True) -> Any:
    """GET a daemon route; None for a non-200 answer unless `ok_only` (then the test fails with the body)."""
    async with aiohttp.ClientSession() as http, http.get(url) as r:
        if r.status != 200 and not ok_only:
            return None
        assert r.status == 200, await r.text()
        return await r.json()
