"""Watch latency, idle-watcher memory and a watcher that stops reading: `python -m bench.watch_bench`.

Three real kube-apiservers (the harness) hold --objects ConfigMaps each in one namespace; a daemon process syncs
them into SQLite. Then:

1. Memory: the daemon's RSS with no watcher, then with --idle Server-Sent Events watchers of an empty namespace
   (each has read its SYNCED event, so the daemon holds every one): RSS per idle watcher.
2. Latency: --watchers watchers of the namespace, half SSE (/v1/resources?watch=true) and half the
   Kubernetes-compatible watch (.../clusters/_all/api/v1/namespaces/NS/configmaps?watch=true), plus one SSE
   watcher that never reads. For --seconds, --rate merge patches per second spread over the three API servers
   each write their number and the time they were sent into the object; every watcher notes when each arrives.
   A direct watch of each member cluster runs beside them. Change -> watcher latency is a watcher's arrival
   minus the direct watch's arrival of the same change (what the daemon adds to watching the cluster itself),
   over every event every watcher got; beside it, arrival minus the load generator's reading of the patch's
   reply, and arrival minus the patch's sending, which adds the member's own time to take the patch.
3. The watcher that stops reading: whether the daemon closed it (multicluster_watches_closed_total{reason="too
   slow"}) while the others kept their latency.

The live watchers and the load generator run in processes of their own (the load's pacing and the watchers'
reading do not share an event loop); the watchers find the stamps in the raw bytes with one regular expression
per chunk read, so the client's own parsing stays small next to what it measures. The machine's cores are shared
by the API servers, etcd, the load generator, the daemon and the watchers, which the numbers include; a run at
--harness-nice 10 lowers the priority of the first three (the world the daemon watches) so that the daemon and
its watchers get the CPU first, as on machines of their own.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import re
import socket
import ssl
import tempfile
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import aiohttp
import uvloop

from bench.common import DaemonProc, clients, create_many, machine, pct, table
from multicluster.testing.harness import ADMIN_TOKEN, Harness, progress

MIB = 2**20
NS = "watch-bench"
IDLE_NS = "watch-bench-idle"
# A patch's number and send time in the object (the member serves the data map's keys sorted: n before t).
STAMP = re.compile(rb'\\?"n\\?":\\?"(\d+)\\?",\\?"t\\?":\\?"(\d+\.\d+)\\?"')  # whole: a cut one must not match
KUBE_PATH = "/apis/clusters.multicluster.practice.com/v1alpha1/clusters/_all/api/v1/namespaces/{ns}/configmaps"


class Watcher(asyncio.Protocol):
    """One streaming watch read straight off its socket: when each stamped change arrives (patch number, arrival,
    send time). No HTTP client library, and no parsing while the load runs: each segment read is kept with its
    arrival time and the stamps are found afterwards (arrivals()), so that a hundred streams at 500 changes/s do
    not make this process the bottleneck of what it measures (finding them as segments arrived cost it more CPU
    than the daemon's fan-out under the same load, and its own queueing showed up as latency)."""

    def __init__(self, kind: str, since: float) -> None:
        self.kind = kind
        self.since = since
        self.segments: list[tuple[float, bytes]] = []
        self.ready = asyncio.Event()
        self.ended = ""
        self._head = True
        self._transport: asyncio.BaseTransport | None = None

    async def open(self, url: str, path: str, query: dict[str, str], ca: str | None = None,
                   token: str | None = None) -> None:
        parts = urllib.parse.urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        ctx = ssl.create_default_context(cafile=ca) if parts.scheme == "https" else None
        await asyncio.get_running_loop().create_connection(lambda: self, host, port, ssl=ctx)
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        request = f"GET {path}?{urllib.parse.urlencode(query)} HTTP/1.1\r\nHost: {host}:{port}\r\n{auth}\r\n"
        cast(asyncio.Transport, self._transport).write(request.encode())

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        if self._head:
            self._head = False
            status = data.split(b"\r\n", 1)[0]
            if b" 200 " not in status:
                self.ended = status.decode(errors="replace")
                self.ready.set()
                self.close()
                return
            if self.kind != "sse":
                self.ready.set()
        if self.ready.is_set():
            self.segments.append((time.time(), data))
        elif b"event: SYNCED" in data:  # the initial state carries no stamps worth timing
            self.ready.set()

    def arrivals(self) -> list[tuple[int, float, float]]:
        """(patch number, arrival, send time) of every stamp in the stream, the arrival being that of the segment
        that completed it; stamps sent before `since` are left out."""
        stream = b"".join(data for _, data in self.segments)
        ends: list[int] = []
        at = 0
        for _, data in self.segments:
            at += len(data)
            ends.append(at)
        out: list[tuple[int, float, float]] = []
        i = 0
        for m in STAMP.finditer(stream):
            while ends[i] < m.end():
                i += 1
            t = float(m.group(2))
            if t >= self.since:
                out.append((int(m.group(1)), self.segments[i][0], t))
        return out

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ended:
            self.ended = "stream ended" if exc is None else type(exc).__name__
        self.ready.set()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


def _watchers_process(base: str, n: int, since: float, members: list[str], ca: str, conn: Any) -> None:
    """The live watchers, in a process of their own, and one direct watch of each member cluster (the moment the
    cluster itself tells its watchers of a change): says "ready" once every one has its initial state, then on
    "stop" sends back (kind, arrivals, how it ended) per watcher."""

    async def run() -> None:
        live = [Watcher("sse" if i % 2 == 0 else "kube", since) for i in range(n)]
        for w in live:
            if w.kind == "sse":
                await w.open(base, "/v1/resources", {"gvr": "configmaps", "namespace": NS, "watch": "true"})
            else:
                await w.open(base, KUBE_PATH.format(ns=NS), {"watch": "true"})
        origin = [Watcher("member", since) for _ in members]
        for w, url in zip(origin, members, strict=True):
            await w.open(url, f"/api/v1/namespaces/{NS}/configmaps", {"watch": "true"}, ca=ca, token=ADMIN_TOKEN)
        await asyncio.gather(*(w.ready.wait() for w in live + origin))
        conn.send("ready")
        await asyncio.to_thread(conn.recv)
        conn.send([(w.kind, w.arrivals(), w.ended) for w in live + origin])
        for w in live + origin:
            w.close()

    try:
        uvloop.run(run())
    except Exception as exc:  # the parent reports it
        conn.send(f"{type(exc).__name__}: {exc}")


async def open_stalled(d: DaemonProc) -> socket.socket:
    """An SSE watch whose client never reads: a small receive buffer, so the daemon's writes back up soon."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", d.port))
    s.sendall(f"GET /v1/resources?gvr=configmaps&namespace={NS}&watch=true HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
              .encode())
    return s


async def load(urls: list[str], ca: str, names: list[str], rate: int, seconds: float,
               acked: dict[int, float]) -> int:
    """Merge patches at `rate` per second over every cluster for `seconds`; each carries its number and send
    time; `acked` gets the time each one's reply arrived (its member had committed it by then)."""
    ctx = ssl.create_default_context(cafile=ca)
    sessions = [aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx, limit=32),
                                      headers={"Authorization": f"Bearer {ADMIN_TOKEN}",
                                               "Content-Type": "application/merge-patch+json"})
                for _ in urls]
    sem = asyncio.Semaphore(96)
    sent = 0
    tasks: set[asyncio.Task[None]] = set()

    async def patch(i: int) -> None:
        url, http = urls[i % len(urls)], sessions[i % len(urls)]
        name = names[(i // len(urls)) % len(names)]
        async with sem:
            body = b'{"data":{"t":"%.6f","n":"%d"}}' % (time.time(), i)  # stamped when it leaves
            async with http.patch(f"{url}/api/v1/namespaces/{NS}/configmaps/{name}", data=body) as r:
                await r.read()
                if r.status == 200:
                    acked[i] = time.time()

    try:
        start = time.monotonic()
        total = int(rate * seconds)
        for i in range(total):
            due = start + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            t = asyncio.create_task(patch(i))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
            sent += 1
        await asyncio.gather(*tasks)
    finally:
        for s in sessions:
            await s.close()
    return sent


def _load_process(urls: list[str], ca: str, names: list[str], rate: int, seconds: float, nice: int,
                  conn: Any) -> None:
    """load() in a process of its own at the harness's niceness: the writers are the clusters' users, part of
    the world the daemon watches, not of the daemon or its watchers. Sends back (sent, seconds taken, acked)."""
    os.nice(nice)

    async def run() -> None:
        acked: dict[int, float] = {}
        t0 = time.monotonic()
        sent = await load(urls, ca, names, rate, seconds, acked)
        conn.send((sent, time.monotonic() - t0, acked))

    try:
        uvloop.run(run())
    except Exception as exc:  # the parent reports it
        conn.send(f"{type(exc).__name__}: {exc}")


async def run_load(h: Harness, names: list[str], rate: int, seconds: float, nice: int
                   ) -> tuple[int, float, dict[int, float]]:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_load_process, daemon=True,
                       args=([s.url for s in h.servers.values()], str(h.pki / "ca.crt"), names, rate, seconds,
                             nice, child))
    proc.start()
    try:
        got = await asyncio.to_thread(parent.recv)
    finally:
        proc.join(30)
    if isinstance(got, str):
        raise RuntimeError(f"the load generator failed: {got}")
    sent, took, acked = got
    return int(sent), float(took), dict(acked)


def renice_harness(h: Harness, nice: int) -> None:
    """Run the harness's API servers and etcd at `nice`: above 0 the daemon and the watchers get the CPU first, as
    they would on machines of their own, while the clusters still run on the same two cores."""
    procs = [h.etcd_proc, *(s.proc for s in h.servers.values())]
    for proc in procs:
        if proc is not None and proc.poll() is None:
            os.setpriority(os.PRIO_PROCESS, proc.pid, nice)


@dataclass
class Phase:
    """One load run: its latency rows and what happened around it."""

    nice: int
    sent: int
    took: float
    closed: float
    rss: float
    rows: list[list[Any]]


async def under_load(h: Harness, d: DaemonProc, names: list[str], rate: int, seconds: float, watchers: int,
                     nice: int) -> Phase:
    """Live watchers under load (in a process of their own, so that reading 100 streams does not slow the load's
    pacing or add its own delays to the latency), and one that never reads."""
    base = f"http://127.0.0.1:{d.port}"
    since = time.time()
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_watchers_process, daemon=True,
                       args=(base, watchers, since, [s.url for s in h.servers.values()], str(h.pki / "ca.crt"),
                             child))
    proc.start()
    status = await asyncio.to_thread(parent.recv)
    if status != "ready":
        raise RuntimeError(f"the watchers did not start: {status}")
    stalled = await open_stalled(d)
    try:
        closed_before = d.metric("multicluster_watches_closed_total", 'reason="too slow"')
        progress(f"{watchers} watchers and one that does not read; {rate} updates/s for {seconds:g} s; "
                 f"the harness and the load generator at nice {nice}")
        renice_harness(h, nice)
        sent, took, acked = await run_load(h, names, rate, seconds, nice)
        renice_harness(h, 0)
        await asyncio.sleep(3)  # the last changes reach the watchers
        closed = d.metric("multicluster_watches_closed_total", 'reason="too slow"') - closed_before
        parent.send("stop")
        results: list[tuple[str, list[tuple[int, float, float]], str]] = await asyncio.to_thread(parent.recv)
        proc.join(30)
        rss = d.rss_bytes() / MIB
    finally:
        stalled.close()
    # When each patch's change reached the direct watch of its own cluster.
    emitted = {n: arrived for kind, arrivals, _ in results if kind == "member" for n, arrived, _ in arrivals}
    rows: list[list[Any]] = []
    for kind in ("sse", "kube"):
        ws = [r for r in results if r[0] == kind]
        # A daemon watcher can read a change a moment before the direct watch, its reply to the patch before the
        # load generator reads it (each is read when its process gets round to it): no wait, 0 ms.
        from_member = [max(0.0, arrived - emitted[n]) * 1000 for r in ws for n, arrived, _ in r[1] if n in emitted]
        from_ack = [max(0.0, arrived - acked[n]) * 1000 for r in ws for n, arrived, _ in r[1] if n in acked]
        from_send = [(arrived - t) * 1000 for r in ws for _, arrived, t in r[1]]
        got = [len(r[1]) for r in ws]
        # The same patch twice in one watcher's stream would be a repeat the resourceVersions promise never to make.
        repeated = sum(len(r[1]) - len({n for n, _, _ in r[1]}) for r in ws)
        ended = sorted({r[2] for r in ws if r[2]})
        rows.append([nice, f"{sent / took:,.0f}", kind, len(ws), min(got) if got else 0, max(got) if got else 0,
                     repeated,
                     pct(from_member, 50), pct(from_member, 99),
                     "yes" if from_member and pct(from_member, 99) < 100 else "**no**",
                     pct(from_ack, 50), pct(from_ack, 99), pct(from_send, 50), pct(from_send, 99),
                     ", ".join(ended) or "-"])
    return Phase(nice, sent, took, closed, rss, rows)


