"""Security of a real daemon: with a token configured every route except the health checks refuses requests
without it or with a wrong one (routes enumerated from the app's router, so a new route cannot be forgotten);
Secrets are stored without their values unless sync.storeSecrets is true; and neither secret values, the API
token, the database password nor the clusters' credentials ever reach the daemon's log, even at DEBUG."""

from __future__ import annotations

import asyncio
import base64
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from yarl import URL

from multicluster.api import build_app
from multicluster.config import ServerConfig
from multicluster.daemon import Daemon
from multicluster.gvr import GVR
from multicluster.testing.daemonproc import DaemonProc
from multicluster.testing.harness import ADMIN_TOKEN, Harness, free_port
from multicluster.testing.mariadb import MariaDB
from tests.faults.helpers import (
    assert_daemon_healthy,
    assert_proc_healthy,
    bulk,
    converged,
    http_get,
    mkns,
    mysql_doc,
    opened,
    proc_config,
    store_config,
    wait_for,
)
from tests.sync.helpers import CM, daemon_config, sqlite_store, wait_converged

pytestmark = [pytest.mark.integration, pytest.mark.faults]

SECRETS = GVR("", "v1", "secrets")
TOKEN = "tok-5f1d0c2e-security-test"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
PATH_VALUES = {"cluster": "cluster1", "gvr": "configmaps", "namespace": "kube-system", "name": "kube-root-ca.crt",
               "rest": "api/v1/namespaces/kube-system/configmaps"}


def _concrete(canonical: str) -> str:
    return re.sub(r"\{(\w+)(?::[^}]*)?\}", lambda m: PATH_VALUES[m.group(1)], canonical)


async def test_every_route_but_health_needs_the_token(harness: Harness, tmp_path: Path) -> None:
    port = free_port()
    cfg = daemon_config(harness, sqlite_store(tmp_path), ("configmaps",))
    d = Daemon(replace(cfg, server=ServerConfig(port=port, token=TOKEN)))
    await d.start(controller=False)
    url = f"http://127.0.0.1:{port}"
    # Requests that would change something if auth let them through.
    bodies: dict[tuple[str, str], dict[str, Any]] = {
        ("DELETE", "/v1/unjoin"): {"params": {"cluster": "cluster2"}},
        ("POST", "/v1/join"): {"params": {"cluster": "sneaky"},
                               "data": harness.servers["cluster2"].kubeconfig.read_bytes(),
                               "headers": {"Content-Type": "application/yaml"}},
    }
    try:
        assert await d.wait_ready(60)
        await wait_converged(d, harness, [CM])  # ready = listed; the object the routes ask for must be written too
        routes = [(r.method, r.resource.canonical) for r in build_app(d).router.routes() if r.resource is not None]
        assert len(routes) >= 11
        public = {"/healthz", "/readyz"}
        wrong = [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}, {"Authorization": f"Basic {TOKEN}"},
                 {"Authorization": "Bearer "}, {"Authorization": f"Bearer {TOKEN}x"},
                 {"Authorization": f"Bearer {TOKEN[:-1]}"}, {"Authorization": f"Token {TOKEN}"},
                 {"X-Auth-Token": TOKEN}, {"Cookie": f"token={TOKEN}"}]
        async with aiohttp.ClientSession() as http:
            for method, path in routes:
                extra = bodies.get((method, path), {"params": {"gvr": "configmaps"}})
                headers = extra.get("headers", {})
                for auth in wrong:
                    async with http.request(method, url + _concrete(path), **{**extra, "headers": {**headers, **auth}}
                                            ) as r:
                        if path in public:
                            assert r.status == 200, (method, path, auth)
                            continue
                        assert r.status == 401, (method, path, auth, r.status)
                        assert r.headers["WWW-Authenticate"].startswith("Bearer")
                        body = await r.json()
                        if body.get("kind") == "Status":  # the Kubernetes-compatible paths answer as kube-apiserver
                            assert body["code"] == 401 and body["reason"] == "Unauthorized", body
                            continue
                        assert body["error"] == "missing or wrong bearer token" and body["hint"], body
                        assert TOKEN not in await r.text()
                ok = {**headers, "Authorization": f"Bearer {TOKEN}"}
                if (method, path) in bodies:
                    continue  # the refused requests above must not have done anything; checked below
                async with http.request(method, url + _concrete(path), **{**extra, "headers": ok}) as r:
                    assert r.status == 200, (method, path, r.status, await r.text())
            # Path tricks that might reach a protected route while looking like a public one.
            for trick in ("/healthz/../v1/clusters", "//v1/clusters", "/v1/clusters/", "/V1/CLUSTERS",
                          "/readyz%2f..%2fv1/clusters", "/v1/./clusters", "/healthz/%2e%2e/v1/clusters",
                          "/v1/clusters?/healthz", "/v1/clusters#/healthz", "/metrics;/healthz",
                          "/%68ealthz/../metrics"):
                async with http.get(URL(url + trick, encoded=True)) as r:
                    text = await r.text()
                    assert r.status == 401 or (r.status == 200 and orjson.loads(text).get("status") in ("ok", "ready")
                                               ), (trick, r.status, text[:200])
        # Nothing the refused requests asked for happened.
        assert set(d.syncs) == set(harness.servers)
        assert "sneaky" not in d.syncs
        await wait_converged(d, harness, [CM])
        await assert_daemon_healthy(d, harness)
    finally:
        await d.shutdown()


