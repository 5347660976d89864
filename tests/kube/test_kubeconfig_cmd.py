"""`multicluster kubeconfig`: merged into the user's kubeconfig (backup kept, their contexts untouched), then
`kubectl --context multicluster get pods -A` works with nothing else configured; clear errors otherwise."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from multicluster.cli import app
from multicluster.testing.harness import free_port
from tests.kube.conftest import TOKEN, Env, run_kubectl

pytestmark = pytest.mark.integration


async def _invoke(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    result = await asyncio.to_thread(CliRunner().invoke, app, ["kubeconfig", *args], env=env)
    return result.exit_code, result.output


async def test_merge_into_the_users_kubeconfig(env: Env, tmp_path: Path) -> None:
    user = tmp_path / "config"
    theirs = {"apiVersion": "v1", "kind": "Config", "current-context": "cluster2",
              "clusters": [{"name": "cluster2", "cluster": {"server": env.harness.servers["cluster2"].url}}],
              "users": [], "contexts": [{"name": "cluster2", "context": {"cluster": "cluster2"}}]}
    user.write_text(yaml.safe_dump(theirs))
    ca = str(env.harness.pki / "ca.crt")
    code, out = await _invoke(["--server", env.url, "--certificate-authority", ca],
                              {"KUBECONFIG": str(user), "MULTICLUSTER_TOKEN": TOKEN})
    assert code == 0, out
    assert f"to {user}" in out and "multicluster.bak" in out
    assert yaml.safe_load(user.with_name("config.multicluster.bak").read_text()) == theirs
    doc = yaml.safe_load(user.read_text())
    assert doc["current-context"] == "cluster2"
    assert [c["name"] for c in doc["contexts"]] == ["cluster2", "multicluster", "multicluster-cluster1",
                                                    "multicluster-cluster2", "multicluster-cluster3"]
    _, pods, _ = await run_kubectl(["--kubeconfig", str(user), "--context", "multicluster", "get", "pods", "-A",
                                    "--field-selector", f"metadata.namespace={env.namespace}", "-o", "name"],
                                   env.cache)
    assert "pod/cache-1" in pods.split() and "pod/web-2" in pods.split()
    # Run again: our entries are replaced, not duplicated.
    code, out = await _invoke(["--server", env.url, "--certificate-authority", ca],
                              {"KUBECONFIG": str(user), "MULTICLUSTER_TOKEN": TOKEN})
    assert code == 0, out
    again = yaml.safe_load(user.read_text())
    assert again["contexts"] == doc["contexts"] and again["clusters"] == doc["clusters"]


async def test_errors(env: Env, tmp_path: Path) -> None:
    ca = str(env.harness.pki / "ca.crt")
    code, out = await _invoke(["--out", str(tmp_path / "k"), "--server", f"http://127.0.0.1:{free_port()}"],
                              {"MULTICLUSTER_TOKEN": TOKEN})
    assert code == 2 and "error: cannot read the cluster list from the daemon" in out and "hint:" in out
    code, out = await _invoke(["--out", str(tmp_path / "k"), "--server", env.url, "--certificate-authority", ca],
                              {"MULTICLUSTER_TOKEN": "wrong"})
    assert code == 2 and "answered 401" in out and "--token-file" in out
    assert not (tmp_path / "k").exists()
