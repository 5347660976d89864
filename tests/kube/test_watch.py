"""watch on the Kubernetes-compatible API, driven by the real kubectl and kubernetes_asyncio against a daemon that
syncs the real harness clusters: creations, updates and deletions from every cluster as they happen, resuming from
a saved resourceVersion across a daemon restart with nothing missed or repeated, 410 Expired for a position the
log no longer holds, selector transitions, bookmarks, watch-list, timeouts, a slow watcher dropped while others go
on, and an unjoined cluster's objects leaving as DELETED."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest

from multicluster.api.kube import watch as watch_module
from multicluster.api.kube.paths import CLUSTER_ANNOTATION, scope_prefix
from multicluster.feed import positions
from multicluster.store.engine import SQLStore
from tests.kube.conftest import KUBECTL, TOKEN, Env

pytestmark = pytest.mark.integration


class Kubectl:
    """A long-running kubectl (get -w) whose stdout is read line by line."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []

    async def until(self, found: Callable[[str], bool], timeout: float = 60) -> str:
        async def read() -> str:
            assert self.proc.stdout is not None
            while True:
                raw = await self.proc.stdout.readline()
                if not raw:
                    err = (await self.proc.stderr.read()).decode() if self.proc.stderr else ""
                    raise AssertionError(f"kubectl ended; stdout so far: {self.lines}; stderr: {err}")
                line = raw.decode().rstrip("\n")
                self.lines.append(line)
                if found(line):
                    return line

        return await asyncio.wait_for(read(), timeout)


@contextlib.asynccontextmanager
async def kubectl_watch(env: Env, *args: str) -> AsyncIterator[Kubectl]:
    full = ["--kubeconfig", str(env.kubeconfig), "--context", "multicluster", *args]
    proc = await asyncio.create_subprocess_exec(
        KUBECTL, *full, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "KUBECACHEDIR": str(env.cache), "NO_PROXY": "127.0.0.1,localhost"})
    try:
        yield Kubectl(proc)
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


def words(line: str) -> list[str]:
    return line.split()


def pod(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {}},
            "spec": {"containers": [{"name": "main", "image": "registry.example/w:1"}]}}


async def call(env: Env, cluster: str, method: str, path: str, body: Any = None) -> Any:
    return await asyncio.to_thread(env.harness.request, cluster, method, path, body)


async def patch(env: Env, cluster: str, path: str, body: dict[str, Any]) -> None:
    await asyncio.to_thread(env.harness.request, cluster, "PATCH", path, body, "application/merge-patch+json")


async def patch_labels(env: Env, cluster: str, path: str, labels: dict[str, Any]) -> None:
    await patch(env, cluster, path, {"metadata": {"labels": labels}})


class Watch:
    """A raw HTTP watch of the daemon: the events as parsed JSON, read as they arrive."""

    def __init__(self, env: Env, path: str, params: dict[str, str], headers: dict[str, str] | None = None) -> None:
        self.env, self.path, self.params, self.req_headers = env, path, params, headers or {}
        self.events: list[dict[str, Any]] = []
        self.status = 0
        self.headers: Any = None

    @contextlib.asynccontextmanager
    async def open(self) -> AsyncIterator[Watch]:
        async with self.env.http() as http, http.get(self.env.url + self.path,
                                                     params={"watch": "true", **self.params},
                                                     headers=self.req_headers) as r:
            self.status, self.headers, self._resp = r.status, r.headers, r
            yield self

    async def next(self, timeout: float = 60) -> dict[str, Any] | None:
        line = await asyncio.wait_for(self._resp.content.readline(), timeout)
        if not line:
            return None
        event: dict[str, Any] = orjson.loads(line)
        self.events.append(event)
        return event

    async def until(self, found: Callable[[dict[str, Any]], bool], timeout: float = 60) -> dict[str, Any]:
        async def read() -> dict[str, Any]:
            while True:
                event = await self.next(timeout)
                assert event is not None, f"the stream ended; events: {self.events}"
                if found(event):
                    return event

        return await asyncio.wait_for(read(), timeout)

    async def rest(self) -> list[dict[str, Any]]:
        """Every event until the stream ends."""
        out = []
        while (event := await self.next()) is not None:
            out.append(event)
        return out


