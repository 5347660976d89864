"""The MySQL store builds its own SQL literals (faster than aiomysql's escaping): they must be exactly PyMySQL's."""

from __future__ import annotations

import math
import random

import pymysql.converters
import pytest

from multicluster.store import sql
from multicluster.store.mysql import _DB_NAME, valid_database_name
from multicluster.store.mysql_text import LITERAL, LITERAL_NO_BACKSLASH, MULTI_ROW

SPECIALS = ["", "plain", "o'brien", 'say "hi"', "back\\slash", "nul\x00byte", "ctrl-z\x1a", "cr\rlf\n", "%s", "?",
            "émile", "名前", "🚀", "\\'", "''", "\\", "a\\'b\\\\'c"]


def _random_strings(n: int) -> list[str]:
    rnd = random.Random(7)
    alphabet = "ab-_.'\"\\\x00\x1a\r\n%?é名🚀 "
    return [''.join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 12))) for _ in range(n)]


def test_string_literals_are_pymysqls() -> None:
    for value in SPECIALS + _random_strings(500):
        assert LITERAL(value) == pymysql.converters.escape_item(value, "utf8mb4"), value
        # With NO_BACKSLASH_ESCAPES the server reads backslashes literally: only the quote is doubled.
        assert LITERAL_NO_BACKSLASH(value) == "'" + value.replace("'", "''") + "'", value


def test_other_literals() -> None:
    assert LITERAL(b"\x00{'\\\"}") == "X'007b275c227d'"
    assert LITERAL(b"") == "X''"
    assert [LITERAL(v) for v in (0, -5, 2**63, None, True, False, 1.5)] == \
        ["0", "-5", str(2**63), "NULL", "1", "0", "1.5"]


@pytest.mark.parametrize("text", [
    sql.upsert_resources(sql.MYSQL),
    sql.insert_index(sql.MYSQL, "resource_labels"),
    sql.upsert_sync_state(sql.MYSQL),
])
def test_multi_row_split_keeps_the_statement_around_the_values(text: str) -> None:
    m = MULTI_ROW.match(text)
    assert m is not None
    head, values, tail = m.groups()
    assert head + values + tail == text
    assert head.rstrip().endswith("VALUES")
    assert values.count("%s") == text.count("%s")
    assert tail == "" or tail.lstrip().startswith("ON DUPLICATE KEY UPDATE")


class _Name(str):
    """A str subclass (what an enum or a typed wrapper produces) must be quoted exactly like a str."""


@pytest.mark.parametrize("value", ["a\\'b", "x' OR '1'='1", "\\", "it's"])
def test_str_subclasses_are_quoted_like_str_under_both_modes(value: str) -> None:
    # Through PyMySQL's fallback a subclass got backslash escaping even with NO_BACKSLASH_ESCAPES, where the
    # server reads `\'` as a backslash and the end of the string: the rest of the value became SQL.
    assert LITERAL_NO_BACKSLASH(_Name(value)) == "'" + value.replace("'", "''") + "'"
    assert LITERAL(_Name(value)) == LITERAL(value)


def test_binary_buffers_are_hex_literals() -> None:
    assert LITERAL_NO_BACKSLASH(bytearray(b"'\\")) == "X'275c'"
    assert LITERAL(memoryview(b"\x00'")) == "X'0027'"


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_floats_are_refused(value: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        LITERAL(value)


def test_values_of_unknown_types_are_refused() -> None:
    with pytest.raises(TypeError, match="cannot be written as a SQL literal"):
        LITERAL_NO_BACKSLASH(object())


def test_database_names_are_matched_whole() -> None:
    assert _DB_NAME.fullmatch("resources") and not _DB_NAME.fullmatch("resources\n")
    assert not valid_database_name("resources\n") and valid_database_name("mc_1")
