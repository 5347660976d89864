"""Delivery latency on real API servers: 100 MultiClusterResources x 3 clusters.

    python bench/delivery.py                    # starts its own harness (3 clusters) in a temp dir
    python bench/delivery.py --config DIR/config.yaml   # or use clusters from `python -m multicluster.testing up`

Measures, with watches on the member clusters and on the CRs that are independent of the controller, and with
the controller's status aggregation on (every copy's own status summarised into the CR's status.clusters[]):
- create → delivered: from the POST of a CR until its copy exists in all 3 clusters;
- hand edit → corrected: from a merge-patch of a copy's data (kubectl edit style) until the watch shows the
  controller's value back;
- create → status ready: until the CR's status says ready 3/3 (every copy applied and Healthy).
Target: p99 < 1 s for the first two.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from multicluster.config import load_config
from multicluster.delivery import MANAGED_BY_LABEL, Controller, DeliveryOptions
from multicluster.kube import MERGE_PATCH, ClusterClient
from multicluster.sync.informer import Informer, InformerOptions
from multicluster.tasks import Supervisor
from multicluster.testing.harness import Harness
from multicluster.wire import WireObject

MCR = "/apis/mulitcluster.practice.com/v1alpha1"
NS = "bench-delivery"


class Recorder:
    """Informer sink on one member cluster: when each copy first appeared, when each edit was undone."""

    def __init__(self, cluster: str, first_seen: dict[tuple[str, str], float],
                 edits: dict[tuple[str, str], float], corrected: dict[tuple[str, str], float]) -> None:
        self.cluster = cluster
        self.first_seen = first_seen
        self.edits = edits
        self.corrected = corrected

    async def upsert(self, obj: WireObject, rv: int) -> None:
        now = time.monotonic()
        key = (self.cluster, obj.name)
        self.first_seen.setdefault(key, now)
        if key in self.edits and key not in self.corrected and (obj.as_dict().get("data") or {}).get("k") == "v":
            self.corrected[key] = now

    async def delete(self, namespace: str, name: str, rv: int) -> None:
        return None

    async def listed(self, rv: int, count: int, seconds: float, reason: str) -> None:
        return None

    async def failed(self, error: str, *, cluster_fault: bool = True) -> None:
        print(f"watch {self.cluster}: {error}", file=sys.stderr)


class StatusRecorder:
    """Informer sink on the CRs in the master: when each CR's status first said every copy is ready."""

    def __init__(self, want: str, ready: dict[str, float]) -> None:
        self.want = want
        self.ready = ready

    async def upsert(self, obj: WireObject, rv: int) -> None:
        if obj.name not in self.ready and (obj.as_dict().get("status") or {}).get("ready") == self.want:
            self.ready[obj.name] = time.monotonic()

    async def delete(self, namespace: str, name: str, rv: int) -> None:
        return None

    async def listed(self, rv: int, count: int, seconds: float, reason: str) -> None:
        return None

    async def failed(self, error: str, *, cluster_fault: bool = True) -> None:
        print(f"watch of the CRs: {error}", file=sys.stderr)


async def wait_until(done: Any, timeout: float) -> None:
    """Poll a cheap in-memory predicate (the recorders fill the dicts from watch events)."""
    deadline = time.monotonic() + timeout
    while True:
        if done() or time.monotonic() > deadline:
            return
        await asyncio.sleep(0.05)


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def line(name: str, values: list[float]) -> str:
    return (f"{name:<28} n={len(values):<4} p50={pct(values, 50):6.3f}s  p99={pct(values, 99):6.3f}s  "
            f"max={max(values):6.3f}s  mean={statistics.mean(values):6.3f}s")


