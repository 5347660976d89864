"""The Kubernetes path grammar under a scope (pure), and the kubeconfig merge of `multicluster kubeconfig`."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from multicluster.api.kube import contexts
from multicluster.api.kube.paths import PathError, Target, parse


@pytest.mark.parametrize(("rest", "want"), [
    ("", Target("root")),
    ("/version", Target("version")),
    ("/api", Target("api")),
    ("/api/v1", Target("resources", version="v1")),
    ("/apis", Target("apis")),
    ("/apis/apps", Target("group", group="apps")),
    ("/apis/apps/v1", Target("resources", group="apps", version="v1")),
    ("/api/v1/pods", Target("list", version="v1", resource="pods")),
    ("/api/v1/namespaces", Target("list", version="v1", resource="namespaces")),
    ("/api/v1/namespaces/web", Target("get", version="v1", resource="namespaces", name="web")),
    ("/api/v1/namespaces/web/status", Target("get", version="v1", resource="namespaces", name="web",
                                             subresource="status")),
    ("/api/v1/namespaces/web/pods", Target("list", version="v1", resource="pods", namespace="web")),
    ("/api/v1/namespaces/web/pods/p1", Target("get", version="v1", resource="pods", namespace="web", name="p1")),
    ("/api/v1/namespaces/web/pods/p1/log", Target("get", version="v1", resource="pods", namespace="web", name="p1",
                                                  subresource="log")),
    ("/apis/apps/v1/namespaces/web/deployments", Target("list", group="apps", version="v1",
                                                        resource="deployments", namespace="web")),
    ("/apis/apps/v1/namespaces/web/deployments/d", Target("get", group="apps", version="v1",
                                                          resource="deployments", namespace="web", name="d")),
    ("/apis/storage.k8s.io/v1/storageclasses/fast", Target("get", group="storage.k8s.io", version="v1",
                                                           resource="storageclasses", name="fast")),
])
def test_parse(rest: str, want: Target) -> None:
    assert parse(rest) == want


@pytest.mark.parametrize("rest", ["/healthz", "/api/v1/namespaces/a/pods/b/c/d", "/version/x"])
def test_parse_refuses(rest: str) -> None:
    with pytest.raises(PathError):
        parse(rest)


def test_merge_keeps_the_users_entries_and_replaces_ours(tmp_path: Path) -> None:
    path = tmp_path / "config"
    mine = {"apiVersion": "v1", "kind": "Config", "current-context": "prod",
            "clusters": [{"name": "prod", "cluster": {"server": "https://prod:6443"}},
                         {"name": "multicluster-gone", "cluster": {
                             "server": "http://old:31888/apis/clusters.multicluster.practice.com/v1alpha1/clusters/gone"}}],
            "users": [{"name": "admin", "user": {"token": "t"}}],
            "contexts": [{"name": "prod", "context": {"cluster": "prod", "user": "admin"}},
                         {"name": "multicluster-gone", "context": {"cluster": "multicluster-gone",
                                                                    "user": "multicluster"}}]}
    path.write_text(yaml.safe_dump(mine))
    new = contexts.entries("https://localhost:31888", ["c1", "c2"], "tok", b"PEM")
    saved = contexts.write(path, contexts.merge(contexts.load(path), new), backup=True)
    assert saved is not None and yaml.safe_load(saved.read_text()) == mine
    doc = yaml.safe_load(path.read_text())
    assert doc["current-context"] == "prod"
    assert [c["name"] for c in doc["contexts"]] == ["prod", "multicluster", "multicluster-c1", "multicluster-c2"]
    assert [c["name"] for c in doc["clusters"]] == ["prod", "multicluster", "multicluster-c1", "multicluster-c2"]
    assert doc["clusters"][2]["cluster"] == {
        "server": "https://localhost:31888/apis/clusters.multicluster.practice.com/v1alpha1/clusters/c1",
        "certificate-authority-data": "UEVN"}
    assert {u["name"]: u["user"] for u in doc["users"]} == {"admin": {"token": "t"}, "multicluster": {"token": "tok"}}
    assert path.stat().st_mode & 0o777 == 0o600