def is_event(kind: str, name: str, cluster: str | None = None) -> Callable[[dict[str, Any]], bool]:
    def check(e: dict[str, Any]) -> bool:
        md = e["object"].get("metadata", {})
        return e["type"] == kind and md.get("name") == name and (
            cluster is None or md.get("annotations", {}).get(CLUSTER_ANNOTATION) == cluster)
    return check


def pods_path(env: Env, scope: str = "_all") -> str:
    return scope_prefix(scope) + f"/api/v1/namespaces/{env.namespace}/pods"


async def test_kubectl_get_pods_watch_shows_every_clusters_changes(env: Env) -> None:
    ns = env.namespace
    new, tag = f"w-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex[:6]
    async with kubectl_watch(env, "get", "pods", "-A", "-w", "--output-watch-events") as k:
        # The list first (kubectl lists, then watches from the list's resourceVersion), CLUSTER after NAMESPACE.
        first = await k.until(lambda line: words(line)[1:4] == [ns, "cluster3", "cache-1"])
        assert words(first)[:4] == ["ADDED", ns, "cluster3", "cache-1"], k.lines
        assert words(k.lines[0])[:4] == ["EVENT", "NAMESPACE", "CLUSTER", "NAME"], k.lines
        # Created a few seconds into the watch: its AGE counts from the event, not from the watch's start (which
        # would make it negative: "<invalid>").
        await asyncio.sleep(3)
        await call(env, "cluster2", "POST", f"/api/v1/namespaces/{ns}/pods", pod(new))
        line = await k.until(lambda line: new in line)
        assert words(line)[:4] == ["ADDED", ns, "cluster2", new]
        assert "<invalid>" not in line and words(line)[-1].endswith("s"), line
        await patch_labels(env, "cluster1", f"/api/v1/namespaces/{ns}/pods/db-1", {"tag": tag})
        line = await k.until(lambda line: "db-1" in line and "cluster1" in line and "MODIFIED" in line)
        assert words(line)[:4] == ["MODIFIED", ns, "cluster1", "db-1"]
        await call(env, "cluster2", "DELETE", f"/api/v1/namespaces/{ns}/pods/{new}?gracePeriodSeconds=0")
        await k.until(lambda line: words(line)[:4] == ["DELETED", ns, "cluster2", new])
    # -o json -w: each event's object with its cluster annotation, and our resourceVersion.
    async with kubectl_watch(env, "get", "pods", "-n", ns, "-o", "json", "-w") as k:
        await k.until(lambda line: line == "}")  # the list's first object, pretty-printed
        again = f"j-{uuid.uuid4().hex[:6]}"
        k.lines.clear()
        await call(env, "cluster3", "POST", f"/api/v1/namespaces/{ns}/pods", pod(again))
        while True:
            await k.until(lambda line: line == "}")
            obj = orjson.loads("\n".join(k.lines))
            k.lines.clear()
            if obj["metadata"]["name"] == again:
                break
        assert obj["metadata"]["annotations"][CLUSTER_ANNOTATION] == "cluster3"
        assert positions.decode(obj["metadata"]["resourceVersion"])
        await call(env, "cluster3", "DELETE", f"/api/v1/namespaces/{ns}/pods/{again}?gracePeriodSeconds=0")


