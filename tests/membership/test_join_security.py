"""Uploaded kubeconfigs are data, never code, through the real HTTP API of a real daemon.

A join whose kubeconfig would run a command (`exec`, `auth-provider`) or read a file on the daemon's host
(`tokenFile`, certificate paths) is refused with the key's path, and the command never runs, not even when such a
file is planted in the state dir for a restart. A local listener plays the attacker's API server and records whether
the daemon contacted it. Inline kubeconfigs (CA data + token, insecure-skip-tls-verify, client-certificate-data,
tls-server-name) still join and sync. Failed joins say what failed without quoting paths or TLS internals. Exec
plugins of the operator's own kubeconfigs still work, but without the daemon's secrets in their environment.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml
from aiohttp import web

from multicluster.config import ServerConfig
from multicluster.daemon import Daemon
from multicluster.kubeconfig import parse_kubeconfig
from multicluster.testing.certs import make_pki
from multicluster.testing.daemonproc import DaemonProc
from multicluster.testing.harness import ADMIN_TOKEN, Harness, free_port
from tests.faults.helpers import http_get, proc_config, sqlite_doc, wait_for
from tests.membership.test_membership import wait_for as async_wait_for
from tests.sync.helpers import daemon_config, sqlite_store

pytestmark = pytest.mark.integration

EXEC_API = "client.authentication.k8s.io/v1"


@dataclass
class Attacker:
    """An HTTP server that answers like an API server and records every request it gets."""

    url: str = ""
    hits: list[tuple[str, str, str]] = field(default_factory=list)  # (method, path, Authorization)

    async def handle(self, request: web.Request) -> web.Response:
        self.hits.append((request.method, request.path, request.headers.get("Authorization", "")))
        return web.json_response({"major": "1", "minor": "99", "gitVersion": "v1.99.0"})


@pytest.fixture
async def attacker() -> AsyncIterator[Attacker]:
    a = Attacker()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", a.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    a.url = f"http://127.0.0.1:{port}"
    yield a
    await runner.cleanup()


def kubeconfig(server: str, user: dict[str, Any], cluster: dict[str, Any] | None = None) -> bytes:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "x", "cluster": {"server": server, **(cluster or {})}}],
            "users": [{"name": "x", "user": user}],
            "contexts": [{"name": "x", "context": {"cluster": "x", "user": "x"}}],
            "current-context": "x",
        }
    ).encode()


def harness_doc(harness: Harness, name: str) -> dict[str, Any]:
    return dict(yaml.safe_load(harness.servers[name].kubeconfig.read_text()))


def exec_script(tmp: Path, name: str, *, marker: Path | None = None, env_file: Path | None = None) -> Path:
    """An exec credential plugin: leaves a marker and/or its environment behind, prints the harness token."""
    cred = json.dumps({"apiVersion": EXEC_API, "kind": "ExecCredential", "status": {"token": ADMIN_TOKEN}})
    lines = ["#!/bin/sh"]
    if marker is not None:
        lines.append(f"touch '{marker}'")
    if env_file is not None:
        lines.append(f"env > '{env_file}'")
    lines.append(f"echo '{cred}'")
    script = tmp / name
    script.write_text("\n".join(lines) + "\n")
    script.chmod(0o700)
    return script


def assert_no_internals(text: str, *paths: Path) -> None:
    for p in paths:
        assert str(p) not in text, text
    for needle in ("_ssl.c", ".kubeconfig", "Traceback", "site-packages", "/tmp/", ".py"):
        assert needle not in text, text


async def post_form(http: aiohttp.ClientSession, url: str, name: str, body: bytes) -> tuple[int, dict[str, Any]]:
    """The seed's multipart form: what its Go CLI sends, and what a cross-site form can send too."""
    form = aiohttp.FormData()
    form.add_field("kubeconfig", body, filename="config", content_type="application/octet-stream")
    async with http.post(f"{url}/v1/join", params={"cluster": name}, data=form) as r:
        return r.status, await r.json()


@pytest.fixture
async def daemon(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Daemon, str]]:
    monkeypatch.setenv("MULTICLUSTER_STATE_DIR", str(tmp_path / "state"))
    port = free_port()
    cfg = replace(daemon_config(harness, sqlite_store(tmp_path), ("namespaces",)), server=ServerConfig(port=port))
    d = Daemon(cfg)
    await d.start(controller=False)
    try:
        assert await d.wait_ready(60)
        yield d, f"http://127.0.0.1:{port}"
    finally:
        await d.shutdown()


