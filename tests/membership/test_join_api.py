"""Join/unjoin through the HTTP API (seed multipart form and JSON) and the CLI, against a running daemon."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest
from typer.testing import CliRunner

from multicluster.config import ServerConfig
from multicluster.daemon import Daemon
from multicluster.testing.harness import Harness, free_port
from tests.membership.test_membership import wait_for
from tests.sync.helpers import daemon_config, sqlite_store

pytestmark = pytest.mark.integration


async def test_join_and_unjoin_over_http_and_cli(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MULTICLUSTER_STATE_DIR", str(tmp_path / "state"))
    port = free_port()
    cfg = replace(daemon_config(harness, sqlite_store(tmp_path), ("namespaces",)), server=ServerConfig(port=port))
    await asyncio.to_thread(harness.add_cluster, "cluster5", "client-cert")
    server5 = harness.servers.pop("cluster5")
    d = Daemon(cfg)
    await d.start(controller=False)
    url = f"http://127.0.0.1:{port}"
    try:
        assert await d.wait_ready(60)
        kubeconfig = server5.kubeconfig.read_bytes()
        async with aiohttp.ClientSession() as http:
            form = aiohttp.FormData()
            form.add_field("kubeconfig", kubeconfig, filename="config", content_type="application/octet-stream")
            async with http.post(f"{url}/v1/join", params={"cluster": "cluster5"}, data=form) as r:
                assert r.status == 200, await r.text()
                body = await r.json()
                assert body["res"] == "join cluster successful" and body["cluster"] == "cluster5"
            await wait_for(lambda: "cluster5" in d.syncs and d.syncs["cluster5"].synced(), 30)

            async def joined_rows_served() -> bool:
                params = {"gvr": "namespaces", "cluster": "cluster5"}
                async with http.get(f"{url}/v1/resources", params=params) as r:
                    names = {i["object"]["metadata"]["name"] for i in (await r.json())["items"]}
                    return {"default", "kube-system"} <= names

            await wait_for(joined_rows_served, 15)
            # Duplicate name (JSON body form), bad kubeconfig, unknown and master unjoin: clear 4xx, no change.
            async with http.post(f"{url}/v1/join", json={"cluster": "cluster5", "kubeconfig": "x"}) as r:
                assert r.status == 409 and "already a member" in (await r.json())["error"]
            async with http.post(f"{url}/v1/join?cluster=other", json={"kubeconfig": "not: [a kubeconfig"}) as r:
                body = await r.json()
                assert r.status == 400 and "kubeconfig" in body["error"] and body.get("hint") is not None
            async with http.post(f"{url}/v1/join?cluster=other", data=aiohttp.FormData({"x": "y"})) as r:
                assert r.status == 400 and "kubeconfig" in (await r.json())["error"]
            async with http.delete(f"{url}/v1/unjoin", params={"cluster": "nope"}) as r:
                assert r.status == 404
            async with http.delete(f"{url}/v1/unjoin", params={"cluster": "cluster1"}) as r:
                assert r.status == 400 and "master" in (await r.json())["error"]
            assert set(d.syncs) == {"cluster1", "cluster2", "cluster3", "cluster5"}

        from plugin.cli import app, load_extensions

        if not any(c.name == "join" for c in app.registered_commands):
            load_extensions(["join"])
        runner = CliRunner()
        res = await asyncio.to_thread(runner.invoke, app, ["unjoin", "cluster5", "--server", url])
        assert res.exit_code == 0, res.output
        assert "cluster5 unjoined" in res.output
        assert "cluster5" not in d.syncs
        assert sum(n for (c, _g), n in (await d.store.counts()).items() if c == "cluster5") == 0
        kc_file = tmp_path / "c5.kubeconfig"
        kc_file.write_bytes(kubeconfig)
        res = await asyncio.to_thread(runner.invoke, app, ["join", "cluster5", "--file", str(kc_file), "--server", url])
        assert res.exit_code == 0, res.output
        assert "cluster5" in d.syncs
        res = await asyncio.to_thread(runner.invoke, app, ["join", "cluster5", "--file", str(kc_file), "--server", url])
        assert res.exit_code == 1 and "already a member" in res.output
    finally:
        await d.shutdown()
        harness.servers["cluster5"] = server5
        harness.remove_cluster("cluster5")
