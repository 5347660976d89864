"""manifests/rbac.yaml for real: apply it to a harness cluster, mint the ServiceAccount kubeconfig the way
docs/deploy.md says, then prove the grants are enough (the daemon syncs every type to /readyz with it) and no wider
than intended (SelfSubjectAccessReviews for what it must and must not do)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from multicluster.testing.harness import free_port

from .conftest import MANIFESTS, NAMESPACE, DryRunner, load_docs

pytestmark = pytest.mark.integration

TOKEN_SECRET = "multicluster-token"
LEASE = "deploy-test-leader"
LEASES = f"/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases"
CR_GROUP = "mulitcluster.practice.com"


@pytest.fixture(scope="module")
def sa_kubeconfig(dry_run: DryRunner, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    docs = load_docs(MANIFESTS / "rbac.yaml")
    try:
        for doc in docs:
            dry_run.apply(doc, dry_run=False)
        # docs/deploy.md step 2: a long-lived token Secret for the ServiceAccount, filled in by the token controller
        status, body, _ = dry_run.call("POST", f"/api/v1/namespaces/{NAMESPACE}/secrets", {
            "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
            "metadata": {"name": TOKEN_SECRET, "annotations": {"kubernetes.io/service-account.name": "multicluster"}},
        })
        assert status in (201, 409), body
        deadline = time.monotonic() + 60
        while True:
            _, secret, _ = dry_run.call("GET", f"/api/v1/namespaces/{NAMESPACE}/secrets/{TOKEN_SECRET}")
            if (secret.get("data") or {}).get("token"):
                break
            assert time.monotonic() < deadline, "the token controller never filled the ServiceAccount token Secret"
            time.sleep(0.5)
        token = base64.b64decode(secret["data"]["token"]).decode()
        server = dry_run.harness.servers[dry_run.cluster]
        kubeconfig = {
            "apiVersion": "v1", "kind": "Config", "current-context": "member",
            "clusters": [{"name": "member", "cluster": {"server": server.url,
                                                        "certificate-authority-data": secret["data"]["ca.crt"]}}],
            "users": [{"name": "multicluster", "user": {"token": token}}],
            "contexts": [{"name": "member", "context": {"cluster": "member", "user": "multicluster"}}],
        }
        path = tmp_path_factory.mktemp("sa") / "member.kubeconfig"
        path.write_text(yaml.safe_dump(kubeconfig))
        yield path, token
    finally:  # everything but the namespace (the dry-run fixture owns that); other tests share this cluster
        dry_run.call("DELETE", f"/api/v1/namespaces/{NAMESPACE}/secrets/{TOKEN_SECRET}")
        for doc in docs:
            if doc["kind"] != "Namespace":
                dry_run.call("DELETE", dry_run.resource_path(doc))


def _allowed(dry_run: DryRunner, token: str, verb: str, resource: str, *, group: str = "",
             namespace: str = "", sub: str = "") -> bool:
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
              "spec": {"resourceAttributes": {"verb": verb, "group": group, "resource": resource,
                                              "namespace": namespace, "subresource": sub}}}
    status, body, _ = dry_run.call("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", review,
                                   token=token)
    assert status == 201, body
    return bool(body["status"]["allowed"])


ALLOWED = [
    ("list", "pods", "", ""), ("watch", "deployments", "apps", ""), ("get", "secrets", "", "kube-system"),
    ("list", "customresourcedefinitions", "apiextensions.k8s.io", ""),
    ("create", "customresourcedefinitions", "apiextensions.k8s.io", ""),
    ("patch", "customresourcedefinitions", "apiextensions.k8s.io", ""),
    ("update", "multiclusterresources", CR_GROUP, "default"), ("create", "multiclusters", CR_GROUP, "default"),
    ("create", "events", "", "default"), ("patch", "events", "", "team-a"),
    ("create", "leases", "coordination.k8s.io", NAMESPACE), ("update", "leases", "coordination.k8s.io", NAMESPACE),
    ("create", "deployments", "apps", "team-a"), ("delete", "configmaps", "", "team-a"),
]
DENIED = [
    ("create", "secrets", "", "default"),
    ("delete", "namespaces", "", ""),
    ("create", "pods", "", "default"),
    ("create", "leases", "coordination.k8s.io", "default"),
    ("delete", "customresourcedefinitions", "apiextensions.k8s.io", ""),
    ("create", "clusterroles", "rbac.authorization.k8s.io", ""),
    ("escalate", "roles", "rbac.authorization.k8s.io", "default"),
    ("create", "rolebindings", "rbac.authorization.k8s.io", NAMESPACE),
    ("impersonate", "users", "", ""),
]


def test_service_account_grants(dry_run: DryRunner, sa_kubeconfig: tuple[Path, str]) -> None:
    _, token = sa_kubeconfig
    wrong = [f"{v} {g or 'core'}/{r} in {ns or '*'}: expected allowed" for v, r, g, ns in ALLOWED
             if not _allowed(dry_run, token, v, r, group=g, namespace=ns)]
    wrong += [f"{v} {g or 'core'}/{r} in {ns or '*'}: expected denied" for v, r, g, ns in DENIED
              if _allowed(dry_run, token, v, r, group=g, namespace=ns)]
    for sub, verb in (("status", "patch"), ("finalizers", "update")):
        if not _allowed(dry_run, token, verb, "multiclusterresources", group=CR_GROUP, namespace="x", sub=sub):
            wrong.append(f"{verb} multiclusterresources/{sub}: expected allowed")
    assert not wrong, "\n".join(wrong)


def test_daemon_syncs_and_leads_with_the_service_account(dry_run: DryRunner, sa_kubeconfig: tuple[Path, str],
                                                         tmp_path: Path) -> None:
    """The grants are sufficient: a query-only daemon in lease mode (Leases on its first cluster) using only the
    ServiceAccount reaches /readyz and takes the leader Lease in multicluster-system."""
    kubeconfig, _ = sa_kubeconfig
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "clusters": [{"metadata": {"clusterName": "member", "configPath": str(kubeconfig)}}],
        "store": {"type": "sqlite", "path": str(tmp_path / "mc.db")},
    }))
    port = free_port()
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "POD_NAME": "deploy-test-replica"}
    for k in [k for k in env if k.startswith("MULTICLUSTER_")]:
        del env[k]
    log = (tmp_path / "daemon.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "multicluster", "run", "--config", str(config), "--address",
                             str(port), "--no-write-cli-config", "--lease-mode", "--lease-name", LEASE,
                             "--lease-namespace", NAMESPACE], stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline, last = time.monotonic() + 120, ""
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"daemon exited: {(tmp_path / 'daemon.log').read_text()[-3000:]}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
                    if r.status == 200:
                        break
            except urllib.error.HTTPError as exc:
                last = exc.read().decode(errors="replace")
            except OSError as exc:
                last = str(exc)
            time.sleep(0.5)
        else:
            pytest.fail(f"not ready after 120s: {last[:2000]}")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/clusters", timeout=5) as r:
            clusters = json.loads(r.read())
        text = json.dumps(clusters)
        assert "member" in text and "forbidden" not in text.lower(), text[:2000]
        deadline = time.monotonic() + 60
        while True:
            status, lease, _ = dry_run.call("GET", f"{LEASES}/{LEASE}")
            if status == 200 and lease["spec"].get("holderIdentity") == "deploy-test-replica":
                break
            assert time.monotonic() < deadline, f"the daemon never took the leader Lease: {lease}"
            time.sleep(0.5)
        assert "forbidden" not in (tmp_path / "daemon.log").read_text().lower()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
