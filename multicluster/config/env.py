"""The process environment beyond the `run` flags' own variables: secrets leave it once the config holds them."""

from __future__ import annotations

import os
import re
from collections.abc import MutableMapping

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
