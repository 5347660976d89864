"""`multicluster kubeconfig --via-master`: the contexts reach the daemon through the master's own server URL and
TLS settings with the user's own credentials (copied only into another file, with file paths made absolute)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from multicluster.api.kube import contexts
from multicluster.errors import ConfigError

KUBECONFIG = """
apiVersion: v1
kind: Config
current-context: master
clusters:
- name: hub
  cluster: {server: "https://hub.example:6443/", certificate-authority: certs/ca.crt, tls-server-name: hub}
users:
- name: me
  user: {client-certificate: certs/me.crt, client-key: /abs/me.key, exec: {command: login-helper}}
contexts:
- {name: master, context: {cluster: hub, user: me}}
- {name: plain, context: {cluster: insecure, user: me}}
- {name: nouser, context: {cluster: hub, user: ghost}}
"""


def test_contexts_through_the_master(tmp_path: Path) -> None:
    source = tmp_path / "config"
    doc = yaml.safe_load(KUBECONFIG)
    new = contexts.via_master(doc, source, None, ["c1", "c2"], copy_user=False)
    assert [c["name"] for c in new["contexts"]] == ["multicluster", "multicluster-c1", "multicluster-c2"]
    assert all(c["context"]["user"] == "me" for c in new["contexts"]) and new["users"] == []
    cluster = new["clusters"][1]["cluster"]
    assert cluster == {"server": "https://hub.example:6443/apis/clusters.multicluster.practice.com/v1alpha1/clusters/c1",
                       "certificate-authority": str(tmp_path / "certs" / "ca.crt"), "tls-server-name": "hub"}
    copied = contexts.via_master(doc, source, "master", ["c1"], copy_user=True)["users"]
    assert copied == [{"name": "me", "user": {"client-certificate": str(tmp_path / "certs" / "me.crt"),
                                              "client-key": "/abs/me.key", "exec": {"command": "login-helper"}}}]
    merged = contexts.merge(doc, new)
    assert [u["name"] for u in merged["users"]] == ["me"]  # the user's own entry is kept as it was
    assert merged["current-context"] == "master"


@pytest.mark.parametrize(("context", "expected"), [("nope", "no context named 'nope'"),
                                                   ("plain", "no cluster named 'insecure'"),
                                                   ("nouser", "no user named 'ghost'")])
def test_a_context_that_does_not_resolve_is_named(tmp_path: Path, context: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        contexts.via_master(yaml.safe_load(KUBECONFIG), tmp_path / "config", context, [], copy_user=True)


def test_the_master_must_be_https(tmp_path: Path) -> None:
    doc = yaml.safe_load(KUBECONFIG)
    doc["clusters"][0]["cluster"]["server"] = "http://hub.example:8080"
    with pytest.raises(ConfigError, match="not an https:// URL"):
        contexts.via_master(doc, tmp_path / "config", None, [], copy_user=False)