async def measure(work: Path, objects: int, rate: int, seconds: float, watchers: int, idle: int,
                  flush_interval: float | None = None, nices: tuple[int, ...] = (0,)) -> str:
    with Harness(work / "harness", clusters=3, controller_manager=False) as h:
        for cluster in h.servers:
            for ns in (NS, IDLE_NS):
                h.request(cluster, "POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
        names = [f"w-{i:05d}" for i in range(objects)]
        cls = clients(h)
        try:
            await asyncio.gather(*(create_many(c, f"/api/v1/namespaces/{NS}/configmaps",
                                               [{"metadata": {"name": n}, "data": {"t": "0"}} for n in names])
                                   for c in cls.values()))
        finally:
            for c in cls.values():
                await c.close()
        d = DaemonProc(work, {
            "clusters": [{"metadata": {"clusterName": n, "configPath": str(s.kubeconfig)}}
                         for n, s in h.servers.items()],
            "resources": {"include": ["configmaps"]},
            "store": {"type": "sqlite", "path": str(work / "watch-bench.db"),
                      **({"flushInterval": flush_interval} if flush_interval is not None else {})},
            "sync": {"rediscoverSeconds": 3600},
        })
        d.start()
        try:
            d.wait_ready(timeout=600)
            progress(f"the daemon is ready with {3 * objects:,} ConfigMaps")
            await asyncio.sleep(2)
            rss0 = d.rss_bytes() / MIB
            base = f"http://127.0.0.1:{d.port}"
            # 1. Idle watchers.
            idle_ws = [Watcher("sse", time.time()) for _ in range(idle)]
            for w in idle_ws:
                await w.open(base, "/v1/resources", {"gvr": "configmaps", "namespace": IDLE_NS, "watch": "true"})
            await asyncio.gather(*(w.ready.wait() for w in idle_ws))
            await asyncio.sleep(2)
            rss_idle = d.rss_bytes() / MIB
            hub_watchers = d.metric("multicluster_watchers")
            for w in idle_ws:
                w.close()
            await asyncio.sleep(1)
            # 2. and 3. Under load, once per niceness of the harness.
            phases = [await under_load(h, d, names, rate, seconds, watchers, nice) for nice in nices]
        finally:
            d.stop()
    out = [
        f"{machine()}; 3 kube-apiservers x {objects:,} ConfigMaps, a daemon with a SQLite store; {rate}/s merge "
        f"patches asked for {seconds:g} s while {watchers} watchers follow them, once per niceness of the "
        "harness's API servers, etcd and the load generator (0: as they are; 10: the daemon and the watchers get "
        "the CPU first, as on machines of their own, the clusters and their writers still on the same 2 cores).\n",
        table(["harness nice", "patches/s", "watch", "watchers", "events min", "events max", "repeated",
               "cluster watch → watcher p50 ms", "p99 ms", "p99 < 100 ms", "patch reply → watcher p50 ms", "p99 ms",
               "patch sent → watcher p50 ms", "p99 ms", "ended early"], [r for p in phases for r in p.rows]),
        "\nThree clocks for one change (one machine, one clock): *cluster watch* is when a direct watch of the "
        "member cluster, in the same process as the daemon's watchers, read the change (what the daemon adds to "
        "watching the cluster itself); *patch reply* is when the load generator read the member's reply to the "
        "patch (committed by then); *patch sent* also counts the member's own queueing of the patch, which grows "
        "when the harness's API servers and etcd, on the same 2 cores, fall behind the asked rate.\n",
        "\nEvents per watcher can be fewer than patches: the daemon's write queue keeps the latest state of an "
        "object that changes again before it is written (each watcher still ends at the final state).\n",
        table(["daemon RSS", "MiB"], [
            ["no watcher", rss0],
            [f"{idle} idle SSE watchers ({hub_watchers:.0f} in the hub)", rss_idle],
            ["per idle watcher (KiB)", (rss_idle - rss0) * 1024 / max(idle, 1)],
            *[[f"under load (harness nice {p.nice})", p.rss] for p in phases]]),
        "\nThe watcher that stopped reading: " + "; ".join(
            f"harness nice {p.nice}: {'closed as too slow' if p.closed else '**not closed**'}"
            for p in phases) + " (a watcher is closed once server.watchQueue events, 1,000 by default, wait in its "
        "queue after the socket buffers are full; the others kept the latency above).",
    ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(prog="python -m bench.watch_bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--objects", type=int, default=500, help="ConfigMaps per harness cluster")
    ap.add_argument("--rate", type=int, default=500, help="updates per second across the three clusters")
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--watchers", type=int, default=100, help="live watchers (half SSE, half Kubernetes watch)")
    ap.add_argument("--idle", type=int, default=200, help="idle SSE watchers for the memory measurement")
    ap.add_argument("--flush-interval", type=float, default=None,
                    help="the daemon's store.flushInterval (default: the daemon's own)")
    ap.add_argument("--harness-nice", type=int, nargs="+", default=[0, 10],
                    help="one load run per niceness of the API servers, etcd and load generator (0 = as they are)")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mc-watch-bench-") as tmp:
        return asyncio.run(measure(Path(tmp), a.objects, a.rate, a.seconds, a.watchers, a.idle, a.flush_interval,
                                   tuple(a.harness_nice)))


if __name__ == "__main__":
    print(main())
