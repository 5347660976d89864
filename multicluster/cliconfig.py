"""The kubectl plugin's config file, `~/.multi-cluster-operator/config`: where the daemon's API listens.

The Go original has written two formats and users have both on disk, so reading accepts either:

    server: 31888                   # older (the Go original's README): a port only; host is always localhost

    serverIP: localhost             # newer (the Go original's generate-config.sh)
    serverPort: 31888               # int or string
    masterClusterKubeConfigPath: /root/.kube/config
    token: s3cret                   # optional bearer token for the API (the Go original parsed it but never sent it)
    adminToken: s3cret-admin        # optional: join/unjoin send it when the daemon has server.adminToken

The daemon calls ensure_cli_config() at start so `kubectl multicluster` works out of the box on the same host.
It writes only when the file is missing: a user's file (perhaps pointing at a remote daemon) is never replaced.
The path can be moved with MULTICLUSTER_CLI_CONFIG, which the tests use to stay out of $HOME.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from multicluster.errors import ConfigError

ENV_PATH = "MULTICLUSTER_CLI_CONFIG"
DEFAULT_HOST = "localhost"
DEFAULT_PORT = 31888


@dataclass(frozen=True, slots=True)
class CliConfig:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    master_kubeconfig: str = ""
    token: str | None = field(default=None, repr=False)
    path: Path | None = None
    admin_token: str | None = field(default=None, repr=False)
    legacy: bool = False  # read from the old one-line `server: PORT` format

    @property
    def server_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return f"http://{host}:{self.port}"


def config_path() -> Path:
    """The file to read/write: $MULTICLUSTER_CLI_CONFIG or ~/.multi-cluster-operator/config."""
    env = os.environ.get(ENV_PATH)
    if env:
        return Path(os.path.expanduser(env))
    return Path.home() / ".multi-cluster-operator" / "config"


def kubectl_config_path() -> Path:
    """The kubeconfig kubectl reads first: the first file of $KUBECONFIG, else ~/.kube/config."""
    env = os.environ.get("KUBECONFIG", "")
    first = next((p for p in env.split(os.pathsep) if p), "")
    return Path(first).expanduser() if first else Path.home() / ".kube" / "config"


def env_token() -> str | None:
    """The daemon's read token from MULTICLUSTER_TOKEN, for the commands that call the daemon's API."""
    return os.environ.get("MULTICLUSTER_TOKEN") or None


def _port(where: str, value: Any) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{where}: expected a port number, got {value!r}")
    try:
        port = int(str(value).strip())
    except ValueError:
        raise ConfigError(f"{where}: {value!r} is not a port number", hint="use e.g. serverPort: 31888") from None
    if not 1 <= port <= 65535:
        raise ConfigError(f"{where}: {port} is not a port number (1-65535)")
    return port


def parse_cli_config(text: str, path: Path | None = None) -> CliConfig:
    """Parse either format. Unknown keys are ignored (the Go original ignores them too)."""
    import yaml  # here, not at the top: `kubectl multicluster list` without a config file never needs it

    where = str(path) if path else "CLI config"
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"{where}: not valid YAML ({exc})",
            hint="it should contain `serverIP: localhost` and `serverPort: 31888` (or the old `server: 31888`)",
        ) from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping like `serverPort: 31888`, got {type(data).__name__}")
    if "serverPort" in data or "serverIP" in data:
        host = str(data.get("serverIP") or DEFAULT_HOST).strip()
        port = _port(f"{where}: serverPort", data["serverPort"]) if data.get("serverPort") is not None else DEFAULT_PORT
        legacy = False
    elif "server" in data:
        # Old format: `server: 31888`; tolerate `server: host:port` and a URL too.
        raw = str(data["server"]).strip()
        host, port, legacy = DEFAULT_HOST, DEFAULT_PORT, True
        if "://" in raw:
            raw = raw.split("://", 1)[1].rstrip("/")
        if ":" in raw:
            host, _, p = raw.rpartition(":")
            port = _port(f"{where}: server", p)
        else:
            port = _port(f"{where}: server", raw)
    else:
        host, port, legacy = DEFAULT_HOST, DEFAULT_PORT, False
    token = data.get("token")
    admin = data.get("adminToken")
    return CliConfig(
        host=host or DEFAULT_HOST,
        port=port,
        master_kubeconfig=str(data.get("masterClusterKubeConfigPath") or ""),
        token=str(token) if token not in (None, "") else None,
        path=path,
        legacy=legacy,
        admin_token=str(admin) if admin not in (None, "") else None,
    )


def load_cli_config(path: Path | None = None) -> CliConfig | None:
    """The config, or None when the file does not exist."""
    p = path or config_path()
    try:
        text = p.read_text()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot be read: {exc}") from exc
    return parse_cli_config(text, p)


def render_cli_config(host: str, port: int, master_kubeconfig: str = "", token: str | None = None) -> str:
    import yaml

    doc: dict[str, Any] = {"serverIP": host, "serverPort": port, "masterClusterKubeConfigPath": master_kubeconfig}
    if token:
        doc["token"] = token
    header = "# Written by the multicluster daemon for `kubectl multicluster`; edit freely, it is never overwritten.\n"
    return header + yaml.safe_dump(doc, sort_keys=False)


def ensure_cli_config(
    port: int,
    host: str = DEFAULT_HOST,
    master_kubeconfig: str = "",
    token: str | None = None,
    *,
    path: Path | None = None,
) -> Path | None:
    """Write the new-format file (mode 0600: it may hold the token) if none exists; returns the path written.

    Raises OSError when the directory or file cannot be created (the daemon logs it and carries on).

    Returns None when a file was already there. A wildcard bind address (0.0.0.0, ::) is written as localhost:
    the plugin needs an address to connect to, not one to listen on.
    """
    if host in ("", "0.0.0.0", "::", "[::]"):  # noqa: S104 - comparing, not binding
        host = DEFAULT_HOST
    p = path or config_path()
    if p.exists():
        return None
    p.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        # O_EXCL: if two daemons start at once, the first wins and the second leaves its file alone.
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return None
    with os.fdopen(fd, "w") as f:
        f.write(render_cli_config(host, port, master_kubeconfig, token))
    return p
