"""manifests/rbac.yaml for real: apply it to a harness cluster, mint the ServiceAccount kubeconfig the way
docs/deploy.md says, then prove the grants are enough (the daemon, configured with the shipped config's type list,
syncs every type to /readyz with it and installs its CRDs) and no wider than intended (SelfSubjectAccessReviews for
what it must and must not do: no Secrets, no subresources, no other CRD)."""

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
             namespace: str = "", sub: str = "", name: str = "") -> bool:
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
              "spec": {"resourceAttributes": {"verb": verb, "group": group, "resource": resource,
                                              "namespace": namespace, "subresource": sub, "name": name}}}
    status, body, _ = dry_run.call("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", review,
                                   token=token)
    assert status == 201, body
    return bool(body["status"]["allowed"])


CRD = "customresourcedefinitions"
EXT = "apiextensions.k8s.io"
OURS = [d["metadata"]["name"] for d in load_docs(MANIFESTS / "crds.yaml")]
# (verb, resource, group, namespace, subresource, name)
ALLOWED = [
    ("list", "pods", "", "", "", ""), ("watch", "deployments", "apps", "", "", ""),
    ("get", "configmaps", "", "kube-system", "", ""), ("list", CRD, EXT, "", "", ""),
    *[(verb, CRD, EXT, "", "", name) for name in OURS for verb in ("create", "update", "patch")],
    ("update", "multiclusterresources", CR_GROUP, "default", "", ""), ("create", "multiclusters", CR_GROUP, "default",
                                                                       "", ""),
    ("patch", "multiclusterresources", CR_GROUP, "x", "status", ""),
    ("update", "multiclusterresources", CR_GROUP, "x", "finalizers", ""),
    ("create", "events", "", "default", "", ""), ("patch", "events", "", "team-a", "", ""),
    ("create", "leases", "coordination.k8s.io", NAMESPACE, "", ""),
    ("update", "leases", "coordination.k8s.io", NAMESPACE, "", ""),
    ("create", "deployments", "apps", "team-a", "", ""), ("delete", "configmaps", "", "team-a", "", ""),
    ("get", "deployments", "apps", "team-a", "", ""),
    ("impersonate", "serviceaccounts", "", "team-a", "", ""),  # spec.serviceAccountName (multicluster-impersonate)
]
DENIED = [
    # Secrets are not even readable without rbac-secrets.yaml
    ("get", "secrets", "", "kube-system", "", ""), ("list", "secrets", "", "", "", ""),
    ("watch", "secrets", "", "default", "", ""), ("create", "secrets", "", "default", "", ""),
    # no subresource: no exec, attach, logs, node or service proxy, token minting, scale
    ("create", "pods", "", "default", "exec", ""), ("get", "pods", "", "default", "exec", ""),
    ("create", "pods", "", "default", "attach", ""), ("get", "pods", "", "default", "log", ""),
    ("get", "nodes", "", "", "proxy", ""), ("create", "nodes", "", "", "proxy", ""),
    ("get", "services", "", "default", "proxy", ""), ("create", "serviceaccounts", "", "default", "token", ""),
    ("get", "deployments", "apps", "default", "scale", ""),
    # only our CRDs, and never deleted; a POST create carries no name and is refused too
    ("patch", CRD, EXT, "", "", "widgets.example.com"), ("update", CRD, EXT, "", "", "widgets.example.com"),
    ("create", CRD, EXT, "", "", "widgets.example.com"), ("create", CRD, EXT, "", "", ""),
    ("patch", CRD, EXT, "", "", ""), ("delete", CRD, EXT, "", "", OURS[0]),
    ("delete", "namespaces", "", "", "", ""),
    ("create", "pods", "", "default", "", ""),
    ("create", "leases", "coordination.k8s.io", "default", "", ""),
    ("create", "clusterroles", "rbac.authorization.k8s.io", "", "", ""),
    ("escalate", "roles", "rbac.authorization.k8s.io", "default", "", ""),
    ("bind", "clusterroles", "rbac.authorization.k8s.io", "", "", ""),
    ("create", "rolebindings", "rbac.authorization.k8s.io", NAMESPACE, "", ""),
    # impersonation of service accounts only (spec.serviceAccountName); never users or groups
    ("impersonate", "users", "", "", "", ""), ("impersonate", "groups", "", "", "", ""),
    ("impersonate", "userextras", "authentication.k8s.io", "", "scopes", ""),
]


def _describe(verb: str, resource: str, group: str, namespace: str, sub: str, name: str) -> str:
    what = f"{group or 'core'}/{resource}{'/' + sub if sub else ''}{' ' + name if name else ''}"
    return f"{verb} {what} in {namespace or '*'}"


def test_service_account_grants(dry_run: DryRunner, sa_kubeconfig: tuple[Path, str]) -> None:
    _, token = sa_kubeconfig
    wrong = [f"{_describe(*a)}: expected allowed" for a in ALLOWED
             if not _allowed(dry_run, token, a[0], a[1], group=a[2], namespace=a[3], sub=a[4], name=a[5])]
    wrong += [f"{_describe(*a)}: expected denied" for a in DENIED
              if _allowed(dry_run, token, a[0], a[1], group=a[2], namespace=a[3], sub=a[4], name=a[5])]
    assert not wrong, "\n".join(wrong)


