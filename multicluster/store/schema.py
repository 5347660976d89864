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
# SQLite makes a column the rowid only when its type is exactly INTEGER: that is what an AUTO_INCREMENT key
# becomes (new rows take max(rowid) + 1, so they append).
_SERIAL = re.compile(r"\bBIGINT\s+NOT\s+NULL\s+AUTO_INCREMENT\s+PRIMARY\s+KEY\b", re.IGNORECASE)

# A table-level PRIMARY KEY (...) clause: InnoDB clusters such a table on its key, SQLite only if it is WITHOUT
# ROWID; otherwise it keeps a rowid table plus a separate index for the key, two B-trees to write per row (the
# label and field rows: three per object in a typical sync).
_TABLE_PK = re.compile(r",\s*PRIMARY\s+KEY\s*\(", re.IGNORECASE)

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
    out = _SERIAL.sub("INTEGER PRIMARY KEY", out)
    out = _AUTO_INCREMENT.sub("", out)
    if out.upper().startswith("CREATE TABLE") and _TABLE_PK.search(out):
        out += " WITHOUT ROWID"
    return out


def for_sqlite(text: str | None = None) -> list[str]:
    return [to_sqlite(s) for s in statements(load() if text is None else text)]
