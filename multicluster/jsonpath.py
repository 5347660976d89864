"""The JSONPath subset that CRD additionalPrinterColumns use, evaluated on plain dicts.

kubectl evaluates a printer column with client-go's JSONPath and shows the first value found. What CRDs write
in practice is a small part of that language, and this module covers exactly that part:

    .spec.engine   {.spec.engine}   $.spec.engine      dotted fields (braces and `$` optional)
    .status.conditions[0].type   [-1]                   list indexes (negative from the end)
    .metadata.labels['app.kubernetes.io/name']          quoted keys, for names with dots or slashes
    .spec.containers[*].image   .spec.*                 wildcards over a list or a map
    .status.conditions[?(@.type=="Ready")].status       filters: @.path compared (==, !=, <, <=, >, >=)
                                                        with a quoted string, a number, true/false/null,
    .status.conditions[?(@.reason)].reason              or just tested for presence

Anything else (recursive descent `..`, slices, unions, functions) is reported as unsupported by `compile()`
and evaluates to nothing, which a printer shows as an empty cell — never an error: a column is cosmetic.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

_MISSING = object()
_NAME = re.compile(r"[^.\[\]\s()=!<>@'\",*]+")
_NUMBER = re.compile(r"-?\d+(\.\d+)?([eE][-+]?\d+)?$")
_OPS = ("==", "!=", "<=", ">=", "<", ">")


class Unsupported(ValueError):
    """The expression is outside the supported subset (or malformed)."""


@dataclass(frozen=True, slots=True)
class Field:
    name: str


@dataclass(frozen=True, slots=True)
class Index:
    index: int


@dataclass(frozen=True, slots=True)
class Wildcard:
    pass


@dataclass(frozen=True, slots=True)
class Filter:
    path: tuple[Step, ...]
    op: str | None = None  # None = the path exists (and is not null/false)
    value: Any = None


Step = Field | Index | Wildcard | Filter


@functools.lru_cache(maxsize=256)
def compile(expr: str) -> tuple[Step, ...]:
    """Parse an expression into steps; raises Unsupported for anything outside the subset."""
    text = expr.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1].strip()
    if text.startswith("$"):
        text = text[1:]
    if not text:
        raise Unsupported("empty expression")
    if text[0] not in ".[":
        raise Unsupported(f"{expr!r}: a path starts with . or [")
    steps, pos = _steps(text, 0)
    if pos != len(text):
        raise Unsupported(f"{expr!r}: unexpected {text[pos:]!r}")
    return steps


def _steps(text: str, pos: int, *, stop: str = "") -> tuple[tuple[Step, ...], int]:
    steps: list[Step] = []
    while pos < len(text) and text[pos] not in stop:
        ch = text[pos]
        if ch == ".":
            if text.startswith("..", pos):
                raise Unsupported("recursive descent (..) is not supported")
            if text.startswith(".*", pos):
                steps.append(Wildcard())
                pos += 2
                continue
            m = _NAME.match(text, pos + 1)
            if m is None:
                raise Unsupported(f"a field name is missing at {pos}")
            steps.append(Field(m.group()))
            pos = m.end()
        elif ch == "[":
            step, pos = _bracket(text, pos)
            steps.append(step)
        else:
            raise Unsupported(f"unexpected {ch!r} at {pos}")
    return tuple(steps), pos


def _bracket(text: str, pos: int) -> tuple[Step, int]:
    inner_start = pos + 1
    if text.startswith("[?(", pos):
        end = _filter_end(text, pos + 3)
        return _filter(text[pos + 3 : end].strip()), end + 2
    end = text.find("]", inner_start)
    if end < 0:
        raise Unsupported("unclosed [")
    inner = text[inner_start:end].strip()
    if inner == "*":
        return Wildcard(), end + 1
    if len(inner) >= 2 and inner[0] == inner[-1] and inner[0] in "'\"":
        if inner[0] in inner[1:-1]:
            raise Unsupported("unions of quoted keys are not supported")
        return Field(inner[1:-1]), end + 1
    if re.fullmatch(r"-?\d+", inner):
        return Index(int(inner)), end + 1
    raise Unsupported(f"[{inner}] (slices, unions and expressions) is not supported")


def _filter_end(text: str, pos: int) -> int:
    """Index of the `)]` closing a filter that starts at `pos`, skipping quoted strings."""
    quote = ""
    while pos < len(text):
        ch = text[pos]
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif text.startswith(")]", pos):
            return pos
        pos += 1
    raise Unsupported("unclosed [?(")


def _filter(body: str) -> Filter:
    if not body.startswith("@"):
        raise Unsupported(f"filter {body!r}: only @-relative filters are supported")
    path, pos = _steps(body, 1, stop="=!<> ")
    rest = body[pos:].strip()
    if not rest:
        return Filter(path)
    op = next((o for o in _OPS if rest.startswith(o)), None)
    if op is None:
        raise Unsupported(f"filter {body!r}: unsupported operator")
    return Filter(path, op, _literal(rest[len(op) :].strip()))


def _literal(text: str) -> Any:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    if text in ("true", "false"):
        return text == "true"
    if text == "null":
        return None
    if _NUMBER.match(text):
        return float(text)
    raise Unsupported(f"filter value {text!r}: use a quoted string, a number, true, false or null")


# --------------------------------------------------------------------------------------------------- evaluation


def find(obj: Any, expr: str) -> list[Any]:
    """Every value the expression selects, in document order; [] when nothing matches or it is unsupported."""
    try:
        steps = compile(expr)
    except Unsupported:
        return []
    return [v for v in _walk(obj, steps) if v is not _MISSING]


def first(obj: Any, expr: str) -> Any:
    """The first selected value (what a printer column shows), or None."""
    try:
        steps = compile(expr)
    except Unsupported:
        return None
    for v in _walk(obj, steps):
        if v is not _MISSING:
            return v
    return None


def _walk(obj: Any, steps: tuple[Step, ...]) -> Iterator[Any]:
    if not steps:
        yield obj
        return
    step, rest = steps[0], steps[1:]
    for child in _apply(obj, step):
        yield from _walk(child, rest)


def _apply(obj: Any, step: Step) -> Iterator[Any]:
    if isinstance(step, Field):
        if isinstance(obj, dict) and step.name in obj:
            yield obj[step.name]
    elif isinstance(step, Index):
        if isinstance(obj, list) and -len(obj) <= step.index < len(obj):
            yield obj[step.index]
    elif isinstance(step, Wildcard):
        if isinstance(obj, list):
            yield from obj
        elif isinstance(obj, dict):
            yield from obj.values()
    else:
        items = obj if isinstance(obj, list) else list(obj.values()) if isinstance(obj, dict) else []
        for item in items:
            if _matches(item, step):
                yield item


def _matches(item: Any, f: Filter) -> bool:
    value = next(iter(_walk(item, f.path)), _MISSING)
    if f.op is None:
        return value is not _MISSING and value is not None and value is not False
    if value is _MISSING:
        return False
    want = f.value
    if isinstance(want, float) and isinstance(value, int | float) and not isinstance(value, bool):
        got: Any = float(value)
    elif isinstance(want, float) and isinstance(value, str) and _NUMBER.match(value):
        got = float(value)
    else:
        got = value
    if f.op == "==":
        return bool(got == want)
    if f.op == "!=":
        return bool(got != want)
    if type(got) is not type(want) or not isinstance(got, str | float):
        return False
    if f.op == "<":
        return bool(got < want)
    if f.op == "<=":
        return bool(got <= want)
    if f.op == ">":
        return bool(got > want)
    return bool(got >= want)
