"""The store on a 3-node MariaDB Galera cluster beside a single MariaDB, in the same run on the same clusters.

1. initial sync: start → ready of a daemon syncing the harness clusters' ConfigMaps into an empty store;
2. event → queryable lag p50/p99 under a sustained update load (the sync benchmark's probe).
Galera certifies every commit with the other nodes before it returns, so its writes pay a round of group
communication each; the question is how much of the daemon's throughput and latency that costs.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
from pathlib import Path
from typing import Any

from bench.common import DaemonProc, machine, median, table
from bench.sync_bench import base_config, lag_sweep, load
from multicluster.testing.galera import GaleraCluster
from multicluster.testing.harness import Harness, progress
from multicluster.testing.mariadb import MariaDB


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(prog="python -m bench.galera_bench")
    ap.add_argument("--objects", type=int, default=10_000, help="configmaps per cluster")
    ap.add_argument("--clusters", type=int, default=3)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rates", default="100,250,500", help="update events/s for the lag test, increasing")
    ap.add_argument("--lag-seconds", type=float, default=10.0, help="seconds of load per rate")
    args = ap.parse_args(argv)
    rates = [float(r) for r in args.rates.split(",")]
    work = Path(tempfile.mkdtemp(prefix="mc-bench-galera-"))
    rows: list[list[Any]] = []
    lag_rows: list[list[Any]] = []
    try:
        with Harness(work / "harness", clusters=args.clusters, controller_manager=False) as h, \
                MariaDB(work / "mariadb") as single, GaleraCluster(work / "galera", nodes_count=3) as galera:
            stores: dict[str, tuple[dict[str, Any], Any]] = {
                "mariadb (1 server)": ({"type": "mysql", "host": "127.0.0.1", "port": single.port,
                                        "user": single.user, "password": single.password, "database": "bench"},
                                       single),
                "galera (3 nodes)": ({"type": "mysql", "endpoints": galera.endpoints, "user": galera.user,
                                      "password": galera.password, "database": "bench"}, galera),
            }
            asyncio.run(load(h, args.objects))
            total = args.objects * args.clusters
            for name, (st, server) in stores.items():
                secs: list[float] = []
                for _ in range(args.runs):
                    server.create_database("bench")
                    d = DaemonProc(work, base_config(h, st))
                    d.start()
                    secs.append(d.wait_ready())
                    d.stop()
                rows.append([name, total, median(secs), total / median(secs)])
                progress(f"{name}: initial sync of {total:,} objects in {median(secs):.1f}s")
                d = DaemonProc(work, base_config(h, st))
                d.start()
                d.wait_ready()
                try:
                    lag_rows += lag_sweep(d, h, name, rates, args.lag_seconds, pause=1.0)
                finally:
                    d.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = [
        f"Machine: {machine()}. {args.clusters} clusters x {args.objects:,} ConfigMaps, medians of {args.runs} "
        "runs; every database process (one MariaDB, three Galera nodes) on the same machine as the daemon and "
        "the API servers. The Galera daemon lists all three nodes (store.endpoints) and writes through the first.\n",
        "### Initial sync\n",
        table(["store", "objects", "start→ready s", "obj/s"], rows),
        "\n### Event → queryable lag\n",
        table(["store", "asked updates/s", "achieved updates/s", "probes", "p50 ms", "p99 ms", "p99 < 1000 ms"],
              lag_rows),
    ]
    text = "\n".join(out)
    print(text)
    return text


if __name__ == "__main__":
    main()
