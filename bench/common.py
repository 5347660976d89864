"""Shared pieces of the benchmarks: medians, markdown tables, a daemon subprocess, loading objects fast."""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from multicluster.config import ClusterConfig
from multicluster.kube import ClusterClient
from multicluster.testing.daemonproc import DaemonProc
from multicluster.testing.harness import Harness


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def table(headers: list[str], rows: list[list[Any]]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:,.3f}" if abs(v) < 10 else f"{v:,.0f}"
        if isinstance(v, int):
            return f"{v:,}"
        return str(v)

    cells = [[fmt(v) for v in r] for r in rows]
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in cells]
    return "\n".join(out)


def machine() -> str:
    cpu = "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, Python {sys.version.split()[0]}"


def clients(h: Harness) -> dict[str, ClusterClient]:
    return {n: ClusterClient(ClusterConfig(n, s.kubeconfig)) for n, s in h.servers.items()}


async def create_many(
    c: ClusterClient,
    path: str | Callable[[dict[str, Any]], str],
    bodies: list[dict[str, Any]],
    concurrency: int = 32,
) -> None:
    """POST every body (retrying transient failures; "already exists" counts as done, a 5th failure raises)."""
    sem = asyncio.Semaphore(concurrency)

    async def one(b: dict[str, Any]) -> None:
        target = path if isinstance(path, str) else path(b)
        async with sem:
            for attempt in range(5):
                try:
                    await c.request("POST", target, body=b)
                    return
                except Exception as exc:
                    if "already exists" in str(exc):
                        return
                    if attempt == 4:
                        raise
                    await asyncio.sleep(0.2 * (attempt + 1))

    await asyncio.gather(*(one(b) for b in bodies))


def configmap(i: int, size: int = 1500) -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"bench-{i:06d}",
            "labels": {"app": f"app-{i % 50}", "tier": ("web", "db", "cache")[i % 3], "bench": "true"},
            "annotations": {"owner": f"team-{i % 7}"},
        },
        "data": {"payload": "x" * size, "index": str(i)},
    }


__all__ = ["DaemonProc"]
