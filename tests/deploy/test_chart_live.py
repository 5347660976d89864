"""The chart's generated Secrets for real: `helm install`, `upgrade`, `uninstall` and a reinstall against a harness
API server. The API tokens and database passwords are random at install, the same after an upgrade (lookup of the
live Secret), and survive `helm uninstall` (resource-policy keep), so a reinstall neither locks the plugins out nor
changes the password MariaDB set on its first start."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator

import pytest

from .conftest import CHART, DryRunner, Helm

pytestmark = pytest.mark.integration

NAMESPACE = "mc-helm-live"
RELEASE = "keep"
SECRETS = {f"{RELEASE}-multicluster-api": ("token", "adminToken"),
           f"{RELEASE}-multicluster-db": ("password", "root-password")}


@pytest.fixture
def release(dry_run: DryRunner, helm: Helm) -> Iterator[tuple[DryRunner, Helm, str]]:
    kubeconfig = str(dry_run.harness.servers[dry_run.cluster].kubeconfig)
    yield dry_run, helm, kubeconfig
    helm.run("uninstall", RELEASE, "--namespace", NAMESPACE, "--kubeconfig", kubeconfig)
    for name in SECRETS:
        dry_run.call("DELETE", f"/api/v1/namespaces/{NAMESPACE}/secrets/{name}")
    dry_run.call("DELETE", f"/api/v1/namespaces/{NAMESPACE}")


def _helm(helm: Helm, kubeconfig: str, *args: str) -> None:
    res = helm.run(*args, RELEASE, str(CHART), "--namespace", NAMESPACE, "--kubeconfig", kubeconfig,
                   "--set", "mariadb.enabled=true")
    assert res.returncode == 0, res.stdout + res.stderr


def _values(dry_run: DryRunner) -> dict[str, dict[str, str]]:
    out = {}
    for name, keys in SECRETS.items():
        status, secret, _ = dry_run.call("GET", f"/api/v1/namespaces/{NAMESPACE}/secrets/{name}")
        assert status == 200, secret
        assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert sorted(secret["data"]) == sorted(keys)
        out[name] = {k: base64.b64decode(secret["data"][k]).decode() for k in keys}
    return out


def test_generated_secrets_are_kept_across_upgrade_uninstall_and_reinstall(
        release: tuple[DryRunner, Helm, str]) -> None:
    dry_run, helm, kubeconfig = release
    _helm(helm, kubeconfig, "install", "--create-namespace")
    first = _values(dry_run)
    for values in first.values():
        assert all(len(v) >= 32 and v.isalnum() for v in values.values()), "not a random alphanumeric secret"
    assert len({v for values in first.values() for v in values.values()}) == 4, "each value is its own"

    _helm(helm, kubeconfig, "upgrade", "--set", "replicaCount=1")
    assert _values(dry_run) == first, "an upgrade must not rotate the tokens or passwords"

    res = helm.run("uninstall", RELEASE, "--namespace", NAMESPACE, "--kubeconfig", kubeconfig)
    assert res.returncode == 0, res.stderr
    deadline = time.monotonic() + 30
    while dry_run.call("GET", f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{RELEASE}-multicluster")[0] != 404:
        assert time.monotonic() < deadline, "helm uninstall left the Deployment"
        time.sleep(0.2)
    assert _values(dry_run) == first, "helm uninstall must keep the Secrets"

    _helm(helm, kubeconfig, "install")
    assert _values(dry_run) == first, "a reinstall must reuse the kept Secrets"
