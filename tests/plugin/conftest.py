"""Plugin test fixtures: the real API server (same loop as the test) over a real store filled from real API
servers; the CLI runs through typer's CliRunner in a worker thread so the server keeps answering."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from click.testing import Result
from typer.testing import CliRunner

from multicluster.api import build_app
from multicluster.config import StoreConfig
from multicluster.store import Store, open_store
from plugin.cli import app
from tests.api.dataset import Dataset, build, fill
from tests.api.helpers import Backend, fresh_views


@pytest.fixture(scope="session")
async def dataset(harness: Any) -> Dataset:
    return await build(harness)


@pytest.fixture(scope="session")
async def store(dataset: Dataset, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Store]:
    s = open_store(StoreConfig(type="sqlite", path=tmp_path_factory.mktemp("plugin-store") / "s.db"))
    await s.open()
    await fill(s, dataset.rows())
    yield s
    await s.close()


@pytest.fixture
def backend(store: Store, dataset: Dataset) -> Backend:
    return Backend(store, dataset.resources, fresh_views(dataset))


@pytest.fixture
async def server(backend: Backend) -> AsyncIterator[TestServer]:
    srv = TestServer(build_app(backend), host="127.0.0.1")
    await srv.start_server()
    yield srv
    await srv.close()


@pytest.fixture
def url(server: TestServer) -> str:
    return f"http://127.0.0.1:{server.port}"


@dataclass
class Cli:
    """Runs `kubectl-multicluster ARGS` in a thread with a clean environment."""

    env: dict[str, str | None]

    async def __call__(self, *args: str, env: dict[str, str | None] | None = None) -> Result:
        runner = CliRunner()
        return await asyncio.to_thread(runner.invoke, app, list(args), env={**self.env, **(env or {})})


@pytest.fixture
def cli(url: str, tmp_path: Path) -> Cli:
    return Cli({"MULTICLUSTER_SERVER": url, "MULTICLUSTER_CLI_CONFIG": str(tmp_path / "no-config"),
                "MULTICLUSTER_TOKEN": None, "NO_COLOR": None, "COLUMNS": "200"})


def parse_table(text: str) -> tuple[list[str], list[dict[str, str]]]:
    """Split a kubectl-style table by the header's column starts (valid for one page of output)."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    header = lines[0]
    starts = [m.start() for m in re.finditer(r"(?:(?<=^)|(?<=   ))\S", header)]
    names = [header[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
    rows = []
    for ln in lines[1:]:
        cells = [ln[a:b].strip() if b is not None else ln[a:].strip()
                 for a, b in zip(starts, [*starts[1:], None], strict=True)]
        rows.append(dict(zip(names, cells, strict=True)))
    return names, rows


def assert_clean(result: Result, streams: Sequence[str] = ("stdout", "stderr")) -> None:
    for s in streams:
        text = getattr(result, s)
        assert "Traceback" not in text and "\x1b[" not in text, text
