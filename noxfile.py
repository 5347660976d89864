"""Developer entry points. Sessions run in the current Python environment (python=False): CI installs the
project once with `pip install -e .[dev]`, and a laptop does the same, so nothing is reinstalled per run."""

from __future__ import annotations

import os

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True


def _ensure_installed(session: nox.Session) -> None:
    try:
        import pytest  # noqa: F401

        import multicluster  # noqa: F401
    except ImportError:
        session.run("python", "-m", "pip", "install", "-q", "-e", ".[dev]")


@nox.session(python=False)
def tests(session: nox.Session) -> None:
    """The whole suite: unit tests plus integration tests against real kube-apiservers and MariaDB."""
    _ensure_installed(session)
    session.env.setdefault("NO_PROXY", "127.0.0.1,localhost")
    args = session.posargs or ["tests"]
    # pytest exits 5 when it collected nothing: that must fail, never pass silently.
    session.run("python", "-m", "pytest", *args, success_codes=[0])


@nox.session(python=False)
def lint(session: nox.Session) -> None:
    """ruff + mypy --strict."""
    _ensure_installed(session)
    session.run("ruff", "check", "multicluster", "plugin", "tests", "bench", "noxfile.py")
    session.run("mypy")


@nox.session(python=False)
def demo(session: nox.Session) -> None:
    """Start 3 local clusters, sample workloads and the daemon, then show the CLI. `-- --keep` leaves it running."""
    _ensure_installed(session)
    session.run("python", "-m", "multicluster.demo", *session.posargs)


@nox.session(python=False)
def bench(session: nox.Session) -> None:
    """Benchmarks in bench/ (real clusters and MariaDB); prints tables and writes BENCHMARKS.md."""
    _ensure_installed(session)
    session.env.setdefault("NO_PROXY", "127.0.0.1,localhost")
    session.run("python", "-m", "bench", *session.posargs, env={"PYTHONPATH": os.getcwd()})
