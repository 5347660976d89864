"""Shared pieces of the benchmarks: medians, markdown tables, a daemon subprocess, loading objects fast."""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from multicluster.config import ClusterConfig
from multicluster.kube import ClusterClient
from multicluster.testing.harness import Harness, free_port


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


async def create_many(c: ClusterClient, path: str, bodies: list[dict[str, Any]], concurrency: int = 32) -> None:
    sem = asyncio.Semaphore(concurrency)

    async def one(b: dict[str, Any]) -> None:
        async with sem:
            for attempt in range(5):
                try:
                    await c.request("POST", path, body=b)
                    return
                except Exception as exc:
                    if "already exists" in str(exc):
                        return
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


@dataclass
class DaemonProc:
    """`multicluster run` in a subprocess, so its RSS is its own."""

    workdir: Path
    config: dict[str, Any]
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0

    def start(self) -> None:
        cfg = dict(self.config)
        cfg["server"] = {"bind": "127.0.0.1", "port": self.port}
        path = self.workdir / "bench-config.yaml"
        path.write_text(yaml.safe_dump(cfg))
        env = {**os.environ, "MULTICLUSTER_CLI_CONFIG": str(self.workdir / "cli-config"), "NO_PROXY": "127.0.0.1"}
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "multicluster",
                "run",
                "--config",
                str(path),
                "--log-level",
                "WARNING",
                "--no-write-cli-config",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(self.workdir / "daemon.log", "ab"),  # noqa: SIM115
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str, timeout: float = 10) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def wait_ready(self, timeout: float = 600) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited {self.proc.returncode}; see {self.workdir / 'daemon.log'}")
            try:
                status, _ = self.get("/readyz", timeout=2)
                if status == 200:
                    return time.monotonic() - self.started
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("daemon not ready in time")

    def rss_bytes(self) -> int:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def metric(self, name: str, labels: str = "") -> float:
        _, body = self.get("/metrics")
        total = 0.0
        for line in body.decode().splitlines():
            if line.startswith(name + ("{" + labels if labels else "")) or line.startswith(name + " "):
                if labels and labels not in line:
                    continue
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
