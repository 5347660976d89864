"""Informer + store benchmark (issue: informer engine and resource store).

1. initial sync throughput of the daemon vs a bare paginated raw-JSON list of the same objects (ratio);
2. daemon RSS growth per stored object;
3. event → queryable lag p50/p99 under a sustained update load;
4. rows written on a restart with nothing changed.
Each on SQLite and MariaDB, medians of `--runs` runs, all against the same harness clusters in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from bench.common import DaemonProc, clients, configmap, create_many, machine, median, pct, table
from multicluster.gvr import GVR
from multicluster.kube import ClusterClient
from multicluster.testing.harness import Harness, progress
from multicluster.testing.mariadb import MariaDB

CM = GVR("", "v1", "configmaps")
NS = "bench"


async def load(h: Harness, per_cluster: int) -> None:
    cs = clients(h)
    try:
        for name, c in cs.items():
            t0 = time.monotonic()
            with contextlib.suppress(Exception):
                await c.request("POST", "/api/v1/namespaces", body={"metadata": {"name": NS}})
            for start in range(0, per_cluster, 2000):
                await create_many(c, CM.path(NS), [configmap(i) for i in range(start, min(per_cluster, start + 2000))])
            progress(f"{name}: created {per_cluster:,} configmaps in {time.monotonic() - t0:.0f}s")
    finally:
        for c in cs.values():
            await c.close()


async def bare_list(h: Harness, page: int = 500) -> tuple[int, float]:
    """What any client must at least pay: every page of every cluster, parsed to dicts (concurrent clusters)."""
    cs = clients(h)

    async def one(c: ClusterClient) -> int:
        n, cont = 0, ""
        while True:
            raw = await c.request_bytes(
                "GET", CM.path(), params={"limit": page, **({"continue": cont} if cont else {})}
            )
            body = orjson.loads(raw)
            n += len(body["items"])
            cont = body["metadata"].get("continue") or ""
            if not cont:
                return n

    t0 = time.monotonic()
    counts = await asyncio.gather(*(one(c) for c in cs.values()))
    secs = time.monotonic() - t0
    for c in cs.values():
        await c.close()
    return sum(counts), secs


def base_config(h: Harness, store: dict[str, Any]) -> dict[str, Any]:
    return {
        "clusters": [{"metadata": {"clusterName": n, "configPath": str(s.kubeconfig)}} for n, s in h.servers.items()],
        "resources": {"include": ["configmaps"]},
        "store": store,
        "sync": {"rediscoverSeconds": 3600},
    }


def lag_sweep(d: DaemonProc, h: Harness, name: str, rates: list[float], seconds: float, *,
              pause: float = 0.0) -> list[list[Any]]:
    """Lag table rows at each rate in turn, until the harness API servers cannot take more (achieved < 80 %:
    further rates add nothing); `pause` seconds between rates let the store settle."""
    rows: list[list[Any]] = []
    for rate in rates:
        lags, achieved = probe_lag(d, h, samples=1000, rate=rate, seconds=seconds)
        p99 = pct(lags, 99) * 1000
        rows.append([name, rate, achieved, len(lags), pct(lags, 50) * 1000, p99, yes(p99 < 1000)])
        progress(f"{name}: {achieved:,.0f} updates/s, lag p50 {pct(lags, 50) * 1000:.0f} ms p99 {p99:.0f} ms")
        if achieved < 0.8 * rate:
            break
        time.sleep(pause)
    return rows


def probe_lag(d: DaemonProc, h: Harness, samples: int, rate: float, seconds: float) -> tuple[list[float], float]:
    """Sustained update load at `rate`/s on bench objects plus sequential probe updates whose end-to-end lag
    (PATCH acknowledged → the new RV is returned by the query API) is measured."""

    async def run() -> tuple[list[float], float]:
        cs = clients(h)
        names = list(h.servers)
        stop = time.monotonic() + seconds
        sent = 0

        async def loadgen() -> None:
            nonlocal sent
            i = 0
            interval = 1.0 / rate
            next_t = time.monotonic()
            pending: set[asyncio.Task[Any]] = set()
            while time.monotonic() < stop:
                c = cs[names[i % len(names)]]
                body = orjson.dumps({"data": {"index": str(time.time())}})
                t = asyncio.create_task(
                    c.request(
                        "PATCH",
                        CM.path(NS, f"bench-{i % 1000:06d}"),
                        body=body,
                        content_type="application/merge-patch+json",
                    )
                )
                pending.add(t)
                t.add_done_callback(pending.discard)
                sent += 1
                i += 1
                next_t += interval
                delay = next_t - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                if len(pending) > 200:
                    await asyncio.sleep(0.01)
            await asyncio.gather(*pending, return_exceptions=True)

        async def probe() -> list[float]:
            lags: list[float] = []
            c = cs[names[0]]
            with contextlib.suppress(Exception):
                await c.request("POST", CM.path(NS), body={"metadata": {"name": "probe"}})
            for k in range(samples):
                if time.monotonic() > stop:
                    break
                res = await c.request(
                    "PATCH",
                    CM.path(NS, "probe"),
                    body=orjson.dumps({"data": {"k": str(k)}}),
                    content_type="application/merge-patch+json",
                )
                rv = res["metadata"]["resourceVersion"]
                t0 = time.monotonic()
                q = f"/v1/list?gvr=v1/configmaps&cluster={names[0]}&namespace={NS}&name=probe&limit=1"
                while time.monotonic() - t0 < 30:
                    _, body = await asyncio.to_thread(d.get, q)
                    items = json.loads(body)
                    if items and items[0]["metadata"]["resourceVersion"] == rv:
                        lags.append(time.monotonic() - t0)
                        break
                    await asyncio.sleep(0.005)
                await asyncio.sleep(0.05)
            return lags

        t_start = time.monotonic()
        _, lags = await asyncio.gather(loadgen(), probe())
        achieved = sent / (time.monotonic() - t_start)
        for c in cs.values():
            await c.close()
        return lags, achieved

    return asyncio.run(run())


def store_configs(work: Path, kinds: list[str]) -> tuple[dict[str, dict[str, Any]], MariaDB | None]:
    """Store configs by name (a private MariaDB is started for "mariadb"; the caller stops it)."""
    stores: dict[str, dict[str, Any]] = {}
    db: MariaDB | None = None
    for kind in kinds:
        if kind == "sqlite":
            stores["sqlite"] = {"type": "sqlite", "path": str(work / "bench.db")}
        elif kind == "mariadb":
            db = MariaDB(work / "mariadb")
            db.start()
            stores["mariadb"] = {"type": "mysql", "host": "127.0.0.1", "port": db.port, "user": db.user,
                                 "password": db.password, "database": "bench"}
        else:
            raise SystemExit(f"unknown store {kind!r}; choose from sqlite, mariadb")
    return stores, db


def yes(ok: bool) -> str:
    return "yes" if ok else "**no**"


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(prog="python -m bench.sync_bench")
    ap.add_argument("--objects", type=int, default=20_000, help="configmaps per cluster")
    ap.add_argument("--clusters", type=int, default=3)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rates", default="100,250,500,1000,2000",
                    help="update events/s for the lag test, in increasing order; stops once the harness saturates")
    ap.add_argument("--lag-seconds", type=float, default=15.0, help="seconds of load per rate")
    ap.add_argument("--stores", default="sqlite,mariadb")
    ap.add_argument("--flush-interval", type=float, default=None,
                    help="the daemon's store.flushInterval (default: the daemon's own)")
    args = ap.parse_args(argv)
    rates = [float(r) for r in args.rates.split(",")]
    work = Path(tempfile.mkdtemp(prefix="mc-bench-sync-"))
    out: list[str] = []
    rows: list[list[Any]] = []
    lag_rows: list[list[Any]] = []
    try:
        with Harness(work / "harness", clusters=args.clusters, controller_manager=False) as h:
            stores, db = store_configs(work, args.stores.split(","))
            if args.flush_interval is not None:
                for st in stores.values():
                    st["flushInterval"] = args.flush_interval
            try:
                # Baseline memory: the daemon syncing the same (still empty) clusters.
                empty: dict[str, int] = {}
                startup: dict[str, float] = {}  # start → ready with empty clusters: imports, discovery, connections
                for name, st in stores.items():
                    reset_store(st, db)
                    d = DaemonProc(work, base_config(h, st))
                    d.start()
                    startup[name] = d.wait_ready()
                    time.sleep(1)
                    empty[name] = d.rss_bytes()
                    d.stop()
                asyncio.run(load(h, args.objects))
                total = args.objects * args.clusters
                n_listed = 0
                for name, st in stores.items():
                    secs: list[float] = []
                    bare_rates: list[float] = []
                    rss: list[float] = []
                    restart_writes: list[float] = []
                    restart_secs: list[float] = []
                    for _ in range(args.runs):
                        # The baseline right before each daemon run, so both see the same machine state.
                        n_listed, bare_secs = asyncio.run(bare_list(h))
                        bare_rates.append(n_listed / bare_secs)
                        reset_store(st, db)
                        d = DaemonProc(work, base_config(h, st))
                        d.start()
                        secs.append(d.wait_ready())
                        time.sleep(1)
                        rss.append(d.rss_bytes())
                        d.stop()
                        d2 = DaemonProc(work, base_config(h, st))
                        d2.start()
                        restart_secs.append(d2.wait_ready())
                        time.sleep(1)
                        restart_writes.append(d2.metric("multicluster_store_rows_total", 'op="written"'))
                        d2.stop()
                    bare_rate = median(bare_rates)
                    net_rate = n_listed / max(0.001, median(secs) - startup[name])
                    per_obj = (median(rss) - empty[name]) / total
                    ratio = net_rate / bare_rate
                    writes = int(median(restart_writes))
                    rows.append([name, n_listed, median(secs), startup[name], net_rate, bare_rate, ratio,
                                 yes(ratio >= 0.5), median(rss) / 2**20, per_obj, yes(per_obj <= 1024), writes,
                                 yes(writes == 0), median(restart_secs)])
                    d = DaemonProc(work, base_config(h, st))
                    d.start()
                    d.wait_ready()
                    try:
                        lag_rows += lag_sweep(d, h, name, rates, args.lag_seconds)
                    finally:
                        d.stop()
            finally:
                if db is not None:
                    db.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out.append(
        f"Machine: {machine()}. {args.clusters} clusters x {args.objects:,} ConfigMaps (~1.6 KB, 3 labels), "
        f"medians of {args.runs} runs. The bare list (paginated, limit 500, parsed with orjson, clusters in "
        "parallel) runs right before each daemon run; \"net\" subtracts the daemon's start-to-ready time against "
        "the same clusters while empty.\n"
    )
    out.append("### Initial sync, memory, restart\n")
    out.append(table(
        ["store", "objects", "start→ready s", "of which startup s", "obj/s (net of startup)", "bare list obj/s",
         "ratio", "ratio >= 0.5", "RSS synced MiB", "bytes/object", "<= 1024 B", "rows written on restart",
         "0 writes", "restart → ready s"],
        rows,
    ))
    out.append("\n### Event → queryable lag at increasing update rates\n")
    out.append("A PATCH load spread over the bench ConfigMaps at each requested rate, plus sequential probe updates "
               "whose lag is measured from the PATCH acknowledgement to the new resourceVersion being served by "
               "`/v1/list`. The rates stop once the harness API servers cannot keep up (achieved < 80 % of asked).\n")
    out.append(table(["store", "asked updates/s", "achieved updates/s", "probes", "p50 ms", "p99 ms",
                      "p99 < 1000 ms"], lag_rows))
    text = "\n".join(out)
    print(text)
    return text


def reset_store(store: dict[str, Any], db: MariaDB | None) -> None:
    if store["type"] == "sqlite":
        for suffix in ("", "-wal", "-shm"):
            Path(store["path"] + suffix).unlink(missing_ok=True)
    elif db is not None:
        db.create_database(store["database"])


if __name__ == "__main__":
    main()
