"""What a type cannot say about a setting: ports, names, origins, endpoints, kubeconfigs, and the rules that tie
settings together (token scopes, the secure-by-default listen address). Each check names the field it is given
(`server.port`, or the flag `--address`) and says how to fix the value."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from multicluster.config.fields import suggest
from multicluster.errors import ConfigError, yaml_syntax

KIB = 1024
MIB = 1024 * KIB
MAX_SELECTOR_TERMS = 2000  # past this even a balanced SQL expression costs more planning than any query needs
SA_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"

_CLUSTER_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def port(where: str, value: int) -> int:
    if not 1 <= value <= 65535:
        raise ConfigError(f"{where}: {value} is not a port number (1-65535)")
    return value


def optional_port(where: str, value: int | None) -> int | None:
    return None if value is None else port(where, value)


def cluster_name(where: str, value: str) -> str:
    name = value.strip()
    if not name:
        raise ConfigError(f"{where}: is required and must not be empty")
    if not _CLUSTER_NAME.match(name):
        raise ConfigError(
            f'{where}: "{name}" is not a valid cluster name',
            hint="use lowercase letters, digits and '-', at most 63 characters (a DNS label)",
        )
    return name


_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_DNS_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


def dns_label(where: str, value: str) -> str:
    """A namespace or Service name."""
    if not _DNS_LABEL.fullmatch(value):
        raise ConfigError(f"{where}: {value[:100]!r} is not a DNS label",
                          hint="lower-case letters, digits and '-', at most 63 characters")
    return value


def dns_name_or_empty(where: str, value: str) -> str:
    if value and not _DNS_NAME.fullmatch(value):
        raise ConfigError(f"{where}: {value[:100]!r} is not a DNS name",
                          hint="e.g. localhost, or the host name the master's API server reaches the daemon at")
    return value


AUTH_MODES = ("token", "kubernetes")


def auth_mode(where: str, value: str) -> str:
    if value not in AUTH_MODES:
        raise ConfigError(f"{where}: {value[:64]!r} is not one of {', '.join(AUTH_MODES)}",
                          hint="kubernetes also accepts users' own tokens of the master cluster (TokenReview)")
    return value


def store_type(where: str, value: str) -> str:
    if value not in ("sqlite", "mysql"):
        raise ConfigError(
            f'{where}: "{value}" is not supported{suggest(value, ["sqlite", "mysql"])}',
            hint='use "sqlite" (embedded, default) or "mysql" (MySQL/MariaDB)',
        )
    return value


def one_of(*choices: str) -> Callable[[str, str], str]:
    """A check that the value is one of `choices`."""
    def check(where: str, value: str) -> str:
        if value not in choices:
            raise ConfigError(f'{where}: "{value}" is not one of {", ".join(choices)}{suggest(value, list(choices))}')
        return value
    return check


def blank_is_none(where: str, value: str) -> str | None:
    """An empty token is no token."""
    return value or None


def not_negative(where: str, value: float) -> float:
    if value < 0:
        raise ConfigError(f"{where}: must be 0 or more, got {value}")
    return value


def at_least_zero(where: str, value: float) -> float:
    """database/sql: a lifetime <= 0 never closes a connection for its age."""
    return max(0.0, float(value))


def names(where: str, value: str | list[str]) -> tuple[str, ...]:
    """A list of resource names (a single string is a list of one), stripped."""
    return tuple(item.strip() for item in ([value] if isinstance(value, str) else value))


def origins(where: str, value: list[str]) -> tuple[str, ...]:
    """Origins as browsers send them: scheme://host[:port], compared case-insensitively, no trailing slash."""
    out = []
    for i, origin in enumerate(value):
        norm = origin.strip().lower().rstrip("/")
        scheme, sep, rest = norm.partition("://")
        if not sep or scheme not in ("http", "https") or not rest or "/" in rest:
            raise ConfigError(
                f'{where}[{i}]: "{origin}" is not an origin',
                hint="write scheme://host[:port] exactly as the browser's Origin header, e.g. https://dash.example.com",
            )
        out.append(norm)
    return tuple(out)


def hosts(where: str, value: list[str]) -> tuple[str, ...]:
    return tuple(h.strip().lower() for h in value if h.strip())


def max_selector_terms(where: str, value: int) -> int:
    if value > MAX_SELECTOR_TERMS:
        raise ConfigError(f"{where}: {value} is more than {MAX_SELECTOR_TERMS}",
                          hint="every term is a join in the store's query; no selector needs thousands")
    return value


