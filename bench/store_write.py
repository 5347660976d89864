"""Store write throughput: synthetic ~2.5 KB Pods upserted in batches, SQLite file vs a private MariaDB.

Measures the store alone (no informer, no JSON parsing), so the numbers are the ceiling the sync path can
reach. Three passes per run: insert (new rows), update (every RV bumped: rows, labels and fields rewritten),
and skip (same RVs again: the guard refuses every row, which is what a relist of an unchanged cluster costs).

    python -m bench.store_write [--objects 20000] [--batch 500] [--runs 3] [--stores sqlite,mariadb]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import orjson

from bench.common import machine, median, table
from multicluster.config import StoreConfig
from multicluster.gvr import GVR
from multicluster.store import Row, open_store
from multicluster.testing.mariadb import MariaDB

PODS = GVR("", "v1", "pods")


def pod_row(i: int, rv: int) -> Row:
    ns, name = f"ns-{i % 50}", f"bench-pod-{i:06d}-{uuid.UUID(int=i).hex[:10]}"
    labels = {"app": f"app-{i % 40}", "pod-template-hash": f"{i % 997:06x}", "tier": ("web", "db")[i % 2]}
    node = f"node-{i % 100}"
    body = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "uid": str(uuid.UUID(int=i)), "resourceVersion": str(rv),
                     "creationTimestamp": "2026-01-01T00:00:00Z", "labels": labels,
                     "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-01-01T00:00:00Z"}},
        "spec": {
            "nodeName": node, "restartPolicy": "Always", "serviceAccountName": "default",
            "containers": [{
                "name": f"c{j}", "image": f"registry.example.com/team/app-{i % 40}:v1.{j}",
                "args": ["--listen=:8080", "--log-level=info", "--metrics"],
                "env": [{"name": f"ENV_{k}", "value": f"value-{k}-{i}"} for k in range(10)],
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                              "limits": {"cpu": "500m", "memory": "256Mi"}},
                "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                "volumeMounts": [{"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io",
                                  "readOnly": True}],
            } for j in range(2)],
        },
        "status": {
            "phase": "Running", "hostIP": "10.0.0.1", "podIP": f"10.1.{i // 250 % 250}.{i % 250}",
            "conditions": [{"type": t, "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}
                           for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")],
        },
    }
    return Row(cluster="bench", gvr=PODS, namespace=ns, name=name, uid=str(uuid.UUID(int=i)), kind="Pod",
               resource_version=rv, object=orjson.dumps(body), labels=labels,
               fields={"status.phase": "Running", "spec.nodeName": node}, owner="", created_at="2026-01-01T00:00:00Z")


async def one_run(cfg: StoreConfig, objects: int, batch: int) -> dict[str, float]:
    """Rows/s of each pass on a fresh, empty store."""
    store = open_store(cfg)
    await store.open()
    out: dict[str, float] = {}
    try:
        for phase, rv in (("insert", 1), ("update", 2), ("skip", 2)):
            rows = [pod_row(i, rv) for i in range(objects)]
            t0 = time.perf_counter()
            for k in range(0, objects, batch):
                await store.apply(rows[k : k + batch])
            out[phase] = objects / (time.perf_counter() - t0)
    finally:
        await store.close()
    return out


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(prog="python -m bench.store_write")
    ap.add_argument("--objects", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--stores", default="sqlite,mariadb")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="mc-bench-store-"))
    size = len(pod_row(0, 1).object)
    results: list[list[object]] = []
    db: MariaDB | None = None
    try:
        for kind in args.stores.split(","):
            runs: list[dict[str, float]] = []
            for n in range(args.runs):
                if kind == "sqlite":
                    cfg = StoreConfig(type="sqlite", path=work / f"run{n}.db")
                else:
                    if db is None:
                        db = MariaDB(work / "mariadb")
                        db.start()
                    name = db.create_database(f"bench_{n}")
                    cfg = StoreConfig(type="mysql", host="127.0.0.1", port=db.port, user=db.user,
                                      password=db.password, database=name)
                runs.append(asyncio.run(one_run(cfg, args.objects, args.batch)))
            results.append([kind, *(median([r[p] for r in runs]) for p in ("insert", "update", "skip"))])
    finally:
        if db is not None:
            db.stop()
        shutil.rmtree(work, ignore_errors=True)
    head = (f"{args.objects:,} Pods of {size:,} bytes, batches of {args.batch}, median of {args.runs} runs, "
            f"{machine()}.\n\n")
    return head + table(["store", "insert rows/s", "update rows/s", "skip (same RV) rows/s"], results)


if __name__ == "__main__":
    print(main())