def test_service_account_applies_only_our_crds(dry_run: DryRunner, sa_kubeconfig: tuple[Path, str]) -> None:
    """What the daemon does at start (install.py: server-side apply PATCH to the CRD's URL), as the
    ServiceAccount, with dryRun: allowed for our CRDs whether the cluster has them yet (create) or not (patch);
    refused for any other CRD."""
    _, token = sa_kubeconfig
    for doc in load_docs(MANIFESTS / "crds.yaml"):
        path = f"/apis/{EXT}/v1/{CRD}/{doc['metadata']['name']}?fieldManager=multicluster&force=true&dryRun=All"
        status, body, _ = dry_run.call("PATCH", path, doc, content_type="application/apply-patch+yaml", token=token)
        assert status in (200, 201), body
    foreign = load_docs(MANIFESTS / "crds.yaml")[0]
    foreign["metadata"]["name"] = f"widgets.{CR_GROUP}"
    foreign["spec"]["names"] = {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"}
    path = f"/apis/{EXT}/v1/{CRD}/{foreign['metadata']['name']}?fieldManager=multicluster&force=true&dryRun=All"
    status, body, _ = dry_run.call("PATCH", path, foreign, content_type="application/apply-patch+yaml", token=token)
    assert status == 403, body


def test_secrets_are_readable_only_with_the_opt_in(dry_run: DryRunner, sa_kubeconfig: tuple[Path, str]) -> None:
    _, token = sa_kubeconfig
    assert not _allowed(dry_run, token, "list", "secrets")
    docs = load_docs(MANIFESTS / "rbac-secrets.yaml")
    try:
        for doc in docs:
            dry_run.apply(doc, dry_run=False)
        deadline = time.monotonic() + 30  # the authorizer's RBAC cache follows the watch, not the write
        while not _allowed(dry_run, token, "list", "secrets"):
            assert time.monotonic() < deadline, "rbac-secrets.yaml did not grant Secrets"
            time.sleep(0.2)
        assert _allowed(dry_run, token, "watch", "secrets", namespace="kube-system")
        assert not _allowed(dry_run, token, "create", "secrets", namespace="default")
    finally:
        for doc in docs:
            dry_run.call("DELETE", dry_run.resource_path(doc))


def test_daemon_syncs_and_leads_with_the_service_account(dry_run: DryRunner, sa_kubeconfig: tuple[Path, str],
                                                         tmp_path: Path) -> None:
    """The grants are sufficient for the shipped config: a query-only daemon in lease mode (Leases on its first
    cluster) with deploy.yaml's `resources` and `sync` sections, using only the ServiceAccount, syncs every selected
    type, reaches /readyz and takes the leader Lease in multicluster-system."""
    kubeconfig, _ = sa_kubeconfig
    shipped = yaml.safe_load(next(d for d in load_docs(MANIFESTS / "deploy.yaml") if d["kind"] == "ConfigMap")[
        "data"]["config.yaml"])
    assert shipped["resources"]["include"]
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "clusters": [{"metadata": {"clusterName": "member", "configPath": str(kubeconfig)}}],
        "store": {"type": "sqlite", "path": str(tmp_path / "mc.db")},
        "resources": shipped["resources"],
        "sync": shipped["sync"],
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
        (member,) = clusters["clusters"]
        states = {r["gvr"]: r["status"] for r in member["resources"]}
        assert {"v1/pods", "apps/v1/deployments", "rbac.authorization.k8s.io/v1/roles"} <= set(states), states
        assert set(states.values()) == {"synced"}, states
        assert "v1/secrets" not in states
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


def test_apiservice_grants_are_what_aggregation_needs_and_no_more(dry_run: DryRunner,
                                                                   sa_kubeconfig: tuple[Path, str]) -> None:
    """manifests/apiservice.yaml for real: with it the daemon's identity can review tokens and access, read the
    front-proxy ConfigMap and update its one APIService; it cannot create APIServices, touch another one, or read
    Secrets in kube-system."""
    _, token = sa_kubeconfig
    docs = load_docs(MANIFESTS / "apiservice.yaml")
    ours = next(d["metadata"]["name"] for d in docs if d["kind"] == "APIService")
    try:
        for doc in docs:
            dry_run.apply(doc, dry_run=False)
        assert _allowed(dry_run, token, "create", "tokenreviews", group="authentication.k8s.io")
        assert _allowed(dry_run, token, "create", "subjectaccessreviews", group="authorization.k8s.io")
        assert _allowed(dry_run, token, "get", "configmaps", namespace="kube-system",
                        name="extension-apiserver-authentication")
        assert not _allowed(dry_run, token, "list", "secrets", namespace="kube-system")
        api = "apiregistration.k8s.io"
        assert _allowed(dry_run, token, "get", "apiservices", group=api, name=ours)
        assert _allowed(dry_run, token, "update", "apiservices", group=api, name=ours)
        for verb, name in (("create", ""), ("update", "v1.apps"), ("delete", ours), ("patch", "v1.apps")):
            assert not _allowed(dry_run, token, verb, "apiservices", group=api, name=name), (verb, name)
    finally:  # an APIService nobody serves would make this cluster's discovery report errors to other tests
        for doc in docs:
            dry_run.call("DELETE", dry_run.resource_path(doc))
