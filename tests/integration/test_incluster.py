"""In-cluster mode: a cluster entry without configPath uses the pod's service account (token + CA files and the
KUBERNETES_SERVICE_* environment), exercised against a real API server by laying out those files."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

from multicluster.config import ClusterConfig, parse_config
from multicluster.errors import ConfigError
from multicluster.kube import ClusterClient
from multicluster.testing.harness import ADMIN_TOKEN, Harness

pytestmark = pytest.mark.integration

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


@pytest.fixture
def pod_environment(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> Path:
    if SA_DIR.exists():
        pytest.skip("a real service account is mounted here; not overwriting it")
    try:
        SA_DIR.mkdir(parents=True)
    except PermissionError:
        pytest.skip("needs root to lay out /var/run/secrets (CI runs as root)")
    (SA_DIR / "token").write_text(ADMIN_TOKEN)
    shutil.copy(harness.pki / "ca.crt", SA_DIR / "ca.crt")
    (SA_DIR / "namespace").write_text("default")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(harness.servers["cluster1"].port))
    yield SA_DIR
    shutil.rmtree("/var/run/secrets")


async def test_entry_without_configpath_uses_service_account(pod_environment: Path) -> None:
    cfg = parse_config(yaml.safe_load("clusters: [{metadata: {clusterName: home, isMaster: true}}]"), Path("."))
    assert cfg.clusters[0].config_path is None
    c = ClusterClient(cfg.clusters[0])
    try:
        assert (await c.server_version())["gitVersion"].startswith("v1.")
    finally:
        await c.close()


def test_configpath_required_outside_a_pod(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ConfigError, match="configPath: is required outside a Kubernetes pod"):
        parse_config(yaml.safe_load("clusters: [{metadata: {clusterName: home}}]"), Path("."))


async def test_in_cluster_unavailable_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    c = ClusterClient(ClusterConfig("home", None))
    with pytest.raises(ConfigError, match="in-cluster config is unavailable"):
        await c.connect()
    assert not os.environ.get("KUBERNETES_SERVICE_HOST")
