"""The API's trust boundary through a real in-process aiohttp server: browsers (Origin, DNS rebinding through a
foreign Host), read and admin token scopes, and what an unauthenticated /readyz may say."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from multicluster.api import Access, ClusterView, build_app
from multicluster.config import StoreConfig
from multicluster.gvr import GVR
from multicluster.store import Store, open_store
from multicluster.store.base import SyncState
from tests.api.helpers import Backend

READ = "read-0f3c-boundary"
ADMIN = "admin-77aa-boundary"
SECRET_ADDRESS = "https://10.203.4.5:6443"
CM = GVR("", "v1", "configmaps")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = open_store(StoreConfig(type="sqlite", path=tmp_path / "boundary.db"))
    await s.open()
    yield s
    await s.close()


def pending_views() -> list[ClusterView]:
    """A cluster still syncing, whose state carries what must never reach an anonymous caller."""
    state = SyncState(cluster="secret-cluster-name", gvr=CM, status="error", resource_version=0,
                      synced_at=0.0, error=f"Get {SECRET_ADDRESS}/api/v1/configmaps: forbidden: User \"system:x\"",
                      objects=0)
    return [ClusterView(name="secret-cluster-name", is_master=True, host=SECRET_ADDRESS, reachable=False,
                        ready=False, last_sync=None, error=f"dial tcp {SECRET_ADDRESS}: connection refused",
                        syncs=(state,))]


async def serve(store: Store, access: Access, *, ready: bool = True) -> TestClient:  # type: ignore[type-arg]
    backend = Backend(store, [], pending_views() if not ready else [], token=access.token, is_ready=ready)
    client = TestClient(TestServer(build_app(backend, access)))
    await client.start_server()
    return client


async def call(client: TestClient, method: str, path: str, **kw: Any) -> tuple[int, Any]:  # type: ignore[type-arg]
    async with client.request(method, path, **kw) as r:
        raw = await r.read()
        body = orjson.loads(raw) if r.content_type == "application/json" else raw
        return r.status, body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_foreign_origin_is_refused_before_any_handler(store: Store) -> None:
    client = await serve(store, Access())
    try:
        for method, path in (("GET", "/v1/clusters"), ("POST", "/v1/join?cluster=evil"),
                             ("DELETE", "/v1/unjoin?cluster=x"), ("GET", "/readyz"), ("GET", "/metrics")):
            for origin in ("https://evil.example", "null", "http://127.0.0.1:31888", "http://localhost:8080"):
                status, body = await call(client, method, path, headers={"Origin": origin},
                                          data=b"kubeconfig" if method == "POST" else None)
                assert status == 403, (method, path, origin, status, body)
                assert "Origin" in body["error"] and "server.allowedOrigins" in body["hint"], body
        # No Origin (curl, the plugin, the Go CLI): served.
        status, _ = await call(client, "GET", "/v1/clusters")
        assert status == 200
    finally:
        await client.close()


async def test_an_allowed_origin_is_served(store: Store) -> None:
    client = await serve(store, Access(allowed_origins=frozenset({"https://dash.example.com"})))
    try:
        status, _ = await call(client, "GET", "/v1/clusters", headers={"Origin": "https://dash.example.com"})
        assert status == 200
        status, _ = await call(client, "GET", "/v1/clusters", headers={"Origin": "https://dash.example.com.evil.io"})
        assert status == 403
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("bind", "allowed", "host", "ok"),
    [
        ("127.0.0.1", (), "evil.example:31888", False),  # DNS rebinding: a name that resolves to 127.0.0.1
        ("127.0.0.1", (), "evil.example", False),
        ("127.0.0.1", (), "localhost:31888", True),
        ("127.0.0.1", (), "LOCALHOST:31888", True),
        ("127.0.0.1", (), "127.0.0.1:31888", True),
        ("127.0.0.1", (), "127.0.0.2:31888", True),
        ("127.0.0.1", (), "[::1]:31888", True),
        ("127.0.0.1", (), "10.0.0.7:31888", False),  # an IP that is not ours while bound to loopback
        ("0.0.0.0", (), "10.0.0.7:31888", True),  # wildcard bind: IP literals cannot be rebound
        ("0.0.0.0", (), "[fd00::7]:31888", True),
        ("0.0.0.0", (), "multicluster.svc:31888", False),
        ("0.0.0.0", ("multicluster.svc",), "multicluster.svc:31888", True),
        ("0.0.0.0", ("multicluster.svc",), "MultiCluster.SVC", True),
        ("0.0.0.0", ("*",), "anything.example:1", True),
        ("mc.internal", (), "mc.internal:31888", True),  # the bound name itself
        ("10.1.2.3", (), "10.1.2.3:31888", True),
        ("10.1.2.3", (), "10.1.2.4:31888", False),
    ],
)
async def test_host_header_is_checked(store: Store, bind: str, allowed: tuple[str, ...], host: str, ok: bool) -> None:
    client = await serve(store, Access(bind=bind, allowed_hosts=frozenset(allowed)))
    try:
        for path in ("/v1/clusters", "/readyz"):
            status, body = await call(client, "GET", path, headers={"Host": host})
            if ok:
                assert status == 200, (host, status, body)
            else:
                assert status == 403, (host, status, body)
                assert "Host" in body["error"] and "server.allowedHosts" in body["hint"], body
    finally:
        await client.close()


async def test_admin_scope_guards_join_and_unjoin(store: Store) -> None:
    client = await serve(store, Access(token=READ, admin_token=ADMIN))
    try:
        for token in (READ, ADMIN):
            status, _ = await call(client, "GET", "/v1/clusters", headers=bearer(token))
            assert status == 200, token
        status, _ = await call(client, "GET", "/v1/clusters")
        assert status == 401
        for method, path in (("POST", "/v1/join?cluster=x"), ("DELETE", "/v1/unjoin?cluster=x")):
            status, body = await call(client, method, path, headers=bearer(READ), data=b"x")
            assert status == 403, (method, status, body)
            assert "admin" in body["error"] and "adminToken" in body["hint"], body
            assert READ not in orjson.dumps(body).decode() and ADMIN not in orjson.dumps(body).decode()
            status, body = await call(client, method, path, data=b"x")
            assert status == 401
            status, body = await call(client, method, path, headers=bearer(ADMIN + "x"), data=b"x")
            assert status == 401
            # The admin token passes the boundary (this in-process backend has no membership: 501 from the route).
            status, body = await call(client, method, path, headers=bearer(ADMIN), data=b"x")
            assert status == 501, body
    finally:
        await client.close()


async def test_admin_token_alone_protects_only_membership(store: Store) -> None:
    client = await serve(store, Access(admin_token=ADMIN))
    try:
        status, _ = await call(client, "GET", "/v1/clusters")
        assert status == 200
        status, _ = await call(client, "POST", "/v1/join?cluster=x", data=b"x")
        assert status == 401
    finally:
        await client.close()


async def test_readyz_without_a_token_says_only_counts(store: Store) -> None:
    client = await serve(store, Access(token=READ), ready=False)
    try:
        for headers in ({}, bearer("wrong")):
            status, body = await call(client, "GET", "/readyz", headers=headers)
            assert status == 503
            text = orjson.dumps(body).decode()
            for leak in ("secret-cluster-name", "10.203.4.5", "forbidden", "system:x", "connection refused"):
                assert leak not in text, (leak, text)
            assert body["ready"] is False and body["pending"] == 1 and body["clusters"] == 1, body
        status, body = await call(client, "GET", "/readyz", headers=bearer(READ))
        assert status == 503
        assert body["pending"][0]["cluster"] == "secret-cluster-name" and "forbidden" in body["pending"][0]["error"]
        status, body = await call(client, "GET", "/healthz")
        assert status == 200 and body == {"status": "ok"}
    finally:
        await client.close()


async def test_readyz_when_ready_is_minimal_without_a_token(store: Store) -> None:
    client = await serve(store, Access(token=READ), ready=True)
    try:
        status, body = await call(client, "GET", "/readyz")
        assert status == 200 and body["ready"] is True and body["status"] == "ready"
    finally:
        await client.close()


def test_access_repr_has_no_secret() -> None:
    text = repr(Access(token=READ, admin_token=ADMIN))
    assert READ not in text and ADMIN not in text
