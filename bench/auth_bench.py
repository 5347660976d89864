"""Authorization overhead (issue 19): the cost per request of a Kubernetes identity (TokenReview + the
SubjectAccessReviews of api.auth.access) beside the same request with the daemon's static token, which needs no
review at all.

3 real kube-apiservers get `--pods` Pods each (the query benchmark's shape, spread over its ns-N namespaces). An
in-process daemon (SQLite, syncing Pods) runs with `server.auth: kubernetes`. Two ServiceAccounts of the master:
`wide` has the ClusterRole view and every member cluster everywhere (a list across namespaces costs the type review
plus one cluster review per member); `narrow` has view and the member clusters only in `--granted` namespaces
through RoleBindings (a list across namespaces then also costs a review per namespace the store holds Pods in,
and per granted namespace and member). `--requests` rounds send one request of each case, interleaved (load from
other work on the machine falls on every case alike), and the table reports each case's p50 and p99 and their
difference from the baseline:

- static: the static token (the baseline, no review);
- cached: a user's token whose TokenReview and SubjectAccessReviews are in the daemon's caches;
- uncached: the same requests by another ServiceAccount with the same RBAC whose cached answers are dropped
  before each request (its TokenReview and every SubjectAccessReview go to the master).

Two request shapes: one namespace (`-n ns-0`, limit 500) and all namespaces (`-A`, limit 500).

    python -m bench.auth_bench [--pods 2000] [--requests 200] [--granted 3]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import operator
import shutil
import ssl
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import machine, pct, table
from bench.query_bench import create_pods
from multicluster.api.auth.access import Check
from multicluster.api.auth.identity import User
from multicluster.api.kube.paths import GROUP, scope_prefix
from multicluster.config import ServerConfig, StoreConfig, load_config
from multicluster.daemon import Daemon
from multicluster.testing.harness import Harness, free_port, progress

TOKEN = "auth-bench-static-token"
NAMESPACE = "auth-bench"
RO = ["get", "list", "watch"]


def _post(h: Harness, path: str, body: dict[str, Any]) -> Any:
    return h.request("cluster1", "POST", path, body)


def _users(h: Harness, granted: int) -> dict[str, str]:
    """ServiceAccounts `wide` and `narrow` on the master with their RBAC; their tokens (TokenRequest API)."""
    ns = NAMESPACE
    _post(h, "/api/v1/namespaces", {"metadata": {"name": ns}})
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    _post(h, f"{rbac}/clusterroles", {"metadata": {"name": "auth-bench-clusters"},
                                      "rules": [{"apiGroups": [GROUP], "resources": ["clusters"], "verbs": RO}]})
    for _ in range(300):  # view is aggregated by the controller-manager
        if h.request("cluster1", "GET", f"{rbac}/clusterroles/view").get("rules"):
            break
        time.sleep(0.2)

    def bind(name: str, role: str, sa: str, namespace: str = "") -> None:
        path = f"{rbac}/namespaces/{namespace}/rolebindings" if namespace else f"{rbac}/clusterrolebindings"
        _post(h, path, {"metadata": {"name": name}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io",
                                                                  "kind": "ClusterRole", "name": role},
                        "subjects": [{"kind": "ServiceAccount", "namespace": ns, "name": sa}]})

    tokens = {}
    for sa in ("wide", "narrow", "wide-cold", "narrow-cold"):
        _post(h, f"/api/v1/namespaces/{ns}/serviceaccounts", {"metadata": {"name": sa}})
        tokens[sa] = _post(h, f"/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token",
                           {"spec": {"expirationSeconds": 7200}})["status"]["token"]
    for sa in ("wide", "wide-cold"):
        bind(f"auth-bench-{sa}-view", "view", sa)
        bind(f"auth-bench-{sa}-clusters", "auth-bench-clusters", sa)
    for sa in ("narrow", "narrow-cold"):
        for i in range(granted):
            bind(f"auth-bench-{sa}-view", "view", sa, f"ns-{i}")
            bind(f"auth-bench-{sa}-clusters", "auth-bench-clusters", sa, f"ns-{i}")
    return tokens


def _of_user(name: str, key: tuple[User, Check]) -> bool:
    return key[0].name == name


Case = tuple[str, str, str, bool]  # (credential label, ServiceAccount, token, forget its answers first)


async def _measure(d: Daemon, url: str, ca: Path, cases: list[Case], path: str, n: int) -> list[list[float]]:
    """`n` rounds of one request per case, the cases interleaved so that the machine's load (other work on the
    same two cores) falls on every case alike; milliseconds per request, per case."""
    auth = d.authenticators
    ctx = ssl.create_default_context(cafile=str(ca))
    times: list[list[float]] = [[] for _ in cases]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as http:
        for i in range(n + 1):  # round 0 warms up (connections, and the caches of the cached cases)
            for k, (_, sa, token, uncached) in enumerate(cases):
                if uncached and auth is not None and auth.tokens is not None and auth.authorizer is not None:
                    auth.tokens.cache.forget(functools.partial(operator.eq, hashlib.sha256(token.encode()).digest()))
                    auth.authorizer.cache.forget(functools.partial(_of_user, f"system:serviceaccount:{NAMESPACE}:{sa}"))
                t0 = time.perf_counter()
                async with http.get(url + path, headers={"Authorization": f"Bearer {token}"}) as r:
                    body = await r.read()
                    assert r.status == 200, body[:300]
                if i:
                    times[k].append((time.perf_counter() - t0) * 1000)
    return times


async def run(pods: int, requests: int, granted: int) -> str:
    work = Path(tempfile.mkdtemp(prefix="auth-bench-"))
    h = Harness(work / "harness", clusters=3)
    h.start()
    try:
        await create_pods(h, pods)
        tokens = await asyncio.to_thread(_users, h, granted)
        tls = work / "tls"
        tls.mkdir()
        shutil.copy(h.pki / "server.crt", tls / "tls.crt")
        shutil.copy(h.pki / "server.key", tls / "tls.key")
        port = free_port()
        cfg = load_config(h.write_config())
        cfg = replace(cfg, include=("pods",), store=StoreConfig(type="sqlite", path=work / "store.db"),
                      server=ServerConfig(port=port, token=TOKEN, auth="kubernetes", cert_dir=tls))
        d = Daemon(cfg)
        await d.start(controller=False)
        try:
            assert await d.wait_ready(600)
            if d.writer is not None:
                await d.writer.drain(120)
            url = f"https://127.0.0.1:{port}"
            progress("daemon ready; measuring")
            rows = []
            shapes = [("-n ns-0", scope_prefix("_all") + "/api/v1/namespaces/ns-0/pods?limit=500"),
                      ("-A", scope_prefix("_all") + "/api/v1/pods?limit=500")]
            # Uncached cases use their own ServiceAccounts (same RBAC), so forgetting their answers leaves the
            # cached cases' answers in place.
            cases: list[Case] = [("static token", "-", TOKEN, False)] + [
                ("uncached" if cold else "cached", user + ("-cold" if cold else ""), tokens[user + ("-cold" if cold
                                                                                                   else "")], cold)
                for user in ("wide", "narrow") for cold in (False, True)]
            for shape, path in shapes:
                results = await _measure(d, url, h.pki / "ca.crt", cases, path, requests)
                b50, b99 = pct(results[0], 50), pct(results[0], 99)
                for (credential, sa, _, _), times in zip(cases, results, strict=True):
                    user = sa.removesuffix("-cold")
                    p50, p99 = pct(times, 50), pct(times, 99)
                    same = credential == "static token"
                    rows.append([shape, credential, user, p50, p99, "-" if same else p50 - b50,
                                 "-" if same else p99 - b99])
        finally:
            await d.shutdown(5)
    finally:
        h.stop()
        shutil.rmtree(work, ignore_errors=True)
    head = (f"### Authorization overhead per request ({pods:,} Pods x 3 clusters, {requests} sequential requests "
            f"per case, interleaved, limit=500; narrow = {granted} namespaces)\n\nMachine: {machine()}.\n\n")
    return head + table(["request", "credential", "user", "p50 ms", "p99 ms", "p50 overhead ms",
                         "p99 overhead ms"], rows)


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(prog="python -m bench.auth_bench")
    ap.add_argument("--pods", type=int, default=2000, help="Pods per cluster")
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--granted", type=int, default=3, help="namespaces the narrow user may read")
    args = ap.parse_args(argv)
    report = asyncio.run(run(args.pods, args.requests, args.granted))
    print(report)
    return report


if __name__ == "__main__":
    main()
