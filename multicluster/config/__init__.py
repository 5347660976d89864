"""The daemon's configuration: one declarative schema (schema.py, in the vocabulary of fields.py) read from
config.yaml (loader.py), then the `multicluster run` flags and their environment variables (flags.py). This package
is the only reader of configuration files and of the environment on the daemon side."""

from multicluster.config.checks import (
    KIB,
    MAX_SELECTOR_TERMS,
    MIB,
    SA_TOKEN,
    check_kubeconfig,
    parse_endpoints,
)
from multicluster.config.env import apply_env, scrub_secret_env
from multicluster.config.exposure import check_exposure, check_scopes, is_loopback
from multicluster.config.flags import Overrides, apply_overrides, parse_go_duration
from multicluster.config.loader import load_config, parse_config
from multicluster.config.schema import (
    DEFAULT_BIND,
    DEFAULT_EXCLUDE,
    DEFAULT_PORT,
    SAME_NAMESPACE,
    ClusterConfig,
    Config,
    DaemonConfig,
    DeliveryConfig,
    KindPattern,
    LeaseConfig,
    PolicyRule,
    RetryConfig,
    ServerConfig,
    StoreConfig,
    SyncConfig,
)

__all__ = [
    "DEFAULT_BIND", "DEFAULT_EXCLUDE", "DEFAULT_PORT", "KIB", "MAX_SELECTOR_TERMS", "MIB", "SAME_NAMESPACE",
    "SA_TOKEN", "ClusterConfig", "Config", "DaemonConfig", "DeliveryConfig", "KindPattern", "LeaseConfig",
    "Overrides", "PolicyRule", "RetryConfig", "ServerConfig", "StoreConfig", "SyncConfig", "apply_env",
    "apply_overrides", "check_exposure", "check_kubeconfig", "check_scopes", "is_loopback", "load_config",
    "parse_config", "parse_endpoints", "parse_go_duration", "scrub_secret_env",
]
