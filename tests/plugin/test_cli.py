"""`kubectl multicluster` against a running API: columns, outputs, filters, paging, warnings, errors, config."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from pathlib import Path

import orjson
import pytest
import yaml
from aiohttp.test_utils import TestServer

from multicluster.api import ClusterView, build_app
from multicluster.metrics import REGISTRY
from tests.api.dataset import DEPLOYS, PODS, Dataset, expected
from tests.api.helpers import Backend, fresh_views
from tests.plugin.conftest import Cli, assert_clean, parse_table

POD_HEADERS = ["CLUSTER", "NAME", "NAMESPACE", "NODE", "POD IP", "STATUS", "CONTAINER", "IMAGE"]


async def test_list_pods_table(cli: Cli, dataset: Dataset) -> None:
    r = await cli("list", "pods")
    assert r.exit_code == 0, r.output
    assert_clean(r)
    names, rows = parse_table(r.stdout)
    assert names == POD_HEADERS
    assert len(rows) == 15
    a = dataset.namespaces[0]
    web0 = next(row for row in rows if row["CLUSTER"] == "cluster2" and row["NAME"] == "web-0")
    assert web0 == {"CLUSTER": "cluster2", "NAME": "web-0", "NAMESPACE": a, "NODE": "node-1", "POD IP": "10.2.0.10",
                    "STATUS": "Running", "CONTAINER": "nginx,sidecar", "IMAGE": "nginx:1.25,envoyproxy/envoy:v1.30"}
    failed = [row for row in rows if row["STATUS"] == "Failed"]
    assert [(row["CLUSTER"], row["NAME"]) for row in failed] == [("cluster2", "job-a1")]
    # Plain space-aligned columns: no borders, three spaces between columns, no colour off a TTY.
    header = r.stdout.splitlines()[0]
    assert header.startswith("CLUSTER    NAME") and "|" not in r.stdout and "─" not in r.stdout


@pytest.mark.parametrize("spelling", ["pods", "po", "v1.pods", "core.v1.pods", "v1/pods", "core/v1/pods", "Pod"])
async def test_pod_spellings(cli: Cli, spelling: str) -> None:
    r = await cli("list", spelling, "-c", "cluster1")
    assert r.exit_code == 0, r.output
    names, rows = parse_table(r.stdout)
    assert names == POD_HEADERS and len(rows) == 5


@pytest.mark.parametrize("spelling", ["deployments", "deploy", "apps.v1.deployments", "v1.apps.deployments",
                                      "apps/v1/deployments", "deployments.apps"])
async def test_deployment_columns(cli: Cli, dataset: Dataset, spelling: str) -> None:
    r = await cli("list", spelling)
    assert r.exit_code == 0, r.output
    names, rows = parse_table(r.stdout)
    assert names == ["CLUSTER", "NAME", "NAMESPACE", "TOTAL", "AVAILABLE", "READY"]
    assert len(rows) == 6
    for cluster, obj in dataset.items(DEPLOYS):
        row = next(x for x in rows if x["CLUSTER"] == cluster and x["NAME"] == obj["metadata"]["name"])
        st = obj.get("status") or {}
        assert row["TOTAL"] == str(st.get("replicas", 0))
        assert row["AVAILABLE"] == str(st.get("availableReplicas", 0))
        assert row["READY"] == str(st.get("readyReplicas", 0))


async def test_configmap_and_crd_and_generic_columns(cli: Cli, dataset: Dataset) -> None:
    r = await cli("list", "cm", "--clusterName", "cluster1")
    names, rows = parse_table(r.stdout)
    assert names == ["CLUSTER", "NAME", "NAMESPACE", "DATA"]
    assert {(x["NAME"], x["DATA"]) for x in rows} == {("settings", "2"), ("settings-extra", "1"),
                                                      ("only-in-cluster1", "0"), ("percent-literal", "1")}
    r = await cli("list", "rr")
    names, rows = parse_table(r.stdout)
    assert names == ["CLUSTER", "NAME", "NAMESPACE", "KIND", "CLUSTERS", "APPLIED", "READY", "AGE"]
    row = next(x for x in rows if x["CLUSTER"] == "cluster1")
    assert row["NAME"] == "mypod.pod" and row["KIND"] == "Pod" and row["CLUSTERS"] == "cluster2,cluster3"
    # Everything else: CLUSTER NAME NAMESPACE AGE; cluster-scoped kinds drop NAMESPACE, like kubectl.
    r = await cli("list", "namespaces", "-c", "cluster3")
    names, rows = parse_table(r.stdout)
    assert names == ["CLUSTER", "NAME", "AGE"]
    assert dataset.namespaces[0] in {x["NAME"] for x in rows}
    assert all(x["AGE"][-1] in "smhdy" for x in rows)


async def test_wide_output(cli: Cli) -> None:
    r = await cli("list", "pods", "-o", "wide", "-c", "cluster1")
    names, rows = parse_table(r.stdout)
    assert names == [*POD_HEADERS, "READY", "RESTARTS", "AGE"]
    assert rows[0]["READY"].endswith("/1") or rows[0]["READY"].endswith("/2")
    r = await cli("list", "deploy", "-o", "wide")
    names, _ = parse_table(r.stdout)
    assert names == ["CLUSTER", "NAME", "NAMESPACE", "TOTAL", "AVAILABLE", "READY", "UP-TO-DATE", "AGE",
                     "CONTAINERS", "IMAGES", "SELECTOR"]


async def test_json_yaml_name_outputs(cli: Cli, dataset: Dataset) -> None:
    r = await cli("list", "pods", "-o", "json", "-c", "cluster3")
    assert r.exit_code == 0
    doc = orjson.loads(r.stdout)
    assert doc["apiVersion"] == "v1" and doc["kind"] == "List" and len(doc["items"]) == 5
    assert {i["metadata"]["annotations"]["multicluster.io/cluster"] for i in doc["items"]} == {"cluster3"}
    assert all(i["kind"] == "Pod" for i in doc["items"])
    r = await cli("list", "pods", "-o", "yaml", "-c", "cluster3")
    ydoc = yaml.safe_load(r.stdout)
    assert ydoc["kind"] == "List" and ydoc["items"] == doc["items"]
    r = await cli("list", "deploy", "-o", "name")
    assert sorted(r.stdout.split()) == sorted(f"{c}/deployment.apps/{o['metadata']['name']}"
                                              for c, o in dataset.items(DEPLOYS))
    r = await cli("list", "po", "-o", "name", "--name", "web-0")
    assert sorted(r.stdout.split()) == ["cluster1/pod/web-0", "cluster2/pod/web-0", "cluster3/pod/web-0"]
    # Empty results are still valid documents.
    for fmt, load in (("json", orjson.loads), ("yaml", yaml.safe_load)):
        r = await cli("list", "pods", "-o", fmt, "--name", "nothing-here")
        assert r.exit_code == 0
        assert load(r.stdout)["items"] == []


async def test_filters(cli: Cli, dataset: Dataset) -> None:
    a, b = dataset.namespaces

    async def got(*args: str) -> set[tuple[str, str, str]]:
        r = await cli("list", "pods", "-o", "json", *args)
        assert r.exit_code == 0, r.output
        return {(i["metadata"]["annotations"]["multicluster.io/cluster"], i["metadata"]["namespace"],
                 i["metadata"]["name"]) for i in orjson.loads(r.stdout)["items"]}

    assert await got("--clusterName", "cluster2") == expected(dataset, PODS, clusters=["cluster2"])
    assert await got("-c", "cluster1", "--cluster", "cluster3") == expected(dataset, PODS,
                                                                             clusters=["cluster1", "cluster3"])
    assert await got("-n", b) == expected(dataset, PODS, namespaces=[b])
    assert await got("--namespace", a, "-A") == expected(dataset, PODS)
    assert await got("--name", "db-0") == expected(dataset, PODS, name="db-0")
    assert await got("db-0") == expected(dataset, PODS, name="db-0")
    assert await got("-l", "app in (web),!canary") == expected(
        dataset, PODS, labels=[("app", "in", ("web",)), ("canary", "!", ())])
    assert await got("--selector", "tier=backend", "--field-selector", "status.phase!=Running") == expected(
        dataset, PODS, labels=[("tier", "=", ("backend",))], fields=[("status.phase", "!=", "Running")])
    r = await cli("list", "pods", "--limit", "4", "--no-headers")
    assert len(r.stdout.splitlines()) == 4 and "CLUSTER" not in r.stdout


async def test_streams_page_by_page(cli: Cli) -> None:
    def requests() -> float:
        return REGISTRY.get_sample_value("multicluster_query_seconds_count", {"route": "/v1/resources"}) or 0.0

    before = requests()
    r = await cli("list", "pods", "--chunk-size", "2")
    assert r.exit_code == 0, r.output
    assert requests() - before == 8
    lines = r.stdout.splitlines()
    assert lines[0].startswith("CLUSTER") and len(lines) == 16
    assert sum(ln.startswith("CLUSTER") for ln in lines) == 1
    before = requests()
    r = await cli("list", "pods", "--chunk-size", "2", "--limit", "5", "-o", "name")
    assert len(r.stdout.split()) == 5 and requests() - before == 3


async def test_describe(cli: Cli, dataset: Dataset) -> None:
    a = dataset.namespaces[0]
    r = await cli("describe", "core.v1.pods", "--clusterName", "cluster2", "--namespace", a, "--name", "web-0")
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("# cluster: cluster2   resource: v1/pods   freshness: fresh\napiVersion: v1\n")
    docs = list(yaml.safe_load_all(r.stdout))
    assert len(docs) == 1 and docs[0]["metadata"]["name"] == "web-0" and docs[0]["kind"] == "Pod"
    r = await cli("describe", "configmaps", "--name", "settings")
    docs = list(yaml.safe_load_all(r.stdout))
    assert len(docs) == 3 and r.stdout.count("\n---\n") == 2
    assert {d["data"]["a"] for d in docs} == {"1"}
    assert [ln.split()[2] for ln in r.stdout.splitlines() if ln.startswith("# cluster:")] == \
        ["cluster1", "cluster2", "cluster3"]
    r = await cli("describe", "apps/v1/deployments", "web", "-c", "cluster1")
    assert yaml.safe_load(r.stdout)["spec"]["replicas"] == 2
    r = await cli("describe", "pods", "--name", "nope")
    assert r.exit_code == 0 and r.stdout == "" and "No resources found." in r.stderr


async def test_no_resources_found(cli: Cli) -> None:
    r = await cli("list", "batch.v1.jobs")
    assert r.exit_code == 0
    assert r.stdout == "" and r.stderr.strip() == "No resources found."


async def test_stale_and_missing_clusters_warn_once(backend: Backend, dataset: Dataset, tmp_path: Path) -> None:
    now = time.time()
    views = fresh_views(dataset, now)
    v = views[1]
    views[1] = ClusterView(name=v.name, is_master=False, host=v.host, reachable=False, ready=True,
                           last_sync=now - 190, error="connection refused", syncs=v.syncs)
    backend.views = views
    srv = TestServer(build_app(backend), host="127.0.0.1")
    await srv.start_server()
    try:
        cli = Cli({"MULTICLUSTER_SERVER": f"http://127.0.0.1:{srv.port}",
                   "MULTICLUSTER_CLI_CONFIG": str(tmp_path / "none"), "MULTICLUSTER_TOKEN": None})
        r = await cli("list", "pods", "--chunk-size", "3", "-c", "cluster1", "-c", "cluster2", "-c", "gone")
        assert r.exit_code == 0
        warnings = [ln for ln in r.stderr.splitlines() if ln.startswith("warning:")]
        assert warnings == [
            "warning: cluster cluster2 is stale (last sync 3m10s ago: connection refused)",
            "warning: cluster gone is missing (unknown to the daemon, or v1/pods never synced there)",
        ]
        assert len(r.stdout.splitlines()) == 11  # stale data is still printed
        r = await cli("describe", "pods", "web-0", "-c", "cluster2")
        assert r.stdout.startswith("# cluster: cluster2   resource: v1/pods   freshness: stale (last sync 3m10s ago")
    finally:
        await srv.close()


async def test_list_clusters(cli: Cli, dataset: Dataset) -> None:
    r = await cli("list", "clusters")
    assert r.exit_code == 0, r.output
    names, rows = parse_table(r.stdout)
    assert names == ["NAME", "VERSION", "HOST", "PLATFORM", "ISMASTER", "STATUS", "OBJECTS", "LASTSYNC"]
    assert [x["NAME"] for x in rows] == ["cluster1", "cluster2", "cluster3"]
    assert rows[0]["ISMASTER"] == "true" and rows[1]["ISMASTER"] == "false"
    assert {x["STATUS"] for x in rows} == {"Ready"}
    assert rows[0]["VERSION"] == "v1.37.2" and rows[0]["PLATFORM"] == "linux/amd64"
    assert rows[0]["OBJECTS"] == str(sum(len(o) for (c, _), o in dataset.objects.items() if c == "cluster1"))
    assert rows[0]["LASTSYNC"].endswith(" ago")
    r = await cli("list", "clusters", "-o", "json")
    assert [c["name"] for c in orjson.loads(r.stdout)["clusters"]] == ["cluster1", "cluster2", "cluster3"]
    r = await cli("list", "clusters", "-o", "name")
    assert r.stdout.split() == ["cluster/cluster1", "cluster/cluster2", "cluster/cluster3"]


async def test_errors_are_one_red_line_and_exit_codes(cli: Cli) -> None:
    r = await cli("list", "podz")
    assert r.exit_code == 1
    assert_clean(r)
    assert r.stdout == ""
    assert r.stderr.splitlines() == ['error: unknown resource type "podz"', "hint: did you mean: pods?"]
    r = await cli("list", "pods", "-l", "app in web")
    assert r.exit_code == 1
    assert r.stderr.splitlines()[0] == 'error: labelSelector: unexpected "web" at position 8, expected "(" after "in"'
    r = await cli("list", "pods", "--field-selector", "spec.replicas=1")
    assert r.exit_code == 1 and "supported fields: metadata.name" in r.stderr
    r = await cli("list")
    assert r.exit_code == 2 and r.stderr.startswith("error: specify a resource type")
    r = await cli("list", "pods", "-o", "table")
    assert r.exit_code == 2 and 'unknown output format "table"' in r.stderr
    r = await cli("list", "pods", "--limit", "-1")
    assert r.exit_code == 2
    r = await cli("describe", "apps/v1/nothing")
    assert r.exit_code == 1 and 'error: unknown resource type "apps/v1/nothing"' in r.stderr


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_server_unreachable_says_where_the_address_came_from(cli: Cli, tmp_path: Path) -> None:
    port = _closed_port()
    r = await cli("list", "pods", "--server", f"127.0.0.1:{port}")
    assert r.exit_code == 1
    assert_clean(r)
    first, hint = r.stderr.splitlines()
    assert first.startswith(f"error: cannot reach the multicluster API at http://127.0.0.1:{port} (")
    assert first.endswith("the address came from the --server flag")
    assert "multicluster run" in hint
    r = await cli("list", "pods", env={"MULTICLUSTER_SERVER": f"http://127.0.0.1:{port}"})
    assert "the address came from $MULTICLUSTER_SERVER" in r.stderr
    cfg = tmp_path / "cfg"
    cfg.write_text(f"serverIP: 127.0.0.1\nserverPort: {port}\n")
    r = await cli("list", "pods", env={"MULTICLUSTER_SERVER": None, "MULTICLUSTER_CLI_CONFIG": str(cfg)})
    assert f"the address came from the config file {cfg}" in r.stderr
    r = await cli("list", "pods", env={"MULTICLUSTER_SERVER": None,
                                       "MULTICLUSTER_CLI_CONFIG": str(tmp_path / "missing")})
    assert "http://localhost:31888" in r.stderr and "the default (no config file at" in r.stderr
    r = await cli("list", "pods", "--server", "ftp://x")
    assert r.exit_code == 1 and "is not a server address" in r.stderr


async def test_config_file_formats(cli: Cli, server: TestServer, tmp_path: Path) -> None:
    old = tmp_path / "old"
    old.write_text(f"server: {server.port}\n")  # the seed README's format: port only, host localhost
    new = tmp_path / "new"
    new.write_text(f"serverIP: 127.0.0.1\nserverPort: '{server.port}'\n"
                   "masterClusterKubeConfigPath: /root/.kube/config\n")
    for path in (old, new):
        r = await cli("list", "cm", "-o", "name",
                      env={"MULTICLUSTER_SERVER": None, "MULTICLUSTER_CLI_CONFIG": str(path)})
        assert r.exit_code == 0, r.output
        assert len(r.stdout.split()) == 12
    bad = tmp_path / "bad"
    bad.write_text("serverPort: [1, 2\n")
    r = await cli("list", "cm", env={"MULTICLUSTER_SERVER": None, "MULTICLUSTER_CLI_CONFIG": str(bad)})
    assert r.exit_code == 1 and r.stderr.startswith(f"error: {bad}: not valid YAML")


async def test_bearer_token_sources(backend: Backend, tmp_path: Path) -> None:
    backend.token = "plugin-token"
    srv = TestServer(build_app(backend), host="127.0.0.1")
    await srv.start_server()
    try:
        url = f"http://127.0.0.1:{srv.port}"
        cfg = tmp_path / "cfg"
        cfg.write_text(f"serverIP: 127.0.0.1\nserverPort: {srv.port}\ntoken: plugin-token\n")
        base = Cli({"MULTICLUSTER_SERVER": url, "MULTICLUSTER_CLI_CONFIG": str(tmp_path / "none"),
                    "MULTICLUSTER_TOKEN": None})
        r = await base("list", "pods")
        assert r.exit_code == 1
        assert r.stderr.splitlines()[0] == "error: missing or wrong bearer token"
        assert (await base("list", "pods", "--token", "wrong")).exit_code == 1
        assert (await base("list", "pods", "--token", "plugin-token")).exit_code == 0
        assert (await base("list", "pods", env={"MULTICLUSTER_TOKEN": "plugin-token"})).exit_code == 0
        r = await base("list", "pods", env={"MULTICLUSTER_SERVER": None, "MULTICLUSTER_CLI_CONFIG": str(cfg)})
        assert r.exit_code == 0, r.output
        # --server from the flag, token still from the config file.
        r = await base("list", "clusters", "--server", url, env={"MULTICLUSTER_CLI_CONFIG": str(cfg)})
        assert r.exit_code == 0, r.output
    finally:
        await srv.close()


async def test_real_kubectl_runs_the_plugin(url: str, tmp_path: Path) -> None:
    """kubectl's plugin mechanism: `kubectl multicluster ...` executes `kubectl-multicluster` found on PATH."""
    kubectl = "/usr/bin/kubectl"
    if not os.path.exists(kubectl):
        pytest.skip("kubectl is not installed at /usr/bin/kubectl")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "kubectl-multicluster"
    repo = Path(__file__).resolve().parents[2]
    script.write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(repo)!r})\n"
                      "from plugin.cli import main\nmain()\n")
    script.chmod(0o755)
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "MULTICLUSTER_SERVER": url,
           "MULTICLUSTER_CLI_CONFIG": str(tmp_path / "none"), "KUBECONFIG": str(tmp_path / "no-kubeconfig")}
    env.pop("MULTICLUSTER_TOKEN", None)
    proc = await asyncio.create_subprocess_exec(kubectl, "plugin", "list", env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    assert str(script) in out.decode()
    proc = await asyncio.create_subprocess_exec(kubectl, "multicluster", "list", "pods", "--clusterName", "cluster1",
                                                env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    names, rows = parse_table(out.decode())
    assert names == POD_HEADERS and len(rows) == 5
    proc = await asyncio.create_subprocess_exec(kubectl, "multicluster", "list", "nothing", env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 1
    assert err.decode().startswith('error: unknown resource type "nothing"') and "Traceback" not in err.decode()