def page_bytes(where: str, value: int) -> int:
    if value < KIB:
        raise ConfigError(f"{where}: {value} is less than 1024",
                          hint="use a few MiB (the default is 16777216); a page always holds at least one object")
    return value


def member_bytes(where: str, value: int) -> int:
    """A byte count of the sync section: at least 1 KiB (anything smaller refuses every real object)."""
    if value < KIB:
        raise ConfigError(f"{where}: must be at least {KIB} bytes, got {value}",
                          hint="the defaults are a few MiB (docs/configuration.md)")
    return value


def parse_endpoints(where: str, items: list[Any]) -> tuple[tuple[str, int], ...]:
    """`HOST:PORT` strings (IPv6 as [addr]:port) into (host, port) pairs: at least one, no repeats."""
    out: list[tuple[str, int]] = []
    for i, item in enumerate(items):
        host, _, num = (item if isinstance(item, str) else "").strip().rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        if not host or not num.isdigit():
            raise ConfigError(f'{where}[{i}]: "{item}" is not HOST:PORT', hint="e.g. db-0.db:3306")
        pair = (host, port(f"{where}[{i}]", int(num)))
        if pair in out:
            raise ConfigError(f'{where}[{i}]: "{item}" is listed twice', hint="list each database node once")
        out.append(pair)
    if not out:
        raise ConfigError(f"{where}: no endpoint given", hint="list at least one HOST:PORT")
    return tuple(out)


def pool_min_size(where: str, value: int, pool_size: int) -> int:
    """Idle connections kept: never negative, and lowered to the pool size as database/sql lowers MaxIdleConns to
    MaxOpenConns (aiomysql refuses a minsize over maxsize)."""
    if value < 0:
        raise ConfigError(f"{where}: must be 0 or more, got {value}")
    return min(value, pool_size)


def check_kubeconfig(where: str, path: Path, context: str | None) -> None:
    """Validate a kubeconfig file offline, so a typo fails at start-up instead of as a connection error later."""
    if not path.exists():
        raise ConfigError(f"{where}: kubeconfig {path} does not exist", hint="fix configPath or create the file")
    if not path.is_file():
        raise ConfigError(f"{where}: kubeconfig {path} is not a file")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: kubeconfig {path} cannot be read: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"{where}: {path} is not a kubeconfig (YAML error{yaml_syntax(exc)})",
            hint="a kubeconfig is YAML with clusters, users and contexts, as written by `kubectl config view --raw`",
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("clusters"), list) or not data.get("contexts"):
        raise ConfigError(
            f"{where}: {path} is not a kubeconfig (it needs `clusters:` and `contexts:` lists)",
            hint="point configPath at a file written by `kubectl config view --raw` or your cloud provider",
        )
    contexts = [c.get("name") for c in data.get("contexts") or [] if isinstance(c, dict)]
    wanted = context or data.get("current-context")
    if not wanted:
        raise ConfigError(f"{where}: {path} has no current-context", hint="set `context:` for this cluster")
    if wanted not in contexts:
        raise ConfigError(
            f'{where}: context "{wanted}" not found in {path}{suggest(str(wanted), [str(n) for n in contexts])}',
            hint=f"contexts in that file: {', '.join(str(n) for n in contexts) or 'none'}",
        )


def in_cluster() -> bool:
    """Inside a pod: the service-account token is mounted and the API server's address is in the environment."""
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and Path(SA_TOKEN).exists()


_KIND = re.compile(r"^([A-Z][A-Za-z0-9]*|\*)$")
_GROUP = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*|\*)$")


def kind_parts(where: str, text: str) -> tuple[str, str]:
    """`group/Kind` (or "*") into (group, kind)."""
    text = text.strip()
    if text == "*":
        return "*", "*"
    group, _, kind = text.rpartition("/")
    if not _KIND.match(kind) or (group and not _GROUP.match(group)) or text.startswith("/"):
        raise ConfigError(
            f'{where}: "{text}" is not a kind',
            hint='write GROUP/Kind as in apiVersion without the version: "ConfigMap" (core group), '
            '"apps/Deployment", "rbac.authorization.k8s.io/ClusterRole"; "*" matches any group or kind',
        )
    return group, kind


def namespaces(where: str, value: list[str], extra: tuple[str, ...]) -> tuple[str, ...]:
    out = []
    for i, name in enumerate(item.strip() for item in value):
        if name not in extra and not _NAMESPACE.match(name):
            raise ConfigError(
                f'{where}[{i}]: "{name}" is not a namespace name',
                hint=f"use namespace names (DNS labels) or {' or '.join(repr(e) for e in extra)}",
            )
        out.append(name)
    return tuple(out)
