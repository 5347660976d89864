"""CRD printer columns in `list`: the column rules, and the whole path on real clusters —
a CRD with additionalPrinterColumns (the demo's databases.demo.multicluster.io, plus a wide-only filter column)
synced by a real daemon, whose CRD object the plugin reads back through the daemon's API."""

from __future__ import annotations

import asyncio
import copy
import json
import urllib.error
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from typer.testing import CliRunner

from multicluster.columns import human_duration
from multicluster.config import ServerConfig
from multicluster.daemon import Daemon
from multicluster.demo import CRD_GROUP
from multicluster.demo import _crd as demo_crd
from multicluster.testing.harness import Harness, free_port
from plugin import printers
from plugin.cli import app
from plugin.client import Client
from plugin.crd_columns import CRD_TYPE, may_be_custom
from plugin.printers import ResourceInfo
from tests.membership.test_membership import wait_for
from tests.plugin.conftest import assert_clean, parse_table
from tests.sync.helpers import daemon_config, sqlite_store
from tests.unit.test_columns import OBJ, READY

# --------------------------------------------------------------------------------------------------- columns


COLUMNS: tuple[dict[str, Any], ...] = (
    {"name": "Engine", "type": "string", "jsonPath": ".spec.engine"},
    {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
    {"name": "Ready", "type": "string", "jsonPath": READY, "priority": 1},
    {"name": "Missing", "type": "string", "jsonPath": ".spec.nothing"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
)
DB = ResourceInfo(CRD_GROUP, "v1", "databases", "Database", printer_columns=COLUMNS)


def _cells(res: ResourceInfo, obj: dict[str, Any], wide: bool = False) -> dict[str, str]:
    return {h: fn("c1", obj, 1_600_000_000.0) for h, fn in printers.columns_for(res, wide)}


def test_priority_zero_columns_by_default_the_rest_with_wide() -> None:
    cells = _cells(DB, OBJ)
    assert list(cells) == ["CLUSTER", "NAME", "NAMESPACE", "ENGINE", "REPLICAS", "MISSING", "AGE"]
    assert (cells["ENGINE"], cells["REPLICAS"], cells["MISSING"]) == ("postgres", "3", "")
    assert cells["AGE"] == human_duration(1_600_000_000.0 - 1_577_836_800)
    wide = _cells(DB, OBJ, wide=True)
    assert list(wide) == ["CLUSTER", "NAME", "NAMESPACE", "ENGINE", "REPLICAS", "READY", "MISSING", "AGE"]
    assert wide["READY"] == "False"


def test_column_types_and_cluster_scoped_layout() -> None:
    res = ResourceInfo("x.example.com", "v1", "things", "Thing", namespaced=False, printer_columns=(
        {"name": "Count", "type": "integer", "jsonPath": ".spec.n"},
        {"name": "On", "type": "boolean", "jsonPath": ".spec.on"},
        {"name": "Seen", "type": "date", "jsonPath": ".status.seen"},
        {"name": "Raw", "type": "string", "jsonPath": ".spec.raw"},
        {"name": "Bad", "type": "string", "jsonPath": ".spec..x", "priority": "x"},
    ))
    obj = {"metadata": {"name": "t"}, "spec": {"n": 4.0, "on": True, "raw": {"k": [1]}},
           "status": {"seen": "2020-09-13T12:26:30Z"}}
    cells = _cells(res, obj)
    assert list(cells) == ["CLUSTER", "NAME", "COUNT", "ON", "SEEN", "RAW", "BAD", "AGE"]
    assert (cells["COUNT"], cells["ON"], cells["SEEN"], cells["RAW"], cells["BAD"]) == (
        "4", "true", "10s", '{"k":[1]}', "")


def test_own_layouts_ignore_printer_columns() -> None:
    pods = ResourceInfo("", "v1", "pods", "Pod", printer_columns=COLUMNS)
    assert "ENGINE" not in [h for h, _ in printers.columns_for(pods)]
    assert not printers.uses_printer_columns(pods)
    mcr = ResourceInfo("mulitcluster.practice.com", "v1alpha1", "multiclusterresources", "MultiClusterResource")
    assert not printers.uses_printer_columns(mcr)
    assert printers.uses_printer_columns(DB)


@pytest.mark.parametrize(("group", "custom"), [
    ("", False), ("apps", False), ("batch", False), ("networking.k8s.io", False),
    ("rbac.authorization.k8s.io", False), ("apiextensions.k8s.io", False),
    ("gateway.networking.k8s.io", True), ("demo.multicluster.io", True), ("cert-manager.io", True),
])
def test_which_groups_may_be_custom_resources(group: str, custom: bool) -> None:
    assert may_be_custom(ResourceInfo(group, "v1", "things", "Thing")) is custom


# --------------------------------------------------------------------------------------------------- real clusters


def _crd() -> dict[str, Any]:
    """The demo's CRD (Engine, Size), plus an integer column and a wide-only condition filter column."""
    crd = copy.deepcopy(demo_crd())
    crd["spec"]["versions"][0]["additionalPrinterColumns"] += [
        {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
        {"name": "Ready", "type": "string", "jsonPath": READY, "priority": 1},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
    return crd


def _ensure_crd(h: Harness, cluster: str, body: dict[str, Any]) -> None:
    path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    try:
        h.request(cluster, "POST", path, body)
    except urllib.error.HTTPError as exc:
        if exc.code != 409:
            raise
        live = h.request(cluster, "GET", f"{path}/{body['metadata']['name']}")
        h.request(cluster, "PUT", f"{path}/{body['metadata']['name']}",
                  {**body, "metadata": {**body["metadata"], "resourceVersion": live["metadata"]["resourceVersion"]}})


async def _served(h: Harness, cluster: str, path: str, timeout: float = 30.0) -> None:
    async def ok() -> bool:
        try:
            await asyncio.to_thread(h.request, cluster, "GET", path)
            return True
        except urllib.error.HTTPError:
            return False

    await wait_for(ok, timeout)


def _database(name: str, ns: str, spec: dict[str, Any], ready: str) -> dict[str, Any]:
    return {"apiVersion": f"{CRD_GROUP}/v1", "kind": "Database", "metadata": {"name": name, "namespace": ns},
            "spec": spec, "status": {"conditions": [{"type": "Synced", "status": "True"},
                                                    {"type": "Ready", "status": ready}]}}


async def test_list_shows_crd_printer_columns_read_through_the_daemon(
    harness: Harness, tmp_path: Path, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ns = f"pc-{unique}"
    crd = _crd()
    plural_path = f"/apis/{CRD_GROUP}/v1/databases"
    for cluster in harness.servers:
        await asyncio.to_thread(_ensure_crd, harness, cluster, crd)
    for cluster in harness.servers:
        await _served(harness, cluster, plural_path)
        await asyncio.to_thread(harness.request, cluster, "POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
    c1, c2, _ = list(harness.servers)
    await asyncio.to_thread(harness.request, c1, "POST", f"/apis/{CRD_GROUP}/v1/namespaces/{ns}/databases",
                            _database("orders", ns, {"engine": "postgres", "size": "10Gi", "replicas": 3}, "True"))
    await asyncio.to_thread(harness.request, c2, "POST", f"/apis/{CRD_GROUP}/v1/namespaces/{ns}/databases",
                            _database("users", ns, {"engine": "mysql"}, "False"))

    monkeypatch.setenv("MULTICLUSTER_STATE_DIR", str(tmp_path / "state"))
    port = free_port()
    include = ("customresourcedefinitions", f"databases.{CRD_GROUP}")
    cfg = replace(daemon_config(harness, sqlite_store(tmp_path), include), server=ServerConfig(port=port))
    d = Daemon(cfg)
    await d.start(controller=False)
    url = f"http://127.0.0.1:{port}"
    try:
        assert await d.wait_ready(60)
        async with aiohttp.ClientSession() as http:

            async def synced() -> bool:
                params = {"gvr": f"databases.{CRD_GROUP}", "namespace": ns}
                async with http.get(f"{url}/v1/resources", params=params) as r:
                    return r.status == 200 and len((await r.json())["items"]) == 2

            await wait_for(synced, 30)
            # The CRD object the plugin reads: synced like any other type, served by name.
            async with http.get(f"{url}/v1/resources/{c2}/{CRD_TYPE}/_/databases.{CRD_GROUP}") as r:
                assert r.status == 200
                cols = (await r.json())["spec"]["versions"][0]["additionalPrinterColumns"]
                assert [c["name"] for c in cols] == ["Engine", "Size", "Replicas", "Ready", "Age"]

        fetched: list[tuple[str, str, str, str]] = []
        real_get_object = Client.get_object

        def counting_get_object(self: Client, cluster: str, gvr: str, namespace: str, name: str) -> dict[str, Any]:
            fetched.append((cluster, gvr, namespace, name))
            return real_get_object(self, cluster, gvr, namespace, name)

        monkeypatch.setattr(Client, "get_object", counting_get_object)
        env = {"MULTICLUSTER_SERVER": url, "MULTICLUSTER_CLI_CONFIG": str(tmp_path / "no-config"),
               "MULTICLUSTER_TOKEN": None, "NO_COLOR": None, "COLUMNS": "200"}

        async def run(*args: str) -> str:
            res = await asyncio.to_thread(CliRunner().invoke, app, list(args), env=env)
            assert res.exit_code == 0, res.output
            assert_clean(res)
            return str(res.stdout)

        headers, rows = parse_table(await run("list", f"databases.{CRD_GROUP}", "-n", ns))
        assert fetched == [(c1, CRD_TYPE, "", f"databases.{CRD_GROUP}")]
        assert headers == ["CLUSTER", "NAME", "NAMESPACE", "ENGINE", "SIZE", "REPLICAS", "AGE"]
        by_name = {r["NAME"]: r for r in rows}
        assert (by_name["orders"]["CLUSTER"], by_name["orders"]["ENGINE"], by_name["orders"]["SIZE"],
                by_name["orders"]["REPLICAS"]) == (c1, "postgres", "10Gi", "3")
        assert (by_name["users"]["CLUSTER"], by_name["users"]["ENGINE"], by_name["users"]["SIZE"],
                by_name["users"]["REPLICAS"]) == (c2, "mysql", "", "")
        assert all(r["AGE"].endswith(("s", "m")) for r in rows)

        # One object per page (tables are laid out per page): the CRD is still fetched once per command.
        fetched.clear()
        out = await run("list", f"databases.{CRD_GROUP}", "-n", ns, "--chunk-size", "1")
        assert len(fetched) == 1
        assert out.count("postgres") == 1 and out.count("mysql") == 1 and out.count("ENGINE") == 1

        # -o wide adds the priority-1 column (a condition filter); the short name works too.
        fetched.clear()
        headers, rows = parse_table(await run("list", "db", "-n", ns, "-o", "wide"))
        assert headers == ["CLUSTER", "NAME", "NAMESPACE", "ENGINE", "SIZE", "REPLICAS", "READY", "AGE"]
        assert {r["NAME"]: r["READY"] for r in rows} == {"orders": "True", "users": "False"}
        assert len(fetched) == 1

        # Only cluster2's objects: the CRD is read from cluster2, where those objects came from.
        fetched.clear()
        headers, rows = parse_table(await run("list", "db", "-n", ns, "-c", c2))
        assert [r["NAME"] for r in rows] == ["users"] and "ENGINE" in headers
        assert [f[0] for f in fetched] == [c2]

        # Built-in types never ask for a CRD; JSON output needs no columns.
        fetched.clear()
        await run("list", "namespaces", "--name", ns)
        doc = json.loads(await run("list", "db", "-n", ns, "-o", "json"))
        assert len(doc["items"]) == 2 and fetched == []
    finally:
        await d.shutdown()
        for cluster in harness.servers:
            await asyncio.to_thread(harness.request, cluster, "DELETE", f"/api/v1/namespaces/{ns}")
