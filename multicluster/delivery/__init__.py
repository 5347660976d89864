"""Delivery of MultiClusterResources from the master cluster to member clusters.

Public surface: `Controller(config, clients, supervisor, options=None)` with `async run()`, `DeliveryOptions`,
and the names that mark delivered objects. Modules, by role:

- controller: lifecycle (CRD install, the CR informer, the work queue, workers) and the dispatch of each key
- reconcile: one live CR → one copy per placed cluster → status (owns the apply memo)
- finalize: a deleted CR → every copy removed or released → finalizer dropped (owns the cleanup deadlines)
- crs: the CR cache (newest object per key) and our writes to the master (finalizer, status)
- breaker: per-cluster circuit breaker shared by reconcile and finalize
- render: one CR for one member (kind resolution, rendering, the writing client, the policy request)
- removal: what removing copies needs in both reconcile and finalize
- pure: patches (template → per-cluster object), selector (placement: names and clusterSelector), health (a
  copy's own status summarised, its verdict), status (the CR's status), policy (who may deliver what),
  model (names, options, records), types (TypedDicts of the MultiClusterResource: object, spec, status)
- I/O helpers: apply (one object into one cluster), watches (drift detection, the delivered-copy index),
  clusterlabels (the clusters' labels from the MultiCluster objects), events, install (CRDs)
"""

from .controller import Controller
from .install import install_crds
from .model import (
    ADOPT_ANNOTATION,
    FINALIZER,
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    OWNER_ANNOTATION,
    OWNER_UID_ANNOTATION,
    DeliveryOptions,
    Phase,
)

__all__ = [
    "ADOPT_ANNOTATION",
    "FINALIZER",
    "MANAGED_BY_LABEL",
    "MANAGED_BY_VALUE",
    "OWNER_ANNOTATION",
    "OWNER_UID_ANNOTATION",
    "Controller",
    "DeliveryOptions",
    "Phase",
    "install_crds",
]
