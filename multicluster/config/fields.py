"""The schema's vocabulary: a config field is a frozen-dataclass field that carries a Setting.

A Setting says everything about one field in one place: its key in config.yaml, its type (the field's annotation,
checked by msgspec, with msgspec.Meta bounds such as `gt=0`), its default (the dataclass default), the `multicluster
run` flag and environment variable that set it, the `*File` key or flag that reads it from a file, whether it is a
secret, a check for what a type cannot say, and the line that documents it. The loader, the flag layer and the
reference in docs/configuration.md are all generated from these declarations, so none of them lists a field again.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import os
import re
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from multicluster.errors import ConfigError

# A check gets the field's path for messages (`sync.pageSize`, or the flag `--address`) and the type-checked value;
# it returns the value to store (normalised) or raises ConfigError.
Check = Callable[[str, Any], Any]

_META = "multicluster.setting"


@dataclass(frozen=True, slots=True)
class Setting:
    key: str  # the key in its config.yaml section
    doc: str  # one line for docs/configuration.md
    what: str  # how a value of the wrong type is described: "an integer", "seconds", "true or false"
    env: str | None = None  # environment variable (read by the `run` flag of the same field)
    flag: str | None = None  # the `multicluster run` flag that sets it (its first spelling)
    param: str | None = None  # click's name for that flag's value, when it is not the flag's own name
    file_key: str | None = None  # `<key>File`: config.yaml key naming a file that holds the value
    file_flag: str | None = None  # the flag naming such a file
    file_env: str | None = None  # the environment variable of that flag
    secret: bool = False  # never in a repr, a log or the reference's defaults
    empty_ok: bool = False  # an empty string from a flag is a value (a password), not "not given"
    path: bool = False  # a file or directory: `~` expanded, relative to the config file
    check: Check | None = None
    raw: Any = None  # the type a config.yaml value is checked against, when not the field's own

    @property
    def flag_param(self) -> str | None:
        """click's parameter name of `flag` (the `run` function's argument)."""
        if self.flag is None:
            return None
        return self.param or self.flag.removeprefix("--").replace("-", "_")

    @property
    def file_flag_param(self) -> str | None:
        return None if self.file_flag is None else self.file_flag.removeprefix("--").replace("-", "_")


def setting(
    default: Any = dataclasses.MISSING,
    *,
    key: str,
    doc: str,
    what: str,
    env: str | None = None,
    flag: str | None = None,
    param: str | None = None,
    file_key: str | None = None,
    file_flag: str | None = None,
    file_env: str | None = None,
    secret: bool = False,
    empty_ok: bool = False,
    path: bool = False,
    check: Check | None = None,
    raw: Any = None,
) -> Any:
    """A dataclass field declared as a config setting (see Setting). Secrets are left out of the dataclass repr."""
    meta = Setting(key, doc, what, env, flag, param, file_key, file_flag, file_env, secret, empty_ok, path, check, raw)
    return dataclasses.field(default=default, repr=not secret, metadata={_META: meta})


@dataclass(frozen=True, slots=True)
class Bound:
    """A Setting with the dataclass field it belongs to."""

    name: str  # the attribute
    hint: Any  # the type a config.yaml value is checked against (msgspec)
    setting: Setting
    default: Any  # dataclasses.MISSING when the field is required


@functools.cache
def bound(cls: type) -> tuple[Bound, ...]:
    """The settings of a schema dataclass, in declaration order."""
    hints = typing.get_type_hints(cls, include_extras=True)
    out = []
    for f in dataclasses.fields(cls):
        s = f.metadata.get(_META)
        if isinstance(s, Setting):
            out.append(Bound(f.name, hints[f.name] if s.raw is None else s.raw, s, f.default))
    return tuple(out)


def is_section(hint: Any) -> bool:
    """A nested section: a schema dataclass of its own."""
    return isinstance(hint, type) and dataclasses.is_dataclass(hint) and bool(bound(hint))


# ------------------------------------------------------------------------------------------------ type checks

_TYPE_WORDS = {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false",
               "array": "a list", "object": "a mapping"}
_EXPECTED = re.compile(r"^Expected `([^`]+)`, got `([^`]+)`")
_BOUND = re.compile(r"^Expected `(\w+)` (>=|>|<=|<) (-?[\d.e+-]+)")
_BOUND_WORDS = {">": "greater than {}", ">=": "{} or more", "<": "less than {}", "<=": "{} or less"}
_PATH_PART = re.compile(r"\.(\w+)|\[(\d+)\]")


def convert(where: str, value: Any, hint: Any, what: str) -> Any:
    """`value` checked against `hint` (msgspec, strict: no `"3"` for 3, no `true` for 1), or ConfigError naming
    `where` (plus the list index inside it) and what was expected."""
    try:
        return msgspec.convert(value, hint, strict=True)
    except msgspec.ValidationError as exc:
        raise ConfigError(_explain(where, value, what, str(exc))) from None


def _explain(where: str, value: Any, what: str, text: str) -> str:
    text, _, at = text.partition(" - at `$")
    if at:
        for key, index in _PATH_PART.findall(at):
            if key:
                where += f".{key}"
                value = value.get(key) if isinstance(value, dict) else value
            else:
                where += f"[{index}]"
                value = value[int(index)] if isinstance(value, list) and int(index) < len(value) else value
    m = _EXPECTED.match(text)
    if m:
        expected = what if not at else _TYPE_WORDS.get(m.group(1), m.group(1))
        if isinstance(value, bool):
            return f"{where}: expected {expected}, got a boolean ({value!r})"
        return f"{where}: expected {expected}, got {type(value).__name__} ({value!r})"
    bound_ = _BOUND.match(text)
    if bound_:
        kind, op, limit = bound_.group(1), bound_.group(2), float(bound_.group(3))
        if kind == "int" and op == ">=" and limit >= 1:  # msgspec says `>= 1` for `gt=0`: keep the declared words
            op, limit = ">", limit - 1
        return f"{where}: must be {_BOUND_WORDS[op].format(format(limit, 'g'))}, got {value}"
    return f"{where}: {text[:1].lower()}{text[1:]}"


def typed(where: str, value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    """An isinstance check for the shapes around the settings (sections, lists of clusters)."""
    if isinstance(value, bool) and kind in (int, float, (int, float)):
        raise ConfigError(f"{where}: expected {what}, got a boolean ({value!r})")
    if not isinstance(value, kind):
        raise ConfigError(f"{where}: expected {what}, got {type(value).__name__} ({value!r})")
    return value


def suggest(key: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""


def check_keys(where: str, data: Mapping[str, Any], allowed: list[str]) -> None:
    for key in data:
        if key not in allowed:
            raise ConfigError(
                f'{where}: unknown key "{key}"{suggest(str(key), allowed)}',
                hint=f"allowed keys here: {', '.join(allowed)}",
            )


def keys_of(cls: type, only: tuple[str, ...] | None = None) -> list[str]:
    """Every config.yaml key of a section (or of its `only` attributes): the settings' keys and `*File` keys."""
    out = []
    for b in bound(cls):
        if only is not None and b.name not in only:
            continue
        out.append(b.setting.key)
        if b.setting.file_key:
            out.append(b.setting.file_key)
    return out


