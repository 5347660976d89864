"""The configuration schema: one frozen dataclass per config.yaml section, each field declared once with its key,
type and bounds, default, flag and environment variable, checks and documentation (multicluster.config.fields).

Everything the loader returns is one of these, so the rest of the daemon passes configuration around without
defensive copies. The file format keeps the Go original's keys verbatim (`clusters: - metadata: {clusterName,
configPath, insecure, isMaster}`); every other section is optional. docs/configuration.md is generated from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from multicluster.config import checks
from multicluster.config.checks import MIB
from multicluster.config.fields import read_section, setting
from multicluster.retry import RetryPolicy

DEFAULT_PORT = 31888
DEFAULT_BIND = "127.0.0.1"

# The Go original's exclusions, minus `policy` and `apiextensions.k8s.io`: PodDisruptionBudgets and CRDs are worth
# querying across clusters. These groups hold only virtual or review resources that cannot be listed or watched.
DEFAULT_EXCLUDE: tuple[str, ...] = (
    "metrics.k8s.io",
    "authentication.k8s.io",
    "authorization.k8s.io",
    "bindings",
    "componentstatuses",
)

Positive = Annotated[int, msgspec.Meta(gt=0)]
Seconds = Annotated[float, msgspec.Meta(gt=0)]
Names = str | list[str]  # a list of resource names; one name alone is a list of one


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """One `clusters[i].metadata` entry (the legacy `resources: [{rType: ...}]` list joins `include`)."""

    name: str = setting(key="clusterName", what="a string", check=checks.cluster_name,
                        doc="unique cluster name (a DNS label), used in queries and placements; required")
    config_path: Path | None = setting(key="configPath", what="a file path", path=True, raw=str,
                                       doc="kubeconfig file, relative to config.yaml; required outside a pod (a pod "
                                       "uses its service account without it)")
    insecure: bool = setting(False, key="insecure", what="true or false",
                             doc="skip TLS verification, even when the kubeconfig has CA data")
    is_master: bool = setting(False, key="isMaster", what="true or false",
                              doc="the cluster where MultiClusterResources live (at most one)")
    context: str | None = setting(None, key="context", what="a context name",
                                  doc="kubeconfig context (default: its current-context)")
    include: tuple[str, ...] = setting((), key="include", what="a list of resource names", raw=Names,
                                       check=checks.names, doc="sync only these types in this cluster")
    exclude: tuple[str, ...] = setting((), key="exclude", what="a list of resource names", raw=Names,
                                       check=checks.names, doc="never sync these types in this cluster")
    # False for clusters that came from POST /v1/join: their kubeconfig is read only by the allow-list parser
    # (multicluster.kubeconfig), never by kubernetes_asyncio's loader, which can run commands and read files.
    trusted: bool = True


@dataclass(frozen=True, slots=True)
class StoreConfig:
    type: Literal["sqlite", "mysql"] = setting(
        "sqlite", key="type", what='"sqlite" or "mysql"', raw=str, check=checks.store_type,
        flag="--store", env="MULTICLUSTER_STORE", doc="sqlite (embedded, default) or mysql (MySQL/MariaDB)")
    path: Path = setting(Path("multicluster.db"), key="path", what="a file path", path=True, raw=str,
                         flag="--sqlite-path", env="MULTICLUSTER_SQLITE_PATH",
                         doc="SQLite database file, relative to config.yaml (the flag selects the sqlite store)")
    host: str = setting("127.0.0.1", key="host", what="a host name", doc="MySQL host")
    port: int = setting(3306, key="port", what="a port number", check=checks.port, doc="MySQL port")
    # Several nodes of one database cluster (Galera, InnoDB Cluster): the store uses the first that answers and
    # is synced, and moves to the next when that node dies or leaves the primary component. Empty = (host, port).
    endpoints: tuple[tuple[str, int], ...] = setting(
        (), key="endpoints", what='a list of "HOST:PORT" strings', raw=list[str], check=checks.parse_endpoints,
        flag="--db-endpoint", env="MULTICLUSTER_DB_ENDPOINT",
        doc="nodes of a database cluster, tried in order, instead of host/port (the flag takes HOST:PORT or "
        "h1:p1,h2:p2 and selects the mysql store)")
    user: str = setting("root", key="user", what="a user name", flag="--db-user", env="MULTICLUSTER_DB_USER",
                        doc="MySQL user")
    password: str = setting("", key="password", what="a string", secret=True, empty_ok=True,
                            file_key="passwordFile", flag="--db-password", env="MULTICLUSTER_DB_PASSWORD",
                            file_flag="--db-password-file", file_env="MULTICLUSTER_DB_PASSWORD_FILE",
                            doc="MySQL password (prefer passwordFile / --db-password-file)")
    database: str = setting("resources", key="database", what="a database name", flag="--db-database",
                            env="MULTICLUSTER_DB_DATABASE", doc="MySQL database (created when missing)")
    pool_size: Positive = setting(4, key="poolSize", what="an integer", flag="--mysql-max-open-connections",
                                  env="MULTICLUSTER_MYSQL_MAX_OPEN_CONNECTIONS",
                                  doc="MySQL connections open at most")
    # Connections opened at start and kept while idle (aiomysql's minsize).
    pool_min_size: int = setting(0, key="poolMinSize", what="an integer", check=checks.not_negative,
                                 flag="--mysql-max-idle-connections", env="MULTICLUSTER_MYSQL_MAX_IDLE_CONNECTIONS",
                                 doc="MySQL connections opened at start and kept while idle (lowered to poolSize)")
    # Servers close idle connections after wait_timeout: aiomysql's pool_recycle reopens them before.
    connection_max_lifetime: float = setting(
        3600.0, key="connectionMaxLifetime", what="seconds (0 = never)", check=checks.at_least_zero,
        flag="--mysql-max-connection-life-time", env="MULTICLUSTER_MYSQL_MAX_CONNECTION_LIFE_TIME",
        doc="seconds a pooled connection may sit unused before it is reopened, 0 = never (the flag takes a Go "
        "duration: 10s, 1m30s)")
    writers: Positive = setting(2, key="writers", what="an integer",
                                doc="concurrent write batches (MySQL); keys are sharded so each is written in order")
    batch_size: Positive = setting(500, key="batchSize", what="an integer", doc="rows per write batch")
    flush_interval: Seconds = setting(0.01, key="flushInterval", what="seconds",
                                      doc="how long a partial batch waits for more rows")
    sqlite_writer: str = setting("process", key="sqliteWriter", what='"process" or "thread"',
                                 check=checks.one_of("process", "thread"), env="MULTICLUSTER_SQLITE_WRITER",
                                 doc="where SQLite's writer connection runs: a child process, or a thread (debugging)")
    # A database node cut off by the network answers nothing, and aiomysql has no read timeout of its own.
    transaction_timeout: Seconds = setting(
        60.0, key="transactionTimeoutSeconds", what="seconds",
        doc="longest a MySQL transaction or read may wait on the database; then its connection is dropped and "
        "the call fails as transient (retried, and with store.endpoints the next call chooses a node again)")
    # The history a watch can resume from; an older position gets 410 Gone. A deletion's entry holds the object's
    # last state; an upsert's object is read from its row.
    change_retention: Positive = setting(10_000, key="changeRetention", what="an integer",
                                         doc="change log entries kept per cluster: how far back a watch can resume")


@dataclass(frozen=True, slots=True)
class ServerConfig:
    bind: str = setting(DEFAULT_BIND, key="bind", what="an address", flag="--bind", env="MULTICLUSTER_BIND",
                        doc="listen address; a non-loopback address needs a token")
    port: int = setting(DEFAULT_PORT, key="port", what="a port number", check=checks.port, flag="--address",
                        env="MULTICLUSTER_PORT", doc="API port (the flag also spells --port)")
    token: str | None = setting(
        None, key="token", what="a string", secret=True, check=checks.blank_is_none, file_key="tokenFile",
        flag="--token", env="MULTICLUSTER_TOKEN", file_flag="--token-file", file_env="MULTICLUSTER_TOKEN_FILE",
        doc="read token: every route but /healthz and /readyz requires it (prefer tokenFile / --token-file)")
    cert_dir: Path | None = setting(None, key="certDir", what="a directory", path=True, raw=str, flag="--cert-dir",
                                    env="MULTICLUSTER_CERT_DIR", doc="serve HTTPS with tls.crt and tls.key from here")
    admin_token: str | None = setting(
        None, key="adminToken", what="a string", secret=True, check=checks.blank_is_none,
        file_key="adminTokenFile", flag="--admin-token", env="MULTICLUSTER_ADMIN_TOKEN",
        file_flag="--admin-token-file", file_env="MULTICLUSTER_ADMIN_TOKEN_FILE",
        doc="when set, the only token POST /v1/join and DELETE /v1/unjoin accept (it also opens every read route)")
    allowed_origins: tuple[str, ...] = setting(
        (), key="allowedOrigins", what="a list of origins like https://dashboard.example.com", raw=list[str],
        check=checks.origins, doc="browser origins allowed to call the API (scheme://host[:port])")
    allowed_hosts: tuple[str, ...] = setting(
        (), key="allowedHosts", what='a list of host names (or "*" to accept any, unsafe)', raw=list[str],
        check=checks.hosts, doc='extra names accepted in the Host header ("*" = no check, unsafe)')
    insecure_allow_unauthenticated: bool = setting(
        False, key="insecureAllowUnauthenticated", what="true or false", flag="--insecure-allow-unauthenticated",
        env="MULTICLUSTER_INSECURE_ALLOW_UNAUTHENTICATED",
        doc="let a non-loopback bind run without a token (logs a warning at every start)")
    health_port: int | None = setting(None, key="healthPort", what="a port number", check=checks.optional_port,
                                      flag="--HealthPort", param="health_port", env="MULTICLUSTER_HEALTH_PORT",
                                      doc="also serve /healthz and /readyz (and nothing else) on this port")
    # Bounds on what one request may cost. A page ends early at max_page_bytes (a continue token brings the
    # rest); count=true counts at most max_count rows; every selector term, `in` value, cluster or namespace
    # becomes a join or a parameter, so each is limited to max_selector_terms.
    max_page_bytes: Positive = setting(16 * MIB, key="maxPageBytes", what="a number of bytes", check=checks.page_bytes,
                                       doc="a /v1/resources page ends early at this size")
    max_count: Positive = setting(100_000, key="maxCount", what="an integer",
                                  doc="count=true counts at most this many objects")
    max_selector_terms: Positive = setting(100, key="maxSelectorTerms", what="an integer",
                                           check=checks.max_selector_terms,
                                           doc="terms per selector, and values of cluster and namespace (at most 2000)")
    # A slow client (a slowloris sending its headers a byte at a time) holds a socket and a task for as long
    # as the server lets it: idle keep-alive connections, request heads and request bodies each have a deadline.
    keepalive_seconds: Seconds = setting(75.0, key="keepaliveSeconds", what="seconds",
                                         doc="an idle keep-alive connection is closed after this")
    header_timeout_seconds: Seconds = setting(10.0, key="headerTimeoutSeconds", what="seconds",
                                              doc="a request head must be complete this long after its first byte")
    body_timeout_seconds: Seconds = setting(30.0, key="bodyTimeoutSeconds", what="seconds",
                                            doc="a request body must be complete this long after its head (else 408)")
    # Kubernetes identities (docs/security.md): users of the master cluster, through its API server (an APIService)
    # or with their own tokens, each reading what the master's RBAC allows them.
    auth: str = setting("token", key="auth", what="token or kubernetes", check=checks.auth_mode, flag="--auth",
                        env="MULTICLUSTER_AUTH", doc="kubernetes: also accept users' own tokens of the master "
                        "(TokenReview), then authorize with SubjectAccessReviews")
    api_service: bool = setting(False, key="apiService", what="true or false", flag="--apiservice",
                                env="MULTICLUSTER_APISERVICE", doc="register the Kubernetes API as an APIService on "
                                "the master and authenticate the requests it proxies (front proxy)")
    api_service_namespace: str = setting("multicluster-system", key="apiServiceNamespace", what="a namespace name",
                                         check=checks.dns_label, doc="namespace of the Service the APIService names")
    api_service_name: str = setting("multicluster", key="apiServiceName", what="a Service name",
                                    check=checks.dns_label, doc="the Service the APIService names")
    api_service_external_name: str = setting(
        "", key="apiServiceExternalName", what="a DNS name", check=checks.dns_name_or_empty,
        doc="outside a cluster: create that Service as type ExternalName pointing at this host (e.g. localhost)")
    front_proxy_reload_seconds: Seconds = setting(60.0, key="frontProxyReloadSeconds", what="seconds",
                                                  doc="how often the master's front-proxy CA is re-read (rotation)")
    review_ttl_seconds: Seconds = setting(10.0, key="reviewTtlSeconds", what="seconds",
                                          doc="how long a TokenReview or SubjectAccessReview answer is reused")
    # A watcher that does not read is closed once this many events wait for it (its memory is bounded by it); it
    # resumes from its last resourceVersion, as from kube-apiserver's.
    watch_queue: Positive = setting(1_000, key="watchQueue", what="an integer",
                                    doc="events a watcher may have waiting before it is closed as too slow")
    watch_heartbeat_seconds: Seconds = setting(15.0, key="watchHeartbeatSeconds", what="seconds",
                                               doc="a Server-Sent Events stream without events gets a comment this "
                                               "often, so proxies do not close it as idle")

    @property
    def kubernetes_identities(self) -> bool:
        """Requests may carry a Kubernetes user (a token the master vouches for, or a front-proxy request)."""
        return self.auth == "kubernetes" or self.api_service


@dataclass(frozen=True, slots=True)
class SyncConfig:
    page_size: Positive = setting(500, key="pageSize", what="an integer", doc="objects per list page")
    resync_seconds: Annotated[float, msgspec.Meta(ge=0)] = setting(
        600.0, key="resyncSeconds", what="seconds (0 = never)", doc="full relist of every type, 0 = never")
    watch_timeout_seconds: Positive = setting(300, key="watchTimeoutSeconds", what="seconds",
                                              doc="a watch is renewed after this")
    drop_managed_fields: bool = setting(True, key="dropManagedFields", what="true or false",
                                        doc="strip metadata.managedFields before storing")
    store_secrets: bool = setting(False, key="storeSecrets", what="true or false",
                                  doc="store Secret values (blanked unless true)")
    queue_size: Positive = setting(2_000, key="queueSize", what="an integer",
                                   doc="pending writes; bounds memory during initial syncs (full: watches pause)")
    rediscover_seconds: Seconds = setting(60.0, key="rediscoverSeconds", what="seconds",
                                          doc="how often discovery is re-read (new CRDs start syncing)")
    # What one member cluster may make the daemon hold or open. A member is another team's API server (or an
    # attacker's, once joined): none of these may grow with what it sends.
    max_list_page_bytes: int = setting(32 * MIB, key="maxListPageBytes", what="a number of bytes",
                                       check=checks.member_bytes,
                                       doc="any response body; a list page over it is asked again in smaller pages")
    max_watch_line_bytes: int = setting(16 * MIB, key="maxWatchLineBytes", what="a number of bytes",
                                        check=checks.member_bytes, doc="one watch event; a longer line ends the watch")
    max_object_bytes: int = setting(4 * MIB, key="maxObjectBytes", what="a number of bytes", check=checks.member_bytes,
                                    doc="larger objects are skipped and counted (at most maxListPageBytes)")
    max_types_per_cluster: Positive = setting(500, key="maxTypesPerCluster", what="an integer",
                                              doc="informers (and metric label sets) per cluster")
    max_discovered_resources: Positive = setting(
        10_000, key="maxDiscoveredResources", what="an integer",
        doc="resource types (all versions) and group-versions read from one cluster's discovery; the rest is left out")
    max_connections_per_cluster: Positive = setting(32, key="maxConnectionsPerCluster", what="an integer",
                                                    doc="concurrent non-watch requests; each watch holds one more")
    list_timeout_seconds: Seconds = setting(120.0, key="listTimeoutSeconds", what="seconds",
                                            doc="one list page, connection to last byte")


@dataclass(frozen=True, slots=True)
class LeaseConfig:
    enabled: bool = setting(False, key="enabled", what="true or false", flag="--lease-mode",
                            env="MULTICLUSTER_LEASE_MODE",
                            doc="leader election and sharded informers across replicas")
    name: str = setting("multicluster-leader", key="name", what="a name", flag="--lease-name",
                        env="MULTICLUSTER_LEASE_NAME", doc="the Lease object")
    namespace: str = setting("default", key="namespace", what="a namespace", flag="--lease-namespace",
                             env="MULTICLUSTER_LEASE_NAMESPACE", doc="namespace of the Lease (in the master cluster)")
    identity: str | None = setting(None, key="identity", what="a name", env="POD_NAME",
                                   doc="this replica's name as holder of the Lease (default: host name and a random "
                                   "suffix)")


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    """How the daemon process runs; usually set by its container's environment."""

    event_loop: str = setting("uvloop", key="eventLoop", what='"uvloop" or "asyncio"',
                              check=checks.one_of("uvloop", "asyncio"), env="MULTICLUSTER_EVENT_LOOP",
                              doc="uvloop when it is installed (less CPU per event), or the standard loop (debugging)")
    log_format: str = setting("text", key="logFormat", what='"text" or "json"', check=checks.one_of("text", "json"),
                              env="MULTICLUSTER_LOG_FORMAT", doc="log lines for people, or JSON lines for collectors")
    state_dir: Path | None = setting(None, key="stateDir", what="a directory", path=True, raw=str,
                                     env="MULTICLUSTER_STATE_DIR", doc="where joined clusters are kept (default: "
                                     "multicluster-state next to config.yaml)")


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


