"""The Kubernetes-compatible API behind the master's API server (multicluster run --apiservice), with each user's
own identity and answers filtered by the master's RBAC (issue 19).

A daemon syncs the three harness clusters, registers the APIService on the master (cluster1) and serves HTTPS
with front-proxy authentication; it also accepts users' own tokens on its port (server.auth: kubernetes). The
users are real ServiceAccounts of the master with tokens from the TokenRequest API and ordinary RBAC objects;
every kubectl call is the real binary, through contexts `multicluster kubeconfig --via-master` wrote.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml
from typer.testing import CliRunner

from multicluster.api.kube.paths import GROUP, PREFIX, VERSION, scope_prefix
from multicluster.apiservice import APISERVICE_NAME
from multicluster.config import ServerConfig
from multicluster.daemon import Daemon
from multicluster.gvr import GVR
from multicluster.testing.harness import Harness, free_port
from tests.kube.conftest import KUBECTL, run_kubectl, table
from tests.sync.helpers import daemon_config, sqlite_store, wait_converged

pytestmark = pytest.mark.integration

TOKEN = "aggregated-test-static-token"
CLUSTERS = ("cluster1", "cluster2", "cluster3")
RO = ["get", "list", "watch"]
USERS = ("nobody", "paths-only", "team-a", "team-a-cluster1", "cluster2", "list-only")


@dataclass
class Agg:
    harness: Harness
    daemon: Daemon
    url: str
    suffix: str
    ns: str  # where the Service and the ServiceAccounts live on the master
    team_a: str
    team_b: str
    tmp: Path
    tokens: dict[str, str]

    @property
    def cache(self) -> Path:
        return self.tmp / "kube-cache"

    async def kubectl(self, user: str, *args: str, context: str = "multicluster",
                      ok: bool = True) -> tuple[int, str, str]:
        return await run_kubectl(["--kubeconfig", str(self.tmp / f"{user}.via-master"), "--context", context,
                                  *args], self.cache, ok=ok)

    def pods(self, out: str) -> set[tuple[str, str, str]]:
        """(namespace, cluster, name) of `kubectl get pods -A` rows in this module's namespaces."""
        rows = table(out)
        assert rows[0][:3] == ["NAMESPACE", "CLUSTER", "NAME"], rows[0]
        return {(r[0], r[1], r[2]) for r in rows[1:] if r[0] in (self.team_a, self.team_b)}


def _create(h: Harness, cluster: str, path: str, body: dict[str, Any]) -> Any:
    return h.request(cluster, "POST", path, body)


def _rbac(h: Harness, kind: str, name: str, rules: list[dict[str, Any]], namespace: str = "") -> None:
    base = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles" if namespace else \
        "/apis/rbac.authorization.k8s.io/v1/clusterroles"
    _create(h, "cluster1", base, {"kind": kind, "metadata": {"name": name}, "rules": rules})


def _bind(h: Harness, name: str, role_kind: str, role: str, sa: tuple[str, str], namespace: str = "") -> None:
    base = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings" if namespace else \
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings"
    _create(h, "cluster1", base, {
        "metadata": {"name": name}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind,
                                                "name": role},
        "subjects": [{"kind": "ServiceAccount", "namespace": sa[0], "name": sa[1]}]})


def _wait_view_role(h: Harness) -> None:
    """`view` is an aggregated ClusterRole: its rules appear once the master's controller-manager fills them in."""
    for _ in range(300):
        if h.request("cluster1", "GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles/view").get("rules"):
            return
        time.sleep(0.2)
    raise AssertionError("the master's ClusterRole view has no rules after 60 s")


