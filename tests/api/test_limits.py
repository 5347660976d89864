"""Bounded API work: page bytes, counted rows, selector terms, and the server's timeouts against slow clients.

Every test runs against a real store (SQLite, and MariaDB where marked) filled with objects the harness's API
servers made, through a real aiohttp server; the timeout tests talk to the daemon's own server set-up
(multicluster.api.server.start) over raw sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from multicluster.api import build_app
from multicluster.api.server import LIMITS, Limits, start
from multicluster.config import ServerConfig
from multicluster.errors import ConfigError
from multicluster.store import Query, Requirement, Row, Store
from multicluster.testing.harness import free_port
from multicluster.testing.mariadb import MariaDB
from tests.api.dataset import CMS, PODS, Dataset, expected, fill
from tests.api.helpers import Backend, clone, fresh_views, get_json, keys

BIG_NS = "big-objects"
CREATED = "2024-05-01T00:00:00Z"  # every large object shares it: the created orders page through ties


def _big_rows(ds: Dataset, n: int, payload: int) -> list[Row]:
    _, base = ds.items(CMS)[0]
    clusters = ds.clusters
    out = []
    for i in range(n):
        o = copy.deepcopy(base)
        o["data"] = {"blob": f"{i:06d}" + "x" * payload}
        out.append(clone(o, clusters[i % len(clusters)], CMS, BIG_NS, f"cm-{i:05d}", 10_000 + i, CREATED))
    return out


async def _pages(client: TestClient, params: list[tuple[str, str]]  # type: ignore[type-arg]
                 ) -> AsyncIterator[tuple[bytes, dict[str, Any]]]:
    token: str | None = None
    for _ in range(10_000):
        r = await client.get("/v1/resources", params=params + ([("continue", token)] if token else []))
        raw = await r.read()
        assert r.status == 200, raw[:300]
        body = orjson.loads(raw)
        yield raw, body
        token = body["continue"]
        if token is None:
            return
    raise AssertionError("the walk does not end")


# --------------------------------------------------------------------------------------------------- page bytes


async def test_a_5000_row_page_of_large_objects_stays_under_the_byte_cap(own_store: Store, dataset: Dataset) -> None:
    """limit=5000 of ~4 KB objects is ~21 MB: the default cap (16 MiB) cuts the page and the continue token
    brings the rest, every row exactly once, in every order, also with a much smaller configured cap."""
    rows = _big_rows(dataset, 5000, 4200)
    await fill(own_store, rows)
    want = sorted((r.cluster, r.namespace, r.name) for r in rows)
    backend = Backend(own_store, dataset.resources, fresh_views(dataset))
    default_cap = Limits().max_page_bytes
    assert default_cap == 16 * 2**20
    async with TestClient(TestServer(build_app(backend))) as c:
        sizes = []
        seen: list[tuple[str, str, str]] = []
        async for raw, body in _pages(c, [("gvr", "configmaps"), ("namespace", BIG_NS), ("limit", "5000")]):
            sizes.append(len(raw))
            seen += keys(body["items"])
        assert all(s <= default_cap for s in sizes), sizes
        assert len(sizes) >= 2
        assert sorted(seen) == want and len(set(seen)) == len(seen)

    app = build_app(backend)
    cap = 256 * 1024
    app[LIMITS] = Limits(max_page_bytes=cap)
    async with TestClient(TestServer(app)) as c:
        for order in ("created", "-created", "name", "cluster"):
            sizes, seen = [], []
            async for raw, body in _pages(c, [("gvr", "configmaps"), ("namespace", BIG_NS), ("limit", "5000"),
                                              ("order", order)]):
                sizes.append(len(raw))
                seen += keys(body["items"])
            assert max(sizes) <= cap, (order, max(sizes))
            assert len(sizes) >= 5000 * 4200 // cap
            assert sorted(seen) == want and len(set(seen)) == len(seen), order


async def test_an_object_larger_than_the_cap_still_gets_a_page_of_its_own(backend: Backend,
                                                                        dataset: Dataset) -> None:
    """A cap below one object's size must not stop paging: each page then holds one object."""
    app = build_app(backend)
    app[LIMITS] = Limits(max_page_bytes=1024)
    async with TestClient(TestServer(app)) as c:
        seen = []
        pages = 0
        async for _, body in _pages(c, [("gvr", "pods"), ("limit", "100")]):
            pages += 1
            assert len(body["items"]) == 1
            seen += keys(body["items"])
    assert sorted(seen) == sorted(sorted(expected(dataset, PODS))) and pages == 15