def _from_namespaces(where: str, value: list[str]) -> tuple[str, ...]:
    return checks.namespaces(where, value, ("*",))


def _to_namespaces(where: str, value: list[str]) -> tuple[str, ...]:
    return checks.namespaces(where, value, (SAME_NAMESPACE, "*"))


def _kinds(where: str, value: list[str]) -> tuple[KindPattern, ...]:
    return tuple(KindPattern(*checks.kind_parts(f"{where}[{i}]", k)) for i, k in enumerate(value))


@dataclass(frozen=True, slots=True)
class PolicyRule:
    """One `delivery.policy` entry: MCRs in `from_namespaces` may deliver `kinds` into `to_namespaces`."""

    where: str  # delivery.policy[i], for messages
    from_namespaces: tuple[str, ...] = setting(("*",), key="fromNamespaces", what="a list of namespace names",
                                               raw=list[str], check=_from_namespaces,
                                               doc='master namespaces of the MCRs (names or "*")')
    # None: every kind but the default policy's restricted ones.
    kinds: tuple[KindPattern, ...] | None = setting(
        None, key="kinds", what='a list of kinds like "ConfigMap", "apps/Deployment", "apps/*" or "*"',
        raw=list[str], check=_kinds, doc='group/Kind ("ConfigMap", "apps/Deployment", "apps/*", "*"); default: '
        "every kind but the restricted ones")
    to_namespaces: tuple[str, ...] = setting((SAME_NAMESPACE,), key="toNamespaces", what="a list of namespace names",
                                             raw=list[str], check=_to_namespaces,
                                             doc='target namespaces (names, "<same>" = the MCR\'s own, "*")')
    cluster_scoped: bool = setting(False, key="clusterScoped", what="true or false",
                                   doc="also cluster-scoped objects of those kinds")


