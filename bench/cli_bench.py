"""Wall time and peak memory of `kubectl multicluster list` as a user runs it: a fresh process per call.

A daemon syncs the harness clusters (3 by default, 20,000 ConfigMaps each in namespace `bench`, plus one
ConfigMap per cluster in `default`), then each command is started --runs times, stdout going to /dev/null:

- `list cm -n default`: 3 rows, so the time is the process's start-up (imports) plus one request;
- `list cm`: every ConfigMap (60,003 rows), so the time is the page walk and the table printing;
- `list cm --limit N`: a tenth of the rows, to show that peak memory does not grow with the rows printed.

`python -c pass` is the floor: the interpreter's own start-up. Peak RSS is the kernel's accounting of the
finished child (wait4's ru_maxrss; the child is started from a small launcher process). --tree runs the plugin
from another checkout (working directory and PYTHONPATH), which is how a before/after pair is measured on the
same clusters.

    python -m bench.cli_bench [--objects 20000] [--clusters 3] [--runs 7] [--tree DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import DaemonProc, clients, median, table
from bench.sync_bench import base_config, load
from multicluster.testing.harness import Harness, progress

SMALL_TARGET = 0.120  # seconds, 3-row list
BIG_TARGET = 3.0  # seconds, 60,000-row list
ROOT = Path(__file__).resolve().parent.parent


async def default_configmaps(h: Harness) -> None:
    """One ConfigMap in `default` per cluster: the 3-row list."""
    cs = clients(h)
    try:
        for c in cs.values():
            with contextlib.suppress(Exception):  # already there from an earlier call
                await c.request("POST", "/api/v1/namespaces/default/configmaps",
                                body={"metadata": {"name": "cli-bench"}, "data": {"k": "v"}})
    finally:
        for c in cs.values():
            await c.close()


# Runs each command from a small process: a child forked from this one (harness, event loop) would count this
# process's memory as its own peak, as the kernel's high-water mark survives exec.
LAUNCHER = """
import json, os, subprocess, sys, time
for line in sys.stdin:
    cmd, env, cwd = json.loads(line)
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = p.stderr.read()
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    code = os.waitstatus_to_exitcode(status)
    print(json.dumps([wall, usage.ru_maxrss * 1024, code, err.decode(errors="replace")[-500:]]), flush=True)
"""


class Launcher:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", LAUNCHER], stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def run(self, cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, int]:
        """(wall seconds, peak RSS bytes) of one process started in `cwd`, its output thrown away."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps([cmd, env, str(cwd)]).encode() + b"\n")
        self.proc.stdin.flush()
        wall, peak, code, err = json.loads(self.proc.stdout.readline())
        if code:
            raise RuntimeError(f"{' '.join(cmd)} exited {code}: {err}")
        return float(wall), int(peak)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait()


def measure(launcher: Launcher, cmd: list[str], tree: Path, env: dict[str, str],
            runs: int) -> tuple[float, float, float, int]:
    """(median, min, max wall seconds, median peak RSS) over `runs` runs of `cmd` with the plugin of `tree` (the
    working directory and PYTHONPATH: `python -m` looks in the working directory first), after one warm-up."""
    env = {**env, "PYTHONPATH": str(tree)}
    launcher.run(cmd, env, tree)
    walls: list[float] = []
    peaks: list[float] = []
    for _ in range(runs):
        wall, peak = launcher.run(cmd, env, tree)
        walls.append(wall)
        peaks.append(peak)
    return median(walls), min(walls), max(walls), int(median(peaks))


def count_rows(cmd: list[str], env: dict[str, str], tree: Path) -> int:
    out = subprocess.run([*cmd, "--no-headers"], env=env, cwd=tree, capture_output=True, check=True).stdout
    return out.count(b"\n")


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(prog="python -m bench.cli_bench")
    ap.add_argument("--objects", type=int, default=20_000, help="configmaps per cluster")
    ap.add_argument("--clusters", type=int, default=3)
    ap.add_argument("--runs", type=int, default=7, help="timed runs per command (after one warm-up)")
    ap.add_argument("--tree", type=Path, action="append",
                    help="checkout whose plugin is run (repeatable, to compare; default: this one)")
    args = ap.parse_args(argv)
    trees: list[Path] = [t.resolve() for t in args.tree or [ROOT]]
    work = Path(tempfile.mkdtemp(prefix="mc-bench-cli-"))
    try:
        with Harness(work / "harness", clusters=args.clusters, controller_manager=False) as h:
            asyncio.run(load(h, args.objects))
            asyncio.run(default_configmaps(h))
            d = DaemonProc(work, base_config(h, {"type": "sqlite", "path": str(work / "bench.db")}))
            d.start()
            try:
                d.wait_ready()
                base = {k: v for k, v in os.environ.items() if k not in ("MULTICLUSTER_TOKEN", "FORCE_COLOR")}
                base.update({"MULTICLUSTER_SERVER": d.url, "MULTICLUSTER_CLI_CONFIG": str(work / "no-cli-config"),
                             "NO_PROXY": "127.0.0.1"})
                env = {**base, "PYTHONPATH": str(trees[0])}
                cli = [sys.executable, "-m", "plugin.cli", "list", "cm"]
                total = args.objects * args.clusters + args.clusters
                deadline = time.monotonic() + 600
                while (rows := count_rows(cli, env, trees[0])) < total and time.monotonic() < deadline:
                    progress(f"daemon has {rows:,} of {total:,} configmaps")
                    time.sleep(2)
                tenth = max(1, rows // 10)
                cases: list[tuple[str, list[str], float | None]] = [
                    ("python -c pass (interpreter start-up)", [sys.executable, "-c", "pass"], None),
                    ("list cm -n default (3 rows)", [*cli, "-n", "default"], SMALL_TARGET),
                    (f"list cm --limit {tenth} ({tenth:,} rows)", [*cli, "--limit", str(tenth)], None),
                    (f"list cm ({rows:,} rows)", cli, BIG_TARGET),
                ]
                out_rows: list[list[Any]] = []
                launcher = Launcher()
                for label, cmd, target in cases:
                    for tree in trees if cmd[1] == "-m" else trees[:1]:
                        med, lo, hi, peak = measure(launcher, cmd, tree, base, args.runs)
                        verdict = "" if target is None else ("yes" if med < target else "**no**")
                        shown = label if len(trees) == 1 or cmd[1] != "-m" else f"{label} [{tree}]"
                        out_rows.append([shown, med * 1000, lo * 1000, hi * 1000, f"{peak / 2**20:.0f} MiB",
                                         f"< {target * 1000:.0f} ms: {verdict}" if target else ""])
                launcher.close()
            finally:
                d.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = (f"{args.clusters} clusters x {args.objects:,} ConfigMaps synced by a daemon (SQLite); each command is a "
            f"fresh `python -m plugin.cli` process, output to /dev/null, {args.runs} runs after a warm-up.\n\n"
            + table(["command", "median ms", "min ms", "max ms", "peak RSS (median)", "target"], out_rows))
    print(text)
    return text


if __name__ == "__main__":
    main()