async def test_kubernetes_asyncio_resumes_after_a_daemon_restart(env: Env) -> None:
    from kubernetes_asyncio import client, config, watch
    from kubernetes_asyncio.client.exceptions import ApiException

    ns = env.namespace
    kept, gone, fresh = f"kept-{uuid.uuid4().hex[:6]}", f"gone-{uuid.uuid4().hex[:6]}", f"new-{uuid.uuid4().hex[:6]}"
    api_client = await config.new_client_from_config(config_file=str(env.kubeconfig), context="multicluster")
    async with api_client:
        core = client.CoreV1Api(api_client)
        listed = await core.list_namespaced_config_map(ns)
        await call(env, "cluster1", "POST", f"/api/v1/namespaces/{ns}/configmaps",
                   {"metadata": {"name": kept}, "data": {"v": "1"}})
        await call(env, "cluster3", "POST", f"/api/v1/namespaces/{ns}/configmaps",
                   {"metadata": {"name": gone}, "data": {"v": "1"}})
        w = watch.Watch()
        seen: list[tuple[str, str]] = []
        async for event in w.stream(core.list_namespaced_config_map, ns,
                                    resource_version=listed.metadata.resource_version, timeout_seconds=120):
            seen.append((event["type"], event["object"].metadata.name))
            if len(seen) == 2:
                break
        await w.close()
        assert sorted(seen) == sorted([("ADDED", kept), ("ADDED", gone)])
        saved = w.resource_version
        assert saved is not None

        async def while_down() -> None:
            await call(env, "cluster2", "POST", f"/api/v1/namespaces/{ns}/configmaps",
                       {"metadata": {"name": fresh}, "data": {"v": "1"}})
            await patch(env, "cluster1", f"/api/v1/namespaces/{ns}/configmaps/{kept}", {"data": {"v": "2"}})
            await call(env, "cluster3", "DELETE", f"/api/v1/namespaces/{ns}/configmaps/{gone}")

        await env.restart(while_down)
        # Resume from the saved position: exactly what changed while the daemon was down, each once. The stream
        # ends at timeoutSeconds, so what it holds is everything it sent.
        events = [(e["type"], e["object"].metadata.name, e["object"].metadata.annotations[CLUSTER_ANNOTATION])
                  async for e in watch.Watch().stream(core.list_namespaced_config_map, ns, resource_version=saved,
                                                      timeout_seconds=5)]
        assert sorted(events) == sorted([("ADDED", fresh, "cluster2"), ("MODIFIED", kept, "cluster1"),
                                         ("DELETED", gone, "cluster3")]), events

        # A position the log no longer holds: 410 Expired, as from a kube-apiserver; the client lists again.
        store = env.daemon.store
        assert isinstance(store, SQLStore)
        retention, store.retention = store.retention, 1
        try:
            for i in range(3):
                await patch(env, "cluster1", f"/api/v1/namespaces/{ns}/configmaps/{kept}", {"data": {"v": f"x{i}"}})
            await wait_for(lambda: _pruned_past(env, "cluster1", positions.decode(saved).get("cluster1", 0)))
        finally:
            store.retention = retention
        with pytest.raises(ApiException) as err:
            async for _ in watch.Watch().stream(core.list_namespaced_config_map, ns, resource_version=saved,
                                                timeout_seconds=5):
                pass
        assert err.value.status == 410 and "Expired" in str(err.value.reason)
        relisted = await core.list_namespaced_config_map(ns)
        assert kept in {c.metadata.name for c in relisted.items}
        await call(env, "cluster1", "DELETE", f"/api/v1/namespaces/{ns}/configmaps/{kept}")
        await call(env, "cluster2", "DELETE", f"/api/v1/namespaces/{ns}/configmaps/{fresh}")


async def _pruned_past(env: Env, cluster: str, seq: int) -> bool:
    p = (await env.daemon.store.log_positions()).get(cluster)
    return p is not None and p.floor > seq


async def wait_for(check: Callable[[], Any], timeout: float = 60) -> None:
    async def loop() -> None:
        while not await check():
            await asyncio.sleep(0.1)

    await asyncio.wait_for(loop(), timeout)