async def test_join_refuses_kubeconfigs_that_run_commands_or_read_files(
    daemon: tuple[Daemon, str], attacker: Attacker, tmp_path: Path
) -> None:
    d, url = daemon
    state = tmp_path / "state"
    marker = tmp_path / "pwned"
    script = exec_script(tmp_path, "plugin.sh", marker=marker)
    stolen = tmp_path / "sa-token"
    stolen.write_text("stolen-service-account-token")
    pki = tmp_path / "pki"
    pki.mkdir()
    (pki / "c.crt").write_text("x")
    cases: list[tuple[str, bytes, str]] = [
        (
            "exec",
            kubeconfig(attacker.url, {"exec": {"apiVersion": EXEC_API, "command": str(script)}}),
            "users[0].user.exec",
        ),
        (
            "authprovider",
            kubeconfig(
                attacker.url,
                {
                    "auth-provider": {
                        "name": "gcp",
                        "config": {"cmd-path": str(script), "cmd-args": "x", "token-key": "{.status.token}"},
                    }
                },
            ),
            "users[0].user.auth-provider",
        ),
        ("tokenfile", kubeconfig(attacker.url, {"tokenFile": str(stolen)}), "users[0].user.tokenFile"),
        (
            "clientcert",
            kubeconfig(attacker.url, {"client-certificate": str(pki / "c.crt"), "client-key": str(pki / "c.crt")}),
            "users[0].user.client-certificate",
        ),
        (
            "cafile",
            kubeconfig(
                attacker.url.replace("http:", "https:"), {"token": "t"}, {"certificate-authority": str(pki / "c.crt")}
            ),
            "clusters[0].cluster.certificate-authority",
        ),
    ]
    async with aiohttp.ClientSession() as http:
        for name, body, path in cases:
            status, answer = await post_form(http, url, name, body)
            assert status == 400, (name, answer)
            assert f"`{path}`" in answer["error"], (name, answer)
            assert answer["hint"], (name, answer)
            assert "stolen" not in json.dumps(answer)
            assert_no_internals(answer["error"] + answer["hint"], tmp_path, state, script)
        # The JSON form is checked the same way (the seed's CLI is not the only client).
        async with http.post(f"{url}/v1/join", json={"cluster": "exec2", "kubeconfig": cases[0][1].decode()}) as r:
            assert r.status == 400 and "`users[0].user.exec`" in (await r.json())["error"]
    assert not marker.exists(), "the uploaded kubeconfig's exec plugin ran on the daemon's host"
    assert attacker.hits == [], f"the daemon contacted the uploader's server: {attacker.hits}"
    assert set(d.syncs) == {"cluster1", "cluster2", "cluster3"}
    assert not list(state.glob("*.kubeconfig")) if state.exists() else True
    assert not (state / "members.yaml").exists()


