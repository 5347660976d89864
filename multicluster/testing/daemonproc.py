"""`multicluster run` in a subprocess, for tests and benchmarks that need a real process: its own RSS, SIGKILL,
SIGTERM, several replicas at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from multicluster.testing.harness import free_port


@dataclass
class DaemonProc:
    workdir: Path
    config: dict[str, Any]
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0

    def start(
        self, extra_args: list[str] | None = None, env: dict[str, str] | None = None, log_level: str = "WARNING"
    ) -> None:
        cfg = dict(self.config)
        cfg["server"] = {"bind": "127.0.0.1", "port": self.port}
        path = self.workdir / f"daemon-{self.port}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        full_env = {
            **os.environ,
            "MULTICLUSTER_CLI_CONFIG": str(self.workdir / "cli-config"),
            "NO_PROXY": "127.0.0.1",
            **(env or {}),
        }
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
                log_level,
                "--no-write-cli-config",
                *(extra_args or []),
            ],
            env=full_env,
            stdout=subprocess.DEVNULL,
            stderr=open(self.log_path, "ab"),  # noqa: SIM115 - owned by the child
        )

    @property
    def log_path(self) -> Path:
        return self.workdir / f"daemon-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str, timeout: float = 10) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as r:  # noqa: S310 - loopback only
                return int(r.status), bytes(r.read())
        except urllib.error.HTTPError as e:
            return int(e.code), bytes(e.read())

    def wait_ready(self, timeout: float = 600) -> float:
        """Seconds from start until /readyz answered 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited {self.proc.returncode}; see {self.log_path}")
            try:
                status, _ = self.get("/readyz", timeout=2)
                if status == 200:
                    return time.monotonic() - self.started
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"daemon not ready in {timeout:.0f}s; see {self.log_path}")

    def rss_bytes(self) -> int:
        return self.memory()[0]

    def memory(self) -> tuple[int, int]:
        """(VmRSS, RssAnon) in bytes of the daemon and its child processes (the SQLite writer): all resident
        memory, and the part that is the processes' own heap rather than mapped file pages."""
        assert self.proc is not None
        total = [0, 0]
        for pid in [self.proc.pid, *_children(self.proc.pid)]:
            found = {"VmRSS:": 0, "RssAnon:": 0}
            try:
                lines = Path(f"/proc/{pid}/status").read_text().splitlines()
            except OSError:
                continue  # exited meanwhile
            for line in lines:
                key = line.split(maxsplit=1)[0] if line else ""
                if key in found:
                    found[key] = int(line.split()[1]) * 1024
            total[0] += found["VmRSS:"]
            total[1] += found["RssAnon:"]
        return total[0], total[1]

    def metric(self, name: str, labels: str = "") -> float:
        """Sum of a Prometheus series from /metrics, optionally only lines containing `labels`."""
        _, body = self.get("/metrics")
        total = 0.0
        for line in body.decode().splitlines():
            if line.startswith("#") or not (line.startswith(name + "{") or line.startswith(name + " ")):
                continue
            if labels and labels not in line:
                continue
            total += float(line.rsplit(" ", 1)[1])
        return total

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait()

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return out
    for task in tasks:
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out
