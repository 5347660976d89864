"""Parse Kubernetes label and field selectors into store Requirements.

The API takes selectors as strings exactly like kubectl sends them (`-l 'app in (web,api),!canary'`,
`--field-selector status.phase!=Running`), but the store must receive structured terms it can bind as SQL
parameters: nothing a user types ever reaches SQL text. Parsing here follows k8s.io/apimachinery's
labels/fields grammar closely so a selector that works with kubectl works here, and so does its failure: a bad
selector raises QueryError naming the parameter, the offending token and its 1-based position.

Label ops map to Requirement.op as: `=`/`==` → "=", `!=` → "!=", `in`, `notin`, `key` → "exists", `!key` → "!".
Field selectors allow only `=`, `==` (both "=") and `!=` on the keys the informers index (FIELD_KEYS).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from multicluster.errors import QueryError
from multicluster.store.base import Requirement

# The field selector keys the informer extracts into Row.fields (metadata.* map to columns in the store).
FIELD_KEYS: tuple[str, ...] = ("metadata.name", "metadata.namespace", "status.phase", "spec.nodeName")

_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_SPECIAL = frozenset(" \t\n\r,()=!<>")

LABEL_HINT = 'label selectors look like "app=web", "tier in (a,b)", "env!=prod", "canary" or "!canary", comma-separated'
FIELD_HINT = 'field selectors look like "status.phase=Running" or "spec.nodeName!=node1", comma-separated'


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "id", "op", "(", ")", ",", "!", "end"
    text: str
    pos: int  # 0-based offset in the selector


def _tokens(text: str, param: str) -> list[_Token]:
    out: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
            continue
        if c in "(),":
            out.append(_Token(c, c, i))
            i += 1
            continue
        if c in "=!<>":
            two = text[i : i + 2]
            if two in ("==", "!="):
                out.append(_Token("op", two, i))
                i += 2
            elif c == "=":
                out.append(_Token("op", "=", i))
                i += 1
            elif c == "!":
                out.append(_Token("!", "!", i))
                i += 1
            else:
                raise QueryError(
                    f'{param}: operator "{c}" at position {i + 1} is not supported',
                    hint="numeric comparisons (gt/lt) are not supported; use =, ==, !=, in, notin, key or !key",
                )
            continue
        j = i
        while j < n and text[j] not in _SPECIAL:
            j += 1
        word = text[i:j]
        kind = "op" if word in ("in", "notin") else "id"
        out.append(_Token(kind, word, i))
        i = j
    out.append(_Token("end", "", n))
    return out


def _unexpected(param: str, tok: _Token, hint: str, expected: str = "") -> QueryError:
    what = "end of selector" if tok.kind == "end" else f'"{tok.text}"'
    more = f", expected {expected}" if expected else ""
    return QueryError(f"{param}: unexpected {what} at position {tok.pos + 1}{more}", hint=hint)


def validate_label_key(key: str, param: str = "labelSelector", pos: int = 0) -> None:
    """A qualified name: optional DNS-subdomain prefix (≤253) + "/" + name (≤63, alphanumeric ends)."""
    prefix, slash, name = key.rpartition("/")
    where = f"{param}: label key \"{key}\" at position {pos + 1}"
    if slash and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        raise QueryError(
            f"{where} has an invalid prefix",
            hint="a key prefix must be a lowercase DNS subdomain (e.g. app.kubernetes.io/name), ≤253 characters",
        )
    if not name or len(name) > 63 or not _NAME.match(name):
        raise QueryError(
            f"{where} is not a valid label key",
            hint="label names are ≤63 characters of letters, digits, '-', '_' and '.', starting and ending "
            "with a letter or digit, optionally prefixed by a DNS subdomain and '/'",
        )


def validate_label_value(value: str, param: str = "labelSelector", pos: int = 0) -> None:
    if value and (len(value) > 63 or not _NAME.match(value)):
        raise QueryError(
            f'{param}: label value "{value}" at position {pos + 1} is not valid',
            hint="label values are empty or ≤63 characters of letters, digits, '-', '_' and '.', "
            "starting and ending with a letter or digit",
        )


def parse_label_selector(text: str | None, param: str = "labelSelector") -> tuple[Requirement, ...]:
    """Parse a label selector; empty or None selects everything (no requirements)."""
    if not text or not text.strip():
        return ()
    toks = _tokens(text, param)
    out: list[Requirement] = []
    i = 0

    def take() -> _Token:
        nonlocal i
        tok = toks[i]
        i += 1
        return tok

    while True:
        tok = take()
        if tok.kind == "!":
            key = take()
            if key.kind != "id":
                raise _unexpected(param, key, LABEL_HINT, "a label key after \"!\"")
            validate_label_key(key.text, param, key.pos)
            out.append(Requirement(key.text, "!"))
        elif tok.kind == "id":
            validate_label_key(tok.text, param, tok.pos)
            nxt = toks[i]
            if nxt.kind in (",", "end"):
                out.append(Requirement(tok.text, "exists"))
            elif nxt.kind == "op" and nxt.text in ("=", "==", "!="):
                take()
                val = toks[i]
                if val.kind == "id":
                    take()
                    validate_label_value(val.text, param, val.pos)
                    value = val.text
                elif val.kind in (",", "end"):
                    value = ""  # `a=` selects an empty value, as in Kubernetes
                else:
                    raise _unexpected(param, val, LABEL_HINT, "a label value")
                out.append(Requirement(tok.text, "!=" if nxt.text == "!=" else "=", (value,)))
            elif nxt.kind == "op":  # in / notin
                take()
                values, i = _value_set(toks, i, param)
                out.append(Requirement(tok.text, nxt.text, values))
            else:
                raise _unexpected(param, nxt, LABEL_HINT, '"=", "!=", "in", "notin", "," or the end')
        else:
            raise _unexpected(param, tok, LABEL_HINT, 'a label key or "!"')
        sep = take()
        if sep.kind == "end":
            break
        if sep.kind != ",":
            raise _unexpected(param, sep, LABEL_HINT, '"," or the end')
        if toks[i].kind == "end":
            raise _unexpected(param, toks[i], LABEL_HINT, "another requirement after \",\"")
    return tuple(out)


def _value_set(toks: list[_Token], i: int, param: str) -> tuple[tuple[str, ...], int]:
    """Values of `in (a, b)` starting at toks[i] == "("; returns them and the index after ")"."""
    op_tok = toks[i - 1]
    if toks[i].kind != "(":
        raise _unexpected(param, toks[i], LABEL_HINT, f'"(" after "{op_tok.text}"')
    i += 1
    values: list[str] = []
    expect_value = True
    while True:
        tok = toks[i]
        if tok.kind == ")":
            if expect_value and values:
                values.append("")  # `in (a,)`: Kubernetes reads a trailing empty value
            break
        if expect_value and tok.kind == "id":
            validate_label_value(tok.text, param, tok.pos)
            values.append(tok.text)
            expect_value = False
        elif expect_value and tok.kind == ",":
            values.append("")
        elif not expect_value and tok.kind == ",":
            expect_value = True
        else:
            raise _unexpected(param, tok, LABEL_HINT, 'a value, "," or ")"')
        i += 1
    if not values:
        raise QueryError(
            f'{param}: "{op_tok.text}" at position {op_tok.pos + 1} needs at least one value',
            hint=LABEL_HINT,
        )
    return tuple(dict.fromkeys(values)), i + 1


def _split_unescaped(text: str, sep: str) -> list[tuple[str, int]]:
    """Split on `sep` not preceded by a backslash; returns (part, 0-based start offset)."""
    parts: list[tuple[str, int]] = []
    start, i = 0, 0
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == sep:
            parts.append((text[start:i], start))
            start = i + 1
        i += 1
    parts.append((text[start:], start))
    return parts


def _unescape(value: str, param: str, pos: int) -> str:
    out: list[str] = []
    i = 0
    while i < len(value):
        c = value[i]
        if c == "\\":
            if i + 1 >= len(value) or value[i + 1] not in "\\,=!":
                raise QueryError(
                    f"{param}: invalid escape at position {pos + i + 1}",
                    hint=r"only \\, \, \= and \! may be escaped in a field selector value",
                )
            out.append(value[i + 1])
            i += 2
            continue
        if c in ",=!":
            raise QueryError(
                f'{param}: unexpected "{c}" at position {pos + i + 1}',
                hint=FIELD_HINT + r"; escape a literal ',', '=' or '!' in a value with '\'",
            )
        out.append(c)
        i += 1
    return "".join(out)


def parse_field_selector(text: str | None, param: str = "fieldSelector") -> tuple[Requirement, ...]:
    """Parse a field selector (`key=value`, `key==value`, `key!=value`, comma-separated)."""
    if not text or not text.strip():
        return ()
    out: list[Requirement] = []
    for part, start in _split_unescaped(text, ","):
        lead = len(part) - len(part.lstrip())
        term = part.strip()
        pos = start + lead
        if not term:
            raise QueryError(f"{param}: empty requirement at position {pos + 1}", hint=FIELD_HINT)
        m = re.search(r"(!=|==|=)", term)
        if not m:
            raise QueryError(
                f'{param}: "{term}" at position {pos + 1} has no operator',
                hint=FIELD_HINT + "; only =, == and != are supported",
            )
        key = term[: m.start()].strip()
        if not key:
            raise QueryError(f'{param}: missing field name at position {pos + 1}', hint=FIELD_HINT)
        if key not in FIELD_KEYS:
            raise QueryError(
                f'{param}: field "{key}" at position {pos + 1} is not supported',
                hint="supported fields: " + ", ".join(FIELD_KEYS),
            )
        vstart = m.end()
        raw_value = term[vstart:]
        if raw_value.startswith(("=", "!")):
            raise QueryError(
                f'{param}: unexpected "{raw_value[0]}" at position {pos + vstart + 1}',
                hint=FIELD_HINT + "; only =, == and != are supported",
            )
        value = _unescape(raw_value.strip(), param, pos + vstart + (len(raw_value) - len(raw_value.lstrip())))
        out.append(Requirement(key, "!=" if m.group(1) == "!=" else "=", (value,)))
    return tuple(out)


def term_count(reqs: tuple[Requirement, ...]) -> int:
    """What a selector costs the store: one per requirement, one per value of an `in`/`notin` set."""
    return sum(max(1, len(r.values)) for r in reqs)


def format_requirements(reqs: tuple[Requirement, ...]) -> str:
    """Back to selector text (canonical spelling), used in continue-token fingerprints and messages."""
    parts: list[str] = []
    for r in reqs:
        if r.op == "exists":
            parts.append(r.key)
        elif r.op == "!":
            parts.append(f"!{r.key}")
        elif r.op in ("in", "notin"):
            parts.append(f"{r.key} {r.op} ({','.join(r.values)})")
        else:
            parts.append(f"{r.key}{r.op}{r.values[0] if r.values else ''}")
    return ",".join(parts)