# --------------------------------------------------------------------------------------------------- count


async def test_count_stops_at_the_configured_cap_and_says_so(backend: Backend) -> None:
    app = build_app(backend)
    app[LIMITS] = Limits(max_count=5)
    async with TestClient(TestServer(app)) as c:
        answers = []
        async for _, body in _pages(c, [("gvr", "pods"), ("limit", "3"), ("count", "true")]):
            answers.append((body["remaining"], body["remainingCapped"]))
        # 15 pods: 12, 9, 6 remain after the first pages (capped at 5), then 3 and 0 exactly.
        assert answers == [(5, True), (5, True), (5, True), (3, False), (0, False)]
        body = await get_json(c, "/v1/resources", {"gvr": "pods", "limit": "3"})
        assert body["remaining"] is None and body["remainingCapped"] is False


# --------------------------------------------------------------------------------------------------- selectors


def _many(term: str, n: int) -> str:
    return ",".join([term] * n)


@pytest.mark.parametrize(("params", "what"), [
    ({"labelSelector": _many("a", 2000)}, "labelSelector"),
    ({"labelSelector": _many("!a", 1300)}, "labelSelector"),
    ({"labelSelector": "a in (" + ",".join(f"v{i}" for i in range(800)) + ")"}, "labelSelector"),
    ({"fieldSelector": _many("status.phase=x", 270)}, "fieldSelector"),
    ([("cluster", ",".join(f"c{j}-{i}" for i in range(300))) for j in range(4)], "cluster"),
    ([("namespace", ",".join(f"n{j}-{i}" for i in range(300))) for j in range(4)], "namespace"),
])
async def test_selectors_with_too_many_terms_are_refused(client: TestClient,  # type: ignore[type-arg]
                                                         params: dict[str, str] | list[tuple[str, str]],
                                                         what: str) -> None:
    for path in ("/v1/resources", "/v1/list"):
        if path == "/v1/list" and what != "labelSelector":
            continue
        p = [("gvr", "pods"), *(params.items() if isinstance(params, dict) else params)]
        body = await get_json(client, path, p, status=400)
        assert what in body["error"] and "100" in body["error"], body
        assert "server.maxSelectorTerms" in body["hint"], body


async def test_seed_label_parameters_count_as_terms(client: TestClient) -> None:  # type: ignore[type-arg]
    params = [("gvr", "pods")] + [(f"labels[k{i}]", "v") for i in range(150)]
    body = await get_json(client, "/v1/list", params, status=400)
    assert "server.maxSelectorTerms" in body["hint"]


async def test_a_selector_at_the_limit_is_answered_exactly(client: TestClient, dataset: Dataset) -> None:  # type: ignore[type-arg]
    """99 terms that every pod passes plus one real one: the same answer as the real term alone."""
    sel = ",".join([f"!absent{i}" for i in range(99)] + ["app=web"])
    body = await get_json(client, "/v1/resources", {"gvr": "pods", "labelSelector": sel, "limit": "500"})
    want = sorted(expected(dataset, PODS, labels=[("app", "=", ["web"])]))
    assert want and sorted(keys(body["items"])) == sorted(want)


async def test_the_store_plans_any_number_of_terms_within_engine_limits(filled_store: Store,
                                                                       dataset: Dataset) -> None:
    """Whatever the API lets through (an operator may raise maxSelectorTerms), the SQL stays within SQLite's
    expression depth and bound-parameter limits: 3,000 label terms, 1,000 field terms, 2,000 clusters."""
    labels = (*(Requirement(f"absent{i}", "!") for i in range(3000)), Requirement("app", "=", ("web",)))
    fields = tuple(Requirement("spec.nodeName", "!=", (f"nowhere-{i}",)) for i in range(1000))
    clusters = (*dataset.clusters, *(f"c{i}" for i in range(2000)))
    page = await filled_store.query(Query(gvr=PODS, labels=labels, fields=fields, clusters=clusters, limit=500,
                                          count_remaining=True))
    want = sorted(expected(dataset, PODS, labels=[("app", "=", ["web"])]))
    assert sorted((o.cluster, o.namespace, o.name) for o in page.items) == sorted(want)