def seed(h: Harness, a: Agg) -> None:
    _wait_view_role(h)
    for cluster in CLUSTERS:
        for ns in (a.team_a, a.team_b):
            _create(h, cluster, "/api/v1/namespaces", {"metadata": {"name": ns}})
            _create(h, cluster, f"/api/v1/namespaces/{ns}/pods", {
                "metadata": {"name": f"p-{cluster}"},
                "spec": {"containers": [{"name": "c", "image": "registry.example/app:1"}]}})
    _create(h, "cluster1", "/api/v1/namespaces", {"metadata": {"name": a.ns}})
    s = a.suffix
    # Passing the master's own check of the path: `get` on clusters/api|apis|version named by the scope.
    _rbac(h, "ClusterRole", f"mc-paths-{s}", [
        {"apiGroups": [GROUP], "resources": ["clusters/api", "clusters/apis", "clusters/version"],
         "verbs": ["get"]}, {"apiGroups": [GROUP], "resources": ["clusters"], "verbs": ["list"]}])
    _rbac(h, "ClusterRole", f"mc-every-cluster-{s}", [{"apiGroups": [GROUP], "resources": ["clusters"], "verbs": RO}])
    _rbac(h, "ClusterRole", f"mc-cluster2-{s}", [{"apiGroups": [GROUP], "resources": ["clusters"], "verbs": RO,
                                                  "resourceNames": ["cluster2"]}])
    _rbac(h, "ClusterRole", f"mc-cluster1-{s}", [{"apiGroups": [GROUP], "resources": ["clusters"], "verbs": RO,
                                                  "resourceNames": ["cluster1"]}])
    for sa in USERS:
        _create(h, "cluster1", f"/api/v1/namespaces/{a.ns}/serviceaccounts", {"metadata": {"name": sa}})
        if sa != "nobody":
            _bind(h, f"mc-paths-{sa}-{s}", "ClusterRole", f"mc-paths-{s}", (a.ns, sa))
    # team-a: the ordinary `view` role in its namespace, and every member cluster there.
    _bind(h, "view", "ClusterRole", "view", (a.ns, "team-a"), namespace=a.team_a)
    _bind(h, "clusters", "ClusterRole", f"mc-every-cluster-{s}", (a.ns, "team-a"), namespace=a.team_a)
    # team-a-cluster1: `view` in team-a, and there only member cluster1 (a RoleBinding limits the cluster grant).
    _bind(h, "view-c1", "ClusterRole", "view", (a.ns, "team-a-cluster1"), namespace=a.team_a)
    _bind(h, "cluster1", "ClusterRole", f"mc-cluster1-{s}", (a.ns, "team-a-cluster1"), namespace=a.team_a)
    # list-only: get and list of pods everywhere, every member, but no watch.
    _rbac(h, "ClusterRole", f"pods-list-{s}", [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}])
    _bind(h, f"pods-list-{s}", "ClusterRole", f"pods-list-{s}", (a.ns, "list-only"))
    _bind(h, f"mc-every-list-only-{s}", "ClusterRole", f"mc-every-cluster-{s}", (a.ns, "list-only"))
    # cluster2: `view` everywhere, but only member cluster2.
    _bind(h, f"view-cluster2-{s}", "ClusterRole", "view", (a.ns, "cluster2"))
    _bind(h, f"mc-cluster2-{s}", "ClusterRole", f"mc-cluster2-{s}", (a.ns, "cluster2"))
    for sa in USERS:
        answer = _create(h, "cluster1", f"/api/v1/namespaces/{a.ns}/serviceaccounts/{sa}/token",
                         {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                          "spec": {"expirationSeconds": 3600}})
        a.tokens[sa] = answer["status"]["token"]


def _user_kubeconfig(h: Harness, path: Path, token: str) -> None:
    """A kubeconfig for the master with a ServiceAccount's token, the way a user has one."""
    master = yaml.safe_load(h.servers["cluster1"].kubeconfig.read_text())
    cluster = master["clusters"][0]["cluster"]
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "master",
        "clusters": [{"name": "master", "cluster": cluster}],
        "users": [{"name": "me", "user": {"token": token}}],
        "contexts": [{"name": "master", "context": {"cluster": "master", "user": "me"}}]}))
    path.chmod(0o600)


def _via_master(source: Path, out: Path, ok: bool = True) -> str:
    from multicluster.cli import app

    result = CliRunner().invoke(app, ["kubeconfig", "--via-master", "--kubeconfig", str(source), "--out", str(out)])
    if ok:
        assert result.exit_code == 0, result.output
    return result.output


def _available(h: Harness) -> bool:
    obj = h.request("cluster1", "GET", f"/apis/apiregistration.k8s.io/v1/apiservices/{APISERVICE_NAME}")
    return any(c["type"] == "Available" and c["status"] == "True"
               for c in (obj.get("status") or {}).get("conditions") or [])