def _secret(name: str, value: str) -> dict[str, Any]:
    applied = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": {"password": value}}
    return {
        "metadata": {"name": name, "labels": {"app": "db"},
                     "annotations": {LAST_APPLIED: orjson.dumps(applied).decode(), "owner": "team-a"}},
        "type": "Opaque",
        "stringData": {"password": value},
        "data": {"user": base64.b64encode(b"admin").decode()},
    }


def _strip(obj: dict[str, Any]) -> dict[str, Any]:
    return {**obj, "metadata": {k: v for k, v in obj["metadata"].items() if k != "managedFields"}}


@pytest.mark.parametrize("store_secrets", [False, True])
async def test_secret_values_are_stored_only_when_asked(
    harness: Harness, tmp_path: Path, unique: str, store_secrets: bool
) -> None:
    value = f"s3cr3t-{unique}-value"
    ns = f"sec-{unique}"
    await asyncio.to_thread(mkns, harness, ns)
    await bulk(harness, "cluster1", [("POST", SECRETS.path(ns), _secret("listed", value))])
    d = Daemon(daemon_config(harness, sqlite_store(tmp_path), ("secrets",), store_secrets=store_secrets))
    await d.start(api=False, controller=False)
    try:
        assert await d.wait_ready(60)
        await bulk(harness, "cluster2", [("POST", SECRETS.path(ns), _secret("watched", value))])
        await bulk(harness, "cluster1", [("PATCH", SECRETS.path(ns, "listed"),
                                          orjson.dumps({"metadata": {"labels": {"rotated": "yes"}}}))])
        await wait_converged(d, harness, [SECRETS])
        for cluster, name in (("cluster1", "listed"), ("cluster2", "watched")):
            api_obj = _strip(await asyncio.to_thread(harness.request, cluster, "GET", SECRETS.path(ns, name)))
            row = await d.store.get(cluster, SECRETS, ns, name)
            assert row is not None
            stored = orjson.loads(row.object)
            if store_secrets:
                assert stored == api_obj
                assert base64.b64decode(stored["data"]["password"]).decode() == value
            else:
                # Key names stay (which keys exist is useful); values and the last-applied copy do not.
                assert stored["data"] == {"password": "", "user": ""}
                assert "stringData" not in stored
                assert LAST_APPLIED not in stored["metadata"]["annotations"]
                assert stored["metadata"]["annotations"]["owner"] == "team-a"
                assert stored["metadata"]["labels"] == api_obj["metadata"]["labels"]
                assert stored["metadata"]["resourceVersion"] == api_obj["metadata"]["resourceVersion"]
                assert value.encode() not in row.object
        await assert_daemon_healthy(d, harness)
    finally:
        await d.shutdown()
    # Not in any byte of the database files either (WAL included), in clear or base64 — unless asked for (which
    # also shows the search would find it).
    files = b"".join(f.read_bytes() for f in tmp_path.glob("store.db*"))
    assert (base64.b64encode(value.encode()) in files) is store_secrets
    assert (value.encode() in files) is store_secrets  # the last-applied annotation holds it in clear


