"""The Go original's plugin commands that act on the MASTER cluster — create -f, edit, delete by type and name,
selector or --all, get by name — as real `kubectl-multicluster` processes against the harness's master API
server (named by the plugin's config file), and `completion`, whose script loads in bash."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from multicluster.config import ClusterConfig
from multicluster.delivery.install import install_crds
from multicluster.kube import ClusterClient
from multicluster.testing.harness import Harness

pytestmark = pytest.mark.integration

MCR_API = "/apis/mulitcluster.practice.com/v1alpha1"
TYPE = "multiclusterresource.mulitcluster.practice.com"


@dataclass
class Master:
    harness: Harness
    ns: str
    config: Path  # the plugin's config file: masterClusterKubeConfigPath names cluster1

    def mcr(self, name: str, labels: dict[str, str] | None = None, data: str = "one") -> dict[str, Any]:
        tpl = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{name}-cm"}, "data": {"k": data}}
        md: dict[str, Any] = {"name": name, "namespace": self.ns}
        if labels:
            md["labels"] = labels
        return {"apiVersion": "mulitcluster.practice.com/v1alpha1", "kind": "MultiClusterResource", "metadata": md,
                "spec": {"template": tpl, "placement": {"clusters": [{"name": "cluster1"}]}}}

    def path(self, name: str = "") -> str:
        return f"{MCR_API}/namespaces/{self.ns}/multiclusterresources" + (f"/{name}" if name else "")

    def names(self) -> list[str]:
        return sorted(i["metadata"]["name"] for i in self.harness.request("cluster1", "GET", self.path())["items"])

    def get(self, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = self.harness.request("cluster1", "GET", self.path(name))
        return obj

    def write(self, tmp: Path, *docs: dict[str, Any]) -> Path:
        p = tmp / f"m{len(list(tmp.glob('m*.yaml')))}.yaml"
        p.write_text(yaml.safe_dump_all(docs))
        return p

    async def cli(self, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
        full = {**os.environ, "MULTICLUSTER_CLI_CONFIG": str(self.config), "COLUMNS": "200", **(env or {})}
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "plugin.cli", *args, env=full,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode is not None
        assert "Traceback" not in err.decode(), err.decode()
        return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def master(harness: Harness, unique: str, tmp_path: Path) -> AsyncIterator[Master]:
    client = ClusterClient(ClusterConfig("cluster1", harness.servers["cluster1"].kubeconfig))
    try:
        await install_crds(client)
    finally:
        await client.close()
    ns = f"plug-{unique}"
    harness.request("cluster1", "POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
    config = tmp_path / "cli-config"
    config.write_text(f"serverIP: localhost\nserverPort: 31888\n"
                      f"masterClusterKubeConfigPath: {harness.servers['cluster1'].kubeconfig}\n")
    yield Master(harness, ns, config)
    harness.request("cluster1", "DELETE", f"/api/v1/namespaces/{ns}")


async def test_create_get_and_delete_by_name(master: Master, tmp_path: Path) -> None:
    f = master.write(tmp_path, master.mcr("a"), master.mcr("b"))
    rc, out, err = await master.cli("create", "-f", str(f))
    assert rc == 0, err
    assert out.splitlines() == [f"{TYPE}/a created", f"{TYPE}/b created"]
    assert master.names() == ["a", "b"]

    # create never updates: an existing object is one error line, and the exit code says so.
    rc, out, err = await master.cli("create", "-f", str(f))
    assert rc == 1 and out == ""
    assert err.splitlines()[0] == (f'error: {f} (document 1): multiclusterresources.mulitcluster.practice.com "a" '
                                   "already exists")
    assert "use apply" in err

    # get by name, in kubectl's spellings of the type.
    rc, out, err = await master.cli("get", "rr", "a", "-n", master.ns)
    assert rc == 0, err
    assert [ln.split()[0] for ln in out.splitlines()] == ["NAME", "a"]
    rc, out, _ = await master.cli("get", "multiclusterresources.mulitcluster.practice.com/b", "-n", master.ns,
                                  "-o", "name")
    assert (rc, out) == (0, f"{TYPE}/b\n")
    rc, out, err = await master.cli("get", "mcr", "nope", "-n", master.ns)
    assert rc == 1 and err.strip() == f'error: {TYPE} "nope" not found in namespace "{master.ns}"'

    # delete TYPE NAME: the original's `delete multiclusterresources NAME`.
    rc, out, err = await master.cli("delete", "multiclusterresources", "a", "-n", master.ns)
    assert rc == 0, err
    assert out.strip() == f'{TYPE} "a" deleted'
    assert master.names() == ["b"]
    rc, _, err = await master.cli("delete", "rr", "-n", master.ns)
    assert rc == 1 and err.splitlines()[0] == "error: delete rr: no name was specified"
    rc, _, err = await master.cli("delete", "rr", "a", "-n", master.ns)
    assert rc == 1 and err.strip() == f'error: {TYPE} "a" not found in namespace "{master.ns}"'
    rc, _, err = await master.cli("delete", "nosuchtype", "x", "-n", master.ns)
    assert rc == 1 and err.splitlines()[0] == "error: the master cluster doesn't have a resource type \"nosuchtype\""


async def test_delete_by_selector_and_all(master: Master, tmp_path: Path) -> None:
    f = master.write(tmp_path, master.mcr("x", {"app": "web"}), master.mcr("y", {"app": "web"}),
                     master.mcr("z", {"app": "db"}))
    rc, _, err = await master.cli("create", "-f", str(f))
    assert rc == 0, err

    rc, out, err = await master.cli("delete", "rr", "-l", "app=web", "-n", master.ns)
    assert rc == 0, err
    assert sorted(out.splitlines()) == [f'{TYPE} "x" deleted', f'{TYPE} "y" deleted']
    assert master.names() == ["z"]

    rc, out, err = await master.cli("delete", "mcr", "--all", "-n", master.ns)
    assert (rc, out.strip()) == (0, f'{TYPE} "z" deleted'), err
    assert master.names() == []
    rc, out, err = await master.cli("delete", "mcr", "--all", "-n", master.ns)
    assert (rc, out, err.strip()) == (0, "", f"No resources found in {master.ns} namespace.")

    # Any type the master serves, in the TYPE/NAME form.
    master.harness.request("cluster1", "POST", f"/api/v1/namespaces/{master.ns}/configmaps",
                           {"metadata": {"name": "plain"}})
    rc, out, err = await master.cli("delete", "cm/plain", "-n", master.ns)
    assert (rc, out.strip()) == (0, 'configmap "plain" deleted'), err


def editor(tmp: Path, body: str) -> str:
    """An EDITOR: a script run with the file to edit as its argument."""
    p = tmp / f"editor-{len(list(tmp.glob('editor-*')))}.sh"
    p.write_text("#!/bin/sh\nset -e\n" + body)
    p.chmod(p.stat().st_mode | stat.S_IEXEC)
    return str(p)


async def test_edit(master: Master, tmp_path: Path) -> None:
    rc, _, err = await master.cli("create", "-f", str(master.write(tmp_path, master.mcr("e"))))
    assert rc == 0, err

    # Unchanged: nothing is written.
    rv = master.get("e")["metadata"]["resourceVersion"]
    rc, out, err = await master.cli("edit", "rr", "e", "-n", master.ns, env={"EDITOR": editor(tmp_path, "true\n")})
    assert (rc, out.strip()) == (0, "Edit cancelled, no changes made."), err
    assert master.get("e")["metadata"]["resourceVersion"] == rv

    # A change made in the editor reaches the master ($KUBE_EDITOR wins over $EDITOR, like kubectl).
    change = editor(tmp_path, 'sed -i "s/k: one/k: two/" "$1"\n')
    rc, out, err = await master.cli("edit", "multiclusterresource", "e", "-n", master.ns,
                                    env={"KUBE_EDITOR": change, "EDITOR": "false"})
    assert (rc, out.strip()) == (0, f"{TYPE}/e edited"), err
    assert master.get("e")["spec"]["template"]["data"] == {"k": "two"}

    # Someone else changes the object while the editor is open: a conflict, reported, nothing overwritten.
    other = master.write(tmp_path, master.mcr("e", data="theirs"))
    racing = editor(tmp_path, f'"{sys.executable}" -m plugin.cli apply -f "{other}" --force-conflicts >/dev/null\n'
                              'sed -i "s/k: two/k: mine/" "$1"\n')
    rc, out, err = await master.cli("edit", "rr/e", "-n", master.ns, env={"EDITOR": racing})
    assert rc == 1 and out == ""
    first, hint = err.splitlines()[:2]
    assert first.startswith(f"error: {TYPE}/e was changed by someone else while you edited it: ")
    assert "the object has been modified" in first
    kept = Path(hint.split("your changes are kept in ")[1].split(";")[0])
    assert "k: mine" in kept.read_text()
    kept.unlink()
    assert master.get("e")["spec"]["template"]["data"] == {"k": "theirs"}

    rc, _, err = await master.cli("edit", "rr", "missing", "-n", master.ns, env={"EDITOR": "true"})
    assert rc == 1 and err.strip() == f'error: {TYPE} "missing" not found in namespace "{master.ns}"'


def test_completion_loads_in_bash(tmp_path: Path) -> None:
    plugin = tmp_path / "kubectl-multicluster"
    plugin.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m plugin.cli "$@"\n')
    plugin.chmod(0o755)
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}", "PYTHONPATH": str(repo)}
    script = ("source <(kubectl-multicluster completion bash) && complete -p kubectl-multicluster && "
              "COMP_WORDS=(kubectl-multicluster ed) COMP_CWORD=1 && _kubectl_multicluster_completion "
              "kubectl-multicluster && printf '%s\\n' \"${COMPREPLY[@]}\"")
    done = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "complete -o default -F _kubectl_multicluster_completion kubectl-multicluster"
    assert lines[1:] == ["edit"]  # the completion function asks the plugin, which knows its commands
    for shell in ("zsh", "fish"):
        out = subprocess.run(["kubectl-multicluster", "completion", shell], env=env, capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0 and "_KUBECTL_MULTICLUSTER_COMPLETE" in out.stdout
    bad = subprocess.run(["kubectl-multicluster", "completion", "tcsh"], env=env, capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode == 2 and bad.stderr.splitlines()[0] == 'error: completion: unsupported shell "tcsh"'
