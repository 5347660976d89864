"""Load and validate the daemon configuration (the seed's `config.yaml` plus our additions).

This is the only module that reads configuration files and environment variables. Everything it returns is a
frozen dataclass, so the rest of the daemon can pass configuration around without defensive copies. Every bad
input raises ConfigError naming the field (`clusters[1].metadata.clusterName`) and how to fix it; the CLI turns
that into one line and exit code 2.

Format (the seed's keys are kept verbatim; everything else is optional):

    clusters:
      - metadata:
          clusterName: cluster1        # required, unique, DNS label
          configPath: ~/.kube/c1       # kubeconfig; relative paths are relative to this file
          insecure: false              # skip TLS verification (works even when the kubeconfig has CA data)
          isMaster: true               # at most one; the delivery controller runs against it
          context: ctx                 # optional kubeconfig context (default: current-context)
          resources: [{rType: apps/v1/deployments}]   # legacy seed form: watch only these
          include: [pods]              # per-cluster include/exclude, same spellings as below
          exclude: [events]
    resources: {include: [], exclude: []}   # empty include = every listable+watchable type
    store: {type: sqlite, path: multicluster.db}   # or {type: mysql, host, port, user, password|passwordFile, database}
    server: {bind: 127.0.0.1, port: 31888, token|tokenFile: ..., adminToken|adminTokenFile: ...,
             allowedOrigins: [], allowedHosts: [], insecureAllowUnauthenticated: false, certDir: ...,
             maxPageBytes: 16777216, maxCount: 100000, maxSelectorTerms: 100, keepaliveSeconds: 75,
             headerTimeoutSeconds: 10, bodyTimeoutSeconds: 30}
    sync: {pageSize: 500, resyncSeconds: 600, watchTimeoutSeconds: 300, dropManagedFields: true, storeSecrets: false}
    delivery: {allowAdopt: false, policy: [{fromNamespaces: [team-a], kinds: [apps/Deployment],
                                            toNamespaces: ["<same>"], clusterScoped: false}]}
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import yaml

from multicluster.errors import ConfigError, yaml_syntax

DEFAULT_PORT = 31888
DEFAULT_BIND = "127.0.0.1"

# The seed's exclusions, minus `policy` and `apiextensions.k8s.io`: PodDisruptionBudgets and CRDs are worth
# querying across clusters. These groups hold only virtual or review resources that cannot be listed or watched.
DEFAULT_EXCLUDE: tuple[str, ...] = (
    "metrics.k8s.io",
    "authentication.k8s.io",
    "authorization.k8s.io",
    "bindings",
    "componentstatuses",
)

_CLUSTER_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    name: str
    config_path: Path | None
    insecure: bool = False
    is_master: bool = False
    context: str | None = None
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    # False for clusters that came from POST /v1/join: their kubeconfig is read only by the allow-list parser
    # (multicluster.kubeconfig), never by kubernetes_asyncio's loader, which can run commands and read files.
    trusted: bool = True


@dataclass(frozen=True, slots=True)
class StoreConfig:
    type: Literal["sqlite", "mysql"] = "sqlite"
    path: Path = Path("multicluster.db")
    host: str = "127.0.0.1"
    port: int = 3306
    # Several nodes of one database cluster (Galera, InnoDB Cluster): the store uses the first that answers and
    # is synced, and moves to the next when that node dies or leaves the primary component. Empty = (host, port).
    endpoints: tuple[tuple[str, int], ...] = ()
    user: str = "root"
    password: str = field(default="", repr=False)
    database: str = "resources"
    pool_size: int = 4  # connections open at most (--mysql-max-open-connections)
    # Connections opened at start and kept while idle (aiomysql's minsize; --mysql-max-idle-connections).
    pool_min_size: int = 0
    # Seconds a pooled connection may sit unused before it is reopened (aiomysql's pool_recycle;
    # --mysql-max-connection-life-time); 0 = never. Servers close idle connections after wait_timeout.
    connection_max_lifetime: float = 3600.0
    writers: int = 2  # concurrent write batches (MySQL only); keys are sharded so each is written in order
    batch_size: int = 500
    flush_interval: float = 0.05
    # Change log entries kept per cluster (the history a watch can resume from; an older position gets 410 Gone).
    change_retention: int = 10_000


@dataclass(frozen=True, slots=True)
class ServerConfig:
    bind: str = DEFAULT_BIND
    port: int = DEFAULT_PORT
    token: str | None = field(default=None, repr=False)  # read scope: every route but the health checks
    cert_dir: Path | None = None
    admin_token: str | None = field(default=None, repr=False)  # when set, the only token join/unjoin accept
    allowed_origins: tuple[str, ...] = ()  # browser origins allowed to call the API (scheme://host[:port])
    allowed_hosts: tuple[str, ...] = ()  # extra names accepted in the Host header ("*" = no check, unsafe)
    insecure_allow_unauthenticated: bool = False  # let a non-loopback bind run without a token
    health_port: int | None = None  # --HealthPort: /healthz and /readyz also served alone on this port
    # Bounds on what one request may cost. A page ends early at max_page_bytes (a continue token brings the
    # rest); count=true counts at most max_count rows; every selector term, `in` value, cluster or namespace
    # becomes a join or a parameter, so each is limited to max_selector_terms.
    max_page_bytes: int = 16 * 1024 * 1024
    max_count: int = 100_000
    max_selector_terms: int = 100
    # A slow client (a slowloris sending its headers a byte at a time) holds a socket and a task for as long
    # as the server lets it: idle keep-alive connections, request heads and request bodies each have a deadline.
    keepalive_seconds: float = 75.0
    header_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 30.0


KIB = 1024
MIB = 1024 * KIB


@dataclass(frozen=True, slots=True)
class SyncConfig:
    page_size: int = 500
    resync_seconds: float = 600.0
    watch_timeout_seconds: int = 300
    drop_managed_fields: bool = True
    store_secrets: bool = False
    queue_size: int = 2_000  # pending writes; bounds memory during initial syncs (full → watches pause)
    rediscover_seconds: float = 60.0  # how often discovery is re-read (new CRDs start syncing)
    # What one member cluster may make the daemon hold or open. A member is another team's API server (or an
    # attacker's, once joined): none of these may grow with what it sends.
    max_list_page_bytes: int = 32 * MIB  # any response body; a list page over it is asked again in smaller pages
    max_watch_line_bytes: int = 16 * MIB  # one watch event (etcd keeps objects under ~1.5 MiB)
    max_object_bytes: int = 4 * MIB  # larger objects are skipped and counted (MySQL's max_allowed_packet: 16+ MiB)
    max_types_per_cluster: int = 500  # informers (and metric label sets) per cluster
    max_connections_per_cluster: int = 32  # concurrent non-watch requests; each watch holds one more
    list_timeout_seconds: float = 120.0  # one list page, connection to last byte (a dribbling body ends here)


@dataclass(frozen=True, slots=True)
class LeaseConfig:
    enabled: bool = False
    name: str = "multicluster-leader"
    namespace: str = "default"


@dataclass(frozen=True, slots=True)
class KindPattern:
    """`group/Kind` of delivered objects; "*" in either part matches any (the core group is "")."""

    group: str
    kind: str

    def matches(self, group: str, kind: str) -> bool:
        return self.group in ("*", group) and self.kind in ("*", kind)

    def __str__(self) -> str:
        return self.kind if not self.group else f"{self.group}/{self.kind}"


SAME_NAMESPACE = "<same>"  # toNamespaces: the MultiClusterResource's own namespace


@dataclass(frozen=True, slots=True)
class PolicyRule:
    """One `delivery.policy` entry: MCRs in `from_namespaces` may deliver `kinds` into `to_namespaces`."""

    where: str  # delivery.policy[i], for messages
    from_namespaces: tuple[str, ...] = ("*",)
    kinds: tuple[KindPattern, ...] | None = None  # None: every kind but the default policy's restricted ones
    to_namespaces: tuple[str, ...] = (SAME_NAMESPACE,)
    cluster_scoped: bool = False


@dataclass(frozen=True, slots=True)
class DeliveryConfig:
    # Empty: the default policy (namespaced, unrestricted kinds, into the MCR's own namespace only).
    policy: tuple[PolicyRule, ...] = ()
    allow_adopt: bool = False  # MCRs may take over existing objects (annotation multicluster.practice.com/adopt)


@dataclass(frozen=True, slots=True)
class Config:
    clusters: tuple[ClusterConfig, ...]
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE
    store: StoreConfig = StoreConfig()
    server: ServerConfig = ServerConfig()
    sync: SyncConfig = SyncConfig()
    lease: LeaseConfig = LeaseConfig()
    delivery: DeliveryConfig = DeliveryConfig()
    source: Path | None = None

    @property
    def master(self) -> ClusterConfig | None:
        return next((c for c in self.clusters if c.is_master), None)

    def cluster(self, name: str) -> ClusterConfig | None:
        return next((c for c in self.clusters if c.name == name), None)


# --------------------------------------------------------------------------------------------------- helpers


def _suggest(key: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""


def _check_keys(where: str, data: Mapping[str, Any], allowed: list[str]) -> None:
    for key in data:
        if key not in allowed:
            raise ConfigError(
                f'{where}: unknown key "{key}"{_suggest(str(key), allowed)}',
                hint=f"allowed keys here: {', '.join(allowed)}",
            )


def _typed(where: str, value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    # bool is a subclass of int: reject `port: true` explicitly.
    if isinstance(value, bool) and kind in (int, float, (int, float)):
        raise ConfigError(f"{where}: expected {what}, got a boolean ({value!r})")
    if not isinstance(value, kind):
        raise ConfigError(f"{where}: expected {what}, got {type(value).__name__} ({value!r})")
    return value


def _opt(where: str, data: Mapping[str, Any], key: str, kind: type | tuple[type, ...], what: str, default: Any) -> Any:
    if key not in data or data[key] is None:
        return default
    return _typed(f"{where}.{key}", data[key], kind, what)


def _positive(where: str, value: float) -> float:
    if value <= 0:
        raise ConfigError(f"{where}: must be greater than 0, got {value}")
    return value


def _str_list(where: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    _typed(where, value, list, "a list of resource names")
    out = []
    for i, item in enumerate(value):
        out.append(_typed(f"{where}[{i}]", item, str, "a string").strip())
    return tuple(out)


def _in_cluster() -> bool:
    """Inside a pod: the service-account token is mounted and the API server's address is in the environment."""
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and Path(SA_TOKEN).exists()


