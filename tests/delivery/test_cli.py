"""`kubectl-multicluster apply/delete -f` and `get rr` as a real process against the master, controller running."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import orjson
import pytest
import yaml

from multicluster.testing.harness import Harness
from tests.delivery.helpers import Env, MakeEnv, eventually

pytestmark = pytest.mark.integration


async def cli(*args: str, config: Path | None = None) -> tuple[int, str, str]:
    env = {**os.environ, "MULTICLUSTER_CLI_CONFIG": str(config or "/nonexistent/config"), "COLUMNS": "200"}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "plugin.manifest_cmds", *args, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def manifest(env: Env, name: str, clusters: list[str] | None) -> dict[str, object]:
    tpl = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{name}-cm"}, "data": {"k": name}}
    return env.cr(name, tpl, clusters=clusters)


async def test_apply_get_delete(make_env: MakeEnv, harness: Harness, tmp_path: Path) -> None:
    env = await make_env()
    d = tmp_path / "manifests"
    d.mkdir()
    (d / "a.yaml").write_text(yaml.safe_dump_all([manifest(env, "a", None),
                                                  manifest(env, "b", ["cluster2", "cluster3"])]))
    (d / "c.yml").write_text(yaml.safe_dump(manifest(env, "c", ["cluster1", "cluster2", "cluster3"])))
    (d / "notes.txt").write_text("not a manifest")
    config = tmp_path / "config"
    config.write_text(f"serverIP: localhost\nserverPort: 31888\n"
                      f"masterClusterKubeConfigPath: {harness.servers['cluster1'].kubeconfig}\n")

    rc, out, err = await cli("apply", "-f", str(d), config=config)
    assert rc == 0, err
    assert out.splitlines() == [f"multiclusterresource.mulitcluster.practice.com/{n} created" for n in "abc"]
    await env.wait_applied("a", "1/1")
    await env.wait_applied("b", "2/2")
    await env.wait_applied("c", "3/3")

    rc, out, _ = await cli("apply", "-f", str(d / "c.yml"), config=config)
    assert (rc, out.strip()) == (0, "multiclusterresource.mulitcluster.practice.com/c unchanged")

    rc, out, err = await cli("get", "rr", "-n", env.ns, config=config)
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "KIND", "CLUSTERS", "APPLIED", "READY", "AGE"]
    rows = {ln.split()[0]: ln.split()[1:5] for ln in lines[1:]}
    assert rows == {"a": ["ConfigMap", "cluster1", "1/1", "1/1"],
                    "b": ["ConfigMap", "cluster2,cluster3", "2/2", "2/2"],
                    "c": ["ConfigMap", "cluster1,cluster2,cluster3", "3/3", "3/3"]}
    # --kubeconfig instead of the config file; -o json of one object.
    rc, out, _ = await cli("get", "mcr", "c", "-n", env.ns, "-o", "json",
                           "--kubeconfig", str(harness.servers["cluster1"].kubeconfig))
    assert rc == 0 and orjson.loads(out)["status"]["applied"] == "3/3"

    rc, out, err = await cli("delete", "-f", str(d), config=config)
    assert rc == 0, err
    assert out.splitlines() == [f'multiclusterresource.mulitcluster.practice.com "{n}" deleted' for n in "abc"]
    # delete waited for the finalizer: the CRs and every copy are gone when it returns.
    assert [n for n in "abc" if await env.get_cr(n)] == []
    for c in ("cluster1", "cluster2", "cluster3"):
        for n in "abc":
            assert await env.get(c, env.cm_path(f"{n}-cm")) is None


async def test_cli_errors_are_one_line(make_env: MakeEnv, harness: Harness, tmp_path: Path) -> None:
    env = await make_env()
    config = tmp_path / "config"
    config.write_text(f"masterClusterKubeConfigPath: {harness.servers['cluster1'].kubeconfig}\n")

    rc, out, err = await cli("apply", "-f", str(tmp_path / "missing.yaml"), config=config)
    assert rc == 1 and out == "" and err.strip() == f"error: {tmp_path / 'missing.yaml'}: no such file or directory"

    rc, _, err = await cli("get", "rr")  # no config file, no --kubeconfig
    assert rc == 1 and err.splitlines()[0].startswith("error: no master cluster: /nonexistent/config does not exist")

    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [unclosed\n")
    rc, _, err = await cli("apply", "-f", str(bad), config=config)
    assert rc == 1 and err.startswith(f"error: {bad}: YAML syntax error")

    # One bad document does not stop the others; the exit code says something failed.
    mixed = tmp_path / "mixed.yaml"
    weird = {"apiVersion": "example.com/v1", "kind": "Nothing", "metadata": {"name": "x", "namespace": env.ns}}
    mixed.write_text(yaml.safe_dump_all([weird, manifest(env, "ok", ["cluster1"])]))
    rc, out, err = await cli("apply", "-f", str(mixed), config=config)
    assert rc == 1
    assert out.strip() == "multiclusterresource.mulitcluster.practice.com/ok created"
    assert 'no matches for kind "Nothing" in version "example.com/v1"' in err

    rc, _, err = await cli("delete", "-f", str(mixed), "--no-wait", config=config)
    assert rc == 1 and "Nothing" in err

    async def gone() -> bool:
        return await env.get_cr("ok") is None
    await eventually(gone, what="ok deleted")
