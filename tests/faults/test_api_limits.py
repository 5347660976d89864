"""API abuse against a real daemon (SQLite and MariaDB stores) configured through its `server:` options: a
2,000-term selector is a 400 naming the limit, a slowloris client is dropped at the header timeout while other
clients are served, and a page of large synced objects stays under the byte cap with every object exactly once.
The daemon's own server set-up is under test here (tests/api cover the same limits in more detail)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from multicluster.config import ServerConfig, StoreConfig
from multicluster.daemon import Daemon
from multicluster.testing.harness import Harness, free_port
from multicluster.testing.mariadb import MariaDB
from tests.faults.helpers import bulk, mkns, rmns
from tests.sync.helpers import CM, api_index, daemon_config, mysql_store, sqlite_store, wait_converged

pytestmark = [pytest.mark.integration, pytest.mark.faults]

PAGE_CAP = 64 * 1024
OBJECTS = 150  # per cluster, ~3 KB each: ~450 KB in all, 7+ pages under the cap


@dataclass
class Api:
    daemon: Daemon
    port: int
    health_port: int
    ns: str


@pytest.fixture(scope="module", params=["sqlite", pytest.param("mariadb", marks=pytest.mark.mariadb)])
async def api(request: pytest.FixtureRequest, harness: Harness, tmp_path_factory: pytest.TempPathFactory
              ) -> AsyncIterator[Api]:
    tmp: Path = tmp_path_factory.mktemp("api-limits")
    store: StoreConfig
    if request.param == "sqlite":
        store = sqlite_store(tmp)
    else:
        db: MariaDB = request.getfixturevalue("mariadb_server")
        store = mysql_store(db, db.create_database(f"limits_{os.urandom(4).hex()}"))
    ns = f"limits-{os.urandom(4).hex()}"
    await asyncio.to_thread(mkns, harness, ns)
    for c in harness.servers:
        await bulk(harness, c, [("POST", CM.path(ns), {"metadata": {"name": f"big-{i:04d}"},
                                                       "data": {"blob": f"{i:04d}" + "x" * 3000}})
                                for i in range(OBJECTS)])
    port = free_port()
    health_port = free_port()
    server = ServerConfig(port=port, header_timeout_seconds=0.5, max_page_bytes=PAGE_CAP, health_port=health_port)
    d = Daemon(replace(daemon_config(harness, store, ("configmaps",)), server=server))
    try:
        await d.start(controller=False)
        assert await d.wait_ready(60)
        await wait_converged(d, harness, [CM])
        yield Api(d, port, health_port, ns)
    finally:
        await d.shutdown()
        await asyncio.to_thread(rmns, harness, ns)


async def test_a_2000_term_selector_is_refused(api: Api) -> None:
    async with aiohttp.ClientSession() as http:
        for path in ("/v1/resources", "/v1/list"):
            params = {"gvr": "configmaps", "labelSelector": ",".join(["a"] * 2000)}
            async with http.get(f"http://127.0.0.1:{api.port}{path}", params=params) as r:
                body: dict[str, Any] = await r.json()
                assert r.status == 400, body
                assert "2000 terms" in body["error"] and "server.maxSelectorTerms" in body["hint"], body


async def test_pages_stay_under_the_configured_byte_cap(api: Api, harness: Harness) -> None:
    want = sorted((c, ns, name) for c in harness.servers for (ns, name) in api_index(harness, c, CM)
                  if ns == api.ns)
    seen: list[tuple[str, str, str]] = []
    pages = 0
    token = None
    async with aiohttp.ClientSession() as http:
        while True:
            params = {"gvr": "configmaps", "namespace": api.ns, "limit": "5000",
                      **({"continue": token} if token else {})}
            async with http.get(f"http://127.0.0.1:{api.port}/v1/resources", params=params) as r:
                raw = await r.read()
                assert r.status == 200, raw[:300]
                assert len(raw) <= PAGE_CAP
                body = await r.json()
            pages += 1
            seen += [(i["cluster"], i["object"]["metadata"]["namespace"], i["object"]["metadata"]["name"])
                     for i in body["items"]]
            token = body["continue"]
            if token is None:
                break
    assert sum(1 for w in want if w[2].startswith("big-")) == OBJECTS * len(harness.servers)
    assert sorted(seen) == want and pages >= len(want) * 3000 // PAGE_CAP


@pytest.mark.parametrize("which", ["api", "health"])
async def test_a_slowloris_client_is_dropped_while_others_are_served(api: Api, which: str) -> None:
    """On the API port and on the --HealthPort listener alike."""
    port = api.port if which == "api" else api.health_port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    closed = False
    try:
        for b in b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 400:
            if reader.at_eof():
                closed = True
                break
            try:
                writer.write(bytes([b]))
                await writer.drain()
            except ConnectionError:
                closed = True
                break
            await asyncio.sleep(0.05)
            # Meanwhile an ordinary client is answered at once.
            if b == ord("X"):
                async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/healthz") as r:
                    assert r.status == 200
        assert closed, "the server kept a connection whose headers took 20 s"
        with contextlib.suppress(ConnectionError):  # reset instead of closed: dropped all the same
            assert await asyncio.wait_for(reader.read(), 20) == b""
    finally:
        writer.close()
