"""`./dev demo` (or `nox -s demo`, `python -m multicluster.demo`): the whole product on this machine in one command.

Starts 3 real local clusters (etcd + kube-apiservers + controller-managers), creates sample workloads in them
(namespaces, deployments, configmaps, a CRD and its objects, a MultiClusterResource on the master), runs the
daemon on the embedded SQLite store, waits until it is ready, and shows the plugin's tables. With a terminal it
then stays up until Ctrl-C; `--exit` stops right after the tables (what CI uses), `--keep` always waits.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from multicluster.testing import objects
from multicluster.testing.harness import Harness, free_port, progress

CRD_GROUP = "demo.multicluster.io"


def _crd() -> dict[str, Any]:
    return objects.crd(
        CRD_GROUP,
        "databases",
        "Database",
        short_names=["db"],
        printer_columns=[
            {"name": "Engine", "type": "string", "jsonPath": ".spec.engine"},
            {"name": "Size", "type": "string", "jsonPath": ".spec.size"},
        ],
    )


def _deployment(name: str, replicas: int, image: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": name, "image": image}]},
            },
        },
    }


def seed_workloads(h: Harness) -> None:
    for i, name in enumerate(h.servers, start=1):
        r = h.request
        r(name, "POST", "/api/v1/namespaces", {"metadata": {"name": "shop"}})
        r(name, "POST", "/apis/apps/v1/namespaces/default/deployments", _deployment("web", i, "nginx:1.27"))
        r(name, "POST", "/apis/apps/v1/namespaces/shop/deployments", _deployment("cart", 1, "redis:7"))
        for cm in ("app-settings", f"feature-flags-{name}"):
            r(name, "POST", "/api/v1/namespaces/default/configmaps",
              {"metadata": {"name": cm, "labels": {"demo": "true"}}, "data": {"cluster": name, "region": f"r{i}"}})
        r(name, "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", _crd())
    for name in h.servers:
        for _ in range(100):
            try:
                h.request(name, "GET", f"/apis/{CRD_GROUP}/v1/databases")
                break
            except Exception:
                time.sleep(0.1)
        h.request(name, "POST", f"/apis/{CRD_GROUP}/v1/namespaces/shop/databases",
                  {"apiVersion": f"{CRD_GROUP}/v1", "kind": "Database", "metadata": {"name": "orders"},
                   "spec": {"engine": "postgres", "size": "10Gi"}})


DELIVERY_EXAMPLE = """\
apiVersion: mulitcluster.practice.com/v1alpha1
kind: MultiClusterResource
metadata:
  name: demo-delivered
  namespace: default
spec:
  template:
    apiVersion: apps/v1
    kind: Deployment
    metadata:
      name: demo-delivered
    spec:
      replicas: 1
      selector: {matchLabels: {app: demo-delivered}}
      template:
        metadata: {labels: {app: demo-delivered}}
        spec:
          containers:
            - {name: web, image: "nginx:1.27"}
  placement:
    clusters: [{name: cluster1}, {name: cluster2}, {name: cluster3}]
  customize:
    clusters:
      - name: cluster2
        action:
          - {path: /spec/replicas, op: replace, value: [2]}
      - name: cluster3
        action:
          - {path: /spec/replicas, op: replace, value: [3]}
          - {path: /metadata/annotations/example, op: add, value: ["example"]}