@pytest.fixture(scope="module")
async def agg(harness: Harness, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Agg]:
    if not KUBECTL:
        pytest.fail("no kubectl on PATH or in ~/.cache/multicluster/testbin/k8s-*/")
    tmp = tmp_path_factory.mktemp("agg")
    s = uuid.uuid4().hex[:6]
    a = Agg(harness, None, "", s, f"mc-agg-{s}", f"team-a-{s}", f"team-b-{s}", tmp, {})  # type: ignore[arg-type]
    await asyncio.to_thread(seed, harness, a)
    port = free_port()
    cfg = replace(daemon_config(harness, sqlite_store(tmp), ("pods", "namespaces")),
                  server=ServerConfig(port=port, token=TOKEN, auth="kubernetes", api_service=True,
                                      api_service_namespace=a.ns, api_service_name="multicluster",
                                      api_service_external_name="localhost", front_proxy_reload_seconds=2.0))
    a.daemon = Daemon(cfg)
    a.url = f"https://127.0.0.1:{port}"
    await a.daemon.start(controller=False)
    try:
        assert await a.daemon.wait_ready(90)
        await wait_converged(a.daemon, harness, [GVR("", "v1", "pods")], 60)
        for _ in range(300):
            if await asyncio.to_thread(_available, harness):
                break
            await asyncio.sleep(0.2)
        else:
            pytest.fail("the APIService did not become Available: " + str(await asyncio.to_thread(
                harness.request, "cluster1", "GET", f"/apis/apiregistration.k8s.io/v1/apiservices/{APISERVICE_NAME}")))
        for user in ("admin", *a.tokens):
            source = tmp / f"{user}.kubeconfig"
            if user == "admin":
                source.write_text(harness.servers["cluster1"].kubeconfig.read_text())
            else:
                _user_kubeconfig(harness, source, a.tokens[user])
            if user not in ("nobody", "paths-only"):
                await asyncio.to_thread(_via_master, source, tmp / f"{user}.via-master")
        yield a
    finally:
        await a.daemon.shutdown(5)
        with contextlib.suppress(Exception):
            await asyncio.to_thread(harness.request, "cluster1", "DELETE",
                                    f"/apis/apiregistration.k8s.io/v1/apiservices/{APISERVICE_NAME}")
        for cluster in CLUSTERS:
            for ns in (a.team_a, a.team_b) + ((a.ns,) if cluster == "cluster1" else ()):
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(harness.request, cluster, "DELETE", f"/api/v1/namespaces/{ns}")


async def test_the_master_lists_our_group_and_the_daemon_marks_what_it_created(agg: Agg) -> None:
    _, out, _ = await run_kubectl(["--kubeconfig", str(agg.harness.servers["cluster1"].kubeconfig),
                                   "api-versions"], agg.cache)
    assert f"{GROUP}/{VERSION}" in out.split()
    apisvc = agg.harness.request("cluster1", "GET", f"/apis/apiregistration.k8s.io/v1/apiservices/{APISERVICE_NAME}")
    svc = agg.harness.request("cluster1", "GET", f"/api/v1/namespaces/{agg.ns}/services/multicluster")
    for obj in (apisvc, svc):
        assert obj["metadata"]["labels"]["multicluster.practice.com/managed"] == "true"
    assert svc["spec"]["type"] == "ExternalName" and svc["spec"]["externalName"] == "localhost"
    port = agg.daemon.config.server.port
    assert apisvc["spec"]["service"] == {"namespace": agg.ns, "name": "multicluster", "port": port}


async def test_the_admin_reads_every_cluster_through_the_master(agg: Agg) -> None:
    _, out, _ = await agg.kubectl("admin", "get", "pods", "-A")
    every = {(ns, c, f"p-{c}") for ns in (agg.team_a, agg.team_b) for c in CLUSTERS}
    assert agg.pods(out) == every
    # One cluster's context, a namespace, one object, JSON with the cluster annotation.
    _, out, _ = await agg.kubectl("admin", "get", "pods", "-n", agg.team_b, "-o", "name",
                                  context="multicluster-cluster3")
    assert out.split() == ["pod/p-cluster3"]
    _, out, _ = await agg.kubectl("admin", "get", "pod", "p-cluster2", "-n", agg.team_a, "-o",
                                  "jsonpath={.metadata.annotations.multicluster\\.practice\\.com/cluster}",
                                  context="multicluster-cluster2")
    assert out == "cluster2"


