"""The feed's tests run over a real store (SQLite and MariaDB, like the store contract tests)."""

from tests.store.conftest import store, store_config

__all__ = ["store", "store_config"]
