"""`python -m multicluster.testing up --clusters N --dir DIR`: real local clusters by hand.

Prints READY alone on stdout once every API server answers /readyz; progress goes to stderr; SIGTERM/SIGINT stop
everything it started. Writes DIR/<name>.kubeconfig for each cluster and DIR/config.yaml (cluster1 is master).
Also `mariadb --dir DIR`: a private MariaDB server, printing READY and a DSN line; and
`mariadb-cluster --nodes 3 --dir DIR`: a Galera cluster on loopback writing DIR/endpoints (HOST:PORT per line),
DIR/credentials (YAML: user, password, database) and DIR/pids (each node's mariadbd pid, in endpoint order).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from multicluster.testing.harness import Harness, progress


def _wait_for_signal() -> None:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(1.0):
        pass


def _galera(ap: argparse.ArgumentParser, nodes: int, out: Path) -> int:
    from multicluster.testing.galera import GaleraCluster

    if nodes < 1:
        ap.error("--nodes must be at least 1")
    cluster = GaleraCluster(out, nodes_count=nodes)
    try:
        cluster.start()
        cluster.write_files(out)
        progress(f"{out / 'endpoints'}, {out / 'credentials'} and {out / 'pids'} written")
        print("READY", flush=True)
        _wait_for_signal()
    except Exception as exc:
        progress(f"error: {exc}")
        return 1
    finally:
        progress("stopping")
        cluster.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m multicluster.testing")
    sub = ap.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start etcd + N kube-apiservers (+ controller-managers) until SIGTERM")
    up.add_argument("--clusters", type=int, default=3)
    up.add_argument("--dir", type=Path, required=True)
    up.add_argument("--no-controller-manager", action="store_true")
    sub.add_parser("build", help="build (or reuse) the cached binaries and print their directory")
    db = sub.add_parser("mariadb", help="start a private MariaDB server until SIGTERM")
    db.add_argument("--dir", type=Path, required=True)
    gal = sub.add_parser("mariadb-cluster", help="start a private MariaDB Galera cluster until SIGTERM")
    gal.add_argument("--nodes", type=int, default=3)
    gal.add_argument("--dir", type=Path, required=True)
    args = ap.parse_args(argv)

    if args.cmd == "build":
        from multicluster.testing.harness import testbin

        print(testbin())
        return 0
    if args.cmd == "mariadb":
        from multicluster.testing.mariadb import MariaDB

        with MariaDB(args.dir) as m:
            print("READY", flush=True)
            print(f"DSN mysql://{m.user}:{m.password}@127.0.0.1:{m.port}/", flush=True)
            _wait_for_signal()
        return 0
    if args.cmd == "mariadb-cluster":
        return _galera(ap, args.nodes, args.dir.resolve())
    if args.clusters < 1:
        ap.error("--clusters must be at least 1")
    h = Harness(args.dir.resolve(), clusters=args.clusters, controller_manager=not args.no_controller_manager)
    try:
        h.start()
        cfg = h.write_config()
        progress(f"kubeconfigs and {cfg} written")
        print("READY", flush=True)
        _wait_for_signal()
    except Exception as exc:
        progress(f"error: {exc}")
        return 1
    finally:
        progress("stopping")
        h.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