async def test_a_user_without_any_grant_is_forbidden(agg: Agg) -> None:
    # No RBAC at all: the master itself refuses the path.
    _user_kubeconfig(agg.harness, agg.tmp / "nobody.kubeconfig", agg.tokens["nobody"])
    output = await asyncio.to_thread(_via_master, agg.tmp / "nobody.kubeconfig", agg.tmp / "nobody.via-master", False)
    assert "403" in output
    nobody = await run_kubectl(["--kubeconfig", str(agg.tmp / "nobody.kubeconfig"), "get", "--raw",
                                scope_prefix("_all") + "/api/v1/pods"], agg.cache, ok=False)
    assert nobody[0] != 0 and "Forbidden" in nobody[2], nobody
    # Allowed to reach the paths, but no grant on pods anywhere: the daemon's own review says no.
    _user_kubeconfig(agg.harness, agg.tmp / "paths-only.kubeconfig", agg.tokens["paths-only"])
    code, _, err = await run_kubectl(["--kubeconfig", str(agg.tmp / "paths-only.kubeconfig"), "get", "--raw",
                                      scope_prefix("_all") + "/api/v1/pods"], agg.cache, ok=False)
    assert code != 0 and "Forbidden" in err and 'cannot list resource "pods"' in err, err


async def test_a_namespace_grant_sees_only_that_namespace(agg: Agg) -> None:
    _, out, _ = await agg.kubectl("team-a", "get", "pods", "-A")
    assert agg.pods(out) == {(agg.team_a, c, f"p-{c}") for c in CLUSTERS}
    _, out, _ = await agg.kubectl("team-a", "get", "pods", "-n", agg.team_a, "-o", "name",
                                  context="multicluster-cluster1")
    assert out.split() == ["pod/p-cluster1"]
    _, out, _ = await agg.kubectl("team-a", "get", "pod", "p-cluster2", "-n", agg.team_a, "-o", "name")
    assert out.split() == ["pod/p-cluster2"]
    for args in (("get", "pods", "-n", agg.team_b), ("get", "pod", "p-cluster1", "-n", agg.team_b)):
        code, _, err = await agg.kubectl("team-a", *args, ok=False)
        assert code != 0 and "Forbidden" in err and agg.team_b in err, err
    # Paging through a filtered list stays exact.
    _, out, _ = await agg.kubectl("team-a", "get", "pods", "-A", "--chunk-size=1")
    assert agg.pods(out) == {(agg.team_a, c, f"p-{c}") for c in CLUSTERS}


async def test_a_cluster_grant_in_one_namespace(agg: Agg) -> None:
    _, out, _ = await agg.kubectl("team-a-cluster1", "get", "pods", "-A")
    assert agg.pods(out) == {(agg.team_a, "cluster1", "p-cluster1")}
    code, _, err = await agg.kubectl("team-a-cluster1", "get", "pods", "-n", agg.team_a,
                                     context="multicluster-cluster3", ok=False)
    assert code != 0 and "Forbidden" in err and "member cluster cluster3" in err, err


async def test_a_cluster_grant_sees_only_that_cluster(agg: Agg) -> None:
    _, out, _ = await agg.kubectl("cluster2", "get", "pods", "-A")
    assert agg.pods(out) == {(ns, "cluster2", "p-cluster2") for ns in (agg.team_a, agg.team_b)}
    code, _, err = await agg.kubectl("cluster2", "get", "pods", "-A", context="multicluster-cluster1", ok=False)
    assert code != 0 and "Forbidden" in err and "member cluster cluster1" in err, err
    code, _, err = await agg.kubectl("cluster2", "get", "pod", "p-cluster1", "-n", agg.team_a, ok=False)
    assert code != 0 and "NotFound" in err, err


def _client(agg: Agg, cert: tuple[Path, Path] | None = None) -> aiohttp.ClientSession:
    ctx = ssl.create_default_context(cadata=agg.daemon._serving.ca_pem.decode())  # type: ignore[union-attr]
    ctx.check_hostname = False
    if cert is not None:
        ctx.load_cert_chain(*cert)
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx))