SA_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"


def _resolve_path(raw: str, base: Path) -> Path:
    path = Path(os.path.expandvars(os.path.expanduser(raw)))
    return path if path.is_absolute() else (base / path)


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
    names = [c.get("name") for c in data.get("contexts") or [] if isinstance(c, dict)]
    wanted = context or data.get("current-context")
    if not wanted:
        raise ConfigError(f"{where}: {path} has no current-context", hint="set `context:` for this cluster")
    if wanted not in names:
        raise ConfigError(
            f'{where}: context "{wanted}" not found in {path}{_suggest(str(wanted), [str(n) for n in names])}',
            hint=f"contexts in that file: {', '.join(str(n) for n in names) or 'none'}",
        )


# --------------------------------------------------------------------------------------------------- sections


def _parse_cluster(i: int, item: Any, base: Path, check_files: bool) -> ClusterConfig:
    where = f"clusters[{i}]"
    _typed(where, item, dict, "a mapping with a `metadata:` key")
    _check_keys(where, item, ["metadata"])
    if "metadata" not in item:
        raise ConfigError(
            f"{where}: missing `metadata:`", hint="each cluster is `- metadata: {clusterName: ..., configPath: ...}`"
        )
    meta = item["metadata"]
    where = f"{where}.metadata"
    _typed(where, meta, dict, "a mapping")
    allowed = ["clusterName", "insecure", "configPath", "isMaster", "context", "resources", "include", "exclude"]
    _check_keys(where, meta, allowed)
    name = meta.get("clusterName")
    if name is None or (isinstance(name, str) and not name.strip()):
        raise ConfigError(f"{where}.clusterName: is required and must not be empty")
    name = _typed(f"{where}.clusterName", name, str, "a string").strip()
    if not _CLUSTER_NAME.match(name):
        raise ConfigError(
            f'{where}.clusterName: "{name}" is not a valid cluster name',
            hint="use lowercase letters, digits and '-', at most 63 characters (a DNS label)",
        )
    insecure = _opt(where, meta, "insecure", bool, "true or false", False)
    is_master = _opt(where, meta, "isMaster", bool, "true or false", False)
    context = _opt(where, meta, "context", str, "a context name", None)
    raw_path = _opt(where, meta, "configPath", str, "a file path", None)
    config_path = _resolve_path(raw_path, base) if raw_path else None
    if config_path is None and not _in_cluster():
        raise ConfigError(
            f"{where}.configPath: is required outside a Kubernetes pod",
            hint="set it to the cluster's kubeconfig file; inside a pod, an entry without configPath uses the "
            "pod's service account (in-cluster mode)",
        )
    if check_files and config_path is not None:
        check_kubeconfig(f"{where}.configPath", config_path, context)
    include = list(_str_list(f"{where}.include", meta.get("include")))
    legacy = meta.get("resources")
    if legacy is not None:
        _typed(f"{where}.resources", legacy, list, "a list of {rType: group/version/resource}")
        for j, entry in enumerate(legacy):
            ew = f"{where}.resources[{j}]"
            _typed(ew, entry, dict, "a mapping like {rType: apps/v1/deployments}")
            _check_keys(ew, entry, ["rType"])
            include.append(_typed(f"{ew}.rType", entry.get("rType"), str, "a resource like apps/v1/deployments"))
    exclude = _str_list(f"{where}.exclude", meta.get("exclude"))
    return ClusterConfig(name, config_path, insecure, is_master, context, tuple(include), exclude)


