"""Kubernetes-compatible API benchmark (issue 17): `kubectl --context multicluster get pods -A` through the daemon vs
`kubectl get pods -A` run on each cluster in turn, for the same Pods, and the serving process's RSS meanwhile.

3 real kube-apiservers get `--pods` Pods each (the query benchmark's realistic ~1.5 KB shape); they are listed
back and written to a fresh SQLite store through the daemon's write path; the real API (build_app) serves that
store in this process. Each case runs kubectl (table output, and -o json) against the `multicluster` context and
against every cluster's kubeconfig in turn, checks both saw the same number of rows, and reports the medians of
`--runs` runs (after one warm-up, which fills kubectl's discovery cache) and their ratio. RSS is sampled every
10 ms during the daemon's answers: with answers streamed page by page the peak stays near the baseline
whatever the answer's size.

    python -m bench.kube_api_bench [--pods 2000] [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

from bench.common import machine, median, table
from bench.query_bench import create_pods, list_back, run_cmd, serve, write_through_daemon_path
from multicluster.api.kube import contexts
from multicluster.config import StoreConfig
from multicluster.store import open_store
from multicluster.testing.harness import Harness, progress


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class RssPeak:
    """The highest RSS of this process while the block runs (sampled from a thread every 10 ms)."""

    def __init__(self) -> None:
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mib())
            time.sleep(0.01)

    def __enter__(self) -> RssPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _rows(out: bytes, json_output: bool) -> int:
    if json_output:
        import orjson

        return len(orjson.loads(out)["items"])
    return max(0, len(out.decode().strip().splitlines()) - 1)


async def main(pods: int, runs: int) -> str:
    kubectl = shutil.which("kubectl") or "/usr/bin/kubectl"
    work = Path(tempfile.mkdtemp(prefix="mc-kube-bench-"))
    rows: list[list[object]] = []
    with Harness(work / "harness", clusters=3, controller_manager=False) as h:
        await create_pods(h, pods)
        listed = await list_back(h)
        store = open_store(StoreConfig(type="sqlite", path=work / "kube-bench.db"))
        await store.open()
        try:
            n, _, secs = await write_through_daemon_path(store, iter(listed), report_every=0)
            progress(f"{n:,} listed pods written to a fresh store in {secs:.1f}s")
            async with serve(store, tuple(h.servers)) as url:
                kubeconfig = work / "kubeconfig"
                kubeconfig.write_text(yaml.safe_dump(contexts.merge(contexts.empty(),
                                                                    contexts.entries(url, list(h.servers), None))))
                env = {**os.environ, "KUBECACHEDIR": str(work / "kube-cache"), "NO_PROXY": "127.0.0.1,localhost"}
                baseline = rss_mib()
                growth: list[float] = []  # RSS above the level before each answer, per answer after the warm-up
                for label, extra in (("get pods -A (table)", []), ("get pods -A -o json", ["-o", "json"])):
                    direct_t: list[float] = []
                    ours_t: list[float] = []
                    d_rows = o_rows = 0
                    for run in range(runs + 1):
                        t0 = time.perf_counter()
                        d_rows = 0
                        for s in h.servers.values():
                            d_rows += _rows(await run_cmd([kubectl, "--kubeconfig", str(s.kubeconfig), "get", "pods",
                                                           "-A", *extra], env), bool(extra))
                        direct_t.append(time.perf_counter() - t0)
                        before = rss_mib()
                        with RssPeak() as peak:
                            t0 = time.perf_counter()
                            o_rows = _rows(await run_cmd([kubectl, "--kubeconfig", str(kubeconfig), "--context",
                                                          "multicluster", "get", "pods", "-A", *extra], env),
                                           bool(extra))
                            ours_t.append(time.perf_counter() - t0)
                        if run:
                            growth.append(peak.peak - before)
                    if d_rows != o_rows:
                        raise RuntimeError(f"{label}: the clusters listed {d_rows} pods, the daemon {o_rows}")
                    d, o = median(direct_t[1:]) * 1000, median(ours_t[1:]) * 1000
                    rows.append([label, o_rows, d, o, d / o])
                    progress(f"  {label}: kubectl x3 clusters {d:.0f} ms, through the daemon {o:.0f} ms")
        finally:
            await store.close()
    shutil.rmtree(work, ignore_errors=True)
    out = ["## Kubernetes-compatible API: kubectl through the daemon vs kubectl on each cluster\n",
           f"{machine()}; 3 x {pods:,} Pods on real kube-apiservers (SQLite store); median of {runs}\n",
           table(["command", "rows", "kubectl x3 clusters ms", "kubectl --context multicluster ms",
                  "ratio (x faster)"], rows),
           f"\nServing process RSS: {baseline:.0f} MiB before the first answer, {rss_mib():.0f} MiB after the last; "
           f"during each answer after the warm-up it rose at most {max(growth):.1f} MiB above its level before."]
    return "\n".join(out)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pods", type=int, default=2000, help="pods per harness cluster")
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    sys.stdout.write(asyncio.run(main(a.pods, a.runs)) + "\n")
