"""Load schema.sql and translate it for each engine.

schema.sql is written once, in MySQL/MariaDB dialect, because MySQL is the stricter of the two: it needs
character sets and key widths spelled out, SQLite accepts almost any column type. Translating towards SQLite
is therefore a handful of deletions, small enough to test exhaustively, instead of a second hand-kept schema
that would drift.
"""

from __future__ import annotations

import re
from importlib import resources

_COMMENT = re.compile(r"--[^\n]*")
# Column-level `CHARACTER SET x` / `COLLATE x` (no `=`), then the table options after the closing parenthesis.
_CHARSET = re.compile(r"\s+CHARACTER\s+SET\s+\w+", re.IGNORECASE)
_COLLATE = re.compile(r"\s+COLLATE\s+\w+", re.IGNORECASE)
_TABLE_OPTIONS = re.compile(
    r"\)\s*(?:ENGINE|(?:DEFAULT\s+)?(?:CHARSET|CHARACTER\s+SET)|(?:DEFAULT\s+)?COLLATE|AUTO_INCREMENT)\s*=[^;]*\Z",
    re.IGNORECASE,
)
_UNSIGNED = re.compile(r"\s+UNSIGNED\b", re.IGNORECASE)
_AUTO_INCREMENT = re.compile(r"\s+AUTO_INCREMENT\b", re.IGNORECASE)
# `id BIGINT PRIMARY KEY` deliberately stays BIGINT: SQLite makes a column the rowid only when its type is
# exactly INTEGER, and a rowid that is a hash puts every insert on a random page of the table, which holds the
# object bodies. As a separate unique index the random inserts land in small index entries while the table
# grows at its end: 1.7x the insert rate of an initial sync (60,000 ConfigMaps: 2.4 instead of 4.1 CPU-seconds).


def load() -> str:
    """The text of multicluster/schema.sql as shipped in the package."""
    return resources.files("multicluster").joinpath("schema.sql").read_text(encoding="utf-8")


def statements(text: str) -> list[str]:
    """Split into statements, dropping `--` comments (no string literal in the schema contains one)."""
    body = _COMMENT.sub("", text)
    return [" ".join(s.split()) for s in body.split(";") if s.strip()]


def for_mysql(text: str | None = None) -> list[str]:
    return statements(load() if text is None else text)


def to_sqlite(stmt: str) -> str:
    """One MySQL statement in SQLite's dialect."""
    out = _CHARSET.sub("", stmt)
    out = _COLLATE.sub("", out)
    out = _TABLE_OPTIONS.sub(")", out)
    out = _UNSIGNED.sub("", out)
    out = _AUTO_INCREMENT.sub("", out)
    return out


def for_sqlite(text: str | None = None) -> list[str]:
    return [to_sqlite(s) for s in statements(load() if text is None else text)]