@pytest.mark.mariadb
@pytest.mark.parametrize("filled_store", ["mysql"], indirect=True)
async def test_mysql_runs_a_bounded_number_of_statements_per_query(mariadb_server: MariaDB,
                                                                  filled_store: Store) -> None:
    """Every positive selector term used to cost a probe query (~1,000 for a 4 KB selector)."""
    store = filled_store
    assert type(store).__name__ == "MySQLStore"

    def selects() -> int:
        out = mariadb_server.sql("SHOW GLOBAL STATUS LIKE 'Com_select'")
        return int(out.split()[-1])

    labels = tuple(Requirement(f"k{i}", "=", ("v",)) for i in range(1000))
    before = selects()
    page = await store.query(Query(gvr=PODS, labels=labels, limit=10))
    assert page.items == []
    assert selects() - before <= 3


# --------------------------------------------------------------------------------------------------- config

_CLUSTERS = [{"metadata": {"clusterName": "c1", "configPath": "c1.kubeconfig"}}]


@pytest.mark.parametrize(("key", "value", "field"), [
    ("maxPageBytes", 0, "server.maxPageBytes"),
    ("maxPageBytes", "big", "server.maxPageBytes"),
    ("maxCount", -1, "server.maxCount"),
    ("maxSelectorTerms", 0, "server.maxSelectorTerms"),
    ("maxSelectorTerms", 100_000, "server.maxSelectorTerms"),
    ("keepaliveSeconds", 0, "server.keepaliveSeconds"),
    ("headerTimeoutSeconds", -1, "server.headerTimeoutSeconds"),
    ("bodyTimeoutSeconds", "soon", "server.bodyTimeoutSeconds"),
])
def test_limit_options_are_validated(tmp_path: Any, key: str, value: Any, field: str) -> None:
    from multicluster.config import load_config

    cfg = tmp_path / "config.yaml"
    cfg.write_text(orjson.dumps({"clusters": _CLUSTERS, "server": {key: value}}).decode())
    with pytest.raises(ConfigError) as err:
        load_config(cfg, check_files=False)
    assert field in str(err.value)


def test_limit_options_are_read(tmp_path: Any) -> None:
    from multicluster.config import load_config

    cfg = tmp_path / "config.yaml"
    cfg.write_text(orjson.dumps({"clusters": _CLUSTERS, "server": {
        "maxPageBytes": 1048576, "maxCount": 10, "maxSelectorTerms": 20, "keepaliveSeconds": 5,
        "headerTimeoutSeconds": 2, "bodyTimeoutSeconds": 3.5}}).decode())
    s = load_config(cfg, check_files=False).server
    assert (s.max_page_bytes, s.max_count, s.max_selector_terms) == (1048576, 10, 20)
    assert (s.keepalive_seconds, s.header_timeout_seconds, s.body_timeout_seconds) == (5.0, 2.0, 3.5)
    d = ServerConfig()
    assert (d.max_page_bytes, d.max_count, d.max_selector_terms) == (16 * 2**20, 100_000, 100)
    assert (d.keepalive_seconds, d.header_timeout_seconds, d.body_timeout_seconds) == (75.0, 10.0, 30.0)


# --------------------------------------------------------------------------------------------------- timeouts


@contextlib.asynccontextmanager
async def _served(backend: Backend, **timeouts: float) -> AsyncIterator[int]:
    port = free_port()
    runner = await start(build_app(backend), ServerConfig(port=port, **timeouts))
    try:
        yield port
    finally:
        await runner.cleanup()