def resolve_path(raw: str, base: Path | None) -> Path:
    path = Path(os.path.expandvars(os.path.expanduser(raw)))
    return path if path.is_absolute() or base is None else (base / path)


def read_secret_file(where: str, path: Path) -> str:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from exc


# ------------------------------------------------------------------------------------------------ sections


def read_section(cls: type, where: str, data: Any, base: Path | None, *, extra: tuple[str, ...] = (),
                 only: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The validated values of one config.yaml section by attribute name: the keys given (a `*File` key wins over
    its inline key), and the defaults of path settings resolved against `base`. `extra` keys are allowed and left
    to the caller; `only` limits the section to some of the class's settings."""
    typed(where, data, dict, "a mapping")
    check_keys(where, data, [*keys_of(cls, only), *extra])
    out: dict[str, Any] = {}
    for b in bound(cls):
        if only is not None and b.name not in only:
            continue
        s = b.setting
        at = f"{where}.{s.key}"
        if s.file_key and data.get(s.file_key) is not None:
            at = f"{where}.{s.file_key}"
            value: Any = read_secret_file(at, resolve_path(convert(at, data[s.file_key], str, "a file path"), base))
        elif data.get(s.key) is not None:
            value = data[s.key]
            if is_section(b.hint):
                value = b.hint(**read_section(b.hint, at, value, base))
            elif isinstance(b.hint, type) and dataclasses.is_dataclass(b.hint) and isinstance(b.default, b.hint):
                # A value object (a RetryPolicy): the keys given replace those of this setting's own default.
                typed(at, value, dict, s.what)
                check_keys(at, value, [f.name for f in dataclasses.fields(b.hint)])
                value = convert(at, {**dataclasses.asdict(b.default), **value}, b.hint, s.what)
            else:
                value = convert(at, value, b.hint, s.what)
        elif s.path and isinstance(b.default, Path) and base is not None:
            out[b.name] = resolve_path(str(b.default), base)
            continue
        else:
            continue
        if s.path and isinstance(value, str):
            value = resolve_path(value, base)
        out[b.name] = s.check(at, value) if s.check else value
    return out