def _rules(where: str, value: list[Any]) -> tuple[PolicyRule, ...]:
    out = []
    for i, item in enumerate(value):
        at = f"{where}[{i}]"
        out.append(PolicyRule(at, **read_section(PolicyRule, at, item, None)))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class DeliveryConfig:
    # Empty: the default policy (namespaced, unrestricted kinds, into the MCR's own namespace only).
    policy: tuple[PolicyRule, ...] = setting(
        (), key="policy", what="a list of rules ({} is the default policy's rule)", raw=list[Any], check=_rules,
        doc="who may deliver what; rules replace the default policy (docs/security.md)")
    allow_adopt: bool = setting(False, key="allowAdopt", what="true or false",
                                doc="MCRs may take over existing objects (annotation multicluster.practice.com/adopt)")
    # A Secret dependency of an MCR without spec.serviceAccountName would be read with the daemon's own
    # credentials, which lets an author who may not read a Secret move it to a member they can read.
    secrets_without_service_account: bool = setting(
        False, key="secretsWithoutServiceAccount", what="true or false",
        doc="spec.propagateDependencies may copy Secrets for MCRs without spec.serviceAccountName (read on the "
            "master with the daemon's credentials)")


_POLICY = "a mapping with initial, max, factor and jitter"


@dataclass(frozen=True, slots=True)
class RetryConfig:
    """The retry policy of each retry loop in the daemon, by name."""

    watch: RetryPolicy = setting(RetryPolicy(initial=0.5, max=30.0), key="watch", what=_POLICY,
                                 doc="an informer's list or watch that failed (sync and delivery informers)")
    discovery: RetryPolicy = setting(RetryPolicy(initial=1.0, max=30.0), key="discovery", what=_POLICY,
                                     doc="connecting to a cluster and reading its discovery")
    write: RetryPolicy = setting(RetryPolicy(initial=0.2, max=10.0), key="write", what=_POLICY,
                                 doc="a batch of rows the store refused (the queue fills and watches pause)")
    delivery: RetryPolicy = setting(RetryPolicy(initial=0.5, max=30.0), key="delivery", what=_POLICY,
                                    doc="a MultiClusterResource whose reconcile failed")
    crd_install: RetryPolicy = setting(RetryPolicy(initial=1.0, max=60.0), key="crdInstall", what=_POLICY,
                                       doc="installing the CRDs on the master cluster")
    master_types: RetryPolicy = setting(RetryPolicy(initial=0.4, max=5.0, factor=1.5, jitter=0.0), key="masterTypes",
                                        what=_POLICY, doc="waiting for the master to serve the MultiClusterResource "
                                        "and MultiCluster types (their CRDs may be installed just now)")
    task_restart: RetryPolicy = setting(RetryPolicy(initial=1.0, max=60.0), key="taskRestart", what=_POLICY,
                                        doc="a long-lived task that crashed")
    member_breaker: RetryPolicy = setting(RetryPolicy(initial=0.5, max=30.0, jitter=0.0), key="memberBreaker",
                                          what=_POLICY, doc="how long delivery skips a member that failed at the "
                                          "connection level")