def _parse_store(data: Any, base: Path) -> StoreConfig:
    where = "store"
    if data is None:
        return StoreConfig(path=base / "multicluster.db")
    _typed(where, data, dict, "a mapping")
    allowed = [
        "type",
        "path",
        "host",
        "port",
        "endpoints",
        "user",
        "password",
        "passwordFile",
        "database",
        "poolSize",
        "poolMinSize",
        "connectionMaxLifetime",
        "batchSize",
        "flushInterval",
        "changeRetention",
        "writers",
    ]
    _check_keys(where, data, allowed)
    kind = _opt(where, data, "type", str, '"sqlite" or "mysql"', "sqlite")
    if kind not in ("sqlite", "mysql"):
        raise ConfigError(
            f'store.type: "{kind}" is not supported{_suggest(kind, ["sqlite", "mysql"])}',
            hint='use "sqlite" (embedded, default) or "mysql" (MySQL/MariaDB)',
        )
    password = _opt(where, data, "password", str, "a string", "")
    password_file = _opt(where, data, "passwordFile", str, "a file path", None)
    if password_file:
        password = _read_secret_file("store.passwordFile", _resolve_path(password_file, base))
    pool_size = int(_positive("store.poolSize", _opt(where, data, "poolSize", int, "an integer", 4)))
    host = _opt(where, data, "host", str, "a host name", "127.0.0.1")
    port = int(_positive("store.port", _opt(where, data, "port", int, "a port number", 3306)))
    endpoints: tuple[tuple[str, int], ...] = ()
    raw_endpoints = data.get("endpoints")
    if raw_endpoints is not None:
        if "host" in data or "port" in data:
            raise ConfigError("store: give either host/port or endpoints, not both",
                              hint="list every node in store.endpoints, e.g. [db-0:3306, db-1:3306]")
        endpoints = parse_endpoints("store.endpoints", _typed("store.endpoints", raw_endpoints, list,
                                                              'a list of "HOST:PORT" strings'))
        host, port = endpoints[0]
    return StoreConfig(
        type=kind,
        path=_resolve_path(_opt(where, data, "path", str, "a file path", "multicluster.db"), base),
        host=host,
        port=port,
        endpoints=endpoints,
        user=_opt(where, data, "user", str, "a user name", "root"),
        password=password,
        database=_opt(where, data, "database", str, "a database name", "resources"),
        pool_size=pool_size,
        pool_min_size=_pool_min_size("store.poolMinSize", _opt(where, data, "poolMinSize", int, "an integer", 0),
                                     pool_size),
        connection_max_lifetime=max(0.0, float(_opt(where, data, "connectionMaxLifetime", (int, float),
                                                    "seconds (0 = never)", 3600.0))),
        writers=int(_positive("store.writers", _opt(where, data, "writers", int, "an integer", 2))),
        batch_size=int(_positive("store.batchSize", _opt(where, data, "batchSize", int, "an integer", 500))),
        flush_interval=float(
            _positive("store.flushInterval", _opt(where, data, "flushInterval", (int, float), "seconds", 0.05))
        ),
        change_retention=int(_positive("store.changeRetention",
                                       _opt(where, data, "changeRetention", int, "an integer", 10_000))),
    )


