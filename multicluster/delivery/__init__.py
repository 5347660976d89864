"""Delivery of MultiClusterResources from the master cluster to member clusters.

Public surface: `Controller(config, clients, supervisor, options=None)` with `async run()`, `DeliveryOptions`,
and the names that mark delivered objects. Modules: patches (template → per-cluster object, pure), status
(health and status, pure), apply (one object into one cluster), watches (drift detection), events, install
(CRDs), controller (the loop that ties them together).
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