async def test_the_daemons_port_wants_a_proxy_certificate_or_a_valid_token(agg: Agg) -> None:
    pods = agg.url + scope_prefix("_all") + "/api/v1/pods"
    async with _client(agg) as http:
        for headers in ({}, {"X-Remote-User": "system:admin", "X-Remote-Group": "system:masters"},
                        {"Authorization": "Bearer not-a-token"}, {"Authorization": f"Bearer {agg.tokens['nobody']}x"}):
            async with http.get(pods, headers=headers) as resp:
                body = await resp.json()
                assert resp.status == 401 and body["kind"] == "Status" and body["reason"] == "Unauthorized", body
            async with http.get(agg.url + "/v1/resources?gvr=pods", headers=headers) as resp:
                assert resp.status == 401
        # A user's own token (TokenRequest API), checked with a TokenReview: the same filter as through the master.
        async with http.get(pods, headers={"Authorization": f"Bearer {agg.tokens['team-a']}"}) as resp:
            assert resp.status == 200
            items = (await resp.json())["items"]
        assert {i["metadata"]["namespace"] for i in items} == {agg.team_a}
        # A watch is limited the same way (checked with the verb watch).
        async with http.get(pods, params={"watch": "true", "timeoutSeconds": "1"},
                            headers={"Authorization": f"Bearer {agg.tokens['team-a']}"}) as resp:
            assert resp.status == 200
            events = [orjson.loads(line) for line in (await resp.read()).splitlines()]
        assert events and {e["object"]["metadata"]["namespace"] for e in events} == {agg.team_a}
        async with http.get(agg.url + "/v1/resources", params={"gvr": "pods", "limit": "500"},
                            headers={"Authorization": f"Bearer {agg.tokens['cluster2']}"}) as resp:
            assert resp.status == 200
            clusters = {i["cluster"] for i in (await resp.json())["items"]}
        assert clusters == {"cluster2"}
        async with http.get(pods, headers={"Authorization": f"Bearer {agg.tokens['paths-only']}"}) as resp:
            assert resp.status == 403 and (await resp.json())["reason"] == "Forbidden"
        # Outside the object routes: the member list needs `list` on clusters, the metrics the daemon's token.
        for user, status in (("team-a", 200), ("nobody", 403)):
            async with http.get(agg.url + "/v1/clusters",
                                headers={"Authorization": f"Bearer {agg.tokens[user]}"}) as resp:
                assert resp.status == status, (user, await resp.text())
        async with http.get(agg.url + "/metrics", headers={"Authorization": f"Bearer {agg.tokens['team-a']}"}) as r:
            assert r.status == 403
        # Watching needs the watch verb, on the Kubernetes paths and for the Server-Sent Events of /v1/resources.
        only = {"Authorization": f"Bearer {agg.tokens['list-only']}"}
        async with http.get(pods, headers=only) as r:
            assert r.status == 200
        for url in (pods + "?watch=true", agg.url + "/v1/resources?gvr=pods&watch=true"):
            async with http.get(url, headers=only) as r:
                assert r.status == 403, (url, await r.text())
        # Membership stays with the daemon's admin token, whoever the master says the user is.
        async with http.delete(agg.url + "/v1/unjoin", params={"cluster": "cluster3"},
                               headers={"Authorization": f"Bearer {agg.tokens['cluster2']}"}) as r:
            assert r.status == 403 and "admin token" in (await r.json())["error"]
        # The static token keeps reading everything.
        async with http.get(pods, headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
            names = {(i["metadata"]["namespace"], i["metadata"]["name"]) for i in (await resp.json())["items"]}
        assert {(agg.team_b, "p-cluster3"), (agg.team_a, "p-cluster1")} <= names
    # The master's own front-proxy certificate makes the headers count; a client certificate of another CA (the
    # harness admin's) does not even get through the handshake.
    pki = agg.harness.pki
    async with _client(agg, (pki / "front-proxy-client.crt", pki / "front-proxy-client.key")) as http:
        async with http.get(pods, headers={"X-Remote-User": "someone", "X-Remote-Group": "system:authenticated"}) as r:
            assert r.status == 403
        async with http.get(pods) as r:
            assert r.status == 401 and "names no user" in (await r.json())["message"]
    async with _client(agg, (pki / "admin.crt", pki / "admin.key")) as http:
        with pytest.raises(aiohttp.ClientError):
            async with http.get(pods, headers={"X-Remote-User": "system:admin"}):
                pass
    assert PREFIX in pods


async def test_watches_through_the_master_are_filtered_too(agg: Agg) -> None:
    """`kubectl get pods -A -w` through the master: the admin sees every change, a user allowed only team-a
    only team-a's. Changes of one cluster arrive in their order, so when team-a's new Pod (created second) shows,
    team-b's (created first) would already have shown."""
    from tests.kube.test_watch import Kubectl, words

    procs = {}
    for user in ("admin", "team-a"):
        procs[user] = Kubectl(await asyncio.create_subprocess_exec(
            KUBECTL, "--kubeconfig", str(agg.tmp / f"{user}.via-master"), "--context", "multicluster", "get", "pods",
            "-A", "-w", "--output-watch-events", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "KUBECACHEDIR": str(agg.cache), "NO_PROXY": "127.0.0.1,localhost"}))
    try:
        for k in procs.values():
            await k.until(lambda line: words(line)[1:4] == [agg.team_a, "cluster3", "p-cluster3"])
        tag = uuid.uuid4().hex[:6]
        for ns in (agg.team_b, agg.team_a):
            await asyncio.to_thread(agg.harness.request, "cluster2", "POST", f"/api/v1/namespaces/{ns}/pods", {
                "metadata": {"name": f"w-{tag}"}, "spec": {"containers": [{"name": "c", "image": "r.example/a:1"}]}})
        line = await procs["team-a"].until(lambda line: f"w-{tag}" in line)
        assert words(line)[:4] == ["ADDED", agg.team_a, "cluster2", f"w-{tag}"]
        assert not any(agg.team_b in seen for seen in procs["team-a"].lines), procs["team-a"].lines
        for ns in (agg.team_b, agg.team_a):
            await procs["admin"].until(lambda line, ns=ns: words(line)[:4] == ["ADDED", ns, "cluster2", f"w-{tag}"])
    finally:
        for k in procs.values():
            with contextlib.suppress(ProcessLookupError):
                k.proc.kill()
            await k.proc.wait()