async def test_selectors_bookmarks_watch_list_and_timeouts(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    ns = env.namespace
    monkeypatch.setattr(watch_module, "BOOKMARK_SECONDS", 0.3)
    # watch-list: the current objects as ADDED, then a bookmark that says they are complete.
    async with Watch(env, pods_path(env), {"sendInitialEvents": "true", "resourceVersionMatch": "NotOlderThan",
                                          "allowWatchBookmarks": "true", "labelSelector": "app=web"}).open() as w:
        end = await w.until(lambda e: e["type"] == "BOOKMARK")
        assert end["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
        initial = sorted((e["object"]["metadata"]["annotations"][CLUSTER_ANNOTATION], e["object"]["metadata"]["name"])
                         for e in w.events[:-1])
        assert {e["type"] for e in w.events[:-1]} == {"ADDED"}
        assert initial == [("cluster1", "web-1"), ("cluster1", "web-2"), ("cluster2", "web-1")]
        # An object that stops matching leaves as DELETED, and comes back as ADDED.
        path = f"/api/v1/namespaces/{ns}/pods/web-2"
        await patch_labels(env, "cluster1", path, {"app": "other"})
        await w.until(is_event("DELETED", "web-2", "cluster1"))
        await patch_labels(env, "cluster1", path, {"app": "web"})
        await w.until(is_event("ADDED", "web-2", "cluster1"))
        # Bookmarks carry the current position, later than any event's.
        mark = await w.until(lambda e: e["type"] == "BOOKMARK")
        last = positions.decode(w.events[-2]["object"]["metadata"]["resourceVersion"])
        now = positions.decode(mark["object"]["metadata"]["resourceVersion"])
        assert all(now.get(c, 0) >= seq for c, seq in last.items())
    # timeoutSeconds ends the stream.
    async with Watch(env, pods_path(env, "cluster2"), {"timeoutSeconds": "1"}).open() as w:
        events = await w.rest()
        direct = await env.direct("cluster2", "get", "pods", "-n", ns, "-o", "name")
        assert {e["object"]["metadata"]["name"] for e in events} == {n.split("/")[1] for n in direct.split()}
    # Kubernetes' rules for the watch-list parameters.
    async with Watch(env, pods_path(env), {"sendInitialEvents": "true"}).open() as w:
        assert w.status == 400
    # A resourceVersion this API never issued: 410 Expired, so the client lists again.
    async with Watch(env, pods_path(env), {"resourceVersion": "12345"}).open() as w:
        event = await w.next()
        assert event is not None and event["type"] == "ERROR"
        assert (event["object"]["code"], event["object"]["reason"]) == (410, "Expired")
        assert await w.next() is None
    # The legacy /watch/ path prefix.
    async with Watch(env, scope_prefix("cluster3") + f"/api/v1/watch/namespaces/{ns}/pods",
                     {"timeoutSeconds": "1"}).open() as w:
        direct = await env.direct("cluster3", "get", "pods", "-n", ns, "-o", "name")
        assert sorted(e["object"]["metadata"]["name"] for e in await w.rest()) == \
            sorted(n.split("/")[1] for n in direct.split())


async def test_watchers_of_one_change_each_get_their_own_format_and_resource_version(env: Env) -> None:
    """A live change is encoded once per format and shared: each watcher must still get its own format (JSON, a
    Table with or without the object), its own event type (a selector it starts to match: ADDED) and a
    resourceVersion of its own scope."""
    ns, tag = env.namespace, uuid.uuid4().hex[:6]
    table = {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}
    path = f"/api/v1/namespaces/{ns}/pods/db-1"
    specs = [("json", pods_path(env), {}, {}), ("table", pods_path(env), {}, table),
             ("table-none", pods_path(env), {"includeObject": "None"}, table),
             ("selected", pods_path(env), {"labelSelector": f"tag={tag}"}, {}),
             ("cluster1", pods_path(env, "cluster1"), {}, {})]
    async with contextlib.AsyncExitStack() as stack:
        got: dict[str, Watch] = {}
        for name, p, params, headers in specs:
            w = Watch(env, p, {"resourceVersion": await _current_rv(env, p), **params}, headers)
            got[name] = await stack.enter_async_context(w.open())
        await wait_for(lambda: _watchers_at_least(env, len(specs)))
        await patch_labels(env, "cluster1", path, {"tag": tag})

        def db1(e: dict[str, Any]) -> bool:
            obj = e["object"]
            if obj.get("kind") == "Table":
                row = obj["rows"][0]
                return bool(row["cells"][0] == "cluster1" and "db-1" in row["cells"])
            return bool(obj["metadata"]["name"] == "db-1"
                        and obj["metadata"]["annotations"][CLUSTER_ANNOTATION] == "cluster1")

        events = {name: await w.until(db1) for name, w in got.items()}
    assert events["json"]["type"] == "MODIFIED" and events["json"]["object"]["kind"] == "Pod"
    assert events["json"]["object"]["metadata"]["labels"]["tag"] == tag
    assert events["selected"]["type"] == "ADDED"
    rows = {name: events[name]["object"]["rows"][0] for name in ("table", "table-none")}
    assert rows["table"]["object"]["kind"] == "PartialObjectMetadata" and "object" not in rows["table-none"]
    tokens = {name: e["object"]["metadata"]["resourceVersion"] for name, e in events.items()}
    assert rows["table"]["object"]["metadata"]["resourceVersion"] == tokens["table"]
    assert set(positions.decode(tokens["cluster1"])) == {"cluster1"}
    assert set(positions.decode(tokens["json"])) == {"cluster1", "cluster2", "cluster3"}


async def _current_rv(env: Env, path: str) -> str:
    async with env.http() as http, http.get(env.url + path) as r:
        assert r.status == 200, await r.text()
        return str((await r.json())["metadata"]["resourceVersion"])


async def test_a_slow_watcher_is_dropped_while_others_go_on(env: Env) -> None:
    ns = env.namespace
    hub = env.daemon.hub
    limit, hub.queue_limit = hub.queue_limit, 4
    slow_before = hub.closed_slow
    big = "x" * 200_000
    names = [f"big-{i}-{uuid.uuid4().hex[:4]}" for i in range(30)]
    path = scope_prefix("_all") + f"/api/v1/namespaces/{ns}/configmaps"
    # The slow watcher: a socket that asks and then reads nothing, with a tiny receive buffer.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    ctx = ssl.create_default_context(cafile=str(env.harness.pki / "ca.crt"))
    port = int(env.url.rsplit(":", 1)[1])
    try:
        async with Watch(env, path, {"resourceVersion": "0"}).open() as fast:
            await fast.until(lambda e: e["object"]["metadata"]["name"] == "settings-cluster1")
            sock.connect(("127.0.0.1", port))
            reader, writer = await asyncio.open_connection(sock=sock, ssl=ctx, server_hostname="127.0.0.1")
            writer.write(f"GET {path}?watch=true HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
                         "\r\n".encode())
            await writer.drain()
            await wait_for(lambda: _watchers_at_least(env, 2))
            for name in names:
                await call(env, "cluster1", "POST", f"/api/v1/namespaces/{ns}/configmaps",
                           {"metadata": {"name": name}, "data": {"big": big}})
            for name in names:
                await fast.until(is_event("ADDED", name, "cluster1"))
            await wait_for(lambda: _async(hub.closed_slow > slow_before))
            # The slow one's connection was closed: what it reads ends.
            await asyncio.wait_for(_read_to_end(reader), 60)
            writer.close()
    finally:
        hub.queue_limit = limit
        sock.close()
        for name in names:
            with contextlib.suppress(Exception):
                await call(env, "cluster1", "DELETE", f"/api/v1/namespaces/{ns}/configmaps/{name}")


async def _async(value: bool) -> bool:
    return value


async def _watchers_at_least(env: Env, n: int) -> bool:
    return env.daemon.hub.watchers >= n


async def _read_to_end(reader: asyncio.StreamReader) -> None:
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        while await reader.read(1 << 20):
            pass


async def test_an_unjoined_clusters_objects_leave_as_deleted(env: Env) -> None:
    cluster = next(c for c in env.daemon.config.clusters if c.name == "cluster3")
    async with Watch(env, pods_path(env), {}).open() as w:
        await w.until(is_event("ADDED", "cache-1", "cluster3"))
        await env.daemon.registry.remove("cluster3")
        await w.until(is_event("DELETED", "cache-1", "cluster3"))
        env.daemon.registry.add(cluster)  # it comes back: its objects are ADDED again
        await w.until(is_event("ADDED", "cache-1", "cluster3"))
    # Discovery says every type can be watched.
    _, out, _ = await env.kubectl("api-resources", "-o", "wide")
    pods_row = next(line for line in out.splitlines() if line.startswith("pods "))
    assert "watch" in pods_row