def parse_endpoints(where: str, items: list[Any]) -> tuple[tuple[str, int], ...]:
    """`HOST:PORT` strings (IPv6 as [addr]:port) into (host, port) pairs: at least one, no repeats."""
    out: list[tuple[str, int]] = []
    for i, item in enumerate(items):
        host, _, port = (item if isinstance(item, str) else "").strip().rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        if not host or not port.isdigit():
            raise ConfigError(f'{where}[{i}]: "{item}" is not HOST:PORT', hint="e.g. db-0.db:3306")
        pair = (host, _port(f"{where}[{i}]", int(port)))
        if pair in out:
            raise ConfigError(f'{where}[{i}]: "{item}" is listed twice', hint="list each database node once")
        out.append(pair)
    if not out:
        raise ConfigError(f"{where}: no endpoint given", hint="list at least one HOST:PORT")
    return tuple(out)


def _pool_min_size(where: str, value: int, pool_size: int) -> int:
    """Idle connections kept: never negative, and lowered to the pool size as database/sql lowers MaxIdleConns to
    MaxOpenConns (aiomysql refuses a minsize over maxsize)."""
    if value < 0:
        raise ConfigError(f"{where}: must be 0 or more, got {value}")
    return min(value, pool_size)


def _read_secret_file(where: str, path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read {path}: {exc.strerror or exc}") from exc


def _parse_server(data: Any, base: Path) -> ServerConfig:
    if data is None:
        return ServerConfig()
    where = "server"
    _typed(where, data, dict, "a mapping")
    _check_keys(
        where,
        data,
        [
            "bind",
            "port",
            "token",
            "tokenFile",
            "adminToken",
            "adminTokenFile",
            "allowedOrigins",
            "allowedHosts",
            "insecureAllowUnauthenticated",
            "certDir",
            "maxPageBytes",
            "maxCount",
            "maxSelectorTerms",
            "keepaliveSeconds",
            "headerTimeoutSeconds",
            "bodyTimeoutSeconds",
        ],
    )
    token = _opt(where, data, "token", str, "a string", None)
    token_file = _opt(where, data, "tokenFile", str, "a file path", None)
    if token_file:
        token = _read_secret_file("server.tokenFile", _resolve_path(token_file, base))
    admin = _opt(where, data, "adminToken", str, "a string", None)
    admin_file = _opt(where, data, "adminTokenFile", str, "a file path", None)
    if admin_file:
        admin = _read_secret_file("server.adminTokenFile", _resolve_path(admin_file, base))
    cert_dir = _opt(where, data, "certDir", str, "a directory", None)
    server = ServerConfig(
        bind=_opt(where, data, "bind", str, "an address", DEFAULT_BIND),
        port=_port("server.port", _opt(where, data, "port", int, "a port number", DEFAULT_PORT)),
        token=token or None,
        cert_dir=_resolve_path(cert_dir, base) if cert_dir else None,
        admin_token=admin or None,
        allowed_origins=_origins("server.allowedOrigins", data.get("allowedOrigins")),
        allowed_hosts=_hosts("server.allowedHosts", data.get("allowedHosts")),
        insecure_allow_unauthenticated=_opt(where, data, "insecureAllowUnauthenticated", bool, "true or false",
                                            False),
    )
    server = replace(server, **_server_limits(data))
    check_scopes(server, "server.adminToken")
    return server


MAX_SELECTOR_TERMS = 2000  # past this even a balanced SQL expression costs more planning than any query needs


def _server_limits(data: Mapping[str, Any]) -> dict[str, Any]:
    """server.maxPageBytes, maxCount, maxSelectorTerms and the three timeouts, validated."""
    where = "server"
    d = ServerConfig()
    terms = int(_positive("server.maxSelectorTerms", _opt(where, data, "maxSelectorTerms", int, "an integer",
                                                          d.max_selector_terms)))
    if terms > MAX_SELECTOR_TERMS:
        raise ConfigError(f"server.maxSelectorTerms: {terms} is more than {MAX_SELECTOR_TERMS}",
                          hint="every term is a join in the store's query; no selector needs thousands")
    page = int(_positive("server.maxPageBytes", _opt(where, data, "maxPageBytes", int, "a number of bytes",
                                                     d.max_page_bytes)))
    if page < 1024:
        raise ConfigError(f"server.maxPageBytes: {page} is less than 1024",
                          hint="use a few MiB (the default is 16777216); a page always holds at least one object")
    return {
        "max_page_bytes": page,
        "max_count": int(_positive("server.maxCount", _opt(where, data, "maxCount", int, "an integer",
                                                           d.max_count))),
        "max_selector_terms": terms,
        "keepalive_seconds": float(_positive("server.keepaliveSeconds", _opt(
            where, data, "keepaliveSeconds", (int, float), "seconds", d.keepalive_seconds))),
        "header_timeout_seconds": float(_positive("server.headerTimeoutSeconds", _opt(
            where, data, "headerTimeoutSeconds", (int, float), "seconds", d.header_timeout_seconds))),
        "body_timeout_seconds": float(_positive("server.bodyTimeoutSeconds", _opt(
            where, data, "bodyTimeoutSeconds", (int, float), "seconds", d.body_timeout_seconds))),
    }


def _names(where: str, value: Any, what: str) -> list[str]:
    if value is None:
        return []
    _typed(where, value, list, f"a list of {what}")
    return [_typed(f"{where}[{i}]", item, str, what).strip() for i, item in enumerate(value)]


def _origins(where: str, value: Any) -> tuple[str, ...]:
    """Origins as browsers send them: scheme://host[:port], compared case-insensitively, no trailing slash."""
    out = []
    for i, origin in enumerate(_names(where, value, "origins like https://dashboard.example.com")):
        norm = origin.lower().rstrip("/")
        scheme, sep, rest = norm.partition("://")
        if not sep or scheme not in ("http", "https") or not rest or "/" in rest:
            raise ConfigError(
                f'{where}[{i}]: "{origin}" is not an origin',
                hint="write scheme://host[:port] exactly as the browser's Origin header, e.g. https://dash.example.com",
            )
        out.append(norm)
    return tuple(out)


def _hosts(where: str, value: Any) -> tuple[str, ...]:
    return tuple(h.lower() for h in _names(where, value, 'host names (or "*" to accept any, unsafe)') if h)


def check_scopes(server: ServerConfig, where: str) -> None:
    """An admin token equal to the read token would give every reader the admin scope."""
    if server.admin_token and server.admin_token == server.token:
        raise ConfigError(
            f"{where}: the admin token is the same as the read token",
            hint="use a different, secret value for the admin token (or leave it unset)",
        )


def is_loopback(bind: str) -> bool:
    if bind.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(bind.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(server: ServerConfig) -> list[str]:
    """The secure-by-default rule for the listen address. Raises ConfigError when a non-loopback bind has no read
    token (anyone who reaches the port could read every mirrored object and join or unjoin clusters); returns the
    warnings to log at start otherwise."""
    if is_loopback(server.bind):
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            # In a pod, loopback means no Service reaches the API: what the Go original's deploy.yaml args give
            # (it listened on all addresses, port 8888, without authentication).
            return [
                f"the API listens on {server.bind}:{server.port} only, so nothing outside this pod reaches it; "
                "to serve a Service pass --bind 0.0.0.0 with --token-file (and --address PORT to match its "
                "targetPort), as manifests/deploy.yaml does"
            ]
        return []
    warnings = []
    if not server.token:
        if not server.insecure_allow_unauthenticated:
            raise ConfigError(
                f"refusing to serve the API on {server.bind} without a token: set server.token (or "
                "--token-file/MULTICLUSTER_TOKEN), bind to loopback with --bind 127.0.0.1, or pass "
                "--insecure-allow-unauthenticated to accept an open API"
            )
        warnings.append(
            f"the API on {server.bind} runs without authentication (--insecure-allow-unauthenticated): anyone "
            "who reaches the port can read every mirrored object and join or unjoin clusters; set server.token"
        )
    if server.cert_dir is None:
        warnings.append(
            f"the API on {server.bind} is plain HTTP: tokens travel in clear; serve HTTPS with --cert-dir "
            "(tls.crt, tls.key)"
        )
    return warnings


def _port(where: str, value: int) -> int:
    if not 1 <= value <= 65535:
        raise ConfigError(f"{where}: {value} is not a port number (1-65535)")
    return value


def _parse_sync(data: Any) -> SyncConfig:
    if data is None:
        return SyncConfig()
    where = "sync"
    _typed(where, data, dict, "a mapping")
    _check_keys(
        where,
        data,
        [
            "pageSize",
            "resyncSeconds",
            "watchTimeoutSeconds",
            "dropManagedFields",
            "storeSecrets",
            "queueSize",
            "rediscoverSeconds",
            "maxListPageBytes",
            "maxWatchLineBytes",
            "maxObjectBytes",
            "maxTypesPerCluster",
            "maxConnectionsPerCluster",
            "listTimeoutSeconds",
        ],
    )
    d = SyncConfig()
    max_page = _bytes_opt(data, "maxListPageBytes", d.max_list_page_bytes)
    max_object = _bytes_opt(data, "maxObjectBytes", d.max_object_bytes)
    if max_object > max_page:
        raise ConfigError(
            f"sync.maxObjectBytes ({max_object}) is larger than sync.maxListPageBytes ({max_page}): an object "
            "that may be stored could never be listed",
            hint="raise sync.maxListPageBytes or lower sync.maxObjectBytes",
        )
    return SyncConfig(
        page_size=int(_positive("sync.pageSize", _opt(where, data, "pageSize", int, "an integer", 500))),
        resync_seconds=float(_opt(where, data, "resyncSeconds", (int, float), "seconds (0 = never)", 600.0)),
        watch_timeout_seconds=int(
            _positive("sync.watchTimeoutSeconds", _opt(where, data, "watchTimeoutSeconds", int, "seconds", 300))
        ),
        drop_managed_fields=_opt(where, data, "dropManagedFields", bool, "true or false", True),
        store_secrets=_opt(where, data, "storeSecrets", bool, "true or false", False),
        queue_size=int(_positive("sync.queueSize", _opt(where, data, "queueSize", int, "an integer", 2_000))),
        rediscover_seconds=float(
            _positive("sync.rediscoverSeconds", _opt(where, data, "rediscoverSeconds", (int, float), "seconds", 60.0))
        ),
        max_list_page_bytes=max_page,
        max_watch_line_bytes=_bytes_opt(data, "maxWatchLineBytes", d.max_watch_line_bytes),
        max_object_bytes=max_object,
        max_types_per_cluster=int(_positive("sync.maxTypesPerCluster", _opt(
            where, data, "maxTypesPerCluster", int, "an integer", d.max_types_per_cluster))),
        max_connections_per_cluster=int(_positive("sync.maxConnectionsPerCluster", _opt(
            where, data, "maxConnectionsPerCluster", int, "an integer", d.max_connections_per_cluster))),
        list_timeout_seconds=float(_positive("sync.listTimeoutSeconds", _opt(
            where, data, "listTimeoutSeconds", (int, float), "seconds", d.list_timeout_seconds))),
    )


def _bytes_opt(data: Mapping[str, Any], key: str, default: int) -> int:
    """A byte count of the sync section: at least 1 KiB (anything smaller refuses every real object)."""
    value = int(_opt("sync", data, key, int, "a number of bytes", default))
    if value < KIB:
        raise ConfigError(f"sync.{key}: must be at least {KIB} bytes, got {value}",
                          hint=f"the default is {default} ({default // MIB} MiB)")
    return value


def _parse_lease(data: Any) -> LeaseConfig:
    if data is None:
        return LeaseConfig()
    _typed("lease", data, dict, "a mapping")
    _check_keys("lease", data, ["enabled", "name", "namespace"])
    return LeaseConfig(
        enabled=_opt("lease", data, "enabled", bool, "true or false", False),
        name=_opt("lease", data, "name", str, "a name", "multicluster-leader"),
        namespace=_opt("lease", data, "namespace", str, "a namespace", "default"),
    )


_KIND = re.compile(r"^([A-Z][A-Za-z0-9]*|\*)$")
_GROUP = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*|\*)$")
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def _kind_pattern(where: str, value: Any) -> KindPattern:
    text = _typed(where, value, str, 'a kind like "ConfigMap", "apps/Deployment", "apps/*" or "*"').strip()
    if text == "*":
        return KindPattern("*", "*")
    group, _, kind = text.rpartition("/")
    if not _KIND.match(kind) or (group and not _GROUP.match(group)) or text.startswith("/"):
        raise ConfigError(
            f'{where}: "{text}" is not a kind',
            hint='write GROUP/Kind as in apiVersion without the version: "ConfigMap" (core group), '
            '"apps/Deployment", "rbac.authorization.k8s.io/ClusterRole"; "*" matches any group or kind',
        )
    return KindPattern(group, kind)


def _namespace_list(where: str, value: Any, extra: tuple[str, ...]) -> tuple[str, ...]:
    out = []
    for i, name in enumerate(_names(where, value, "namespace names")):
        if name not in extra and not _NAMESPACE.match(name):
            raise ConfigError(
                f'{where}[{i}]: "{name}" is not a namespace name',
                hint=f"use namespace names (DNS labels) or {' or '.join(repr(e) for e in extra)}",
            )
        out.append(name)
    return tuple(out)


def _parse_rule(i: int, data: Any) -> PolicyRule:
    where = f"delivery.policy[{i}]"
    _typed(where, data, dict, "a mapping with fromNamespaces, kinds, toNamespaces, clusterScoped")
    _check_keys(where, data, ["fromNamespaces", "kinds", "toNamespaces", "clusterScoped"])
    rule = PolicyRule(where)
    if data.get("fromNamespaces") is not None:
        rule = replace(rule, from_namespaces=_namespace_list(f"{where}.fromNamespaces", data["fromNamespaces"],
                                                             ("*",)))
    if data.get("kinds") is not None:
        kinds = _typed(f"{where}.kinds", data["kinds"], list, "a list of kinds")
        rule = replace(rule, kinds=tuple(_kind_pattern(f"{where}.kinds[{j}]", k) for j, k in enumerate(kinds)))
    if data.get("toNamespaces") is not None:
        rule = replace(rule, to_namespaces=_namespace_list(f"{where}.toNamespaces", data["toNamespaces"],
                                                           (SAME_NAMESPACE, "*")))
    return replace(rule, cluster_scoped=_opt(where, data, "clusterScoped", bool, "true or false", False))


def _parse_delivery(data: Any) -> DeliveryConfig:
    if data is None:
        return DeliveryConfig()
    _typed("delivery", data, dict, "a mapping")
    _check_keys("delivery", data, ["policy", "allowAdopt"])
    rules = data.get("policy")
    if rules is not None:
        _typed("delivery.policy", rules, list, "a list of rules ({} is the default policy's rule)")
    return DeliveryConfig(
        policy=tuple(_parse_rule(i, r) for i, r in enumerate(rules or [])),
        allow_adopt=_opt("delivery", data, "allowAdopt", bool, "true or false", False),
    )


def parse_config(data: Any, base: Path, *, source: Path | None = None, check_files: bool = True) -> Config:
    """Validate an already-parsed YAML document. `base` anchors relative paths (the config file's directory)."""
    if data is None:
        raise ConfigError("the configuration is empty", hint="it needs at least `clusters:` with one cluster")
    _typed("top level", data, dict, "a mapping with a `clusters:` key")
    _check_keys("top level", data, ["clusters", "resources", "store", "server", "sync", "lease", "delivery"])
    clusters_raw = data.get("clusters")
    if clusters_raw is None:
        raise ConfigError("clusters: is required", hint="list at least one cluster: `clusters: [{metadata: {...}}]`")
    _typed("clusters", clusters_raw, list, "a list")
    if not clusters_raw:
        raise ConfigError("clusters: the list is empty", hint="add at least one cluster")
    clusters = [_parse_cluster(i, item, base, check_files) for i, item in enumerate(clusters_raw)]
    seen: dict[str, int] = {}
    for i, c in enumerate(clusters):
        if c.name in seen:
            raise ConfigError(
                f'clusters[{i}].metadata.clusterName: "{c.name}" is used twice (also clusters[{seen[c.name]}])',
                hint="cluster names must be unique",
            )
        seen[c.name] = i
    masters = [c.name for c in clusters if c.is_master]
    if len(masters) > 1:
        raise ConfigError(
            f"clusters: more than one cluster has isMaster: true ({', '.join(masters)})",
            hint="mark exactly one cluster as master (or none for a query-only daemon)",
        )
    res = data.get("resources")
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE
    if res is not None:
        _typed("resources", res, dict, "a mapping with include/exclude lists")
        _check_keys("resources", res, ["include", "exclude"])
        include = _str_list("resources.include", res.get("include"))
        exclude = DEFAULT_EXCLUDE + _str_list("resources.exclude", res.get("exclude"))
    return Config(
        clusters=tuple(clusters),
        include=include,
        exclude=exclude,
        store=_parse_store(data.get("store"), base),
        server=_parse_server(data.get("server"), base),
        sync=_parse_sync(data.get("sync")),
        lease=_parse_lease(data.get("lease")),
        delivery=_parse_delivery(data.get("delivery")),
        source=source,
    )


def load_config(path: str | Path, *, check_files: bool = True) -> Config:
    """Read and validate a config file."""
    p = Path(os.path.expanduser(str(path)))
    if not p.exists():
        raise ConfigError(f"config file {p} does not exist", hint="pass --config PATH (see config/config.yaml)")
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {p} cannot be read: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {p}: YAML syntax error{yaml_syntax(exc)}") from exc
    return parse_config(data, p.resolve().parent, source=p.resolve(), check_files=check_files)


@dataclass(frozen=True, slots=True)
class Overrides:
    """Command-line/environment values that win over the file (the seed daemon's flags)."""

    port: int | None = None
    bind: str | None = None
    token: str | None = field(default=None, repr=False)
    db_endpoint: str | None = None
    db_user: str | None = None
    db_password: str | None = field(default=None, repr=False)
    db_database: str | None = None
    sqlite_path: str | None = None
    store_type: str | None = None
    lease_mode: bool | None = None
    lease_name: str | None = None
    lease_namespace: str | None = None
    cert_dir: str | None = None
    admin_token: str | None = field(default=None, repr=False)
    insecure_allow_unauthenticated: bool | None = None
    health_port: int | None = None
    db_max_idle: int | None = None  # the Go original's MySQL pool flags
    db_max_open: int | None = None
    db_max_lifetime: str | None = None  # a Go duration: 10s, 1m30s, 250ms, 0


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


def apply_overrides(cfg: Config, ov: Overrides) -> Config:
    server, store, lease = cfg.server, cfg.store, cfg.lease
    if ov.port is not None:
        server = replace(server, port=_port("--address", ov.port))
    if ov.bind:
        server = replace(server, bind=ov.bind)
    if ov.token:
        server = replace(server, token=ov.token)
    if ov.admin_token:
        server = replace(server, admin_token=ov.admin_token)
    if ov.insecure_allow_unauthenticated is not None:
        server = replace(server, insecure_allow_unauthenticated=ov.insecure_allow_unauthenticated)
    check_scopes(server, "--admin-token")
    if ov.cert_dir:
        d = Path(os.path.expanduser(ov.cert_dir))
        if not d.is_dir():
            raise ConfigError(f"--cert-dir: {d} is not a directory", hint="it must hold tls.crt and tls.key")
        server = replace(server, cert_dir=d)
    if ov.store_type:
        if ov.store_type not in ("sqlite", "mysql"):
            raise ConfigError(f'--store: "{ov.store_type}" is not supported', hint='use "sqlite" or "mysql"')
        store = replace(store, type=ov.store_type)  # type: ignore[arg-type]
    if ov.db_endpoint:
        # One HOST:PORT, or several (h1:p1,h2:p2,h3:p3): the nodes of a database cluster, tried in this order.
        endpoints = parse_endpoints("--db-endpoint", ov.db_endpoint.split(","))
        store = replace(store, type="mysql", host=endpoints[0][0], port=endpoints[0][1],
                        endpoints=endpoints if len(endpoints) > 1 else ())
    if ov.db_user:
        store = replace(store, user=ov.db_user)
    if ov.db_password is not None:
        store = replace(store, password=ov.db_password)
    if ov.db_database:
        store = replace(store, database=ov.db_database)
    if ov.sqlite_path:
        store = replace(store, type="sqlite", path=Path(os.path.expanduser(ov.sqlite_path)))
    if ov.db_max_open is not None:
        store = replace(store, pool_size=int(_positive("--mysql-max-open-connections", ov.db_max_open)))
    if ov.db_max_idle is not None or ov.db_max_open is not None:
        idle = store.pool_min_size if ov.db_max_idle is None else ov.db_max_idle
        store = replace(store, pool_min_size=_pool_min_size("--mysql-max-idle-connections", idle, store.pool_size))
    if ov.db_max_lifetime is not None:
        # database/sql: a lifetime <= 0 never closes a connection for its age.
        lifetime = parse_go_duration("--mysql-max-connection-life-time", ov.db_max_lifetime)
        store = replace(store, connection_max_lifetime=max(0.0, lifetime))
    if ov.health_port is not None:
        server = replace(server, health_port=_port("--HealthPort", ov.health_port))
    if ov.lease_mode is not None:
        lease = replace(lease, enabled=ov.lease_mode)
    if ov.lease_name:
        lease = replace(lease, name=ov.lease_name)
    if ov.lease_namespace:
        lease = replace(lease, namespace=ov.lease_namespace)
    return replace(cfg, server=server, store=store, lease=lease)


_SECRET_ENV = re.compile(r"^MULTICLUSTER_\w*(TOKEN|PASSWORD)\w*$")


def scrub_secret_env(environ: MutableMapping[str, str] | None = None) -> list[str]:
    """Remove the daemon's secrets (MULTICLUSTER_TOKEN, MULTICLUSTER_ADMIN_TOKEN, MULTICLUSTER_DB_PASSWORD, …)
    from the environment once the config holds them, and return the names removed.

    kubernetes_asyncio's ExecProvider hands os.environ to the exec plugins of configured kubeconfigs (cloud login
    helpers), and every child process inherits it; neither must see the daemon's credentials. `*_FILE` variables
    are paths, not secrets, and stay."""
    env = os.environ if environ is None else environ
    names = [k for k in env if _SECRET_ENV.match(k) and not k.endswith("_FILE")]
    for k in names:
        del env[k]
    return names
