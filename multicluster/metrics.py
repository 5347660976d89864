"""Prometheus metrics, defined once so every module records into the same registry the API serves at /metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

OBJECTS = Gauge(
    "multicluster_objects", "Objects mirrored per cluster and resource type", ["cluster", "gvr"], registry=REGISTRY
)
QUEUE_DEPTH = Gauge(
    "multicluster_queue_depth", "Pending writes per cluster and resource type", ["cluster", "gvr"], registry=REGISTRY
)
BATCH_SIZE = Histogram(
    "multicluster_store_batch_size",
    "Mutations per store transaction",
    buckets=(1, 5, 10, 50, 100, 250, 500, 1000, 2000),
    registry=REGISTRY,
)
BATCH_SECONDS = Histogram("multicluster_store_batch_seconds", "Store transaction latency", registry=REGISTRY)
EVENT_LAG = Histogram(
    "multicluster_event_lag_seconds",
    "Watch event received -> row committed",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
QUERY_SECONDS = Histogram("multicluster_query_seconds", "API query latency", ["route"], registry=REGISTRY)
WATCH_RESTARTS = Counter(
    "multicluster_watch_restarts_total", "Watch streams restarted", ["cluster", "gvr", "reason"], registry=REGISTRY
)
RELISTS = Counter(
    "multicluster_relists_total",
    "Full lists (initial, 410 Gone, resync)",
    ["cluster", "gvr", "reason"],
    registry=REGISTRY,
)
STORE_ERRORS = Counter("multicluster_store_errors_total", "Failed store transactions (retried)", registry=REGISTRY)
CLUSTER_UP = Gauge(
    "multicluster_cluster_reachable",
    "1 when the cluster's API server answered recently",
    ["cluster"],
    registry=REGISTRY,
)
RECONCILES = Counter("multicluster_reconciles_total", "MultiClusterResource reconciles", ["result"], registry=REGISTRY)
ROWS = Counter("multicluster_store_rows_total", "Rows changed in the store by the writer", ["op"], registry=REGISTRY)
LEADER = Gauge("multicluster_leader", "1 while this replica holds the leader lease (always 1 without lease mode)",
               registry=REGISTRY)
INFORMERS = Gauge("multicluster_informers", "Informers this replica runs per cluster (shards)", ["cluster"],
                  registry=REGISTRY)
TASK_CRASHES = Counter(
    "multicluster_task_crashes_total",
    "Crashes of supervised tasks (restarted with backoff), by kind of task",
    ["task"],
    registry=REGISTRY,
)
ROWS_DROPPED = Counter(
    "multicluster_store_rows_dropped_total",
    "Changes the store could not take and the writer dropped (logged with the object and the reason)",
    ["reason"],
    registry=REGISTRY,
)
OBJECTS_REJECTED = Counter(
    "multicluster_objects_rejected_total",
    "Objects a member cluster served that cannot be stored (invalid resourceVersion or name), skipped",
    ["cluster", "gvr"],
    registry=REGISTRY,
)
MEMBER_LIMITS = Counter(
    "multicluster_member_limits_total",
    "Times a member cluster hit a sync: limit (maxListPageBytes, maxWatchLineBytes, maxObjectBytes, "
    "maxTypesPerCluster, maxDiscoveredResources)",
    ["cluster", "limit"],
    registry=REGISTRY,
)
STORE_ENDPOINT = Gauge(
    "multicluster_store_endpoint",
    "1 for the database node (HOST:PORT of store.endpoints) the MySQL store writes through, 0 for the others",
    ["endpoint"],
    registry=REGISTRY,
)
STORE_FAILOVERS = Counter(
    "multicluster_store_failovers_total",
    "Times the MySQL store moved to another database node (the one in use died or left the primary component)",
    registry=REGISTRY,
)
WATCHERS = Gauge("multicluster_watchers", "Open watches of the Kubernetes-compatible API (subscriptions of the hub)",
                 registry=REGISTRY)
WATCHES_CLOSED = Counter(
    "multicluster_watches_closed_total",
    "Watches the hub ended before the client did: too slow (its queue was full), gap (a cluster's change log "
    "positions never arrived), shutdown",
    ["reason"], registry=REGISTRY)
