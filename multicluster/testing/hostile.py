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

SCENARIOS = ("bad-json", "non-object", "bad-rv", "error-event", "forbidden-type")


def configmap(name: str, rv: str, namespace: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "resourceVersion": rv, "uid": f"uid-{name}",
                     "creationTimestamp": "2026-01-01T00:00:00Z"},
        "data": {"k": "v"},
    }


class HostileServer:
    """`scenario` picks the misbehaviour; `requests` records every path asked for (the attack's evidence)."""

    def __init__(self, scenario: str) -> None:
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r}; one of {', '.join(SCENARIOS)}")
        self.scenario = scenario
        self.port = free_port()
        self.requests: list[str] = []
        self.watches = 0
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
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        app = web.Application()
        app.router.add_get("/version", self._version)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/api", self._api)
        app.router.add_get("/api/v1", self._api_v1)
        app.router.add_get("/apis", self._apis)
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
        return web.json_response({"kind": "APIGroupList", "groups": []})

    async def _configmaps(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("watch") in ("true", "1"):
            return await self._watch(request)
        items = [configmap("ok", "5")]
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

    async def _watch(self, request: web.Request) -> web.StreamResponse:
        self.watches += 1
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        lines: list[bytes] = []
        if self.scenario == "bad-json":
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
