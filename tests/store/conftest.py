"""Contract-test fixtures: every test runs once against SQLite and once against a real MariaDB."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from multicluster.config import StoreConfig
from multicluster.store import Store, open_store


def mysql_config(request: pytest.FixtureRequest) -> StoreConfig:
    server = request.getfixturevalue("mariadb_server")
    database = request.getfixturevalue("mariadb_database")
    return StoreConfig(type="mysql", host="127.0.0.1", port=server.port, user=server.user,
                       password=server.password, database=database, pool_size=4)


@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.mariadb)])
def store_config(request: pytest.FixtureRequest, tmp_path: Path) -> StoreConfig:
    if request.param == "mysql":
        return mysql_config(request)
    return StoreConfig(type="sqlite", path=tmp_path / "store.db")


@pytest.fixture
async def store(store_config: StoreConfig) -> AsyncIterator[Store]:
    s = open_store(store_config)
    await s.open()
    try:
        yield s
    finally:
        await s.close()