@pytest.mark.mariadb
async def test_no_secret_or_credential_in_the_debug_log(
    harness: Harness, mariadb_server: MariaDB, mariadb_database: str, tmp_path: Path, unique: str
) -> None:
    db = mariadb_server
    value = f"l0g-leak-{unique}-value"
    ns = f"log-{unique}"
    await asyncio.to_thread(mkns, harness, ns)
    await bulk(harness, "cluster1", [("POST", SECRETS.path(ns), _secret("listed", value))])
    doc = mysql_doc(db, mariadb_database)
    # storeSecrets true: the values flow through every layer (informer, queue, writer, store, API) and must still
    # never be logged.
    cfg = proc_config(harness, doc, ["secrets", "configmaps"], storeSecrets=True)
    p = DaemonProc(tmp_path, cfg)
    p.start(env={"MULTICLUSTER_TOKEN": TOKEN, "MULTICLUSTER_STATE_DIR": str(tmp_path / "state")}, log_level="DEBUG")
    try:
        await asyncio.to_thread(p.wait_ready, 120)
        await bulk(harness, "cluster2", [("POST", SECRETS.path(ns), _secret("watched", value))])
        await bulk(harness, "cluster1", [("PATCH", SECRETS.path(ns, "listed"),
                                          orjson.dumps({"stringData": {"password": value + "-2"}}))])
        async with opened(store_config(doc)) as store:
            await converged(store, harness, [SECRETS, CM])

        def served() -> bool:
            status, body = http_get(f"{p.url}/v1/resources/cluster2/secrets/{ns}/watched", TOKEN)
            return status == 200 and base64.b64decode(orjson.loads(body)["data"]["password"]).decode() == value

        await asyncio.to_thread(wait_for, served, 30, "the secret to be served")
        # Wrong tokens, a token in the query string, failing joins with a kubeconfig that carries credentials.
        for t in ("wrong", TOKEN + "x", None):
            assert (await asyncio.to_thread(http_get, f"{p.url}/v1/clusters?token={TOKEN}", t))[0] == 401
        kubeconfig = harness.servers["cluster1"].kubeconfig.read_bytes()  # CA data + the admin bearer token
        dead = kubeconfig.replace(f":{harness.servers['cluster1'].port}".encode(), b":1")
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/yaml"}
        async with aiohttp.ClientSession(headers=headers) as http:
            for name, body in (("cluster2", kubeconfig), ("deadone", dead), ("garbage", kubeconfig[:150])):
                async with http.post(f"{p.url}/v1/join", params={"cluster": name}, data=body) as r:
                    assert 400 <= r.status < 500, await r.text()
                    assert ADMIN_TOKEN not in await r.text()
        await asyncio.to_thread(assert_proc_healthy, p, harness, TOKEN)
    finally:
        code = p.stop()
    assert code == 0
    log = p.log_path.read_text()
    assert " DEBUG " in log, "the daemon did not log at DEBUG"
    leaks = {
        "secret value": value,
        "secret value (base64)": base64.b64encode(value.encode()).decode(),
        "API token": TOKEN,
        "database password": db.password,
        "cluster bearer token": ADMIN_TOKEN,
        "client key": "PRIVATE KEY",
    }
    found = {what: needle for what, needle in leaks.items() if needle in log}
    assert not found, f"{found} in {p.log_path}"