async def run(config_path: Path, count: int, workers: int) -> int:
    cfg = load_config(config_path)
    clients = {c.name: ClusterClient(c) for c in cfg.clusters}
    names = list(clients)
    master = clients[cfg.master.name if cfg.master else names[0]]
    sup = Supervisor("bench")
    try:
        for c in clients.values():
            await c.request("POST", "/api/v1/namespaces", body={"metadata": {"name": NS}})
        first_seen: dict[tuple[str, str], float] = {}
        edits: dict[tuple[str, str], float] = {}
        corrected: dict[tuple[str, str], float] = {}
        for name, c in clients.items():
            cms = next(r for r in await c.discover() if r.gvr.group == "" and r.gvr.resource == "configmaps")
            inf = Informer(c, cms, Recorder(name, first_seen, edits, corrected), options=InformerOptions(
                namespace=NS, label_selector=f"{MANAGED_BY_LABEL}=multicluster", resync_seconds=0))
            sup.spawn(f"bench/watch/{name}", inf.run)
        ctl = Controller(cfg, clients, sup, DeliveryOptions(workers=workers))
        sup.spawn("bench/controller", ctl.run)
        await ctl.wait_synced(120)
        ready_at: dict[str, float] = {}
        mcrs = next(r for r in await master.discover(refresh=True)
                    if r.gvr.group == "mulitcluster.practice.com" and r.gvr.resource == "multiclusterresources")
        sup.spawn("bench/watch/crs", Informer(master, mcrs, StatusRecorder(f"{len(names)}/{len(names)}", ready_at),
                                              options=InformerOptions(namespace=NS, resync_seconds=0)).run)
        await asyncio.sleep(1.0)  # let the watches start

        created: dict[str, float] = {}
        cr_created: dict[str, float] = {}
        t_start = time.monotonic()
        for i in range(count):
            name = f"cm-{i:03d}"
            body = {"apiVersion": "mulitcluster.practice.com/v1alpha1", "kind": "MultiClusterResource",
                    "metadata": {"name": f"bench-{i:03d}", "namespace": NS},
                    "spec": {"template": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
                                          "data": {"k": "v"}},
                             "placement": {"clusters": [{"name": n} for n in names]}}}
            created[name] = cr_created[f"bench-{i:03d}"] = time.monotonic()
            await master.request("POST", f"{MCR}/namespaces/{NS}/multiclusterresources", body=body)
        t_created = time.monotonic() - t_start

        await wait_until(lambda: len(first_seen) >= count * len(names), 120)
        delivered = [max(first_seen[(c, n)] for c in names) - t0 for n, t0 in created.items()
                     if all((c, n) in first_seen for c in names)]
        t_all = time.monotonic() - t_start

        status_done: list[float] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            items = (await master.get(f"{MCR}/namespaces/{NS}/multiclusterresources")).get("items") or []
            if sum(1 for it in items if (it.get("status") or {}).get("applied") == f"{len(names)}/{len(names)}") \
                    >= count:
                status_done.append(time.monotonic() - t_start)
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)

        # Hand edits, one every 20 ms, spread over the clusters (corrections overlap, like real edits would).
        for i, name in enumerate(created):
            cluster = names[i % len(names)]
            edits[(cluster, name)] = time.monotonic()
            await clients[cluster].request("PATCH", f"/api/v1/namespaces/{NS}/configmaps/{name}",
                                           body={"data": {"k": "edited by hand"}}, content_type=MERGE_PATCH)
            await asyncio.sleep(0.02)
        await wait_until(lambda: len(corrected) >= len(edits), 60)
        fixes = [corrected[k] - t0 for k, t0 in edits.items() if k in corrected]
        ready = [ready_at[n] - t0 for n, t0 in cr_created.items() if n in ready_at]

        print(f"\n{count} MultiClusterResources x {len(names)} clusters, {workers} workers "
              f"(creates took {t_created:.1f}s, all {len(delivered) * len(names)} copies present after {t_all:.1f}s"
              + (f", all statuses {len(names)}/{len(names)} after {status_done[0]:.1f}s)" if status_done else ")"))
        print(line("create -> in all clusters", delivered))
        print(line("hand edit -> corrected", fixes))
        if ready:
            print(line("create -> status ready", ready))
        missing = count - len(delivered), len(edits) - len(fixes)
        ok = not any(missing) and pct(delivered, 99) < 1.0 and pct(fixes, 99) < 1.0
        print(f"target p99 < 1s: {'met' if ok else 'NOT met'}"
              + (f" (missing: {missing[0]} deliveries, {missing[1]} corrections)" if any(missing) else ""))
        return 0 if ok else 1
    finally:
        await sup.stop_all()
        for c in clients.values():
            await c.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, help="daemon config of running clusters (default: start a harness)")
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    if args.config:
        return asyncio.run(run(args.config, args.count, args.workers))
    # No controller-manager: ConfigMaps need none, and it would only compete for the CPU.
    with tempfile.TemporaryDirectory(prefix="bench-delivery-") as d, \
            Harness(Path(d), clusters=3, controller_manager=False) as h:
        return asyncio.run(run(h.write_config(), args.count, args.workers))


if __name__ == "__main__":
    sys.exit(main())
