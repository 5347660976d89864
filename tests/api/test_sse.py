"""Server-Sent Events on /v1/resources?watch=true, over a real store (SQLite and MariaDB) and a real aiohttp
server: the current state then live changes, each with the list's item JSON; resumption with Last-Event-ID
without gap or repeat; 410-like expiry; the list's parameter errors before the stream; heartbeats; a watcher
that stops reading is closed while the others go on."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from multicluster.api import ClusterView, build_app
from multicluster.api.server import start
from multicluster.api.sse import WATCH, WatchSettings
from multicluster.config import ServerConfig, StoreConfig
from multicluster.feed.hub import Hub
from multicluster.gvr import APIResource
from multicluster.store import Delete, Store, open_store
from multicluster.testing.harness import free_port
from tests.api.helpers import Backend
from tests.api.sse_client import Reader, Record, names
from tests.store.conftest import store_config
from tests.store.helpers import PODS, row

__all__ = ["store_config"]

POD = APIResource(PODS, "Pod", True, frozenset({"list", "watch", "get"}), ("po",), "pod")
RETENTION = 40


@pytest.fixture
async def store(store_config: StoreConfig) -> AsyncIterator[Store]:
    s = open_store(replace(store_config, change_retention=RETENTION))
    await s.open()
    try:
        yield s
    finally:
        await s.close()


def views() -> list[ClusterView]:
    return [ClusterView(name=c, is_master=False, host="https://127.0.0.1:1", reachable=True, ready=True,
                        last_sync=time.time()) for c in ("c1", "c2")]


@pytest.fixture
async def backend(store: Store) -> AsyncIterator[Backend]:
    hub = Hub()
    hub.start({c: p.last for c, p in (await store.log_positions()).items()})
    store.listen(hub.publish)
    yield Backend(store, [POD], views(), token="s3cret", hub=hub)
    store.listen(None)
    hub.stop()


AUTH = {"Authorization": "Bearer s3cret"}


@pytest.fixture
async def client(backend: Backend) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    app = build_app(backend)
    app[WATCH] = WatchSettings(heartbeat_seconds=0.05, queue=20, error_write_seconds=60.0)
    async with TestClient(TestServer(app)) as c:
        yield c


async def open_watch(client: TestClient, params: dict[str, str] | None = None,  # type: ignore[type-arg]
                     headers: dict[str, str] | None = None) -> Reader:
    resp = await client.get("/v1/resources", params={"gvr": "pods", "watch": "true", **(params or {})},
                            headers={**AUTH, **(headers or {})})
    assert resp.status == 200, await resp.text()
    assert resp.content_type == "text/event-stream"
    return Reader(resp)


def changes(records: list[Record]) -> list[Record]:
    return [r for r in records if r.event in ("ADDED", "MODIFIED", "DELETED")]


async def test_current_state_then_live_changes_as_the_list_items(client: TestClient, store: Store) -> None:  # type: ignore[type-arg]
    await store.apply([row("a", 1), row("b", 1, cluster="c2"), row("x", 1, gvr=POD.gvr, namespace="other")])
    listed = orjson.loads(await (await client.get("/v1/resources", params={"gvr": "pods"}, headers=AUTH)).read())
    w = await open_watch(client)
    initial = await w.until("SYNCED")
    # The initial events are the list's items, byte for byte once parsed, and carry no id.
    assert [r.json() for r in changes(initial)] == listed["items"]
    assert all(r.event == "ADDED" and r.id is None for r in changes(initial))
    synced = initial[-1]
    assert synced.id and synced.json()["resourceVersion"] == synced.id
    assert synced.json()["clusters"]["fresh"] == ["c1", "c2"]
    await store.apply([row("a", 2), row("c", 1, cluster="c2")])
    await store.apply([Delete("c2", PODS, "default", "b", 3)])
    live = await w.take(3)
    assert names(live) == [("MODIFIED", "c1", "a"), ("ADDED", "c2", "c"), ("DELETED", "c2", "b")]
    assert live[0].json()["object"]["metadata"]["rv"] == 2
    assert len({r.id for r in live}) == 3 and all(r.id for r in live)
    w.resp.close()


async def test_resume_with_last_event_id_has_no_gap_and_no_repeat(client: TestClient, store: Store) -> None:  # type: ignore[type-arg]
    await store.apply([row("a", 1)])
    w = await open_watch(client)
    last = (await w.until("SYNCED"))[-1].id
    await store.apply([row("a", 2), row("b", 1, cluster="c2")])
    got = await w.take(2)
    w.resp.close()
    assert names(got) == [("MODIFIED", "c1", "a"), ("ADDED", "c2", "b")]
    # While nobody watches: more changes on both clusters.
    await store.apply([row("a", 3), row("b", 2, cluster="c2"), row("d", 1)])
    for headers, params in (({"Last-Event-ID": got[-1].id or ""}, {}), ({}, {"resourceVersion": got[-1].id or ""}),
                            ({}, {"since": got[-1].id or ""})):
        again = await open_watch(client, params, headers)
        missed = await again.take(3)
        assert sorted(names(missed)) == [("ADDED", "c1", "d"), ("MODIFIED", "c1", "a"), ("MODIFIED", "c2", "b")]
        if "since" not in params:
            again.resp.close()
    # The last one goes on with live changes, each once.
    await store.apply([row("a", 4)])
    await store.apply([row("d", 2)])
    assert names(await again.take(2)) == [("MODIFIED", "c1", "a"), ("MODIFIED", "c1", "d")]
    again.resp.close()
    # From the SYNCED id: everything since, in order per cluster.
    from_synced = await open_watch(client, headers={"Last-Event-ID": last or ""})
    evs = await from_synced.take(7)
    assert [n for n in names(evs) if n[1] == "c1"] == [("MODIFIED", "c1", "a"), ("MODIFIED", "c1", "a"),
                                                       ("ADDED", "c1", "d"), ("MODIFIED", "c1", "a"),
                                                       ("MODIFIED", "c1", "d")]
    ids = [r.id for r in evs]
    assert len(set(ids)) == len(ids)
    from_synced.resp.close()


async def test_selectors_namespaces_and_names_filter_with_watch_semantics(client: TestClient, store: Store) -> None:  # type: ignore[type-arg]
    w = await open_watch(client, {"labelSelector": "app=web", "namespace": "default,other", "namePrefix": "w"})
    await w.until("SYNCED")
    await store.apply([row("w1", 1, labels={"app": "web"}), row("w2", 1, namespace="third", labels={"app": "web"}),
                       row("x1", 1, labels={"app": "web"}), row("w3", 1, namespace="other", labels={"app": "db"})])
    await store.apply([row("w1", 2, labels={"app": "db"}), row("w3", 2, namespace="other", labels={"app": "web"})])
    got = await w.take(3)
    # w1 starts matching (ADDED), stops matching (DELETED); w3 starts matching later; w2 and x1 never match.
    assert names(got) == [("ADDED", "c1", "w1"), ("DELETED", "c1", "w1"), ("ADDED", "c1", "w3")]
    w.resp.close()


async def test_a_position_older_than_the_log_is_expired(client: TestClient, store: Store) -> None:  # type: ignore[type-arg]
    w = await open_watch(client)
    first = (await w.until("SYNCED"))[-1].id
    w.resp.close()
    for i in range(RETENTION + 1100):  # past the retention and the prune's bounded step
        await store.apply([row(f"p{i % 7}", i + 1)])
        if i % 200 == 0:
            await asyncio.sleep(0)
    old = await open_watch(client, headers={"Last-Event-ID": first or ""})
    rec = await old.next()
    assert rec is not None and rec.event == "error", rec
    body = rec.json()
    assert body["code"] == 410 and body["reason"] == "Expired" and "too old" in body["error"] and body["hint"]
    assert await old.next() is None  # and the stream ends


@pytest.mark.parametrize("params,headers,error", [
    ({"labelSelector": "app in (web"}, {}, "labelSelector"),
    ({"fieldSelector": "status.phase=Running,,"}, {}, "fieldSelector"),
    ({"continue": "abc"}, {}, "continue"),
    ({}, {"Last-Event-ID": "12345"}, "Last-Event-ID"),
    ({"resourceVersion": "mc1.!!!"}, {}, "resourceVersion"),
    ({"gvr": "nosuchthings"}, {}, "nosuchthings"),
])
async def test_bad_input_is_a_json_400_before_the_stream(client: TestClient, params: dict[str, str],  # type: ignore[type-arg]
                                                       headers: dict[str, str], error: str) -> None:
    resp = await client.get("/v1/resources", params={"gvr": "pods", "watch": "true", **params},
                            headers={**AUTH, **headers})
    assert resp.status == 400 and resp.content_type == "application/json"
    body = await resp.json()
    assert error in body["error"] and body["hint"]


async def test_a_watch_needs_the_token(client: TestClient) -> None:  # type: ignore[type-arg]
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        resp = await client.get("/v1/resources", params={"gvr": "pods", "watch": "true"}, headers=headers)
        assert resp.status == 401 and (await resp.json())["error"]


async def test_an_idle_stream_gets_heartbeats(client: TestClient) -> None:  # type: ignore[type-arg]
    w = await open_watch(client)
    await w.until("SYNCED")
    while w.pings < 3:
        line = await w.resp.content.readline()
        assert line, "the stream ended"
        if line == b": ping\n":
            w.pings += 1
    w.resp.close()


async def test_a_client_that_goes_away_ends_its_stream_quietly(backend: Backend,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    """An EventSource closed by its browser is ordinary: the stream ends without an ERROR and a traceback in the
    daemon's log (a hundred watchers going at once would bury everything else). On the daemon's own server,
    which does not cancel a handler when its client goes (the test client's does)."""
    app = build_app(backend)
    app[WATCH] = WatchSettings(heartbeat_seconds=0.05)
    port = free_port()
    runner = await start(app, ServerConfig(port=port))
    try:
        for close in ("close", "abort"):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /v1/resources?gvr=pods&watch=true HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"Authorization: Bearer s3cret\r\n\r\n")
            while b"event: SYNCED" not in await asyncio.wait_for(reader.readline(), 10):
                pass
            writer.close() if close == "close" else writer.transport.abort()
            deadline = time.monotonic() + 10
            while backend.hub.watchers and time.monotonic() < deadline:
                await asyncio.sleep(0.05)  # the next heartbeat finds the connection gone
            assert backend.hub.watchers == 0, close
    finally:
        await runner.cleanup()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def _raw_watch(client: TestClient) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:  # type: ignore[type-arg]
    server = client.server
    reader, writer = await asyncio.open_connection(server.host, server.port, limit=1024)
    writer.write(b"GET /v1/resources?gvr=pods&watch=true HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 b"Authorization: Bearer s3cret\r\n\r\n")
    await writer.drain()
    return reader, writer


async def test_a_watcher_that_stops_reading_is_closed_and_the_others_go_on(
        client: TestClient, store: Store, backend: Backend) -> None:  # type: ignore[type-arg]
    reader, writer = await _raw_watch(client)
    await reader.readuntil(b"event: SYNCED")  # the slow one is in place, and then stops reading
    good = await open_watch(client)
    await good.until("SYNCED")
    big = b'{"metadata":{"name":"%s"},"pad":"' + b"x" * 256_000 + b'"}'
    n = 0
    got: list[tuple[str, str, str]] = []

    async def keep_reading() -> None:
        while True:
            rec = await good.next()
            assert rec is not None
            got.extend(names([rec]))

    reading = asyncio.create_task(keep_reading())
    while backend.hub.closed_slow == 0:
        n += 1
        await store.apply([row(f"big{n % 5}", n, body=big % str(n % 5).encode())])
        await asyncio.sleep(0)
        assert n < 5000, "the watcher that does not read was never closed"
    await store.apply([row("after", 1)])
    while ("ADDED", "c1", "after") not in got:
        await asyncio.sleep(0.01)
    reading.cancel()
    # The good watcher saw every change; the slow one was closed and, once it reads, gets a final error event.
    assert len(got) == n + 1
    assert backend.hub.watchers == 1
    rest = b""
    while not rest.endswith(b"0\r\n\r\n"):
        more = await reader.read(65536)
        assert more, rest[-300:]
        rest += more
    tail = rest[rest.rindex(b"event: error"):]
    assert b'"reason":"TooSlow"' in tail and b'"code":429' in tail
    writer.close()
    good.resp.close()


async def test_a_daemon_shutdown_ends_the_stream_with_an_error_event(client: TestClient, backend: Backend) -> None:  # type: ignore[type-arg]
    w = await open_watch(client)
    last = (await w.until("SYNCED"))[-1].id
    backend.hub.stop()
    rec = await w.next()
    assert rec is not None and rec.event == "error" and rec.json()["reason"] == "Closed", rec
    assert last

