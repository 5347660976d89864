"""Unjoin in lease mode: replicas share one store, so a replica that stops syncing a cluster must not purge rows
another replica still keeps current. Two real daemon processes over MariaDB, a real 4th cluster joined on both;
unjoined on one, its rows stay (and keep converging through the other); unjoined on the last, they are purged."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from multicluster.testing.daemonproc import DaemonProc
from multicluster.testing.harness import Harness
from multicluster.testing.mariadb import MariaDB
from tests.ha.test_replicas import config, store_index, wait
from tests.sync.helpers import CM, api_index

pytestmark = [pytest.mark.integration, pytest.mark.mariadb]


Body = dict[str, object]


def call(rep: DaemonProc, method: str, path: str, body: Body | None = None) -> tuple[int, Body]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(rep.url + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return int(r.status), json.loads(r.read())
    except urllib.error.HTTPError as e:
        return int(e.code), json.loads(e.read())


def test_unjoin_keeps_rows_other_replicas_sync(
    harness: Harness, mariadb_server: MariaDB, tmp_path: Path, unique: str
) -> None:
    db = mariadb_server
    database = db.create_database(f"unj_{unique}")
    cfg = config(harness, db, database)  # clusters 1-3 from the file
    harness.add_cluster("cluster7", "insecure-token")
    server7 = harness.servers["cluster7"]
    args = ["--lease-mode", "--lease-name", f"mc-unjoin-{unique}", "--lease-namespace", "default"]
    reps = [DaemonProc(tmp_path, cfg) for _ in range(2)]
    try:
        for i, r in enumerate(reps):
            # Each replica has its own state dir, as each pod does.
            r.start(args, env={"POD_NAME": f"rep-{i}", "MULTICLUSTER_STATE_DIR": str(tmp_path / f"state-{i}")},
                    log_level="INFO")
        for r in reps:
            r.wait_ready(120)
        ns = f"unj-{unique}"
        harness.request("cluster7", "POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
        for i in range(10):
            harness.request("cluster7", "POST", CM.path(ns), {"metadata": {"name": f"cm-{i}"}})
        kubeconfig = server7.kubeconfig.read_text()
        for r in reps:
            status, body = call(r, "POST", "/v1/join", {"cluster": "cluster7", "kubeconfig": kubeconfig,
                                                        "insecure": True})
            assert status == 200, body

        def synced() -> bool:
            return api_index(harness, "cluster7", CM) == store_index(db, database, "cluster7")

        wait(synced, 60, "cluster7's configmaps in the shared store")
        status, body = call(reps[0], "DELETE", "/v1/unjoin?cluster=cluster7")
        assert status == 200, body
        assert body["rowsDeleted"] == 0 and body.get("keptFor") == ["rep-1"], body
        # Replica 1 still syncs cluster7: its rows are all there, and new objects keep arriving through it.
        assert store_index(db, database, "cluster7"), "cluster7's rows were purged while rep-1 still syncs it"
        for i in range(10, 15):
            harness.request("cluster7", "POST", CM.path(ns), {"metadata": {"name": f"cm-{i}"}})
        harness.request("cluster7", "DELETE", CM.path(ns) + "/cm-0")
        wait(synced, 60, "cluster7 to keep converging through rep-1 alone")
        # The last replica to let it go purges.
        status, body = call(reps[1], "DELETE", "/v1/unjoin?cluster=cluster7")
        assert status == 200 and int(str(body["rowsDeleted"])) > 0 and "keptFor" not in body, body
        assert store_index(db, database, "cluster7") == {}
        time.sleep(3)  # nothing flows back
        assert store_index(db, database, "cluster7") == {}
        # Clusters from the file are refused on every replica, and nothing was purged.
        status, body = call(reps[0], "DELETE", "/v1/unjoin?cluster=cluster2")
        assert status == 409, body
        wait(lambda: store_index(db, database, "cluster2") == api_index(harness, "cluster2", CM), 30,
             "cluster2's rows intact")
    finally:
        for r in reps:
            r.kill()
        harness.remove_cluster("cluster7")
