"""The Go original's deploy/deploy.yaml `args`, verbatim (only paths and addresses swapped for the harness's),
start a real daemon process in lease mode on MariaDB: it syncs the harness clusters, serves the API, leads, logs
at DEBUG, warns about the password flag and writes --ctl-port into the plugin's config file. The original's other
flags (--HealthPort, the MySQL pool flags) do their jobs in a second process."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from multicluster.testing.daemonproc import DaemonProc
from multicluster.testing.harness import Harness, free_port
from multicluster.testing.mariadb import MariaDB

pytestmark = [pytest.mark.integration, pytest.mark.mariadb]

# deploy/deploy.yaml of the Go original: containers[0].args, in its order and spelling.
DEPLOY_ARGS = [
    "--db-user=root",
    "--db-password=123456",
    "--db-endpoint=10.0.0.16:30110",
    "--db-database=resources",
    "--debug-mode=true",
    "--config=/app/file/config.yaml",
    "--ctl-port=31888",
    "--lease-name=multi-cluster-operator-lease",
    "--lease-namespace=default",
    "--lease-mode=true",
]


def wait(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def config(h: Harness) -> dict[str, Any]:
    """The original's config.yaml shape (clusters with metadata), kept to two types so the sync is quick."""
    return {
        "clusters": [
            {"metadata": {"clusterName": n, "configPath": str(s.kubeconfig), "isMaster": n == "cluster1"}}
            for n, s in h.servers.items()
        ],
        "resources": {"include": ["configmaps", "namespaces"]},
    }


def swapped(d: DaemonProc, db: MariaDB, database: str) -> list[str]:
    """DEPLOY_ARGS with the deployment's addresses and paths replaced by the harness's."""
    swap = {
        "--db-user=root": f"--db-user={db.user}",
        "--db-password=123456": f"--db-password={db.password}",
        "--db-endpoint=10.0.0.16:30110": f"--db-endpoint=127.0.0.1:{db.port}",
        "--db-database=resources": f"--db-database={database}",
        # DaemonProc.start writes the config (with a free API port) here.
        "--config=/app/file/config.yaml": f"--config={d.workdir / f'daemon-{d.port}.yaml'}",
    }
    return [swap.get(a, a) for a in DEPLOY_ARGS]


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return int(r.status), bytes(r.read())
    except urllib.error.HTTPError as e:
        return int(e.code), bytes(e.read())


def test_deploy_yaml_args_verbatim(harness: Harness, mariadb_server: MariaDB, tmp_path: Path, unique: str) -> None:
    db = mariadb_server
    database = db.create_database(f"orig_{unique}")
    d = DaemonProc(tmp_path, config(harness))
    # The harness's DaemonProc passes --no-write-cli-config; the original always wrote the plugin's file.
    d.start(["--write-cli-config", *swapped(d, db, database)], env={"POD_NAME": f"orig-{unique}"})
    try:
        d.wait_ready(120)
        # Syncs: every harness cluster's namespaces reach MariaDB and come back through the seed route.
        def synced() -> bool:
            status, body = d.get("/v1/list_with_cluster?gvr=v1/namespaces&name=kube-system&limit=0")
            return status == 200 and {i["clusterName"] for i in json.loads(body)} == set(harness.servers)
        wait(synced, 30, "kube-system of every cluster in /v1/list_with_cluster")
        rows = db.sql(f"SELECT COUNT(DISTINCT cluster) FROM `{database}`.resources")
        assert int(rows.strip()) == len(harness.servers)
        # --lease-mode=true: the only replica takes the lease named by --lease-name in --lease-namespace.
        wait(lambda: d.metric("multicluster_leader") == 1, 40, "the replica to lead")
        lease = harness.request("cluster1", "GET",
                                "/apis/coordination.k8s.io/v1/namespaces/default/leases/multi-cluster-operator-lease")
        assert lease["spec"]["holderIdentity"] == f"orig-{unique}"
        log = d.log_path.read_text()
        assert " DEBUG " in log  # --debug-mode=true, although DaemonProc asked for --log-level WARNING
        assert "--db-password was given on the command line" in log and db.password not in log
        # --ctl-port=31888: the port the plugin's config file names (the API itself listens on d.port).
        cli_config = yaml.safe_load((tmp_path / "cli-config").read_text())
        assert cli_config["serverPort"] == 31888
        assert cli_config["masterClusterKubeConfigPath"] == str(harness.servers["cluster1"].kubeconfig)
    finally:
        assert d.stop() == 0, d.log_path.read_text()[-3000:]


def test_health_port_and_pool_flags(harness: Harness, mariadb_server: MariaDB, tmp_path: Path, unique: str) -> None:
    db = mariadb_server
    database = db.create_database(f"pool_{unique}")
    health = free_port()
    d = DaemonProc(tmp_path, config(harness))
    d.start([f"--db-endpoint=127.0.0.1:{db.port}", "--db-user", db.user, f"--db-database={database}",
             "--HealthPort", str(health), "--mysql-max-idle-connections=3", "--mysql-max-open-connections", "5",
             "--mysql-max-connection-life-time=1m", "--lease-mode=false"],
            env={"MULTICLUSTER_DB_PASSWORD": db.password})
    try:
        d.wait_ready(120)
        base = f"http://127.0.0.1:{health}"
        assert get(base + "/healthz") == (200, b'{"status":"ok"}')
        status, body = get(base + "/readyz")
        assert status == 200 and json.loads(body)["ready"] is True
        # Only the health checks: the API stays on its own port.
        assert get(base + "/v1/list?gvr=v1/namespaces")[0] == 404
        assert d.get("/v1/list?gvr=v1/namespaces")[0] == 200
        # --mysql-max-idle-connections=3: three connections opened up front and kept while idle.
        count = db.sql(f"SELECT COUNT(*) FROM information_schema.processlist WHERE db = '{database}'")
        assert int(count.strip()) >= 3
        assert d.metric("multicluster_leader") == 1  # --lease-mode=false: a lone daemon leads without a lease
    finally:
        assert d.stop() == 0, d.log_path.read_text()[-3000:]
    assert not _listening(health)  # closed with the API at shutdown


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0
