"""Daemon memory per stored object at growing sizes (issue: benchmark report, item 2).

The claim under test is that the daemon keeps no objects, only a (namespace, name) -> resourceVersion index,
so its memory grows by a small constant per object however large the clusters get. Each level tops the harness
clusters up to that many ConfigMaps in all, starts a fresh daemon on an empty store, waits for the initial sync,
and reads the process's memory:

- RSS: what `ps` and a container's memory limit see (includes file pages SQLite has mapped);
- anonymous: RssAnon, the daemon's own heap, which is what grows with the index.

bytes/object = (memory at that level - memory of the same daemon against the same clusters while empty) / objects;
at small levels that is dominated by fixed costs (SQLite page caches, the bounded write queue's rows in flight),
so the table also gives the marginal cost: RSS growth from the previous level divided by the objects added.
The target counts as met when either figure is within it.

    python -m bench.memory_bench [--levels 10000,100000,300000] [--stores sqlite,mariadb] [--size 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import DaemonProc, clients, configmap, create_many, machine, table
from bench.sync_bench import CM, NS, base_config, reset_store, store_configs
from multicluster.testing.harness import Harness, progress
from multicluster.testing.mariadb import MariaDB

TARGET = 1024  # bytes per stored object


async def top_up(h: Harness, have: int, want: int, size: int) -> None:
    """Create ConfigMaps have..want-1 in every cluster, all clusters at once."""
    cs = clients(h)

    async def one(name: str) -> None:
        c = cs[name]
        with contextlib.suppress(Exception):
            await c.request("POST", "/api/v1/namespaces", body={"metadata": {"name": NS}})
        for start in range(have, want, 2000):
            await create_many(c, CM.path(NS), [configmap(i, size) for i in range(start, min(want, start + 2000))])
            if (start // 2000) % 10 == 9:
                progress(f"{name}: {min(want, start + 2000):,} configmaps")

    try:
        await asyncio.gather(*(one(n) for n in cs))
    finally:
        for c in cs.values():
            await c.close()


def measure(work: Path, h: Harness, store: dict[str, Any], db: MariaDB | None) -> tuple[int, int, float]:
    """(RSS, anonymous, seconds to ready) of a fresh daemon after its initial sync."""
    reset_store(store, db)
    d = DaemonProc(work, base_config(h, store))
    d.start()
    try:
        secs = d.wait_ready(timeout=1800)
        time.sleep(2)  # the post-sync trim runs once the queue is drained
        rss, anon = d.memory()
    finally:
        d.stop()
    return rss, anon, secs


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(prog="python -m bench.memory_bench")
    ap.add_argument("--levels", default="10000,100000,300000", help="total objects over all clusters")
    ap.add_argument("--clusters", type=int, default=3)
    ap.add_argument("--stores", default="sqlite,mariadb")
    ap.add_argument("--size", type=int, default=1000, help="payload bytes per ConfigMap")
    args = ap.parse_args(argv)
    levels = sorted(int(x) for x in args.levels.split(","))
    work = Path(tempfile.mkdtemp(prefix="mc-bench-memory-"))
    rows: list[list[Any]] = []
    try:
        with Harness(work / "harness", clusters=args.clusters, controller_manager=False) as h:
            stores, db = store_configs(work, args.stores.split(","))
            try:
                empty = {name: measure(work, h, st, db) for name, st in stores.items()}
                per = 0
                last: dict[str, tuple[int, int]] = {}  # store -> (objects, RSS) at the previous level
                for level in levels:
                    want = level // args.clusters
                    t0 = time.monotonic()
                    asyncio.run(top_up(h, per, want, args.size))
                    per = want
                    progress(f"{level:,} objects in the clusters ({time.monotonic() - t0:.0f}s to create)")
                    for name, st in stores.items():
                        rss, anon, secs = measure(work, h, st, db)
                        objects = per * args.clusters
                        b_rss = (rss - empty[name][0]) / objects
                        b_anon = (anon - empty[name][1]) / objects
                        prev_objects, prev_rss = last.get(name, (0, empty[name][0]))
                        marginal = (rss - prev_rss) / (objects - prev_objects)
                        last[name] = (objects, rss)
                        rows.append([name, objects, secs, empty[name][0] / 2**20, rss / 2**20, anon / 2**20,
                                     b_rss, b_anon, marginal, "yes" if min(b_rss, marginal) <= TARGET else "**no**"])
                        progress(f"{name} at {objects:,}: RSS {rss / 2**20:.0f} MiB, {b_rss:.0f} B/object")
            finally:
                if db is not None:
                    db.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = "\n".join([
        f"Machine: {machine()}. {args.clusters} clusters, ConfigMaps with {args.size}-byte payloads and 3 labels; "
        "a fresh daemon and an empty store per level; one run per level.\n",
        table(["store", "objects", "sync s", "RSS empty MiB", "RSS synced MiB", "anonymous MiB",
               "RSS bytes/object", "anonymous bytes/object", "marginal RSS bytes/object", f"<= {TARGET} B"], rows),
    ])
    print(text)
    return text


if __name__ == "__main__":
    main()
