"""JSON logs can be filtered by cluster: a real daemon process (MULTICLUSTER_LOG_FORMAT=json, DEBUG) syncing the
harness clusters plus one dead cluster writes one JSON object per line, and every record about a cluster carries
it as the top-level field `cluster` (and the resource type as `gvr` where there is one) instead of only in the
message text. The text format shows the same fields as a `cluster=NAME gvr=TYPE` prefix."""

from __future__ import annotations

import asyncio
import io
import logging
import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from multicluster.logsetup import TextFormatter, cluster_logger
from multicluster.testing.daemonproc import DaemonProc
from multicluster.testing.harness import Harness
from tests.faults.helpers import proc_config, sqlite_doc, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.faults]

DEAD = "deadlogs"


def _records(path: Path) -> list[dict[str, Any]]:
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        try:
            rec = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise AssertionError(f"{path}:{n} is not a JSON record: {line[:300]}") from None
        assert isinstance(rec, dict) and {"time", "level", "logger", "message"} <= rec.keys(), line[:300]
        out.append(rec)
    return out


PER_MCR = re.compile(r"(reconciled|MultiClusterResource) [a-z0-9-]+/[^ ]+[: ]")


async def test_json_records_carry_the_cluster_as_a_field(harness: Harness, tmp_path: Path) -> None:
    dead_kc = tmp_path / "dead.kubeconfig"
    dead_kc.write_text(
        harness.servers["cluster1"].kubeconfig.read_text().replace(f":{harness.servers['cluster1'].port}", ":1")
    )
    cfg = proc_config(harness, sqlite_doc(tmp_path / "store.db"), ["configmaps"])
    # cluster1 is the master: the delivery controller's records (CRD install, its informers) are checked too.
    cfg["clusters"].append({"metadata": {"clusterName": DEAD, "configPath": str(dead_kc)}})
    names = [*harness.servers, DEAD]
    p = DaemonProc(tmp_path, cfg)
    p.start(env={"MULTICLUSTER_LOG_FORMAT": "json"}, log_level="DEBUG")
    try:
        def settled() -> bool:
            text = p.log_path.read_text()
            # Every live cluster finished its initial sync, and the dead one's failure was logged.
            return (text.count("initial sync done") >= len(harness.servers) and f'"cluster":"{DEAD}"' in text
                    and "delivery controller running" in text)

        await asyncio.to_thread(wait_for, settled, 120, "initial syncs and the dead cluster's failure in the log")
    finally:
        assert p.stop() == 0, p.log_path.read_text()[-3000:]

    records = _records(p.log_path)
    dead = [r for r in records if r.get("cluster") == DEAD]
    assert any(r["level"] == "WARNING" and "cannot connect" in r["message"] for r in dead), dead
    for name in harness.servers:
        done = [r for r in records if r.get("cluster") == name and "initial sync done" in r["message"]]
        assert done and all(f"[{name}]" not in r["message"] for r in done), done
    assert any(r.get("cluster") == "cluster1" and "delivery controller running" in r["message"] for r in records)
    # Records of one cluster and type name the type as a field too (the informer's list and watch records).
    assert any(r.get("cluster") == "cluster1" and r.get("gvr") == "v1/configmaps" for r in records)
    # No record names a cluster only in its text: where a cluster's name appears, the field says which.
    # A record about one MultiClusterResource (its reconcile summary, its retries) lists the outcome in each of its
    # clusters: its subject is the MCR, named in the text, and no single cluster field fits it.
    only_in_text = sorted({f"{r['logger']} {r['level']} cluster={r.get('cluster')}: {r['message'][:200]}"
                           for r in records for n in names
                           if re.search(rf"(?<![\w-]){re.escape(n)}(?![\w-])", r["message"]) and r.get("cluster") != n
                           and not PER_MCR.match(r["message"])})
    assert not only_in_text, "\n".join(only_in_text)


def test_text_records_show_the_fields_before_the_message() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(TextFormatter())
    logger = logging.getLogger("tests.log_fields")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        cluster_logger(logger, "c1", "apps/v1/deployments").warning("listed %d", 3)
        cluster_logger(logger, "c2").info("joined", extra={"gvr": "v1/pods"})
        logger.info("no cluster")
    finally:
        logger.removeHandler(handler)
    lines = [line.split(" ", 1)[1] for line in out.getvalue().splitlines()]  # without the time
    assert lines == ["WARNING cluster=c1 gvr=apps/v1/deployments listed 3",
                     "INFO    cluster=c2 gvr=v1/pods joined",
                     "INFO    no cluster"]
