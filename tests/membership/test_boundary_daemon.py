"""The trust boundary on a real daemon over the real harness: a browser cannot join (cross-origin post, DNS
rebinding), the seed's Go CLI still can, the admin scope guards join/unjoin (plugin included), config.yaml
clusters cannot be unjoined over HTTP, and an anonymous /readyz names no cluster or address."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest
from typer.testing import CliRunner

from multicluster.config import ClusterConfig, ServerConfig
from multicluster.daemon import Daemon
from multicluster.testing.harness import ApiServer, Harness, free_port
from tests.membership.test_membership import rows, wait_for
from tests.sync.helpers import daemon_config, sqlite_store

pytestmark = pytest.mark.integration

READ = "read-tok-6b0e"
ADMIN = "admin-tok-93c1"


@pytest.fixture
async def extra(harness: Harness) -> AsyncIterator[ApiServer]:
    """A real cluster that is not in the daemon's config (so it can be joined)."""
    await asyncio.to_thread(harness.add_cluster, "cluster6", "insecure-token")
    server = harness.servers.pop("cluster6")  # keep it out of configs written by other helpers
    yield server
    harness.servers["cluster6"] = server
    harness.remove_cluster("cluster6")


async def start(harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: ServerConfig,
                *, wait: bool = True) -> tuple[Daemon, str]:
    monkeypatch.setenv("MULTICLUSTER_STATE_DIR", str(tmp_path / "state"))
    port = free_port()
    cfg = daemon_config(harness, sqlite_store(tmp_path), ("namespaces",))
    d = Daemon(replace(cfg, server=replace(server, port=port)))
    await d.start(controller=False)
    if wait:
        assert await d.wait_ready(60)
    return d, port_url(port)


def port_url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def form(kubeconfig: bytes) -> aiohttp.FormData:
    data = aiohttp.FormData()
    data.add_field("kubeconfig", kubeconfig, filename="config", content_type="application/octet-stream")
    return data


async def test_browsers_cannot_join_but_the_seed_cli_can(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: ApiServer
) -> None:
    d, url = await start(harness, tmp_path, monkeypatch, ServerConfig())
    port = url.rsplit(":", 1)[1]
    kubeconfig = extra.kubeconfig.read_bytes()
    try:
        async with aiohttp.ClientSession() as http:
            # What a web page can make the operator's browser send: a simple (no-preflight) cross-site post.
            for headers in ({"Origin": "https://evil.example"}, {"Origin": "null"},
                            {"Host": f"evil.example:{port}"},  # DNS rebinding: evil.example now resolves to 127.0.0.1
                            {"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"}):
                async with http.post(f"{url}/v1/join", params={"cluster": "cluster6"}, data=form(kubeconfig),
                                     headers=headers) as r:
                    assert r.status == 403, (headers, r.status, await r.text())
                async with http.post(f"{url}/v1/join?cluster=cluster6", data=kubeconfig,
                                     headers={**headers, "Content-Type": "text/plain"}) as r:
                    assert r.status == 403, (headers, r.status)
                async with http.delete(f"{url}/v1/unjoin", params={"cluster": "cluster2"}, headers=headers) as r:
                    assert r.status == 403
            assert set(d.syncs) == {"cluster1", "cluster2", "cluster3"}
            state = tmp_path / "state"
            assert not state.exists() or not list(state.iterdir())
            # The seed's Go CLI: multipart, no token, no Origin, Host localhost:PORT.
            async with http.post(f"{url}/v1/join", params={"cluster": "cluster6"}, data=form(kubeconfig),
                                 headers={"Host": f"localhost:{port}"}) as r:
                assert r.status == 200, await r.text()
            assert "cluster6" in d.syncs
            async with http.delete(f"{url}/v1/unjoin", params={"cluster": "cluster6"},
                                   headers={"Host": f"127.0.0.1:{port}"}) as r:
                assert r.status == 200, await r.text()
    finally:
        await d.shutdown()


