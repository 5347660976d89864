"""API test fixtures: a real store (SQLite, and MariaDB where marked) filled from real API servers, a test
ApiBackend resolving spellings with real discovery, and a real in-process aiohttp server per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from multicluster.api import build_app
from multicluster.config import StoreConfig
from multicluster.store import Store, open_store
from tests.api.dataset import Dataset, build, fill
from tests.api.helpers import Backend, fresh_views

ENGINES = ["sqlite", pytest.param("mysql", marks=pytest.mark.mariadb)]


@pytest.fixture(scope="session")
async def dataset(harness: object) -> Dataset:
    return await build(harness)  # type: ignore[arg-type]


def _store_config(request: pytest.FixtureRequest, engine: str, path: Path) -> StoreConfig:
    if engine == "mysql":
        server = request.getfixturevalue("mariadb_server")
        db = server.create_database(f"mc_api_{uuid.uuid4().hex[:10]}")
        return StoreConfig(type="mysql", host="127.0.0.1", port=server.port, user=server.user,
                           password=server.password, database=db, pool_size=4)
    return StoreConfig(type="sqlite", path=path / "api.db")


@pytest.fixture(scope="session", params=ENGINES)
async def filled_store(request: pytest.FixtureRequest, dataset: Dataset,
                       tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Store]:
    """One store per engine for the whole session, holding exactly the dataset (read-only tests)."""
    s = open_store(_store_config(request, request.param, tmp_path_factory.mktemp("api-store")))
    await s.open()
    await fill(s, dataset.rows())
    yield s
    await s.close()


@pytest.fixture(params=ENGINES)
async def own_store(request: pytest.FixtureRequest, dataset: Dataset, tmp_path: Path) -> AsyncIterator[Store]:
    """A store for one test that writes to it (starts with the dataset)."""
    s = open_store(_store_config(request, request.param, tmp_path))
    await s.open()
    await fill(s, dataset.rows())
    yield s
    await s.close()


@pytest.fixture
def backend(filled_store: Store, dataset: Dataset) -> Backend:
    return Backend(filled_store, dataset.resources, fresh_views(dataset))


@pytest.fixture
async def client(backend: Backend) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    async with TestClient(TestServer(build_app(backend))) as c:
        yield c