"""


def _wait_delivered(h: Harness, name: str, clusters: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = 0
        for c in h.servers:
            with contextlib.suppress(OSError):  # urllib's HTTPError (404 until delivered) is an OSError
                h.request(c, "GET", f"/apis/apps/v1/namespaces/default/deployments/{name}")
                found += 1
        if found == clusters:
            time.sleep(1.5)  # let the daemon's informers pick the copies up
            return
        time.sleep(0.3)
    raise RuntimeError(f"the MultiClusterResource was not delivered to {clusters} clusters in {timeout:.0f}s")


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the daemon exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2) as resp:  # noqa: S310 - loopback
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError("the daemon did not become ready")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m multicluster.demo")
    ap.add_argument("--dir", type=Path, default=Path(".local/demo"), help="where clusters, kubeconfigs, DB live")
    ap.add_argument("--clusters", type=int, default=3)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--keep", action="store_true", help="stay up until Ctrl-C even without a terminal")
    mode.add_argument("--exit", action="store_true", help="stop everything after showing the tables")
    args = ap.parse_args(argv)
    keep = args.keep or (not args.exit and sys.stdin.isatty())
    workdir = args.dir.resolve()
    if workdir.exists():
        shutil.rmtree(workdir)
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
    h = Harness(workdir, clusters=args.clusters)
    daemon: subprocess.Popen[bytes] | None = None
    try:
        h.start()
        progress("creating sample workloads (deployments, configmaps, a CRD and its objects)")
        seed_workloads(h)
        port = int(os.environ.get("MULTICLUSTER_DEMO_PORT", "0")) or free_port()
        cfg_path = h.write_config({"store": {"type": "sqlite", "path": str(workdir / "demo.db")},
                                   "server": {"bind": "127.0.0.1", "port": port},
                                   "resources": {"exclude": ["events", "events.k8s.io"]}})
        cli_cfg = workdir / "cli-config"
        cli_cfg.write_text(yaml.safe_dump({"serverIP": "127.0.0.1", "serverPort": port,
                                           "masterClusterKubeConfigPath": str(workdir / "cluster1.kubeconfig")}))
        env = {**os.environ, "MULTICLUSTER_CLI_CONFIG": str(cli_cfg)}
        progress(f"starting the daemon: multicluster run --config {cfg_path}")
        daemon = subprocess.Popen(
            [sys.executable, "-m", "multicluster", "run", "--config", str(cfg_path), "--no-write-cli-config"],
            env=env, stderr=open(workdir / "daemon.log", "ab"),  # noqa: SIM115 - owned by the child
        )
        url = f"http://127.0.0.1:{port}"
        t0 = time.monotonic()
        _wait_ready(url, daemon)
        progress(f"daemon ready in {time.monotonic() - t0:.1f}s at {url}")
        plugin = [sys.executable, "-m", "plugin.cli"]
        for cmd in (["list", "pods"], ["list", "deployments"], ["list", "configmaps", "-n", "default"],
                    ["list", "databases.demo.multicluster.io"], ["list", "clusters"]):
            print(f"\n$ kubectl-multicluster {' '.join(cmd)}", flush=True)
            subprocess.run([*plugin, *cmd], env=env, check=True)
        mcr = workdir / "delivery.yaml"
        mcr.write_text(DELIVERY_EXAMPLE)
        print(f"\n$ kubectl-multicluster apply -f {mcr}   # a MultiClusterResource on the master", flush=True)
        subprocess.run([*plugin, "apply", "-f", str(mcr)], env=env, check=True)
        _wait_delivered(h, "demo-delivered", len(h.servers))
        for cmd in (["get", "rr"], ["list", "deployments", "--name", "demo-delivered"]):
            print(f"\n$ kubectl-multicluster {' '.join(cmd)}", flush=True)
            subprocess.run([*plugin, *cmd], env=env, check=True)
        print(f"""
Try it yourself (in another shell):
  export MULTICLUSTER_CLI_CONFIG={cli_cfg}
  kubectl-multicluster list pods -A -o wide
  kubectl-multicluster list deploy --clusterName cluster2
  kubectl-multicluster describe configmaps --name app-settings -n default
  curl -s '{url}/v1/list_with_cluster?gvr=apps/v1/deployments&limit=0'
  curl -s '{url}/v1/resources?gvr=cm&labelSelector=demo%3Dtrue'
  kubectl --kubeconfig {workdir}/cluster1.kubeconfig get pods -A   # a cluster directly
Daemon log: {workdir / 'daemon.log'}""", flush=True)
        if keep:
            print("Everything stays up; press Ctrl-C to stop.", flush=True)
            stop = False

            def _stop(*_: object) -> None:
                nonlocal stop
                stop = True

            signal.signal(signal.SIGTERM, _stop)
            try:
                while not stop and daemon.poll() is None:
                    time.sleep(0.5)
            except KeyboardInterrupt:
                pass
        return 0
    except Exception as exc:
        progress(f"demo failed: {exc}")
        return 1
    finally:
        if daemon is not None and daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                daemon.kill()
        progress("stopping the clusters")
        h.stop()


if __name__ == "__main__":
    sys.exit(main())
