"""GET /v1/resources: filters, selectors, ordering, pagination, continue tokens and freshness."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from multicluster.api import ClusterView, build_app
from multicluster.store import Delete, Store, SyncState
from multicluster.sync import to_row
from tests.api.dataset import CMS, DEPLOYS, MCR, PODS, Dataset, expected
from tests.api.helpers import Backend, clone, fresh_views, get_json, keys, walk


async def _all(client: TestClient, params: list[tuple[str, str]]) -> list[dict[str, Any]]:  # type: ignore[type-arg]
    body = await get_json(client, "/v1/resources", [*params, ("limit", "5000")])
    assert body["continue"] is None
    return list(body["items"])


async def test_response_shape_and_objects_are_the_stored_bytes(client: TestClient, dataset: Dataset) -> None:
    body = await get_json(client, "/v1/resources", {"gvr": "pods", "limit": "5000"})
    assert set(body) == {"apiVersion", "resource", "items", "continue", "remaining", "remainingCapped", "clusters"}
    assert body["apiVersion"] == "multicluster/v1"
    assert body["resource"] == {"gvr": "v1/pods", "group": "", "version": "v1", "resource": "pods", "kind": "Pod",
                                "namespaced": True, "printerColumns": []}
    assert body["remaining"] is None and body["remainingCapped"] is False
    assert body["clusters"] == {"fresh": ["cluster1", "cluster2", "cluster3"], "stale": [], "missing": []}
    want = {(c, o["metadata"]["namespace"], o["metadata"]["name"]): orjson.loads(to_row(c, PODS, o, 1).object)
            for c, o in dataset.items(PODS)}
    assert len(body["items"]) == len(want) == 15
    for item in body["items"]:
        assert set(item) == {"cluster", "object"}
        k = (item["cluster"], item["object"]["metadata"]["namespace"], item["object"]["metadata"]["name"])
        assert item["object"] == want[k]
        assert "managedFields" not in item["object"]["metadata"]


def _filter_cases(ds: Dataset) -> list[tuple[list[tuple[str, str]], dict[str, Any]]]:
    a, b = ds.namespaces
    return [
        ([("cluster", "cluster2")], {"clusters": ["cluster2"]}),
        ([("cluster", "cluster1"), ("cluster", "cluster3")], {"clusters": ["cluster1", "cluster3"]}),
        ([("cluster", "cluster1,cluster3")], {"clusters": ["cluster1", "cluster3"]}),
        ([("namespace", b)], {"namespaces": [b]}),
        ([("namespace", a), ("namespace", b)], {"namespaces": [a, b]}),
        ([("name", "web-0")], {"name": "web-0"}),
        ([("namePrefix", "web-")], {"prefix": "web-"}),
        ([("nameContains", "b-")], {"contains": "b-"}),
        ([("nameContains", "2x")], {"contains": "2x"}),
        ([("cluster", "cluster2"), ("namespace", a), ("namePrefix", "web")],
         {"clusters": ["cluster2"], "namespaces": [a], "prefix": "web"}),
        ([("cluster", "nope")], {"clusters": ["nope"]}),
        ([("namespace", "default")], {"namespaces": ["default"]}),
    ]


@pytest.mark.parametrize("gvr", [PODS, CMS, DEPLOYS, MCR], ids=str)
async def test_every_filter(client: TestClient, dataset: Dataset, gvr: Any) -> None:
    for params, ref in _filter_cases(dataset):
        items = await _all(client, [("gvr", str(gvr)), *params])
        got = keys(items)
        assert len(got) == len(set(got)), params
        assert set(got) == expected(dataset, gvr, **ref), params


LABEL_CASES: list[tuple[str, list[tuple[str, str, tuple[str, ...]]]]] = [
    ("app=web", [("app", "=", ("web",))]),
    ("app==web", [("app", "=", ("web",))]),
    ("app!=web", [("app", "!=", ("web",))]),
    ("app in (web, db)", [("app", "in", ("web", "db"))]),
    ("app notin (web)", [("app", "notin", ("web",))]),
    ("canary", [("canary", "exists", ())]),
    ("!canary", [("canary", "!", ())]),
    ("canary!=true", [("canary", "!=", ("true",))]),
    ("app.kubernetes.io/name=web", [("app.kubernetes.io/name", "=", ("web",))]),
    ("tier=frontend,!canary", [("tier", "=", ("frontend",)), ("canary", "!", ())]),
    ("app in (web),tier notin (backend),origin", [("app", "in", ("web",)), ("tier", "notin", ("backend",)),
                                                  ("origin", "exists", ())]),
    ("missing-key notin (x)", [("missing-key", "notin", ("x",))]),
    ("app in (nothing)", [("app", "in", ("nothing",))]),
]


@pytest.mark.parametrize(("selector", "ref"), LABEL_CASES, ids=[c[0] for c in LABEL_CASES])
async def test_label_selector_ops(client: TestClient, dataset: Dataset, selector: str, ref: Any) -> None:
    items = await _all(client, [("gvr", "pods"), ("labelSelector", selector)])
    assert set(keys(items)) == expected(dataset, PODS, labels=ref)


async def test_label_selector_on_every_type(client: TestClient, dataset: Dataset) -> None:
    for gvr in (CMS, DEPLOYS, MCR):
        items = await _all(client, [("gvr", str(gvr)), ("labelSelector", "origin=api-test,cfg!=settings")])
        ref = expected(dataset, gvr, labels=[("origin", "=", ("api-test",)), ("cfg", "!=", ("settings",))])
        assert set(keys(items)) == ref and ref


def _field_cases(ds: Dataset) -> list[tuple[str, list[tuple[str, str, str]]]]:
    return [
        ("status.phase=Running", [("status.phase", "=", "Running")]),
        ("status.phase==Pending", [("status.phase", "=", "Pending")]),
        ("status.phase!=Running", [("status.phase", "!=", "Running")]),
        ("spec.nodeName=node-1", [("spec.nodeName", "=", "node-1")]),
        ("spec.nodeName!=node-1,status.phase=Running", [("spec.nodeName", "!=", "node-1"),
                                                        ("status.phase", "=", "Running")]),
        ("metadata.name=web-0", [("metadata.name", "=", "web-0")]),
        ("metadata.name!=web-0", [("metadata.name", "!=", "web-0")]),
        (f"metadata.namespace={ds.namespaces[1]}", [("metadata.namespace", "=", ds.namespaces[1])]),
        ("spec.nodeName=", [("spec.nodeName", "=", "")]),
    ]


async def test_field_selector_ops(client: TestClient, dataset: Dataset) -> None:
    for selector, ref in _field_cases(dataset):
        items = await _all(client, [("gvr", "pods"), ("fieldSelector", selector)])
        assert set(keys(items)) == expected(dataset, PODS, fields=ref), selector


async def test_label_and_field_selectors_combine_with_filters(client: TestClient, dataset: Dataset) -> None:
    items = await _all(client, [("gvr", "po"), ("cluster", "cluster1"), ("cluster", "cluster2"),
                                ("labelSelector", "app=web"), ("fieldSelector", "status.phase=Running")])
    ref = expected(dataset, PODS, clusters=["cluster1", "cluster2"], labels=[("app", "=", ("web",))],
                   fields=[("status.phase", "=", "Running")])
    assert set(keys(items)) == ref and len(ref) == 4


def _sort_ref(dataset: Dataset, order: str) -> list[tuple[str, str, str]]:
    rows = []
    for c, o in dataset.items(PODS):
        md = o["metadata"]
        rows.append((c, md["namespace"], md["name"], md["creationTimestamp"]))
    keyf = {
        "cluster": lambda r: (r[0], r[1], r[2]),
        "namespace": lambda r: (r[1], r[2], r[0]),
        "name": lambda r: (r[2], r[0], r[1]),
        "created": lambda r: (r[3], r[0], r[1], r[2]),
        "-created": lambda r: (r[3], r[0], r[1], r[2]),
    }[order]
    return [r[:3] for r in sorted(rows, key=keyf, reverse=order == "-created")]


@pytest.mark.parametrize("order", ["cluster", "namespace", "name", "created", "-created"])
@pytest.mark.parametrize("limit", [1, 4, 15, 500])
async def test_order_and_pagination(client: TestClient, dataset: Dataset, order: str, limit: int) -> None:
    items, pages = await walk(client, [("gvr", "pods"), ("order", order)], limit)
    assert keys(items) == _sort_ref(dataset, order)
    assert pages == max(1, -(-15 // limit))


async def test_default_order_is_cluster(client: TestClient, dataset: Dataset) -> None:
    items = await _all(client, [("gvr", "pods")])
    assert keys(items) == _sort_ref(dataset, "cluster")


async def test_count_reports_remaining(client: TestClient) -> None:
    token = None
    seen = 0
    while True:
        params = [("gvr", "pods"), ("limit", "4"), ("count", "true")] + ([("continue", token)] if token else [])
        body = await get_json(client, "/v1/resources", params)
        seen += len(body["items"])
        assert body["remaining"] == 15 - seen
        token = body["continue"]
        if token is None:
            break
    body = await get_json(client, "/v1/resources", {"gvr": "pods", "count": "false"})
    assert body["remaining"] is None


async def test_limit_may_change_between_pages(client: TestClient, dataset: Dataset) -> None:
    first = await get_json(client, "/v1/resources", {"gvr": "pods", "limit": "2", "order": "name"})
    rest = await get_json(client, "/v1/resources", {"gvr": "pods", "limit": "100", "order": "name",
                                                    "continue": first["continue"]})
    assert keys(first["items"] + rest["items"]) == _sort_ref(dataset, "name")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


async def test_bad_continue_tokens(client: TestClient) -> None:
    first = await get_json(client, "/v1/resources", {"gvr": "pods", "limit": "2", "labelSelector": "app=web"})
    token = first["continue"]
    data = orjson.loads(base64.urlsafe_b64decode(token + "=="))
    malformed = ["garbage!!", "x", _b64(b"not json"), _b64(b"[1,2]"), _b64(orjson.dumps({**data, "v": 2})),
                 _b64(orjson.dumps({**data, "a": "str"})), token[:-3], "=" * 8]
    for bad in malformed:
        body = await get_json(client, "/v1/resources", {"gvr": "pods", "labelSelector": "app=web", "continue": bad},
                              status=400)
        assert body["error"].startswith("parameter continue:"), bad
        assert body["hint"]
    # The same token with different filters or order: refused, not silently applied.
    other_queries = [
        {"gvr": "pods", "labelSelector": "app=db"},
        {"gvr": "pods"},
        {"gvr": "pods", "labelSelector": "app=web", "cluster": "cluster1"},
        {"gvr": "pods", "labelSelector": "app=web", "namespace": "x"},
        {"gvr": "pods", "labelSelector": "app=web", "order": "name"},
        {"gvr": "pods", "labelSelector": "app=web", "fieldSelector": "status.phase=Running"},
        {"gvr": "pods", "labelSelector": "app=web", "namePrefix": "w"},
        {"gvr": "configmaps", "labelSelector": "app=web"},
    ]
    for q in other_queries:
        body = await get_json(client, "/v1/resources", {**q, "continue": token}, status=400)
        assert "different query" in body["error"], q
    # Spelling the same filters differently is the same query.
    body = await get_json(client, "/v1/resources", {"gvr": "v1.pods", "labelSelector": "app==web", "continue": token})
    assert len(body["items"]) >= 1


async def test_token_with_wrong_key_for_order_is_refused(client: TestClient) -> None:
    first = await get_json(client, "/v1/resources", {"gvr": "pods", "limit": "2"})
    data = orjson.loads(base64.urlsafe_b64decode(first["continue"] + "=="))
    bad = _b64(orjson.dumps({**data, "a": data["a"][:2]}))
    body = await get_json(client, "/v1/resources", {"gvr": "pods", "continue": bad}, status=400)
    assert body["error"] == "parameter continue: the token is malformed"


@pytest.mark.parametrize(("params", "needle"), [
    ({"gvr": "pods", "limit": "0"}, "parameter limit: 0 is out of range"),
    ({"gvr": "pods", "limit": "5001"}, "parameter limit: 5001 is out of range"),
    ({"gvr": "pods", "limit": "-3"}, "parameter limit"),
    ({"gvr": "pods", "limit": "ten"}, 'parameter limit: "ten" is not an integer'),
    ({"gvr": "pods", "limit": "1.5"}, "parameter limit"),
    ({"gvr": "pods", "count": "maybe"}, "parameter count"),
    ({"gvr": "pods", "order": "size"}, "parameter order"),
    ({}, "parameter gvr is required"),
    ({"gvr": ""}, "parameter gvr is required"),
    ({"gvr": "pods", "labelSelector": "app in web"}, 'labelSelector: unexpected "web" at position 8'),
    ({"gvr": "pods", "labelSelector": "a=(b"}, 'labelSelector: unexpected "(" at position 3'),
    ({"gvr": "pods", "fieldSelector": "spec.replicas=3"}, 'fieldSelector: field "spec.replicas"'),
    ({"gvr": "pods", "fieldSelector": "status.phase"}, "has no operator"),
])
async def test_bad_parameters_are_400(client: TestClient, params: dict[str, str], needle: str) -> None:
    body = await get_json(client, "/v1/resources", params, status=400)
    assert needle in body["error"], body
    assert "hint" in body


async def test_unknown_gvr_lists_close_matches(client: TestClient) -> None:
    body = await get_json(client, "/v1/resources", {"gvr": "podz"}, status=400)
    assert body["error"] == 'unknown resource type "podz"'
    assert "pods" in body["matches"]
    assert "did you mean" in body["hint"] and "pods" in body["hint"]
    body = await get_json(client, "/v1/resources", {"gvr": "deploymnets"}, status=400)
    assert "deployments" in body["matches"]
    body = await get_json(client, "/v1/resources", {"gvr": "apps/v1/pods"}, status=400)
    assert "not in that group" in body["hint"]


@pytest.mark.parametrize("spelling", ["rr", "multiclusterresources", "MultiClusterResource",
                                      "multiclusterresources.mulitcluster.practice.com",
                                      "mulitcluster.practice.com/v1alpha1/multiclusterresources",
                                      "mulitcluster.practice.com.v1alpha1.multiclusterresources"])
async def test_crd_kind_resolves_from_real_discovery(client: TestClient, dataset: Dataset, spelling: str) -> None:
    body = await get_json(client, "/v1/resources", {"gvr": spelling})
    assert body["resource"]["kind"] == "MultiClusterResource"
    assert body["resource"]["gvr"] == "mulitcluster.practice.com/v1alpha1/multiclusterresources"
    assert {i["object"]["metadata"]["name"] for i in body["items"]} == {"mypod.pod"}
    assert len(body["items"]) == 3


async def test_freshness_reports_stale_and_missing(backend: Backend, dataset: Dataset) -> None:
    now = time.time()
    views = fresh_views(dataset, now)
    c2 = views[1]
    views[1] = ClusterView(name=c2.name, is_master=False, host=c2.host, reachable=False, ready=True,
                           last_sync=now - 180, error="connection refused", syncs=c2.syncs)
    c3 = views[2]
    views[2] = ClusterView(name=c3.name, is_master=False, host=c3.host, reachable=True, ready=False,
                           last_sync=None, syncs=[SyncState(c3.name, PODS, "syncing")])
    backend.views = views
    async with TestClient(TestServer(build_app(backend))) as client:
        r = await client.get("/v1/resources", params={"gvr": "pods"})
        body = await r.json()
        assert body["clusters"]["fresh"] == ["cluster1"]
        # Unreachable: data is current as of the last contact (the view's last_sync), not the type's last event.
        assert body["clusters"]["stale"] == [{"name": "cluster2", "lastSync": now - 180,
                                              "error": "connection refused"}]
        assert body["clusters"]["missing"] == ["cluster3"]
        assert r.headers["X-Multicluster-Stale"] == "cluster2"
        assert r.headers["X-Multicluster-Missing"] == "cluster3"
        # Stale data is still served, never silently dropped.
        assert {i["cluster"] for i in body["items"]} == {"cluster1", "cluster2", "cluster3"}
        # A GVR with an error state is stale even on a reachable cluster; an unknown name is missing.
        views[0] = ClusterView(name="cluster1", is_master=True, host="h", reachable=True, ready=True,
                               last_sync=now, syncs=[SyncState("cluster1", PODS, "error", synced_at=now - 60,
                                                               error="403 forbidden")])
        body = await get_json(client, "/v1/resources", [("gvr", "pods"), ("cluster", "cluster1"),
                                                        ("cluster", "ghost")])
        assert body["clusters"] == {"fresh": [], "stale": [{"name": "cluster1", "lastSync": now - 60,
                                                            "error": "403 forbidden"}], "missing": ["ghost"]}
        # A ready cluster that does not serve a type answers "none" truthfully: fresh.
        body = await get_json(client, "/v1/resources", [("gvr", "secrets"), ("cluster", "cluster1")])
        assert body["clusters"] == {"fresh": ["cluster1"], "stale": [], "missing": []}


async def test_pagination_with_concurrent_writes_has_no_dups_or_gaps(own_store: Store, dataset: Dataset) -> None:
    """Walk 1200 rows in pages of 50 while another task inserts, updates and deletes rows around the cursor."""
    template = dataset.objects[("cluster1", CMS)][0]
    ns = "bulk"
    initial = [clone(template, f"cluster{1 + i % 3}", CMS, ns, f"cm-{i:05d}", 10_000 + i) for i in range(1200)]
    for i in range(0, len(initial), 500):
        await own_store.apply(initial[i : i + 500])
    doomed = {r.name for r in initial[1::97]}  # deleted mid-walk: may appear or not, but at most once
    backend = Backend(own_store, dataset.resources, fresh_views(dataset))
    stop = asyncio.Event()

    async def writer() -> None:
        n = 0
        while not stop.is_set():
            batch = [clone(template, f"cluster{1 + (n + j) % 3}", CMS, ns, f"cm-{(n * 7 + j) % 1300:05d}a",
                           50_000 + n * 10 + j) for j in range(10)]
            # Updates of existing rows (newer RV) must not move them or duplicate them.
            batch += [clone(template, r.cluster, CMS, ns, r.name, 90_000 + n) for r in initial[n % 1200 :: 400]]
            await own_store.apply(batch)
            if n < len(doomed):
                victim = sorted(doomed)[n]
                r = next(r for r in initial if r.name == victim)
                await own_store.apply([Delete(r.cluster, CMS, ns, victim, 0)])
            n += 1
            await asyncio.sleep(0)

    async with TestClient(TestServer(build_app(backend))) as client:
        for order in ("name", "cluster", "-created"):
            stop.clear()
            task = asyncio.create_task(writer())
            try:
                items, pages = await walk(client, [("gvr", "configmaps"), ("namespace", ns), ("order", order)], 50)
            finally:
                stop.set()
                await task
            got = keys(items)
            assert len(got) == len(set(got)), f"duplicates with order={order}"
            names = {k[2] for k in got}
            missing = {r.name for r in initial} - names - doomed
            assert not missing, f"gaps with order={order}: {sorted(missing)[:5]}"
            assert pages >= 24
