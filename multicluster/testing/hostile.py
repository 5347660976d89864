"""A member cluster that misbehaves on purpose, for tests of what a broken or hostile API server can do to us.

It speaks just enough of the Kubernetes API for the daemon to treat it as a cluster (`/version`, `/readyz`,
discovery of one resource type, list and watch of ConfigMaps) and then breaks the protocol in the way the chosen
scenario says. It runs in a thread of its own with its own event loop, so it can serve a daemon running in the
test's loop or in another process. Real member clusters are the harness's kube-apiservers; this server is only
the attacker.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import orjson
import yaml
from aiohttp import web

from multicluster.testing.harness import free_port

TOKEN = "hostile-member-token"  # a test server's credential, not a secret

SCENARIOS = ("bad-json", "non-object", "bad-rv", "error-event", "forbidden-type",
             # Size and time attacks. Each starts only once the server is armed (at once unless `armed=False`):
             # until then the member is well-behaved, so a daemon can get ready and be measured first.
             "endless-line",  # a watch line without a newline, `attack_bytes` long
             "giant-page",  # a list body of `attack_bytes` that never closes its items array
             "giant-object",  # a 6 MiB ConfigMap in the list and another in the watch
             "big-items",  # 10 ConfigMaps of 300 KiB, honouring limit/continue (a page of 500 is 3 MiB)
             "many-types",  # discovery advertises `types` resource types
             "huge-discovery",  # discovery advertises `types` resource types over `groups` group-versions
             "long-names",  # discovery names a group and a resource type 1 MiB long, and types no server allows
             "slow-body",  # a list body that dribbles a byte every 0.2 s and never ends
             "bad-discovery")  # /apis answers a groups list that is a string, /api/v1 resources that are a map
MIB = 1024 * 1024
HOSTILE_GROUP = "hostile.example.com"


def configmap(name: str, rv: str, namespace: str = "default", size: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "resourceVersion": rv, "uid": f"uid-{name}",
                     "creationTimestamp": "2026-01-01T00:00:00Z"},
        "data": {"k": "v" * size},
    }


class HostileServer:
    """`scenario` picks the misbehaviour; `requests` records every path asked for (the attack's evidence)."""

    def __init__(self, scenario: str, *, armed: bool = True, attack_bytes: int = 200 * MIB,
                 types: int = 3000, groups: int = 1000) -> None:
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r}; one of {', '.join(SCENARIOS)}")
        self.scenario = scenario
        self.port = free_port()
        self.requests: list[str] = []
        self.watches = 0
        self.attack_bytes = attack_bytes
        self.types = types
        self.groups = groups
        self.sent = 0  # bytes of attack payload written so far
        self.largest = 0  # the most attack bytes one response got out before the client hung up
        self.armed = threading.Event()
        if armed:
            self.armed.set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kubeconfig(self, path: Path, name: str = "hostile") -> Path:
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": name, "cluster": {"server": self.url}}],
            "users": [{"name": name, "user": {"token": TOKEN}}],
            "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
            "current-context": name,
        }
        path.write_text(yaml.safe_dump(doc))
        path.chmod(0o600)
        return path

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> HostileServer:
        self._thread = threading.Thread(target=self._serve, name=f"hostile-{self.scenario}", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the hostile server did not start")
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is not None and self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._shutdown(self._runner), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    @staticmethod
    async def _shutdown(runner: web.AppRunner) -> None:
        """Stop serving, then end the handlers still sleeping in an attack (so none is destroyed pending)."""
        await runner.cleanup()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        app = web.Application()
        app.router.add_get("/version", self._version)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/api", self._api)
        app.router.add_get("/api/v1", self._api_v1)
        app.router.add_get("/apis", self._apis)
        app.router.add_get(f"/apis/{HOSTILE_GROUP}/v1", self._hostile_group)
        app.router.add_get(f"/apis/{HOSTILE_GROUP}/v1/{{resource}}", self._hostile_type)
        app.router.add_get("/apis/{group}/{version}", self._huge_group)
        app.router.add_get("/api/v1/configmaps", self._configmaps)
        app.router.add_get("/api/v1/secrets", self._secrets)
        app.middlewares.append(self._record)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        loop.run_until_complete(self._runner.setup())
        loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
        self._ready.set()
        loop.run_forever()
        loop.close()

    # ------------------------------------------------------------------ the API it pretends to be

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append(request.path_qs)
        response: web.StreamResponse = await handler(request)
        return response

    async def _version(self, _: web.Request) -> web.Response:
        return web.json_response(
            {"major": "1", "minor": "37", "gitVersion": "v1.37.2-hostile", "platform": "linux/amd64"}
        )

    async def _readyz(self, _: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _api(self, _: web.Request) -> web.Response:
        return web.json_response({"kind": "APIVersions", "versions": ["v1"]})

    async def _api_v1(self, _: web.Request) -> web.Response:
        return web.json_response({
            "kind": "APIResourceList", "groupVersion": "v1",
            "resources": [
                {"name": "configmaps", "singularName": "configmap", "namespaced": True, "kind": "ConfigMap",
                 "verbs": ["get", "list", "watch"], "shortNames": ["cm"]},
                {"name": "secrets", "singularName": "secret", "namespaced": True, "kind": "Secret",
                 "verbs": ["get", "list", "watch"]},
            ],
        })

    async def _apis(self, _: web.Request) -> web.Response:
        if self.scenario == "bad-discovery":
            return web.json_response({"kind": "APIGroupList", "groups": "all of them"})
        if self.scenario == "huge-discovery" and self.armed.is_set():
            return web.json_response({"kind": "APIGroupList", "groups": [
                {"name": f"g{i}.{HOSTILE_GROUP}", "versions": [gv], "preferredVersion": gv}
                for i in range(self.groups) for gv in [{"groupVersion": f"g{i}.{HOSTILE_GROUP}/v1", "version": "v1"}]]})
        if self.scenario not in ("many-types", "long-names") or not self.armed.is_set():
            return web.json_response({"kind": "APIGroupList", "groups": []})
        gv = {"groupVersion": f"{HOSTILE_GROUP}/v1", "version": "v1"}
        groups = [{"name": HOSTILE_GROUP, "versions": [gv], "preferredVersion": gv}]
        if self.scenario == "long-names":
            long = {"groupVersion": f"{'g' * MIB}.example.com/v1", "version": "v1"}
            groups.append({"name": f"{'g' * MIB}.example.com", "versions": [long], "preferredVersion": long})
        return web.json_response({"kind": "APIGroupList", "groups": groups})

    async def _hostile_group(self, _: web.Request) -> web.Response:
        names = [f"things{i}" for i in range(self.types)]
        if self.scenario == "long-names":
            names = ["things0", "x" * MIB, "Things", "two words", "-things"]
        return web.json_response({"kind": "APIResourceList", "groupVersion": f"{HOSTILE_GROUP}/v1", "resources": [
            {"name": name, "singularName": f"thing{i}", "namespaced": True, "kind": f"Thing{i}",
             "verbs": ["get", "list", "watch"]} for i, name in enumerate(names)]})

    async def _huge_group(self, request: web.Request) -> web.Response:
        """One of `groups` group-versions, each with its share of `types` resource types."""
        gv = f"{request.match_info['group']}/{request.match_info['version']}"
        return web.json_response({"kind": "APIResourceList", "groupVersion": gv, "resources": [
            {"name": f"things{i}", "singularName": f"thing{i}", "namespaced": True, "kind": f"Thing{i}",
             "verbs": ["get", "list", "watch"]} for i in range(self.types // self.groups)]})

    async def _hostile_type(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("watch") in ("true", "1"):
            return await self._quiet_watch(request)
        return web.json_response({"kind": "List", "apiVersion": f"{HOSTILE_GROUP}/v1",
                                  "metadata": {"resourceVersion": "10"}, "items": []})

    async def _configmaps(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("watch") in ("true", "1"):
            return await self._watch(request)
        armed = self.armed.is_set()
        if armed and self.scenario == "giant-page":
            return await self._giant_page(request)
        if armed and self.scenario == "slow-body":
            return await self._slow_body(request)
        if self.scenario == "big-items":
            return self._paged(request, [configmap(f"big{i}", str(5 + i), size=300 * 1024) for i in range(10)])
        items = [configmap("ok", "5")]
        if armed and self.scenario == "giant-object":
            items.append(configmap("giant", "6", size=6 * MIB))
        if self.scenario == "bad-rv":
            items += [configmap("huge", str(2**70)), configmap("negative", "-3"), configmap("word", "abc")]
        return web.json_response({"kind": "ConfigMapList", "apiVersion": "v1",
                                  "metadata": {"resourceVersion": "10"}, "items": items})

    async def _secrets(self, request: web.Request) -> web.StreamResponse:
        """Served like a real API server whose RBAC does not grant the daemon this type (forbidden-type), else
        as an empty list."""
        if self.scenario == "forbidden-type":
            return web.json_response(
                {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden", "code": 403,
                 "message": 'secrets is forbidden: User "system:serviceaccount:mc:multicluster" cannot list resource '
                            '"secrets" in API group "" at the cluster scope'},
                status=403,
            )
        if request.query.get("watch") in ("true", "1"):
            resp = web.StreamResponse(headers={"Content-Type": "application/json"})
            await resp.prepare(request)
            await asyncio.sleep(0.2)
            return resp
        return web.json_response({"kind": "SecretList", "apiVersion": "v1", "metadata": {"resourceVersion": "10"},
                                  "items": []})

    def _paged(self, request: web.Request, items: list[dict[str, Any]]) -> web.Response:
        """A list that honours `limit` and `continue` (the continue token is the offset)."""
        start = int(request.query.get("continue") or 0)
        limit = int(request.query.get("limit") or len(items)) or len(items)
        end = start + limit
        meta = {"resourceVersion": "20", **({"continue": str(end)} if end < len(items) else {})}
        return web.json_response({"kind": "ConfigMapList", "apiVersion": "v1", "metadata": meta,
                                  "items": items[start:end]})

    async def _giant_page(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        await resp.write(b'{"kind":"ConfigMapList","apiVersion":"v1","metadata":{"resourceVersion":"10"},"items":[')
        item = orjson.dumps(configmap("filler", "7", size=64 * 1024)) + b","
        return await self._flood(resp, item)

    async def _flood(self, resp: web.StreamResponse, piece: bytes) -> web.StreamResponse:
        """Write `piece` until `attack_bytes` are sent or the client hangs up."""
        sent = 0
        try:
            while sent < self.attack_bytes:
                await resp.write(piece)
                sent += len(piece)
                self.sent += len(piece)
        except (ConnectionError, RuntimeError):
            pass  # the client closed the connection: what it should do
        self.largest = max(self.largest, sent)
        return resp

    async def _slow_body(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        try:
            await resp.write(b'{"kind":"ConfigMapList","items":[')
            while True:
                await asyncio.sleep(0.2)
                await resp.write(b" ")
                self.sent += 1
        except (ConnectionError, RuntimeError):
            pass
        return resp

    async def _quiet_watch(self, request: web.Request) -> web.StreamResponse:
        """A healthy watch with nothing to say, closed after a second (the client then watches again)."""
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        await asyncio.sleep(1.0)
        return resp

    async def _watch(self, request: web.Request) -> web.StreamResponse:
        self.watches += 1
        armed = self.armed.is_set()
        if not armed and self.scenario in ("endless-line", "giant-page", "giant-object", "slow-body", "many-types"):
            return await self._quiet_watch(request)
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        lines: list[bytes] = []
        gone = orjson.dumps({"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired",
                                                         "message": "too old resource version"}})
        if self.scenario == "endless-line":
            await resp.write(b'{"type":"ADDED","object":{"metadata":{"name":"endless","annotations":{"a":"')
            return await self._flood(resp, b"x" * (64 * 1024))
        if self.scenario in ("giant-page", "slow-body"):
            lines = [gone]  # relist, into the attack
        elif self.scenario == "giant-object":
            big = configmap("giant-watch", "12", size=6 * MIB)
            lines = [orjson.dumps({"type": "ADDED", "object": big}), gone]
        elif self.scenario in ("big-items", "many-types", "huge-discovery", "long-names"):
            await asyncio.sleep(1.0)
        elif self.scenario == "bad-json":
            lines = [orjson.dumps({"type": "ADDED", "object": configmap("from-watch", "11")}), b"{not json at all"]
        elif self.scenario == "non-object":
            lines = [b"[1, 2, 3]"]
        elif self.scenario == "bad-rv":
            lines = [orjson.dumps({"type": "MODIFIED", "object": configmap("ok", str(2**64))})]
        elif self.scenario == "forbidden-type":
            await asyncio.sleep(30)  # a healthy, quiet watch
        elif self.scenario == "error-event":
            lines = [orjson.dumps({"type": "ERROR", "object": {"code": "not-a-number", "message": "x" * 10_000}})]
        for line in lines:
            await resp.write(line + b"\n")
        await asyncio.sleep(0.2)
        return resp