class _Client:
    """A raw TCP client that records everything the server sends and whether it closed the connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.received = bytearray()
        self.closed = asyncio.Event()
        self._task = asyncio.create_task(self._read(reader))

    @classmethod
    async def connect(cls, port: int) -> _Client:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while chunk := await reader.read(65536):
                self.received += chunk
        except ConnectionError:
            pass
        self.closed.set()

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def trickle(self, data: bytes) -> bool:
        """Send `data` a byte at a time (20 per second); True if the server closed the connection first."""
        for i in range(len(data)):
            if self.closed.is_set():
                return True
            try:
                await self.send(data[i : i + 1])
            except ConnectionError:
                return True
            await asyncio.sleep(0.05)
        return self.closed.is_set()

    async def wait_closed(self, timeout: float = 20.0) -> bytes:
        """What the server sent before it closed the connection. Fails if it never closes within `timeout`, a
        bound far above the configured timeouts that only keeps a broken server from hanging the test."""
        await asyncio.wait_for(self.closed.wait(), timeout)
        return bytes(self.received)

    def close(self) -> None:
        self._task.cancel()
        self.writer.close()


async def test_a_slowloris_client_is_dropped_at_the_header_timeout(backend: Backend) -> None:
    """Headers sent a byte at a time (~20 s for all of them) never complete: the server closes the socket
    once the configured header timeout has passed, although bytes keep arriving."""
    head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Slow: " + b"a" * 400 + b"\r\n\r\n"
    async with _served(backend, header_timeout_seconds=0.5, keepalive_seconds=60.0) as port:
        c = await _Client.connect(port)
        try:
            assert await c.trickle(head)
            assert await c.wait_closed() == b""
        finally:
            c.close()
        # A client that sends its request promptly is served as before, twice on one connection.
        c = await _Client.connect(port)
        try:
            await c.send(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            await asyncio.sleep(1.0)  # longer than the header timeout: an idle connection is not a late head
            await c.send(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            answer = await c.wait_closed()
        finally:
            c.close()
        assert answer.count(b"HTTP/1.1 200") == 2, answer


async def test_a_slow_body_gets_408_at_the_body_timeout(backend: Backend) -> None:
    head = (b"POST /v1/join?cluster=slow HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/yaml\r\n"
            b"Content-Length: 600\r\n\r\n")
    async with _served(backend, body_timeout_seconds=0.5) as port:
        c = await _Client.connect(port)
        try:
            await c.send(head)
            assert await c.trickle(b"k" * 600)
            answer = await c.wait_closed()
        finally:
            c.close()
        status, _, rest = answer.partition(b"\r\n")
        assert status.startswith(b"HTTP/1.1 408"), answer[:300]
        body = orjson.loads(rest.partition(b"\r\n\r\n")[2])
        assert "server.bodyTimeoutSeconds" in body["hint"], body


async def test_an_idle_keepalive_connection_is_closed(backend: Backend) -> None:
    async with _served(backend, keepalive_seconds=0.5) as port:
        c = await _Client.connect(port)
        try:
            await c.send(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            answer = await c.wait_closed()
        finally:
            c.close()
        assert answer.startswith(b"HTTP/1.1 200") and b'"ok"' in answer


def _self_signed(tmp_path: Path) -> ssl.SSLContext:
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(tmp_path / "tls.key"), "-out", str(tmp_path / "tls.crt")],
                   check=True, capture_output=True)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
    return ctx


async def test_the_deadlines_hold_over_tls(backend: Backend, tmp_path: Path) -> None:
    """With server.certDir the guard sees decrypted bytes: requests are served, a slow head is dropped."""
    port = free_port()
    runner = await start(build_app(backend), ServerConfig(port=port, header_timeout_seconds=0.5),
                         _self_signed(tmp_path))
    client_ctx = ssl.create_default_context(cafile=str(tmp_path / "tls.crt"))
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), 20)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 200")
        c = _Client(*await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx))
        try:
            assert await c.trickle(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 400)
            assert await c.wait_closed() == b""
        finally:
            c.close()
    finally:
        await runner.cleanup()


async def test_the_daemon_server_serves_requests(backend: Backend) -> None:
    """The same set-up answers ordinary requests, including a streamed one."""
    async with _served(backend) as port:
        c = await _Client.connect(port)
        try:
            await c.send(b"GET /v1/list?gvr=pods&limit=0 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            answer = await c.wait_closed()
        finally:
            c.close()
        assert answer.startswith(b"HTTP/1.1 200") and answer.count(b'"kind":"Pod"') == 15

