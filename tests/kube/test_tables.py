"""`kubectl get` tables through the daemon: CLUSTER first, then exactly the columns and cells kubectl shows for
the same objects against each harness cluster (built-in kinds, -o wide, a CRD's printer columns with their
priorities), and the metadata kubectl needs for -A, --show-labels and -L."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest

from multicluster.api.kube.paths import scope_prefix
from tests.kube.conftest import CRD_GROUP, Env, table

# Qualified: other tests of the session create CRDs with the same plural in other groups, and a bare `gadgets`
# would then resolve differently against one harness cluster than against the daemon.
GADGETS = f"gadgets.{CRD_GROUP}"

pytestmark = pytest.mark.integration

TIME_COLUMNS = {"AGE", "DURATION"}  # move with the clock between the two kubectl runs


def _strip(rows: list[list[str]], header: list[str]) -> set[tuple[str, ...]]:
    keep = [i for i, h in enumerate(header) if h not in TIME_COLUMNS]
    out = set()
    for r in rows:
        assert len(r) == len(header), (header, r)
        out.add(tuple(r[i] for i in keep))
    return out


async def compare(env: Env, *args: str) -> list[list[str]]:
    """Our table for `get ARGS -n NS` equals the union of each cluster's, with CLUSTER in front."""
    ns = env.namespace
    deadline = time.monotonic() + 30
    while True:
        _, out, _ = await env.kubectl("get", *args, "-n", ns)
        ours = table(out)
        want_header: list[str] = []
        want: set[tuple[str, ...]] = set()
        for cluster in env.harness.servers:
            direct = table(await env.direct(cluster, "get", *args, "-n", ns))
            if not direct:
                continue
            want_header = ["CLUSTER", *direct[0]]
            want |= _strip([[cluster, *r] for r in direct[1:]], want_header)
        assert ours[0] == want_header
        have = _strip(ours[1:], ours[0])
        if have == want or time.monotonic() > deadline:
            assert have == want
            return ours
        await asyncio.sleep(0.3)  # a controller changed a status between the two reads; the store follows


@pytest.mark.parametrize("args", [
    ("pods",), ("pods", "-o", "wide"), ("deployments",), ("deployments", "-o", "wide"), ("replicasets",),
    ("services",), ("services", "-o", "wide"), ("configmaps",), ("jobs",), ("jobs", "-o", "wide"),
    (GADGETS,), (GADGETS, "-o", "wide"),
], ids=lambda a: "-".join(a))
async def test_columns_match_each_cluster(env: Env, args: tuple[str, ...]) -> None:
    rows = await compare(env, *args)
    assert len(rows) > 1


async def test_crd_printer_columns_and_priorities(env: Env) -> None:
    rows = await compare(env, GADGETS)
    assert rows[0] == ["CLUSTER", "NAME", "SIZE", "READY", "AGE"]
    wide = await compare(env, GADGETS, "-o", "wide")
    assert wide[0] == ["CLUSTER", "NAME", "SIZE", "COLOR", "READY", "AGE"]
    assert sorted((r[0], r[1], r[2], r[3], r[4]) for r in wide[1:]) == [
        ("cluster1", "g0", "10", "red", "True"),
        ("cluster2", "g0", "10", "red", "True"), ("cluster2", "g1", "20", "blue", "False"),
        ("cluster3", "g0", "10", "red", "True"), ("cluster3", "g1", "20", "blue", "False"),
        ("cluster3", "g2", "30", "green", "True")]


async def test_all_namespaces_labels_and_label_columns(env: Env) -> None:
    ns = env.namespace
    _, out, _ = await env.kubectl("get", "pods", "-A", "--field-selector", f"metadata.namespace={ns}", "-l",
                                  "app=db", "--show-labels", "-L", "app")
    rows = table(out)
    assert rows[0] == ["NAMESPACE", "CLUSTER", "NAME", "READY", "STATUS", "RESTARTS", "AGE", "APP", "LABELS"]
    assert sorted((r[0], r[1], r[2], r[7], r[8]) for r in rows[1:]) == [
        (ns, "cluster1", "db-1", "db", "app=db"), (ns, "cluster2", "db-1", "db", "app=db"),
        (ns, "cluster2", "db-2", "db", "app=db")]
    _, one, _ = await env.kubectl("get", "pod", "cache-1", "-n", ns)
    assert [r[:3] for r in table(one)] == [["CLUSTER", "NAME", "READY"], ["cluster3", "cache-1", "0/1"]]


async def test_include_object_and_table_versions(env: Env) -> None:
    url = env.url + scope_prefix("cluster1") + f"/api/v1/namespaces/{env.namespace}/pods"
    async with env.http() as http:
        for version in ("v1", "v1beta1"):
            accept = f"application/json;as=Table;v={version};g=meta.k8s.io"
            for include, want in (("None", None), ("Metadata", "PartialObjectMetadata"), ("Object", "Pod")):
                async with http.get(url, params={"includeObject": include}, headers={"Accept": accept}) as r:
                    assert r.status == 200
                    doc = orjson.loads(await r.read())
                assert doc["kind"] == "Table" and doc["apiVersion"] == f"meta.k8s.io/{version}"
                assert doc["columnDefinitions"][0]["name"] == "Cluster"
                row = doc["rows"][0]
                assert row["cells"][0] == "cluster1"
                assert (row.get("object") or {}).get("kind") == want
        async with http.get(url, params={"includeObject": "All"},
                            headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}) as r:
            assert r.status == 400 and (await r.json())["reason"] == "BadRequest"
