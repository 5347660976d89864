"""Rules over the server section as a whole: token scopes and the secure-by-default listen address."""

from __future__ import annotations

import ipaddress
import os

from multicluster.config.schema import ServerConfig
from multicluster.errors import ConfigError


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
