"""The MySQL store builds its own SQL literals (faster than aiomysql's escaping): they must be exactly PyMySQL's."""

from __future__ import annotations

import random

import pymysql.converters
import pytest

from multicluster.store import sql
from multicluster.store.mysql import _LITERAL, _LITERAL_NO_BACKSLASH, _MULTI_ROW

SPECIALS = ["", "plain", "o'brien", 'say "hi"', "back\\slash", "nul\x00byte", "ctrl-z\x1a", "cr\rlf\n", "%s", "?",
            "émile", "名前", "🚀", "\\'", "''", "\\", "a\\'b\\\\'c"]


def _random_strings(n: int) -> list[str]:
    rnd = random.Random(7)
    alphabet = "ab-_.'\"\\\x00\x1a\r\n%?é名🚀 "
    return [''.join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 12))) for _ in range(n)]


def test_string_literals_are_pymysqls() -> None:
    for value in SPECIALS + _random_strings(500):
        assert _LITERAL(value) == pymysql.converters.escape_item(value, "utf8mb4"), value
        # With NO_BACKSLASH_ESCAPES the server reads backslashes literally: only the quote is doubled.
        assert _LITERAL_NO_BACKSLASH(value) == "'" + value.replace("'", "''") + "'", value


def test_other_literals() -> None:
    assert _LITERAL(b"\x00{'\\\"}") == "X'007b275c227d'"
    assert _LITERAL(b"") == "X''"
    assert [_LITERAL(v) for v in (0, -5, 2**63, None, True, False, 1.5)] == \
        ["0", "-5", str(2**63), "NULL", "1", "0", "1.5"]


@pytest.mark.parametrize("text", [
    sql.upsert_resources(sql.MYSQL),
    sql.insert_index(sql.MYSQL, "resource_labels"),
    sql.upsert_sync_state(sql.MYSQL),
])
def test_multi_row_split_keeps_the_statement_around_the_values(text: str) -> None:
    m = _MULTI_ROW.match(text)
    assert m is not None
    head, values, tail = m.groups()
    assert head + values + tail == text
    assert head.rstrip().endswith("VALUES")
    assert values.count("%s") == text.count("%s")
    assert tail == "" or tail.lstrip().startswith("ON DUPLICATE KEY UPDATE")
