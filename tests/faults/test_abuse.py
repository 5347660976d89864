"""Abuse through the HTTP API of a real daemon (SQLite and MariaDB stores): invalid GVRs, selector garbage,
SQL-injection strings, control characters and oversized values in every parameter of every route listed in the
daemon's own /openapi.json (so a new route or parameter is abused automatically), plus malformed kubeconfigs on
POST /v1/join. The answer is always a 4xx JSON body with `error` and `hint` (or a 200 that matches nothing), never
a 5xx; afterwards the store still equals the API servers and membership is unchanged.

Invalid MultiClusterResource patches are covered by tests/delivery/test_bad_input.py."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
import pytest
import yaml
from yarl import URL

from multicluster.config import ServerConfig, StoreConfig
from multicluster.daemon import Daemon
from multicluster.testing.harness import Harness, free_port
from multicluster.testing.mariadb import MariaDB
from tests.faults.helpers import assert_daemon_healthy
from tests.sync.helpers import CM, DEPLOY, NS, daemon_config, mysql_store, sqlite_store, wait_converged

pytestmark = [pytest.mark.integration, pytest.mark.faults]

GVRS = [CM, NS, DEPLOY]

BAD_GVRS = [
    "", " ", "v1", "/", "//", "a/b/c/d", "apps/v1/", "/v1/pods", "../../etc/passwd", "pods.", ".pods", "v1.",
    "*", "💥", "apps/v99/deployments", "metrics.k8s.io/v1beta1/pods", "tokenreviews", "bindings", "pods/log",
    "core/v1/podz", "v1/namespaces/default/pods",
]
SELECTOR_GARBAGE = [
    "a=b=c", "in (", "a in (x", "!", "!!a", "a!=", "=b", ",", ",,,", "a==", "a in ()", "x notin", "a=(b)",
    "a=" + "b" * 64, "k" * 64 + "=v", "a b", "\t", "metadata.name=~x", "spec.unknown=x", "a in (b,,c)",
    "example.com/=x", "-a=b", "a=b,", "(a=b)", "a!", "a notin (x", "status.phase in (Running)", "🙂=🙃",
]
INJECTIONS = [
    "' OR '1'='1", "x'; DROP TABLE resources; --", "'; DELETE FROM resources; --", '" OR ""="', "1) OR (1=1",
    "') OR ('1'='1", "1; DROP TABLE resource_labels", "%", "_", "%%", "\\", "\\'; --", "%' OR '%'='",
    "` OR 1=1 #", "' UNION SELECT object FROM resources --", "*/ OR 1=1", "cluster1' /*", "NULL", "0x27",
    "\x00", "\r\nX-Injected: 1", "\u2028", "é∂ƒ", "😀", "‮", "-1", "1e9", "99999999999999999999999",
    "true", "[]", "{}", "${jndi:ldap://x}", "{{7*7}}", "<script>alert(1)</script>",
]
OVERSIZED = ["a" * 4097, "b" * 20_000]
PAYLOADS = BAD_GVRS + SELECTOR_GARBAGE + INJECTIONS + OVERSIZED
REQUEST_SECONDS = 30.0  # a garbage request answered with a stream that never ends fails by name, not by timeout
FILTERS = {"cluster", "namespace", "name", "namePrefix", "nameContains"}
DEFAULTS = {"gvr": "configmaps"}
PATH_DEFAULTS = {"gvr": "configmaps", "cluster": "cluster1", "namespace": "kube-system", "name": "kube-root-ca.crt",
                 "rest": "api/v1/namespaces/kube-system/configmaps"}


@dataclass
class Api:
    daemon: Daemon
    url: str
    state_dir: Path


@pytest.fixture(scope="module", params=["sqlite", pytest.param("mariadb", marks=pytest.mark.mariadb)])
async def api(request: pytest.FixtureRequest, harness: Harness, tmp_path_factory: pytest.TempPathFactory
              ) -> AsyncIterator[Api]:
    tmp = tmp_path_factory.mktemp("abuse")
    store: StoreConfig
    if request.param == "sqlite":
        store = sqlite_store(tmp)
    else:
        db: MariaDB = request.getfixturevalue("mariadb_server")
        store = mysql_store(db, db.create_database(f"abuse_{os.urandom(4).hex()}"))
    state_dir = tmp / "state"
    old = os.environ.get("MULTICLUSTER_STATE_DIR")
    os.environ["MULTICLUSTER_STATE_DIR"] = str(state_dir)
    port = free_port()
    d = Daemon(replace(daemon_config(harness, store, ("configmaps", "namespaces", "deployments")),
                       server=ServerConfig(port=port, watch_heartbeat_seconds=0.3)))
    try:
        await d.start(controller=False)
        assert await d.wait_ready(60)
        await wait_converged(d, harness, GVRS)
        yield Api(d, f"http://127.0.0.1:{port}", state_dir)
    finally:
        await d.shutdown()
        if old is None:
            os.environ.pop("MULTICLUSTER_STATE_DIR", None)
        else:
            os.environ["MULTICLUSTER_STATE_DIR"] = old


def _query(params: list[tuple[str, str]]) -> str:
    return "&".join(f"{quote(k, safe='[]')}={quote(v, safe='')}" for k, v in params)


async def _check(http: aiohttp.ClientSession, method: str, url: str, what: str, **kwargs: Any) -> tuple[int, Any]:
    try:
        async with asyncio.timeout(REQUEST_SECONDS):
            return await _answer(http, method, url, what, **kwargs)
    except TimeoutError:
        pytest.fail(f"{what}: no complete answer in {REQUEST_SECONDS:.0f}s")


async def _answer(http: aiohttp.ClientSession, method: str, url: str, what: str, **kwargs: Any) -> tuple[int, Any]:
    async with http.request(method, URL(url, encoded=True), **kwargs) as r:
        if r.content_type == "text/event-stream":
            # watch=true is a valid request (the payload "true"): its answer is a stream that never ends, so
            # reading its first event is the whole check.
            assert r.status == 200, what
            assert (await r.content.readline()).startswith((b"event:", b"id:", b":")), what
            return r.status, None
        raw = await r.read()
        assert r.status < 500, f"{what}: {r.status} {raw[:300]!r}"
        if r.status >= 400:
            assert r.content_type == "application/json", f"{what}: {r.status} {r.content_type} {raw[:200]!r}"
            body = orjson.loads(raw)
            if body.get("kind") == "Status":
                # The Kubernetes-compatible paths answer like a kube-apiserver, so kubectl prints the message.
                assert body.get("code") == r.status and body.get("status") == "Failure", (what, body)
                assert isinstance(body.get("message"), str) and body["message"], (what, body)
                assert body.get("reason"), (what, body)
                assert "Traceback" not in body["message"], (what, body)
                return r.status, body
            assert isinstance(body.get("error"), str) and body["error"], (what, body)
            assert "hint" in body, (what, body)
            assert "Traceback" not in body["error"], (what, body)
            return r.status, body
        if r.content_type == "application/json":
            return r.status, orjson.loads(raw)
        return r.status, raw


def _path_params(template: str, values: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)(?::[^}]*)?\}", lambda m: quote(values[m.group(1)], safe=""), template)


async def test_garbage_in_every_parameter_of_every_route(api: Api, harness: Harness) -> None:
    async with aiohttp.ClientSession() as http:
        status, doc = await _check(http, "GET", api.url + "/openapi.json", "openapi")
        assert status == 200
        requests = 0
        statuses: dict[int, int] = {}
        for template, ops in doc["paths"].items():
            for method, op in ops.items():
                params = op.get("parameters", [])
                path_names = [p["name"] for p in params if p["in"] == "path"]
                query_names = [p["name"] for p in params if p["in"] == "query"]
                # Parameters the operation does not declare are abused too (they must be ignored or refused).
                targets = [(n, "path") for n in path_names] + [(n, "query") for n in query_names]
                targets += [("undeclared", "query"), ("labels[app]", "query")]
                base_path = {n: PATH_DEFAULTS[n] for n in path_names}
                base_query = [(n, DEFAULTS[n]) for n in query_names if n == "gvr"]
                for target, where in targets:
                    for payload in PAYLOADS:
                        pv = dict(base_path)
                        q = list(base_query)
                        if where == "path":
                            pv[target] = payload
                        else:
                            q = [(k, v) for k, v in q if k != target] + [(target, payload)]
                        if target == "labels[app]":
                            q.append((f"labels[{payload}]", "x"))
                        url = api.url + _path_params(template, pv) + ("?" + _query(q) if q else "")
                        what = f"{method.upper()} {template} {target}={payload[:40]!r}"
                        status, body = await _check(http, method.upper(), url, what)
                        requests += 1
                        statuses[status] = statuses.get(status, 0) + 1
                        blank = not payload.replace(",", "").strip()  # an empty filter means "no filter"
                        # "-1" or "1e9" is a fair part of a real name ("cm-1", left by other tests): not garbage.
                        fragment = target in ("namePrefix", "nameContains") and re.fullmatch(r"[a-z0-9.-]+", payload)
                        checked = target in FILTERS and template != "/v1/join" and not blank and not fragment
                        if status == 200 and checked:
                            # A filter that is garbage matches nothing (no injection widened a query).
                            items = body if isinstance(body, list) else body.get("items") if isinstance(
                                body, dict) else None
                            if items is not None:
                                assert items == [], what
        assert requests > 1000, requests
        assert statuses.get(200, 0) > 0 and statuses.get(400, 0) > 0, statuses

        # Oversized URLs: up to the HTTP parser's 64 KiB line limit they get a JSON 414 from the middleware...
        for size in (20_000, 60_000):
            status, body = await _check(http, "GET", f"{api.url}/v1/resources?gvr=pods&name={'n' * size}", "long")
            assert status == 414 and body["hint"]
        # ...beyond it the parser itself refuses the request line: still a 4xx, never a 5xx or a hang.
        async with http.get(URL(f"{api.url}/v1/resources?gvr=pods&name={'n' * 100_000}", encoded=True)) as r:
            assert 400 <= r.status < 500
        # Garbage headers.
        for headers in ({"Accept": "x" * 7000}, {"Accept": "application/yaml"}, {"Authorization": "Bearer ' OR 1=1"},
                        {"Content-Type": "application/json"}, {"X-Forwarded-For": "' OR 1=1"}):
            await _check(http, "GET", f"{api.url}/v1/resources/cluster1/configmaps/kube-system/kube-root-ca.crt",
                         f"headers {list(headers)}", headers=headers)
        # A request body on GET routes is ignored.
        await _check(http, "GET", f"{api.url}/v1/resources?gvr=pods", "body", data=b"\x00" * 100_000)

    # Nothing was changed by any of it: same clusters, store still equal to the API servers.
    assert set(api.daemon.syncs) == set(harness.servers)
    await wait_converged(api.daemon, harness, GVRS)
    await assert_daemon_healthy(api.daemon, harness)


async def test_malformed_kubeconfigs_on_join(api: Api, harness: Harness) -> None:
    good = yaml.safe_load(harness.servers["cluster2"].kubeconfig.read_text())
    no_contexts = {k: v for k, v in good.items() if k not in ("contexts", "current-context")}
    dead = yaml.safe_dump({**good, "clusters": [{**good["clusters"][0], "cluster": {
        **good["clusters"][0]["cluster"], "server": f"https://127.0.0.1:{free_port()}"}}]})
    wrong_ctx = {**good, "current-context": "nope"}
    cases: list[tuple[str, bytes, str]] = [
        ("garbage", os.urandom(4096), "kubeconfig"),
        ("binary zeros", b"\x00" * 1000, "kubeconfig"),
        ("empty", b"", "kubeconfig"),  # "the kubeconfig is empty" / "the upload has no `kubeconfig` field"
        ("whitespace", b"  \n\t\n", "kubeconfig"),
        ("2 MiB", b"a: " + b"x" * (2 * 1024 * 1024) + b"\n", "1 MiB"),
        ("yaml list", b"- a\n- b\n", "kubeconfig"),
        ("yaml scalar", b"just a string\n", "kubeconfig"),
        ("broken yaml", b"{not: [yaml", "kubeconfig"),
        ("no contexts", yaml.safe_dump(no_contexts).encode(), "kubeconfig"),
        ("unknown current-context", yaml.safe_dump(wrong_ctx).encode(), "kubeconfig"),
        ("dead port", dead.encode(), "cannot be reached"),
        ("yaml bomb", YAML_BOMB, "kubeconfig"),
    ]
    syncs = set(api.daemon.syncs)
    token = str(good["users"][0]["user"].get("token", "no-token-in-this-kubeconfig"))
    async with aiohttp.ClientSession() as http:
        for label, body, needle in cases:
            forms: list[tuple[str, dict[str, Any]]] = [
                ("multipart", {"data": _form(body)}),
                ("raw", {"data": body, "headers": {"Content-Type": "application/yaml"}}),
            ]
            if label != "2 MiB":  # as JSON text the 2 MiB case is the same as raw
                with contextlib.suppress(UnicodeDecodeError):
                    forms.append(("json", {"json": {"cluster": "newcluster", "kubeconfig": body.decode()}}))
            for form, kwargs in forms:
                what = f"join {label} ({form})"
                status, resp = await _check(http, "POST", f"{api.url}/v1/join?cluster=newcluster", what, **kwargs)
                assert 400 <= status < 500, (what, status, resp)
                text = resp["error"] + str(resp.get("hint"))
                assert needle in text or (label == "2 MiB" and status == 413), (what, resp)
                assert token not in text and "BEGIN" not in text, (what, "credentials echoed")
        # Bad names and bodies of the JSON form.
        for params, kwargs in [
            ({"cluster": "Bad_Name"}, {"data": _form(harness.servers["cluster2"].kubeconfig.read_bytes())}),
            ({"cluster": "x" * 64}, {"data": _form(harness.servers["cluster2"].kubeconfig.read_bytes())}),
            ({"cluster": "cluster1"}, {"data": _form(harness.servers["cluster2"].kubeconfig.read_bytes())}),
            ({}, {"json": {"kubeconfig": 5}}),
            ({}, {"json": ["not", "an", "object"]}),
            ({}, {"data": b"{bad json", "headers": {"Content-Type": "application/json"}}),
            ({"cluster": "x"}, {"data": aiohttp.FormData({"other": "field"})}),
            *[({"cluster": "x"}, {"data": body, "headers": {"Content-Type": ctype}}) for ctype, body in MULTIPART],
        ]:
            what = f"join {params} {list(kwargs)}"
            status, resp = await _check(http, "POST", f"{api.url}/v1/join?{_query(list(params.items()))}", what,
                                        **kwargs)
            assert 400 <= status < 500, (what, status, resp)
    assert set(api.daemon.syncs) == syncs
    assert not api.state_dir.exists() or not [p for p in api.state_dir.iterdir() if p.name != "members.yaml"]
    assert not (api.state_dir / "members.yaml").exists()
    await wait_converged(api.daemon, harness, GVRS)
    await assert_daemon_healthy(api.daemon, harness)


# Malformed multipart: no boundary, a boundary that never appears, a truncated part, an over-long boundary, a part
# whose headers are not valid HTTP.
MULTIPART = [
    ("multipart/form-data", b"x"),
    ("multipart/form-data; boundary=b", b"garbage"),
    ("multipart/form-data; boundary=b", b'--b\r\nContent-Disposition: form-data; name="kubeconfig"\r\n\r\nxx'),
    ("multipart/form-data; boundary=" + "b" * 71, b"--x"),
    ("multipart/form-data; boundary=b",
     b'--b\r\nContent-Disposition: form-data; name="\xc2\x84\x02"\r\n\r\nx\r\n--b--\r\n'),
]
# A billion laughs in YAML: ~2.7 million list items from 300 bytes, if anything expanded it.
YAML_BOMB = (b"a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b]\n"
             b"d: &d [*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d]\nf: [*e,*e,*e,*e,*e,*e,*e]\n")


def _form(kubeconfig: bytes) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("kubeconfig", kubeconfig, filename="config", content_type="application/octet-stream")
    return form


async def test_the_configured_heartbeat_keeps_an_idle_stream_alive(api: Api) -> None:
    """server.watchHeartbeatSeconds reaches the daemon's streams: an SSE watch of an empty namespace gets its
    comment lines that often."""
    async with aiohttp.ClientSession() as http, http.get(
            f"{api.url}/v1/resources", params={"gvr": "configmaps", "namespace": "no-such-namespace",
                                               "watch": "true"}) as r:
        assert r.status == 200
        start, pings = time.monotonic(), 0
        while pings < 3:
            line = await asyncio.wait_for(r.content.readline(), 10)
            assert line, "the stream ended"
            pings += line == b": ping\n"
        # Three heartbeats of 0.3 s, not of the 15 s default.
        assert time.monotonic() - start < 10
