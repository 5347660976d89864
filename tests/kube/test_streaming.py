"""Without `limit` a list is streamed one store page at a time (SQLite and MariaDB): a chunked answer holding
every object once, in the store's keyset order; a store failure before the first byte is a ServiceUnavailable
Status, after it a truncated body (never a short list that looks complete)."""

from __future__ import annotations

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from multicluster.api import build_app
from multicluster.api.kube.paths import CLUSTER_ANNOTATION, scope_prefix
from multicluster.store import Store
from tests.api.conftest import dataset, own_store  # noqa: F401 - fixtures
from tests.api.dataset import CMS, Dataset
from tests.api.helpers import Backend, clone, fresh_views
from tests.api.test_seed import FailingAfterFirstPage

pytestmark = pytest.mark.integration
URL = scope_prefix("_all") + "/api/v1/namespaces/{ns}/configmaps"


async def test_unlimited_list_streams_every_object_once(own_store: Store, dataset: Dataset) -> None:  # noqa: F811
    template = dataset.objects[("cluster2", CMS)][0]
    rows = [clone(template, f"cluster{1 + i % 3}", CMS, "kstream", f"big-{i:05d}", 40_000 + i) for i in range(2345)]
    for i in range(0, len(rows), 500):
        await own_store.apply(rows[i : i + 500])
    backend = Backend(own_store, dataset.resources, fresh_views(dataset))
    async with TestClient(TestServer(build_app(backend))) as client:
        for accept in ("application/json", "application/json;as=Table;v=v1;g=meta.k8s.io"):
            r = await client.get(URL.format(ns="kstream"), headers={"Accept": accept})
            assert r.status == 200 and r.headers.get("Transfer-Encoding") == "chunked"
            chunks = [c async for c in r.content.iter_any()]
            body = orjson.loads(b"".join(chunks))
            if body["kind"] == "Table":
                got = [(row["cells"][0], row["cells"][1]) for row in body["rows"]]
            else:
                assert body["kind"] == "ConfigMapList" and "continue" not in body["metadata"]
                got = [(i["metadata"]["annotations"][CLUSTER_ANNOTATION], i["metadata"]["name"])
                       for i in body["items"]]
            assert got == sorted(got) and len(set(got)) == 2345
            assert set(got) == {(r.cluster, r.name) for r in rows}


async def test_store_failures_are_a_status_or_a_truncated_body(own_store: Store, dataset: Dataset) -> None:  # noqa: F811
    template = dataset.objects[("cluster1", CMS)][0]
    rows = [clone(template, "cluster1", CMS, "ktrunc", f"t-{i:04d}", 50_000 + i) for i in range(1200)]
    await own_store.apply(rows[:600])
    await own_store.apply(rows[600:])
    failing = FailingAfterFirstPage(own_store)
    backend = Backend(failing, dataset.resources, fresh_views(dataset))  # type: ignore[arg-type]
    async with TestClient(TestServer(build_app(backend))) as client:
        r = await client.get(URL.format(ns="ktrunc"))
        assert r.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await r.read()
        r = await client.get(URL.format(ns="ktrunc"))
        assert r.status == 503
        body = await r.json()
        assert body["kind"] == "Status" and body["reason"] == "ServiceUnavailable"
        assert body["message"].startswith("the store is unavailable: connection lost")
        assert body["details"] == {"retryAfterSeconds": 5} and r.headers["Retry-After"] == "5"
