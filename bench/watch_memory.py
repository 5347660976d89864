"""Memory per idle watch of the Kubernetes-compatible API: `python -m bench.watch_memory [--watchers 200]`.

A child process serves the API over a SQLite store holding --objects Pods (three clusters), with the store's
change feed wired to the hub as in the daemon. The parent lists the Pods (for a resourceVersion), reads the
child's RSS, opens --watchers watches from that resourceVersion (idle: no initial events, nothing changes), reads
the RSS and the Python heap (tracemalloc, started after the fill) again once the child holds every watch (it
says how many its hub has on a pipe), and reports the difference per watch. Then one change is written and every
watch must receive it, so the watches measured were live ones.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import aiohttp
from aiohttp import web

from bench.query_bench import CLUSTERS, PODS, Backend, objects, write_through_daemon_path
from multicluster.api import build_app
from multicluster.api.kube.paths import scope_prefix
from multicluster.config import StoreConfig
from multicluster.store import open_store
from multicluster.sync import to_row
from multicluster.testing.harness import free_port

PATH = scope_prefix("_all") + "/api/v1/pods"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def serve(db: Path, port: int, n: int) -> None:
    store = open_store(StoreConfig(type="sqlite", path=db))
    await store.open()
    backend = Backend(store)
    backend.hub.start({c: p.last for c, p in (await store.log_positions()).items()})
    store.listen(backend.hub.publish)
    await write_through_daemon_path(store, objects(n), report_every=0)
    runner = web.AppRunner(build_app(backend), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    tracemalloc.start()  # after the fill: only what serving allocates is traced
    print("READY", flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        cmd = line.decode().strip()
        if cmd == "count":
            print(f"WATCHERS {backend.hub.watchers}", flush=True)
        elif cmd == "heap":
            print(f"HEAP {tracemalloc.get_traced_memory()[0]}", flush=True)
        elif cmd == "change":
            obj = next(o for c, o in objects(1))
            obj["metadata"]["resourceVersion"] = str(10**9)
            await store.apply([to_row(CLUSTERS[0], PODS, obj, 10**9)])
            print("CHANGED", flush=True)
    await runner.cleanup()
    await store.close()


async def measure(watchers: int, n: int) -> str:
    work = Path(tempfile.mkdtemp(prefix="watch-mem-"))
    port = free_port()
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.watch_memory", "--serve", str(work / "store.db"), str(port), str(n),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    assert child.stdin is not None and child.stdout is not None

    async def ask(cmd: str, answer: str) -> str:
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write(cmd.encode() + b"\n")
        await child.stdin.drain()
        while True:
            line = (await child.stdout.readline()).decode()
            if line.startswith(answer):
                return line

    try:
        while not (await child.stdout.readline()).startswith(b"READY"):
            pass
        url = f"http://127.0.0.1:{port}{PATH}"
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            async with http.get(url, params={"limit": "1"}) as r:
                rv = (await r.json())["metadata"]["resourceVersion"]
            for _ in range(3):  # warm the handler path once, then let the heap settle
                async with http.get(url, params={"watch": "true", "resourceVersion": rv, "timeoutSeconds": "1"}) as r:
                    await r.read()
            await asyncio.sleep(2)
            before = rss_kib(child.pid)
            heap_before = int((await ask("heap", "HEAP")).split()[1])
            streams = [await http.get(url, params={"watch": "true", "resourceVersion": rv}) for _ in range(watchers)]
            # Each watch has answered its headers, so the child holds them all; check it says so.
            held = int((await ask("count", "WATCHERS")).split()[1])
            assert held == watchers, (held, watchers)
            await asyncio.sleep(2)
            after = rss_kib(child.pid)
            heap_after = int((await ask("heap", "HEAP")).split()[1])
            await ask("change", "CHANGED")
            got = await asyncio.gather(*(s.content.readline() for s in streams))
            assert all(b'"MODIFIED"' in g or b'"ADDED"' in g for g in got), got[:2]
            for s in streams:
                s.close()
        per = (after - before) * 1024 / watchers
        heap = (heap_after - heap_before) / watchers
        return ("| watchers | objects | RSS before | RSS after | RSS per idle watch | Python heap per idle watch |\n"
                "|---|---|---|---|---|---|\n"
                f"| {watchers} | {n:,} | {before / 1024:.1f} MiB | {after / 1024:.1f} MiB | {per / 1024:.1f} KiB "
                f"| {heap / 1024:.1f} KiB |\n")
    finally:
        if child.returncode is None:
            child.stdin.close()
            try:
                await asyncio.wait_for(child.wait(), 10)
            except TimeoutError:
                child.kill()
                await child.wait()
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(prog="python -m bench.watch_memory")
    p.add_argument("--watchers", type=int, default=200)
    p.add_argument("--objects", type=int, default=3000)
    p.add_argument("--serve", nargs=3, metavar=("DB", "PORT", "OBJECTS"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve:
        db, port, n = args.serve
        asyncio.run(serve(Path(db), int(port), int(n)))
        return ""
    t0 = time.monotonic()
    out = asyncio.run(measure(args.watchers, args.objects))
    return out + f"\n({time.monotonic() - t0:.0f} s, pid {os.getpid()})\n"


if __name__ == "__main__":
    print(main())
