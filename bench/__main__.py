"""`python -m bench [names...]`: run benchmarks and write BENCHMARKS.md (sections per benchmark).

Each module has main(argv) returning its report as markdown; one that returns something else (an exit code)
is reported by what it printed, in a code block.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import re
import sys
import time
from pathlib import Path

from bench.common import machine

BENCHES = {
    "sync": "bench.sync_bench",
    "memory": "bench.memory_bench",
    "store": "bench.store_write",
    "query": "bench.query_bench",
    "delivery": "bench.delivery",
    "galera": "bench.galera_bench",
    "cli": "bench.cli_bench",
    "kube": "bench.kube_api_bench",
    "auth": "bench.auth_bench",
    "watch": "bench.watch_bench",
}
TARGETS = """Targets, and where each table says whether this run met them (`**no**` marks a miss):

| target | table |
|---|---|
| initial sync >= 0.5x a bare paginated list of the same objects | sync: "ratio >= 0.5" |
| daemon memory <= 1 KB per stored object | sync and memory: "<= 1024 B" |
| event -> queryable lag p99 < 1 s | sync: "p99 < 1000 ms", per update rate |
| query p99 < 50 ms for a 500-row page at ~1 M rows | query: "p99 < 50 ms" |
| 0 rows written on a restart with nothing changed | sync: "0 writes" |
| delivery (CR -> copies, hand edit -> corrected) p99 < 1 s, status aggregation on | delivery: "target p99 < 1s" |
| `kubectl multicluster list` of 3 rows < 120 ms, of 60,000 rows < 3 s, peak memory flat | cli: "target" |
| `kubectl --context multicluster get pods -A` >= 3x faster than on each cluster in turn; daemon RSS flat \
| kube: "target >= 3x" |
| change -> watcher p99 < 100 ms at 500 updates/s, 100 watchers; memory per idle watcher; a stalled watcher is \
closed | watch: "p99 < 100 ms" |
"""
# The full run's arguments where a module's defaults are not what the report should use: five sync runs, as the
# ratio moves by ±0.08 between runs; the query bench's slowest shapes would otherwise spend a minute each;
# delivery runs with the daemon's default worker count.
FULL: dict[str, list[str]] = {
    "sync": ["--runs", "5"],
    "query": ["--requests", "100", "--budget", "20"],
    "delivery": ["--workers", "4"],
}
# --quick: small sizes, one run (a smoke test of every benchmark).
QUICK = {
    "sync": ["--objects", "2000", "--runs", "1", "--rates", "100,200", "--lag-seconds", "5"],
    "memory": ["--levels", "1500,6000", "--stores", "sqlite"],
    "store": ["--objects", "2000", "--runs", "1"],
    "query": ["--quick"],
    "delivery": ["--count", "20"],
    "galera": ["--objects", "1000", "--runs", "1", "--rates", "100", "--lag-seconds", "5"],
    "cli": ["--objects", "2000", "--runs", "3"],
    "kube": ["--pods", "300", "--runs", "2"],
    "auth": ["--pods", "300", "--requests", "20"],
    "watch": ["--objects", "100", "--rate", "100", "--seconds", "5", "--watchers", "10", "--idle", "50"],
}


def run(name: str, argv: list[str]) -> str:
    mod = importlib.import_module(BENCHES[name])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        result = mod.main(argv)
    printed = out.getvalue().strip()
    if isinstance(result, str):
        sys.stdout.write(result + "\n")
        # A report's own "## " heading would start a section of BENCHMARKS.md (and be lost on the next rewrite).
        return re.sub(r"(?m)^## ", "### ", result)
    sys.stdout.write(printed + "\n")
    return f"```\n{printed}\n```" + (f"\n\n(exit status {result})" if result else "")


def read_sections(path: Path) -> dict[str, str]:
    """The `## name` sections of an existing report, by benchmark name."""
    if not path.exists():
        return {}
    found: dict[str, str] = {}
    for chunk in path.read_text().split("\n## ")[1:]:
        name, _, body = chunk.partition("\n")
        if name.strip() in BENCHES:
            found[name.strip()] = body.strip()
    return found


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench")
    ap.add_argument("names", nargs="*", default=list(BENCHES), help=f"any of {', '.join(BENCHES)}")
    ap.add_argument("--quick", action="store_true", help="small sizes, one run (smoke test)")
    args = ap.parse_args()
    unknown = [n for n in args.names if n not in BENCHES]
    if unknown:
        ap.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHES)}")
    out = Path("BENCHMARKS.md")
    # A run of some benchmarks replaces their sections and keeps the others (each section says when it ran).
    sections = {} if args.quick else read_sections(out)
    header = (f"# Benchmarks\n\nMachine: {machine()}. `nox -s bench` runs every section; `nox -s bench -- NAME...` "
              "reruns some and keeps the rest. Generated: do not edit; the analysis of these numbers, and why a "
              f"target is missed, is in docs/performance.md.\n\n{TARGETS}")
    for name in args.names:
        stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        argv = QUICK[name] if args.quick else FULL.get(name, [])
        shown = " ".join(["python -m", BENCHES[name], *argv])
        sections[name] = f"Run {stamp} with `{shown}`.\n\n" + run(name, argv)
        # Written after every section, so a later one that fails does not lose the earlier results.
        body = [f"## {n}\n\n{sections[n].strip()}" for n in BENCHES if n in sections]
        out.write_text("\n\n".join([header, *body]) + "\n")
        print(f"wrote BENCHMARKS.md ({name})")


if __name__ == "__main__":
    main()
