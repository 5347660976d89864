"""Reading config.yaml into a Config: the YAML file, then each section through its schema (multicluster.config.
schema), then the rules that tie fields together. Every bad input raises ConfigError naming the field
(`clusters[1].metadata.clusterName`, `sync.pageSize`) and how to fix it; the CLI turns that into one line and
exit code 2."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from multicluster.config import checks, exposure
from multicluster.config.fields import check_keys, convert, keys_of, read_section, typed
from multicluster.config.schema import (
    DEFAULT_EXCLUDE,
    ClusterConfig,
    Config,
    DaemonConfig,
    DeliveryConfig,
    LeaseConfig,
    RetryConfig,
    ServerConfig,
    StoreConfig,
    SyncConfig,
)
from multicluster.errors import ConfigError, yaml_syntax


def _parse_cluster(i: int, item: Any, base: Path, check_files: bool) -> ClusterConfig:
    where = f"clusters[{i}]"
    typed(where, item, dict, "a mapping with a `metadata:` key")
    check_keys(where, item, ["metadata"])
    if "metadata" not in item:
        raise ConfigError(
            f"{where}: missing `metadata:`", hint="each cluster is `- metadata: {clusterName: ..., configPath: ...}`"
        )
    meta = item["metadata"]
    where = f"{where}.metadata"
    typed(where, meta, dict, "a mapping")
    if meta.get("clusterName") is None:
        raise ConfigError(f"{where}.clusterName: is required and must not be empty")
    values = read_section(ClusterConfig, where, meta, base, extra=("resources",))
    values.setdefault("config_path", None)
    if values["config_path"] is None and not checks.in_cluster():
        raise ConfigError(
            f"{where}.configPath: is required outside a Kubernetes pod",
            hint="set it to the cluster's kubeconfig file; inside a pod, an entry without configPath uses the "
            "pod's service account (in-cluster mode)",
        )
    if check_files and values["config_path"] is not None:
        checks.check_kubeconfig(f"{where}.configPath", values["config_path"], values.get("context"))
    legacy = meta.get("resources")
    if legacy is not None:
        typed(f"{where}.resources", legacy, list, "a list of {rType: group/version/resource}")
        include = list(values.get("include", ()))
        for j, entry in enumerate(legacy):
            at = f"{where}.resources[{j}]"
            typed(at, entry, dict, "a mapping like {rType: apps/v1/deployments}")
            check_keys(at, entry, ["rType"])
            include.append(convert(f"{at}.rType", entry.get("rType"), str, "a resource like apps/v1/deployments"))
        values["include"] = tuple(include)
    return ClusterConfig(**values)


def _parse_store(data: Any, base: Path) -> StoreConfig:
    values = read_section(StoreConfig, "store", {} if data is None else data, base)
    if data and data.get("endpoints") is not None:
        if "host" in data or "port" in data:
            raise ConfigError("store: give either host/port or endpoints, not both",
                              hint="list every node in store.endpoints, e.g. [db-0:3306, db-1:3306]")
        values["host"], values["port"] = values["endpoints"][0]
    store = StoreConfig(**values)
    return _with_min_size(store, "store.poolMinSize", store.pool_min_size)


def _with_min_size(store: StoreConfig, where: str, value: int) -> StoreConfig:
    return replace(store, pool_min_size=checks.pool_min_size(where, value, store.pool_size))


def _parse_server(data: Any, base: Path) -> ServerConfig:
    if data is None:
        return ServerConfig()
    server = ServerConfig(**read_section(ServerConfig, "server", data, base))
    exposure.check_scopes(server, "server.adminToken")
    return server


def _parse_sync(data: Any) -> SyncConfig:
    if data is None:
        return SyncConfig()
    sync = SyncConfig(**read_section(SyncConfig, "sync", data, None))
    if sync.max_object_bytes > sync.max_list_page_bytes:
        raise ConfigError(
            f"sync.maxObjectBytes ({sync.max_object_bytes}) is larger than sync.maxListPageBytes "
            f"({sync.max_list_page_bytes}): an object that may be stored could never be listed",
            hint="raise sync.maxListPageBytes or lower sync.maxObjectBytes",
        )
    return sync


_SECTIONS = ["clusters", "resources", *(k for k in keys_of(Config) if k not in ("include", "exclude"))]


def _section(data: dict[str, Any], key: str) -> Any:
    """A section as written; a missing or empty (`lease:`) section is all defaults."""
    return {} if data.get(key) is None else data[key]


def parse_config(data: Any, base: Path, *, source: Path | None = None, check_files: bool = True) -> Config:
    """Validate an already-parsed YAML document. `base` anchors relative paths (the config file's directory)."""
    if data is None:
        raise ConfigError("the configuration is empty", hint="it needs at least `clusters:` with one cluster")
    typed("top level", data, dict, "a mapping with a `clusters:` key")
    check_keys("top level", data, _SECTIONS)
    clusters_raw = data.get("clusters")
    if clusters_raw is None:
        raise ConfigError("clusters: is required", hint="list at least one cluster: `clusters: [{metadata: {...}}]`")
    typed("clusters", clusters_raw, list, "a list")
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
    resources = {} if data.get("resources") is None else read_section(
        Config, "resources", data["resources"], None, only=("include", "exclude"))
    return Config(
        clusters=tuple(clusters),
        include=resources.get("include", ()),
        exclude=DEFAULT_EXCLUDE + resources.get("exclude", ()),
        store=_parse_store(data.get("store"), base),
        server=_parse_server(data.get("server"), base),
        sync=_parse_sync(data.get("sync")),
        lease=LeaseConfig(**read_section(LeaseConfig, "lease", _section(data, "lease"), None)),
        delivery=DeliveryConfig(**read_section(DeliveryConfig, "delivery", _section(data, "delivery"), None)),
        retry=RetryConfig(**read_section(RetryConfig, "retry", _section(data, "retry"), None)),
        daemon=DaemonConfig(**read_section(DaemonConfig, "daemon", _section(data, "daemon"), base)),
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
