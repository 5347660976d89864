"""How the daemon opens a connection to one cluster: the TLS context and the HTTP session behind a ClusterClient.

Two sources, two trust levels. A cluster from the operator's config (`trusted`) is loaded by kubernetes_asyncio's
kubeconfig loader, which handles every auth method a kubeconfig can name (exec plugins, token files, in-cluster
service accounts). A cluster that joined over HTTP sent its kubeconfig through the API, so the loader must never
see it (it runs commands and reads local files on the file's say): it is read by the allow-list parser of
multicluster.kubeconfig, and only inline CA data, client certificates and bearer tokens are used.

Messages about a joined cluster name no path: they reach whoever called the join. The log keeps the detail.
"""

from __future__ import annotations

import logging
import os
import ssl
import tempfile
from pathlib import Path

import aiohttp
import orjson
from kubernetes_asyncio.client import Configuration
from kubernetes_asyncio.config import kube_config

from multicluster.errors import ConfigError
from multicluster.kubeconfig import ConnectionSpec, KubeconfigError, parse_kubeconfig
from multicluster.logsetup import cluster_logger

log = logging.getLogger(__name__)


def session(ctx: ssl.SSLContext | bool) -> aiohttp.ClientSession:
    """One cluster's HTTP session.

    No pool limit: every informer's watch holds a connection for as long as it runs (HTTP/1.1, no multiplexing)
    and must not wait for one; other requests are bounded by ClusterClient's slots instead, which also keeps
    their timeouts from counting the wait. trust_env=False: a proxy must never sit between us and loopback or
    in-cluster API servers."""
    connector = aiohttp.TCPConnector(ssl=ctx, limit=0, enable_cleanup_closed=True)
    return aiohttp.ClientSession(
        connector=connector, trust_env=False, json_serialize=lambda o: orjson.dumps(o).decode()
    )


# ------------------------------------------------------------------------------------------- joined clusters


def read_uploaded(name: str, path: Path | None, context: str | None) -> ConnectionSpec:
    """A joined cluster's stored kubeconfig, through the allow-list parser: no command runs, no other file is
    read."""
    if path is None:
        raise ConfigError(f"cluster {name}: a joined cluster needs its kubeconfig")
    try:
        text = path.read_bytes()
    except OSError as exc:
        cluster_logger(log, name).error("cannot read its kubeconfig %s: %s", path, exc)
        raise ConfigError(f"cluster {name}: its kubeconfig cannot be read", hint="join the cluster again") from exc
    try:
        return parse_kubeconfig(text, context)
    except KubeconfigError as exc:
        raise ConfigError(f"cluster {name}: {exc.message}", hint=exc.hint) from exc


def spec_ssl(name: str, spec: ConnectionSpec, *, insecure: bool) -> ssl.SSLContext | bool:
    """The TLS context for an allow-list connection spec (False for plain HTTP)."""
    if not spec.server.startswith("https"):
        return False
    if insecure or spec.insecure_skip_tls_verify:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif spec.ca_data is not None:
        try:
            # Only this CA, like client-go: the system's CAs do not vouch for a cluster that names its own.
            ctx = ssl.create_default_context(cadata=spec.ca_data.decode("ascii"))
        except (ssl.SSLError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
            cluster_logger(log, name).warning("certificate-authority-data cannot be loaded: %s", exc)
            raise ConfigError(
                f"cluster {name}: certificate-authority-data is not a PEM CA certificate",
                hint="use the base64 of the cluster's CA certificate, as `kubectl config view --minify --raw` "
                "shows it",
            ) from None
    else:
        ctx = ssl.create_default_context()
    if spec.client_cert_data is not None and spec.client_key_data is not None:
        _load_client_cert(name, ctx, spec.client_cert_data, spec.client_key_data)
    return ctx


def _load_client_cert(name: str, ctx: ssl.SSLContext, cert: bytes, key: bytes) -> None:
    """ssl loads a certificate chain only from files: the PEMs live in a private directory (0700, files 0600)
    for as long as load_cert_chain takes, then are deleted."""
    with tempfile.TemporaryDirectory(prefix="multicluster-cert-") as d:
        paths = []
        for filename, data in (("tls.crt", cert), ("tls.key", key)):
            p = Path(d) / filename
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            paths.append(p)
        try:
            ctx.load_cert_chain(paths[0], paths[1])
        except (ssl.SSLError, ValueError) as exc:
            cluster_logger(log, name).warning(
                "client-certificate-data/client-key-data cannot be loaded: %s",
                getattr(exc, "reason", None) or type(exc).__name__,
            )
            raise ConfigError(
                f"cluster {name}: client-certificate-data and client-key-data cannot be loaded "
                "(they must be a PEM certificate and its private key)",
                hint="copy both from `kubectl config view --minify --flatten --raw`",
            ) from None


# ------------------------------------------------------------------------------------------- configured clusters


def load_in_cluster(name: str, cfg: Configuration) -> None:
    """In-cluster mode: the pod's service account (token file re-read by the loader as it rotates)."""
    from kubernetes_asyncio.config import incluster_config

    try:
        incluster_config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    except Exception as exc:
        raise ConfigError(
            f"cluster {name}: no configPath and in-cluster config is unavailable: {exc}",
            hint="give the cluster a configPath, or run the daemon in a pod with a service account",
        ) from exc


async def load_kubeconfig(name: str, path: Path, context: str | None, cfg: Configuration) -> None:
    try:
        await kube_config.load_kube_config(
            config_file=str(path), context=context, client_configuration=cfg, persist_config=False
        )
    except Exception as exc:  # the loader raises bare ConfigException/KeyError/ValueError on bad files
        raise ConfigError(
            f"cluster {name}: kubeconfig {path} cannot be used: {exc}",
            hint="check the file with `kubectl --kubeconfig FILE cluster-info`",
        ) from exc


def config_ssl(name: str, cfg: Configuration, *, insecure: bool) -> ssl.SSLContext | bool:
    """The TLS context for what the kubeconfig loader found (False for plain HTTP)."""
    if not str(cfg.host).startswith("https"):
        return False
    ctx = ssl.create_default_context()
    if insecure or not cfg.verify_ssl:
        # `insecure: true` skips verification and ignores any CA data, where the Go original refused the pair.
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif cfg.ssl_ca_cert:
        try:
            ctx.load_verify_locations(cafile=cfg.ssl_ca_cert)
        except (ssl.SSLError, ValueError) as exc:
            raise ConfigError(
                f"cluster {name}: the kubeconfig's certificate authority is not a PEM CA certificate"
                f"{_ssl_reason(exc)}",
                hint="check certificate-authority(-data) with `kubectl --kubeconfig FILE cluster-info`",
            ) from None
    if cfg.cert_file and cfg.key_file:
        try:
            ctx.load_cert_chain(cfg.cert_file, cfg.key_file)
        except (ssl.SSLError, ValueError) as exc:
            raise ConfigError(
                f"cluster {name}: the kubeconfig's client certificate and key cannot be loaded{_ssl_reason(exc)}",
                hint="they must be a PEM certificate and its private key; check them with "
                "`kubectl --kubeconfig FILE cluster-info`",
            ) from None
    return ctx


def _ssl_reason(exc: BaseException) -> str:
    """OpenSSL's reason code (" (NO_CERTIFICATE_OR_CRL_FOUND)"), without the message's source-file position."""
    reason = getattr(exc, "reason", None)
    return f" ({reason})" if reason else ""