async def test_inline_kubeconfigs_join_and_sync_and_failures_leak_nothing(
    daemon: tuple[Daemon, str], harness: Harness, tmp_path: Path
) -> None:
    d, url = daemon
    state = tmp_path / "state"
    insecure = harness.servers["cluster2"].kubeconfig.read_bytes()  # insecure-skip-tls-verify + token
    certs = harness.servers["cluster3"].kubeconfig.read_bytes()  # CA data + client-certificate-data/-key-data
    sni = harness_doc(harness, "cluster1")
    sni["clusters"][0]["cluster"]["tls-server-name"] = "kubernetes"  # in the serving certificate's SANs
    assert b"insecure-skip-tls-verify" in insecure and b"client-key-data" in certs
    async with aiohttp.ClientSession() as http:
        for name, body in (("insec", insecure), ("certs", certs), ("sni", yaml.safe_dump(sni).encode())):
            status, answer = await post_form(http, url, name, body)
            assert status == 200, (name, answer)
            assert answer["version"].startswith("v1."), answer
            assert d.syncs[name].cluster.trusted is False
        await async_wait_for(lambda: all(d.syncs[n].synced() for n in ("insec", "certs", "sni")), 60)

        async def served(cluster: str) -> bool:
            async with http.get(f"{url}/v1/resources", params={"gvr": "namespaces", "cluster": cluster}) as r:
                return {"default", "kube-system"} <= {
                    i["object"]["metadata"]["name"] for i in (await r.json())["items"]
                }

        for name in ("insec", "certs", "sni"):
            await async_wait_for(functools.partial(served, name), 30)
        # What the state dir keeps is the parsed connection, nothing more, readable by the daemon's user only.
        kept = state / "certs.kubeconfig"
        assert stat.S_IMODE(kept.stat().st_mode) == 0o600
        assert kept.read_bytes() == parse_kubeconfig(certs).to_yaml()

        # Failures: what failed, in a few words, and nothing from the loader, TLS library or local paths.
        other_pki = tmp_path / "other-pki"
        other_pki.mkdir()
        await asyncio.to_thread(make_pki, other_pki)
        foreign_ca = harness_doc(harness, "cluster1")
        foreign_ca["clusters"][0]["cluster"]["certificate-authority-data"] = base64.b64encode(
            (other_pki / "ca.crt").read_bytes()
        ).decode()
        bad_ca = harness_doc(harness, "cluster1")
        bad_ca["clusters"][0]["cluster"]["certificate-authority-data"] = base64.b64encode(b"not a certificate").decode()
        bad_cert = yaml.safe_load(certs)
        bad_cert["users"][0]["user"]["client-key-data"] = base64.b64encode(b"not a key").decode()
        wrong_name = harness_doc(harness, "cluster1")
        wrong_name["clusters"][0]["cluster"]["tls-server-name"] = "not-the-api-server.example"
        wrong_token = harness_doc(harness, "cluster1")
        wrong_token["users"][0]["user"]["token"] = "not-the-token"
        refused = harness_doc(harness, "cluster1")
        refused["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"
        cases = [
            (refused, "connection refused"),
            (foreign_ca, "TLS verification failed"),
            (wrong_name, "TLS verification failed"),
            (bad_ca, "certificate-authority-data"),
            (bad_cert, "client-key-data"),
            (wrong_token, "401 Unauthorized"),
        ]
        for doc, expected in cases:
            status, answer = await post_form(http, url, "broken", yaml.safe_dump(doc).encode())
            assert status == 400, (expected, answer)
            assert expected in answer["error"], (expected, answer)
            assert answer["hint"], answer
            assert ADMIN_TOKEN not in json.dumps(answer) and "not-the-token" not in json.dumps(answer)
            assert_no_internals(answer["error"] + answer["hint"], tmp_path, state, harness.workdir)
        assert sorted(p.name for p in state.glob("*.kubeconfig")) == [
            "certs.kubeconfig",
            "insec.kubeconfig",
            "sni.kubeconfig",
        ]
        assert "broken" not in d.syncs


async def test_restart_never_loads_a_planted_exec_kubeconfig_and_operator_plugins_lose_the_secrets(
    harness: Harness, tmp_path: Path
) -> None:
    # An exec plugin in a config.yaml kubeconfig is the operator's choice (cloud login helpers): it must work.
    env_file = tmp_path / "plugin-env"
    operator_kc = harness_doc(harness, "cluster1")
    operator_kc["users"][0]["user"] = {
        "exec": {"apiVersion": EXEC_API, "command": str(exec_script(tmp_path, "login.sh", env_file=env_file))}
    }
    (tmp_path / "execc.kubeconfig").write_text(yaml.safe_dump(operator_kc))
    cfg = proc_config(harness, sqlite_doc(tmp_path / "store.db"), ["namespaces"])
    cfg["clusters"].append({"metadata": {"clusterName": "execc", "configPath": str(tmp_path / "execc.kubeconfig")}})
    # A state dir as an older version persisted it: one exec kubeconfig, one inline one.
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    marker = tmp_path / "pwned"
    evil = harness_doc(harness, "cluster1")
    evil["users"][0]["user"] = {
        "exec": {"apiVersion": EXEC_API, "command": str(exec_script(tmp_path, "evil.sh", marker=marker))}
    }
    (state / "evil.kubeconfig").write_text(yaml.safe_dump(evil))
    (state / "restored.kubeconfig").write_bytes(harness.servers["cluster2"].kubeconfig.read_bytes())
    (state / "members.yaml").write_text(
        yaml.safe_dump(
            [
                {"name": "evil", "configPath": str(state / "evil.kubeconfig"), "insecure": False},
                {"name": "restored", "configPath": str(state / "restored.kubeconfig"), "insecure": False},
            ]
        )
    )
    token, admin, db_password = "read-4b1e-token", "admin-93aa-token", "db-7d0c-password"
    p = DaemonProc(tmp_path, cfg)
    p.start(
        env={
            "MULTICLUSTER_STATE_DIR": str(state),
            "MULTICLUSTER_TOKEN": token,
            "MULTICLUSTER_ADMIN_TOKEN": admin,
            "MULTICLUSTER_DB_PASSWORD": db_password,
            "MC_PLUGIN_CANARY": "inherited",
        }
    )
    try:
        await asyncio.to_thread(p.wait_ready, 120)
        status, body = await asyncio.to_thread(http_get, p.url + "/v1/clusters", token)
        assert status == 200, body[:300]
        views = {c["name"]: c for c in orjson.loads(body)["clusters"]}
        assert "evil" not in views
        assert views["execc"]["ready"] and views["restored"]["ready"], views
        await asyncio.to_thread(wait_for, lambda: "evil" in p.log_path.read_text(), 10, "the refusal to be logged")
    finally:
        assert p.stop() == 0
    log = p.log_path.read_text()
    refusal = next(line for line in log.splitlines() if "evil" in line)
    assert "ERROR" in refusal and "`users[0].user.exec`" in refusal, refusal
    assert not marker.exists(), "a persisted kubeconfig's exec plugin ran at start"
    seen = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)
    assert seen.get("MC_PLUGIN_CANARY") == "inherited"  # the plugin did get the daemon's environment
    leaked = {k for k in seen if k in ("MULTICLUSTER_TOKEN", "MULTICLUSTER_ADMIN_TOKEN", "MULTICLUSTER_DB_PASSWORD")}
    assert not leaked, f"the operator's exec plugin saw {leaked}"
    assert not {token, admin, db_password} & set(seen.values())