async def test_config_clusters_cannot_be_unjoined_over_http(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d, url = await start(harness, tmp_path, monkeypatch, ServerConfig())
    try:
        await wait_for(lambda: rows(d, "cluster2"), 30)
        before = await rows(d, "cluster2")
        async with aiohttp.ClientSession() as http:
            async with http.delete(f"{url}/v1/unjoin", params={"cluster": "cluster2"}) as r:
                body = await r.json()
                assert r.status == 409, body
                assert "config" in body["error"] and "remove it from config.yaml and restart" in body["hint"], body
            async with http.delete(f"{url}/v1/unjoin", params={"cluster": "cluster1"}) as r:
                assert r.status == 400 and "master" in (await r.json())["error"]
        assert "cluster2" in d.syncs and await rows(d, "cluster2") == before
    finally:
        await d.shutdown()


async def test_admin_scope_over_http_and_the_plugin(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: ApiServer
) -> None:
    d, url = await start(harness, tmp_path, monkeypatch, ServerConfig(token=READ, admin_token=ADMIN))
    kc_file = tmp_path / "c6.kubeconfig"
    kc_file.write_bytes(extra.kubeconfig.read_bytes())
    cli_config = tmp_path / "cli-config"
    monkeypatch.setenv("MULTICLUSTER_CLI_CONFIG", str(cli_config))
    monkeypatch.delenv("MULTICLUSTER_TOKEN", raising=False)
    monkeypatch.delenv("MULTICLUSTER_ADMIN_TOKEN", raising=False)
    from plugin.cli import app, load_extensions

    if not any(c.name == "join" for c in app.registered_commands):
        load_extensions(["join"])
    runner = CliRunner()

    async def plugin(*args: str) -> tuple[int, str]:
        res = await asyncio.to_thread(runner.invoke, app, [*args, "--server", url])
        return res.exit_code, res.output

    try:
        async with aiohttp.ClientSession() as http:
            headers = {"Authorization": f"Bearer {READ}"}
            async with http.post(f"{url}/v1/join", params={"cluster": "cluster6"},
                                 data=form(kc_file.read_bytes()), headers=headers) as r:
                body = await r.json()
                assert r.status == 403 and "adminToken" in body["hint"], body
            async with http.get(f"{url}/v1/clusters", headers={"Authorization": f"Bearer {ADMIN}"}) as r:
                assert r.status == 200
        assert "cluster6" not in d.syncs
        code, out = await plugin("join", "cluster6", "--file", str(kc_file), "--token", READ)
        assert code == 1 and "admin token" in out and "--admin-token" in out, out
        assert len([line for line in out.splitlines() if line.strip()]) == 1, out
        assert READ not in out
        code, out = await plugin("unjoin", "cluster2")
        assert code == 1 and "401" in out, out
        assert "cluster6" not in d.syncs
        code, out = await plugin("join", "cluster6", "--file", str(kc_file), "--admin-token", ADMIN)
        assert code == 0, out
        assert "cluster6" in d.syncs
        monkeypatch.setenv("MULTICLUSTER_ADMIN_TOKEN", ADMIN)
        code, out = await plugin("unjoin", "cluster6")
        assert code == 0 and "cluster6 unjoined" in out, out
        monkeypatch.delenv("MULTICLUSTER_ADMIN_TOKEN")
        cli_config.write_text(f"serverIP: localhost\nserverPort: 1\ntoken: {READ}\nadminToken: {ADMIN}\n")
        code, out = await plugin("join", "cluster6", "--file", str(kc_file))
        assert code == 0, out
        code, out = await plugin("unjoin", "cluster2")  # the admin token, but a config.yaml cluster
        assert code == 1 and "config" in out, out
    finally:
        await d.shutdown()


async def test_anonymous_readyz_names_no_cluster_or_address(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MULTICLUSTER_STATE_DIR", str(tmp_path / "state"))
    port = free_port()
    cfg = daemon_config(harness, sqlite_store(tmp_path), ("namespaces",))
    dead = tmp_path / "dead.kubeconfig"
    dead_port = free_port()  # nothing listens there: this cluster never becomes ready
    dead.write_text(harness.servers["cluster2"].kubeconfig.read_text().replace(
        f":{harness.servers['cluster2'].port}", f":{dead_port}"))
    cfg = replace(cfg, clusters=(*cfg.clusters, ClusterConfig("hidden-name", dead)),
                  server=ServerConfig(port=port, token=READ))
    d = Daemon(cfg)
    await d.start(controller=False)
    try:
        async with aiohttp.ClientSession() as http:
            await wait_for(lambda: d.syncs["cluster1"].synced(), 60)
            for headers in ({}, {"Authorization": "Bearer nope"}):
                async with http.get(f"http://127.0.0.1:{port}/readyz", headers=headers) as r:
                    text = await r.text()
                    assert r.status == 503, text
                    for leak in ("hidden-name", "cluster1", str(dead_port), "127.0.0.1", "connect"):
                        assert leak not in text, (leak, text)
            async with http.get(f"http://127.0.0.1:{port}/readyz", headers={"Authorization": f"Bearer {READ}"}) as r:
                assert r.status == 503 and "hidden-name" in await r.text()
    finally:
        await d.shutdown()
