"""`python -m bench [names...]`: run benchmarks and write BENCHMARKS.md (sections per benchmark)."""

from __future__ import annotations

import argparse
import importlib
import time
from pathlib import Path

from bench.common import machine

BENCHES = {"sync": "bench.sync_bench"}


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench")
    ap.add_argument("names", nargs="*", default=list(BENCHES), help=f"any of {', '.join(BENCHES)}")
    ap.add_argument("--quick", action="store_true", help="small sizes, one run (smoke test)")
    args = ap.parse_args()
    parts = [f"# Benchmarks\n\nRun {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {machine()}.\n"]
    for name in args.names:
        mod = importlib.import_module(BENCHES[name])
        argv = ["--objects", "2000", "--runs", "1", "--rate", "200"] if args.quick else []
        parts.append(f"## {name}\n\n" + mod.main(argv))
    Path("BENCHMARKS.md").write_text("\n\n".join(parts) + "\n")
    print("wrote BENCHMARKS.md")


if __name__ == "__main__":
    main()