async def test_a_users_server_sent_events_watch_is_filtered_by_the_masters_rbac(agg: Agg) -> None:
    """/v1/resources?watch=true with a user's own token: the initial state and every later change are those the
    user may watch, as on the Kubernetes watch (team-a sees team-a only; cluster2's user cluster2 only). In each
    cluster changes arrive in order, so when the change created second shows, one created first would have too."""
    from tests.api.sse_client import Reader, names

    tag = uuid.uuid4().hex[:6]
    async with _client(agg) as http:
        readers = {}
        for user in ("team-a", "cluster2"):
            resp = await http.get(agg.url + "/v1/resources", params={"gvr": "pods", "watch": "true"},
                                  headers={"Authorization": f"Bearer {agg.tokens[user]}"},
                                  timeout=aiohttp.ClientTimeout(total=None, sock_read=120))
            assert resp.status == 200, await resp.text()
            readers[user] = Reader(resp)
        initial = {user: [r.json() for r in (await reader.until("SYNCED"))[:-1]] for user, reader in readers.items()}
        assert {(i["object"]["metadata"]["namespace"], i["cluster"]) for i in initial["team-a"]} == \
            {(agg.team_a, c) for c in CLUSTERS}
        assert {i["cluster"] for i in initial["cluster2"]} == {"cluster2"}
        for cluster in ("cluster1", "cluster2"):
            for ns in (agg.team_b, agg.team_a):
                pod = {"metadata": {"name": f"s-{tag}"},
                       "spec": {"containers": [{"name": "c", "image": "r.example/a:1"}]}}
                await asyncio.to_thread(agg.harness.request, cluster, "POST", f"/api/v1/namespaces/{ns}/pods", pod)
        team_a: list[tuple[str, str, str]] = []
        while ("ADDED", "cluster2", f"s-{tag}") not in team_a or ("ADDED", "cluster1", f"s-{tag}") not in team_a:
            rec = await asyncio.wait_for(readers["team-a"].next(), 120)
            assert rec is not None and rec.event != "error", rec
            assert rec.json()["object"]["metadata"]["namespace"] == agg.team_a, rec.data[:300]
            team_a += names([rec])
        seen2: list[tuple[str, str, str]] = []
        while len([n for n in seen2 if n[2] == f"s-{tag}"]) < 2:
            rec = await asyncio.wait_for(readers["cluster2"].next(), 120)
            assert rec is not None and rec.event != "error", rec
            seen2 += names([rec])
        assert {c for _, c, _ in seen2} == {"cluster2"}, seen2
        for reader in readers.values():
            reader.resp.close()
