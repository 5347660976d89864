"""The resource store: where informers write and the API reads.

`open_store(cfg)` picks the engine; the caller then awaits `store.open()` (connect + apply schema.sql) and
`store.close()`. Both engines implement `Store` from base.py and pass the same contract tests.
"""

from __future__ import annotations

from multicluster.config import StoreConfig
from multicluster.store.base import (
    ApplyResult,
    Delete,
    Mutation,
    Page,
    Query,
    Requirement,
    Row,
    SortOrder,
    Store,
    StoredObject,
    SyncState,
    sort_key,
)

__all__ = [
    "ApplyResult",
    "Delete",
    "Mutation",
    "Page",
    "Query",
    "Requirement",
    "Row",
    "SortOrder",
    "Store",
    "StoredObject",
    "SyncState",
    "open_store",
    "sort_key",
]


def open_store(cfg: StoreConfig) -> Store:
    """A store for the configured engine, not yet connected: await `.open()` before use.

    The engine modules are imported lazily so a SQLite deployment never needs the MySQL driver importable.
    """
    if cfg.type == "mysql":
        from multicluster.store.mysql import MySQLStore

        store = MySQLStore(cfg)
        store.retention = cfg.change_retention
        return store
    from multicluster.store.sqlite import SQLiteStore

    return SQLiteStore(cfg.path, cfg.change_retention, writer=cfg.sqlite_writer)