@dataclass(frozen=True, slots=True)
class Config:
    clusters: tuple[ClusterConfig, ...]
    include: tuple[str, ...] = setting((), key="include", what="a list of resource names", raw=Names,
                                       check=checks.names, doc="empty: every listable and watchable type")
    exclude: tuple[str, ...] = setting(DEFAULT_EXCLUDE, key="exclude", what="a list of resource names", raw=Names,
                                       check=checks.names, doc="types never synced: the built-in ones (virtual "
                                       "and review groups) plus those listed")
    store: StoreConfig = setting(StoreConfig(), key="store", what="a mapping", doc="where rows are kept")
    server: ServerConfig = setting(ServerConfig(), key="server", what="a mapping", doc="the HTTP API")
    sync: SyncConfig = setting(SyncConfig(), key="sync", what="a mapping", doc="informers and member limits")
    lease: LeaseConfig = setting(LeaseConfig(), key="lease", what="a mapping", doc="leader election")
    delivery: DeliveryConfig = setting(DeliveryConfig(), key="delivery", what="a mapping",
                                       doc="MultiClusterResource delivery")
    retry: RetryConfig = setting(RetryConfig(), key="retry", what="a mapping", doc="retry policies by name")
    daemon: DaemonConfig = setting(DaemonConfig(), key="daemon", what="a mapping", doc="the daemon process")
    source: Path | None = None

    @property
    def master(self) -> ClusterConfig | None:
        return next((c for c in self.clusters if c.is_master), None)

    def cluster(self, name: str) -> ClusterConfig | None:
        return next((c for c in self.clusters if c.name == name), None)

