"""The environment layer: settings that have an environment variable but no `run` flag (MULTICLUSTER_LOG_FORMAT,
MULTICLUSTER_STATE_DIR, POD_NAME, ...) win over the file here; the variables of flags are read by click with their
flags (multicluster.config.flags). Secrets leave the environment once the config holds them."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import replace
from typing import Any

import msgspec

from multicluster.config.fields import Bound, bound, is_section, resolve_path
from multicluster.config.schema import Config
from multicluster.errors import ConfigError


def env_settings() -> Iterator[tuple[str, Bound]]:
    """Every setting read from an environment variable of its own (not a flag's), with its section's attribute."""
    for section in bound(Config):
        if is_section(section.hint):
            for b in bound(section.hint):
                if b.setting.env is not None and b.setting.flag is None:
                    yield section.name, b


def apply_env(cfg: Config, environ: Mapping[str, str] | None = None) -> Config:
    """`cfg` with the environment's values of env-only settings; an empty variable counts as unset."""
    env = os.environ if environ is None else environ
    sections: dict[str, Any] = {}
    for name, b in env_settings():
        s = b.setting
        assert s.env is not None
        raw = env.get(s.env, "")
        if not raw:
            continue
        try:
            value: Any = msgspec.convert(raw, b.hint, strict=False)  # "3" is 3 here: the environment is text
        except msgspec.ValidationError:
            raise ConfigError(f'{s.env}: "{raw}" is not {s.what}') from None
        if s.path:
            value = resolve_path(value, None)
        if s.check is not None:
            value = s.check(s.env, value)
        sections[name] = replace(sections.get(name, getattr(cfg, name)), **{b.name: value})
    return replace(cfg, **sections) if sections else cfg


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
