"""Start real Kubernetes control planes on loopback: one etcd, N kube-apiservers (one per "cluster", each with
its own etcd prefix, so their objects are fully separate) and, optionally, one kube-controller-manager each (so
Deployments get ReplicaSets and Pods, and namespaces finish terminating).

Binaries come from build-testbin.sh (built from the Go module proxy into ~/.cache/multicluster/testbin/). The
class is synchronous on purpose: pytest session fixtures, the `up` command and the benchmarks all drive it from
plain code, and fault tests need blunt tools (kill, SIGSTOP, restart on the same port, etcd compaction).
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from multicluster.testing.certs import FRONT_PROXY_CLIENT, make_pki

BUILD_SCRIPT = Path(__file__).with_name("build-testbin.sh")
ADMIN_TOKEN = "multicluster-harness-admin-token"


def progress(msg: str) -> None:
    print(f"[harness] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def testbin() -> Path:
    """Directory with kube-apiserver, kube-controller-manager and etcd; builds them when missing."""
    env = os.environ.copy()
    env.setdefault("GOFLAGS", "-buildvcs=false")
    res = subprocess.run(["bash", str(BUILD_SCRIPT)], check=False, stdout=subprocess.PIPE, env=env, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"building the harness binaries failed (exit {res.returncode}); see the output above")
    return Path(res.stdout.strip().splitlines()[-1])


@dataclass
class ApiServer:
    name: str
    port: int
    kubeconfig: Path
    proc: subprocess.Popen[bytes] | None = None
    cm_proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"


@dataclass
class Harness:
    """etcd + N API servers in `workdir`. Use start()/stop() or as a context manager."""

    workdir: Path
    clusters: int = 3
    controller_manager: bool = True
    bin_dir: Path | None = None
    servers: dict[str, ApiServer] = field(default_factory=dict)
    etcd_proc: subprocess.Popen[bytes] | None = None
    etcd_port: int = 0

    def __enter__(self) -> Harness:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ paths and files

    @property
    def pki(self) -> Path:
        return self.workdir / "pki"

    @property
    def logs(self) -> Path:
        return self.workdir / "logs"

    @property
    def etcd_url(self) -> str:
        return f"http://127.0.0.1:{self.etcd_port}"

    def _bin(self, name: str) -> str:
        assert self.bin_dir is not None
        return str(self.bin_dir / name)

    def _kubeconfig(self, name: str, port: int, style: str) -> Path:
        """style: "ca-token" (CA data + bearer token), "insecure-token" (skip TLS verify), "client-cert"."""
        ca = base64.b64encode((self.pki / "ca.crt").read_bytes()).decode()
        cluster: dict[str, Any] = {"server": f"https://127.0.0.1:{port}"}
        user: dict[str, Any]
        if style == "insecure-token":
            cluster["insecure-skip-tls-verify"] = True
            user = {"token": ADMIN_TOKEN}
        elif style == "client-cert":
            cluster["certificate-authority-data"] = ca
            user = {
                "client-certificate-data": base64.b64encode((self.pki / "admin.crt").read_bytes()).decode(),
                "client-key-data": base64.b64encode((self.pki / "admin.key").read_bytes()).decode(),
            }
        else:
            cluster["certificate-authority-data"] = ca
            user = {"token": ADMIN_TOKEN}
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": name, "cluster": cluster}],
            "users": [{"name": f"{name}-admin", "user": user}],
            "contexts": [{"name": name, "context": {"cluster": name, "user": f"{name}-admin"}}],
            "current-context": name,
        }
        path = self.workdir / f"{name}.kubeconfig"
        path.write_text(yaml.safe_dump(doc))
        path.chmod(0o600)
        return path

    def write_config(self, extra: dict[str, Any] | None = None) -> Path:
        """A daemon config in the Go original's format listing every cluster, cluster1 as master."""
        doc: dict[str, Any] = {
            "clusters": [
                {
                    "metadata": {
                        "clusterName": s.name,
                        "insecure": False,
                        "configPath": str(s.kubeconfig),
                        "isMaster": i == 0,
                    }
                }
                for i, s in enumerate(self.servers.values())
            ]
        }
        doc.update(extra or {})
        path = self.workdir / "config.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        if self.bin_dir is None:
            progress("checking/building binaries (cached in ~/.cache/multicluster/testbin)")
            self.bin_dir = testbin()
        make_pki(self.pki)
        (self.pki / "tokens.csv").write_text(f'{ADMIN_TOKEN},harness-admin,harness-admin,"system:masters"\n')
        self._start_etcd()
        styles = ["ca-token", "insecure-token", "client-cert"]
        for i in range(1, self.clusters + 1):
            self.add_cluster(f"cluster{i}", styles[(i - 1) % len(styles)], wait=False)
        for s in self.servers.values():
            self.wait_ready(s.name)
        progress(
            f"{len(self.servers)} API servers ready: " + ", ".join(f"{s.name}={s.url}" for s in self.servers.values())
        )

    def _start_etcd(self) -> None:
        self.etcd_port = free_port()
        peer = free_port()
        data = self.workdir / "etcd-data"
        progress(f"starting etcd on 127.0.0.1:{self.etcd_port}")
        self.etcd_proc = subprocess.Popen(
            [
                self._bin("etcd"),
                f"--data-dir={data}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=default=http://127.0.0.1:{peer}",
                "--unsafe-no-fsync=true",
                "--quota-backend-bytes=8589934592",
                "--log-level=warn",
            ],
            stdout=open(self.logs / "etcd.log", "ab"),  # noqa: SIM115 - owned by the child
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.etcd_url}/health", timeout=2) as r:  # noqa: S310
                    if json.loads(r.read()).get("health") == "true":
                        return
            except (OSError, ValueError):
                pass
            if self.etcd_proc.poll() is not None:
                raise RuntimeError(f"etcd exited with {self.etcd_proc.returncode}; see {self.logs / 'etcd.log'}")
            time.sleep(0.2)
        raise RuntimeError(f"etcd did not become healthy in 30s; see {self.logs / 'etcd.log'}")

    def add_cluster(self, name: str, style: str = "ca-token", *, wait: bool = True) -> ApiServer:
        port = free_port()
        server = ApiServer(name=name, port=port, kubeconfig=self._kubeconfig(name, port, style))
        self.servers[name] = server
        self.start_server(name)
        if wait:
            self.wait_ready(name)
        return server

    def _apiserver_args(self, s: ApiServer) -> list[str]:
        p = self.pki
        return [
            self._bin("kube-apiserver"),
            f"--etcd-servers={self.etcd_url}",
            f"--etcd-prefix=/{s.name}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={s.port}",
            f"--cert-dir={self.workdir / ('certs-' + s.name)}",
            f"--tls-cert-file={p / 'server.crt'}",
            f"--tls-private-key-file={p / 'server.key'}",
            f"--client-ca-file={p / 'ca.crt'}",
            f"--token-auth-file={p / 'tokens.csv'}",
            "--authorization-mode=RBAC",
            f"--service-account-key-file={p / 'sa.pub'}",
            f"--service-account-signing-key-file={p / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--allow-privileged=true",
            "--disable-admission-plugins=ServiceAccount",
            "--endpoint-reconciler-type=none",
            # Aggregation (APIService): requests proxied to an aggregated API server carry the user in these
            # headers, and the proxy proves it is the API server with a client certificate from its own CA.
            # --enable-aggregator-routing stays off: with it the aggregator dials the Service's EndpointSlices,
            # and EndpointSlice validation refuses loopback addresses, so a daemon on 127.0.0.1 is reachable only
            # through a Service of type ExternalName (`localhost`), which the ClusterIP resolver accepts.
            f"--requestheader-client-ca-file={p / 'front-proxy-ca.crt'}",
            f"--requestheader-allowed-names={FRONT_PROXY_CLIENT}",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={p / 'front-proxy-client.crt'}",
            f"--proxy-client-key-file={p / 'front-proxy-client.key'}",
            "--v=1",
        ]

    def start_server(self, name: str) -> None:
        """(Re)start one API server on its fixed port (its controller-manager starts once it is ready)."""
        s = self.servers[name]
        progress(f"starting kube-apiserver {name} on {s.url}")
        s.proc = subprocess.Popen(
            self._apiserver_args(s),
            stdout=open(self.logs / f"{name}-apiserver.log", "ab"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def _start_controller_manager(self, name: str) -> None:
        """Start the controller-manager of a ready API server, or start it again when it has exited. Started
        together with the API server, it gives up when the server is not healthy within 10 s, which happens on a
        loaded machine, and then Deployments get no Pods and aggregated ClusterRoles (view) no rules."""
        s = self.servers[name]
        if not self.controller_manager or (s.cm_proc is not None and s.cm_proc.poll() is None):
            return
        cm_kubeconfig = self._kubeconfig(f"{name}-cm", s.port, "ca-token")
        s.cm_proc = subprocess.Popen(
            [
                self._bin("kube-controller-manager"),
                f"--kubeconfig={cm_kubeconfig}",
                "--leader-elect=false",
                "--secure-port=0",
                f"--service-account-private-key-file={self.pki / 'sa.key'}",
                f"--root-ca-file={self.pki / 'ca.crt'}",
                "--v=1",
            ],
            stdout=open(self.logs / f"{name}-controller-manager.log", "ab"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, name: str, timeout: float = 120.0) -> None:
        s = self.servers[name]
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if s.proc is not None and s.proc.poll() is not None:
                log_file = self.logs / f"{name}-apiserver.log"
                raise RuntimeError(f"kube-apiserver {name} exited with {s.proc.returncode}; see {log_file}")
            try:
                self.request(name, "GET", "/readyz")
                self._start_controller_manager(name)
                return
            except (OSError, urllib.error.URLError) as exc:
                last = str(exc)
            time.sleep(0.3)
        raise RuntimeError(f"kube-apiserver {name} not ready after {timeout:.0f}s ({last})")

    def kill_server(self, name: str, sig: int = signal.SIGKILL) -> None:
        s = self.servers[name]
        if s.proc is not None and s.proc.poll() is None:
            s.proc.send_signal(sig)
            if sig in (signal.SIGKILL, signal.SIGTERM):
                s.proc.wait(timeout=30)

    def freeze_server(self, name: str) -> None:
        self.kill_server(name, signal.SIGSTOP)

    def thaw_server(self, name: str) -> None:
        self.kill_server(name, signal.SIGCONT)

    def restart_server(self, name: str) -> None:
        self.kill_server(name)
        self.start_server(name)
        self.wait_ready(name)

    def remove_cluster(self, name: str) -> None:
        s = self.servers.pop(name)
        for p in (s.cm_proc, s.proc):
            _terminate(p)

    def stop(self) -> None:
        for s in list(self.servers.values()):
            _terminate(s.cm_proc)
            _terminate(s.proc)
        _terminate(self.etcd_proc)

    # ------------------------------------------------------------------ helpers for tests

    def request(
        self, name: str, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> Any:
        """Admin request to one API server (blocking; for test setup, not for the code under test)."""
        s = self.servers[name]
        ctx = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        req = urllib.request.Request(s.url + path, data=data, method=method)  # noqa: S310
        req.add_header("Authorization", f"Bearer {ADMIN_TOKEN}")
        if data is not None:
            req.add_header("Content-Type", content_type)
        with urllib.request.urlopen(req, context=ctx, timeout=30) as r:  # noqa: S310
            raw = r.read()
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode()

    def etcd_revision(self) -> int:
        req = urllib.request.Request(  # noqa: S310 - loopback etcd
            f"{self.etcd_url}/v3/kv/range",
            data=json.dumps({"key": base64.b64encode(b"/").decode()}).encode(),
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310
            return int(json.loads(r.read())["header"]["revision"])

    def compact(self) -> int:
        """Compact etcd up to its current revision: every watch from an older RV now gets 410 Gone."""
        rev = self.etcd_revision()
        body = json.dumps({"revision": str(rev), "physical": True}).encode()
        req = urllib.request.Request(f"{self.etcd_url}/v3/kv/compaction", data=body, method="POST")  # noqa: S310
        with urllib.request.urlopen(req, timeout=60) as r:  # noqa: S310 - loopback etcd
            r.read()
        return rev


def _terminate(p: subprocess.Popen[bytes] | None) -> None:
    if p is None or p.poll() is not None:
        return
    try:
        p.send_signal(signal.SIGCONT)
        p.terminate()
        p.wait(timeout=15)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(timeout=15)
