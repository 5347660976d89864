"""The API's TLS and Kubernetes authentication, wired from server.* at start-up (part of the composition root).

server.auth: kubernetes and --apiservice authenticate the master cluster's users: the master's API server reviews
their tokens and their access, and with --apiservice the master's front proxy presents a client certificate the
daemon trusts through the master's request-header ConfigMap. Without either, server.certDir alone serves TLS.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from multicluster.config import ServerConfig
from multicluster.errors import ConfigError, MulticlusterError
from multicluster.kube import ClusterClient
from multicluster.tasks import Supervisor

if TYPE_CHECKING:
    from multicluster.api.auth.chain import Authenticators
    from multicluster.apiservice import ServingCert

log = logging.getLogger(__name__)


def no_master() -> ConfigError:
    return ConfigError("--apiservice and server.auth: kubernetes need a master cluster: its API server "
                       "authenticates the users and answers the access reviews",
                       hint="mark one cluster isMaster: true in the config file")


def cert_dir_context(cert_dir: Path) -> ssl.SSLContext:
    """TLS for the API from server.certDir (tls.crt, tls.key)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert_dir / "tls.crt", cert_dir / "tls.key")
    return ctx


@dataclass(frozen=True, slots=True)
class KubernetesAuth:
    authenticators: Authenticators
    ssl_context: ssl.SSLContext | None
    serving: ServingCert | None  # --apiservice: the generated serving certificate, removed at shutdown


async def kubernetes_auth(server: ServerConfig, master: ClusterClient, supervisor: Supervisor) -> KubernetesAuth:
    """Users of the master cluster (server.auth: kubernetes, --apiservice): the authenticators, the
    authorizer, and with --apiservice the TLS context that authenticates the master's front proxy."""
    from multicluster.api.auth.access import Authorizer
    from multicluster.api.auth.chain import Authenticators
    from multicluster.api.auth.frontproxy import FrontProxy, keep_current, parse_configmap
    from multicluster.api.auth.tokens import TokenReviewer
    from multicluster.apiservice import MasterReviews, serving_cert

    reviews = MasterReviews(master)
    tokens = TokenReviewer(reviews, ttl=server.review_ttl_seconds) if server.auth == "kubernetes" else None
    proxy = None
    serving = None
    ssl_ctx: ssl.SSLContext | None = None
    if server.api_service:
        serving = serving_cert(server)
        proxy = FrontProxy(serving.cert_file, serving.key_file)
        ssl_ctx = proxy.ssl_context
        try:  # before the first request, so the master's first proxied request is already trusted
            proxy.update(parse_configmap(await reviews.request_header_config()))
        except MulticlusterError as exc:
            log.warning("front-proxy authentication is not ready yet (retrying): %s", exc)
        every = server.front_proxy_reload_seconds
        supervisor.spawn("front-proxy-config", lambda: keep_current(proxy, reviews.request_header_config, every))
    elif server.cert_dir is not None:
        ssl_ctx = cert_dir_context(server.cert_dir)
    authenticators = Authenticators(front_proxy=proxy, tokens=tokens,
                                    authorizer=Authorizer(reviews, ttl=server.review_ttl_seconds))
    return KubernetesAuth(authenticators, ssl_ctx, serving)
