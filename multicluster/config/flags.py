"""The command-line layer: `multicluster run`'s config flags (and their MULTICLUSTER_* environment variables,
which click reads for the same options) win over the file. Which flag sets which field is declared in the schema
(Setting.flag, Setting.file_flag); this module applies them, and a test checks the `run` command against it.

A few flags do more than set their field, as the Go original's do: --db-endpoint and --sqlite-path also choose the
store, --mysql-max-idle-connections is lowered to the pool size, --mysql-max-connection-life-time takes a Go
duration, and --cert-dir must be a directory."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from multicluster.config import checks, exposure
from multicluster.config.fields import Bound, bound, convert, read_secret_file
from multicluster.config.schema import Config, LeaseConfig, ServerConfig, StoreConfig
from multicluster.errors import ConfigError

# The sections that have flags, as (Config attribute, schema class).
FLAG_SECTIONS: tuple[tuple[str, type], ...] = (("server", ServerConfig), ("store", StoreConfig),
                                               ("lease", LeaseConfig))


def flag_settings() -> Iterator[tuple[str, Bound]]:
    """Every setting with a flag, with its section's name."""
    for section, cls in FLAG_SECTIONS:
        for b in bound(cls):
            if b.setting.flag is not None:
                yield section, b


def secret_flags() -> Iterator[tuple[str, str, str, str]]:
    """(click parameter, flag, file flag, environment variable) of every secret that has a flag."""
    for _, b in flag_settings():
        s = b.setting
        if s.secret and s.flag_param and s.flag and s.file_flag and s.env:
            yield s.flag_param, s.flag, s.file_flag, s.env


def _params() -> tuple[frozenset[str], frozenset[str]]:
    params, secret = set(), set()
    for _, b in flag_settings():
        s = b.setting
        for p in (s.flag_param, s.file_flag_param):
            if p is not None:
                params.add(p)
        if s.secret and s.flag_param is not None:
            secret.add(s.flag_param)
    return frozenset(params), frozenset(secret)


PARAMS, SECRET_PARAMS = _params()


class Overrides:
    """Values of `run`'s config flags by click parameter name (`address`, `db_endpoint`, `token_file`, ...);
    None = not given. Secret values never show in the repr."""

    __slots__ = ("_values",)

    def __init__(self, **values: Any) -> None:
        unknown = sorted(set(values) - PARAMS)
        if unknown:
            raise TypeError(f"not a config flag: {', '.join(unknown)}")
        self._values = {k: v for k, v in values.items() if v is not None}

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Overrides:
        """The config flags among click's parsed parameters (ctx.params)."""
        return cls(**{k: params.get(k) for k in PARAMS})

    def get(self, param: str | None) -> Any:
        return None if param is None else self._values.get(param)

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in sorted(self._values.items()) if k not in SECRET_PARAMS)
        return f"Overrides({shown})"


def _read_flag_file(flag: str, path: Any, empty_ok: bool) -> str:
    value = read_secret_file(flag, Path(os.path.expanduser(str(path))))
    if not value and not empty_ok:
        raise ConfigError(f"{flag}: {path} is empty", hint="put the secret on the file's first line")
    return value


def _given(b: Bound, ov: Overrides) -> Any:
    """The flag's value (its file flag's content first), or None when not given."""
    s = b.setting
    path = ov.get(s.file_flag_param)
    if path is not None and s.file_flag is not None:
        return _read_flag_file(s.file_flag, path, s.empty_ok)
    value = ov.get(s.flag_param)
    return None if value == "" and not s.empty_ok else value


_GO_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_go_duration(where: str, text: str) -> float:
    """Seconds from a Go time.Duration string (what pflag's DurationVar accepts): `10s`, `1m30s`, `-1h`, `0`."""
    raw = text.strip()
    sign, body = (-1.0, raw[1:]) if raw.startswith("-") else (1.0, raw.removeprefix("+"))
    if body == "0":
        return 0.0
    parts = _GO_DURATION_PART.findall(body)
    if not body or "".join(n + u for n, u in parts) != body:
        raise ConfigError(f'{where}: "{text}" is not a duration', hint="use a Go duration such as 10s, 1m30s or 1h")
    return sign * sum(float(n) * _GO_UNITS[u] for n, u in parts)


def _db_endpoint(store: StoreConfig, flag: str, value: str) -> StoreConfig:
    # One HOST:PORT, or several (h1:p1,h2:p2,h3:p3): the nodes of a database cluster, tried in this order.
    endpoints = checks.parse_endpoints(flag, value.split(","))
    return replace(store, type="mysql", host=endpoints[0][0], port=endpoints[0][1],
                   endpoints=endpoints if len(endpoints) > 1 else ())


def _sqlite_path(store: StoreConfig, flag: str, value: str) -> StoreConfig:
    return replace(store, type="sqlite", path=Path(os.path.expanduser(value)))


def _lifetime(store: StoreConfig, flag: str, value: str) -> StoreConfig:
    return replace(store, connection_max_lifetime=max(0.0, parse_go_duration(flag, value)))


def _cert_dir(server: ServerConfig, flag: str, value: str) -> ServerConfig:
    d = Path(os.path.expanduser(value))
    if not d.is_dir():
        raise ConfigError(f"{flag}: {d} is not a directory", hint="it must hold tls.crt and tls.key")
    return replace(server, cert_dir=d)


# Flags that do more than set their field, applied after the plain ones in this order.
_SPECIAL: dict[str, Callable[[Any, str, Any], Any]] = {
    "db_endpoint": _db_endpoint,
    "sqlite_path": _sqlite_path,
    "mysql_max_connection_life_time": _lifetime,
    "cert_dir": _cert_dir,
}


def apply_overrides(cfg: Config, ov: Overrides) -> Config:
    """`cfg` with every given flag applied; a bad value raises ConfigError naming the flag."""
    sections: dict[str, Any] = {name: getattr(cfg, name) for name, _ in FLAG_SECTIONS}
    for name, b in flag_settings():
        s = b.setting
        assert s.flag is not None
        if s.flag_param in _SPECIAL or b.name == "pool_min_size":
            continue
        value = _given(b, ov)
        if value is not None:
            value = convert(s.flag, value, b.hint, s.what)
            sections[name] = replace(sections[name], **{b.name: s.check(s.flag, value) if s.check else value})
    exposure.check_scopes(sections["server"], "--admin-token")
    for name, b in flag_settings():
        special = _SPECIAL.get(b.setting.flag_param or "")
        value = _given(b, ov)
        if special is not None and value is not None and b.setting.flag is not None:
            sections[name] = special(sections[name], b.setting.flag, value)
    store: StoreConfig = sections["store"]
    idle, opened = ov.get("mysql_max_idle_connections"), ov.get("mysql_max_open_connections")
    if idle is not None or opened is not None:
        sections["store"] = replace(store, pool_min_size=checks.pool_min_size(
            "--mysql-max-idle-connections", store.pool_min_size if idle is None else idle, store.pool_size))
    return replace(cfg, **sections)
