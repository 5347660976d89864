"""What the Reconciler and the Finalizer share: one instance of each collaborator, built once by the controller.

Both read the delivery policy through one `PolicyHolder`, so a reloaded config replaces it in one place and no
reconcile or finalize can see a policy the other does not. Both use one `Dependencies`, so releasing a dependency
copy on deletion also drops the memo of its delivery.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from multicluster.config import DeliveryConfig
from multicluster.kube import ClusterClient

from .breaker import Breakers
from .crs import MasterCRs
from .dependencies import Dependencies
from .events import EventRecorder
from .model import DeliveryOptions
from .render import Renderer


class PolicyHolder:
    """The delivery policy and allowAdopt in force; the only owner of that setting."""

    def __init__(self, delivery: DeliveryConfig) -> None:
        self._current = delivery

    @property
    def current(self) -> DeliveryConfig:
        return self._current

    def replace(self, delivery: DeliveryConfig) -> bool:
        """Put `delivery` in force; False when it equals the policy already in force."""
        if delivery == self._current:
            return False
        self._current = delivery
        return True


@dataclass(frozen=True, slots=True)
class Context:
    crs: MasterCRs
    clients: Mapping[str, ClusterClient]
    opts: DeliveryOptions
    policy: PolicyHolder
    renderer: Renderer
    breakers: Breakers
    events: EventRecorder
    deps: Dependencies

    @classmethod
    def build(cls, crs: MasterCRs, clients: Mapping[str, ClusterClient], opts: DeliveryOptions,
              policy: PolicyHolder, breakers: Breakers, events: EventRecorder) -> Context:
        return cls(crs, clients, opts, policy, Renderer(), breakers, events,
                   Dependencies(crs.master, opts.field_manager, opts.request_timeout, opts.resync_seconds))
