"""Who may deliver what: the delivery policy, decided before anything is written to a member cluster (pure).

A MultiClusterResource (MCR) is written by whoever may create MCRs in some namespace of the master; its copies are
written into member clusters with the daemon's credentials (or, with `spec.serviceAccountName`, as that service
account of the MCR's namespace). The policy bounds what such an author can reach:

- **Default policy** (no `delivery.policy` rules): a namespaced object lands only in the MCR's own namespace (a
  template naming another namespace is refused); cluster-scoped objects are refused; the kinds of RESTRICTED
  (RBAC, admission, CRDs, API services, namespaces, quotas, network policies, ...) are refused in any namespace,
  because they change who may do what in a member rather than run something there.
- **Operator policy** (`delivery.policy`): a list of rules; a delivery is allowed when one rule matches the MCR's
  namespace (`fromNamespaces`), the object's kind (`kinds`: `group/Kind`, "*" allowed; omitted = every kind but
  RESTRICTED) and its target (`toNamespaces`: names, "<same>" or "*"; cluster-scoped objects need
  `clusterScoped: true`). The rules replace the default: `- {}` is the default policy's own rule.

The decision uses the object as it will be written to one member: after the cluster's customize actions (which can
change the namespace or the kind) and with the scope the member's discovery reports.
"""

from __future__ import annotations

from dataclasses import dataclass

from multicluster.config import SAME_NAMESPACE, DeliveryConfig, KindPattern, PolicyRule

# Kinds the default policy never delivers (and rules without `kinds:` do not cover): they grant rights, change
# admission or the API itself, or lift limits the member's administrators set. "*" = every kind of the group.
RESTRICTED: tuple[KindPattern, ...] = (
    KindPattern("rbac.authorization.k8s.io", "*"),  # Role, RoleBinding, ClusterRole, ClusterRoleBinding
    KindPattern("admissionregistration.k8s.io", "*"),  # webhooks, ValidatingAdmissionPolicy(+Binding)
    KindPattern("apiextensions.k8s.io", "*"),  # CustomResourceDefinition
    KindPattern("apiregistration.k8s.io", "*"),  # APIService
    KindPattern("certificates.k8s.io", "*"),  # CertificateSigningRequest, ClusterTrustBundle
    KindPattern("authentication.k8s.io", "*"),
    KindPattern("authorization.k8s.io", "*"),
    KindPattern("flowcontrol.apiserver.k8s.io", "*"),  # API priority and fairness
    KindPattern("scheduling.k8s.io", "*"),  # PriorityClass
    KindPattern("node.k8s.io", "*"),  # RuntimeClass
    KindPattern("storage.k8s.io", "*"),
    KindPattern("mulitcluster.practice.com", "*"),  # our own CRs: a member that is a master elsewhere
    KindPattern("", "Namespace"),
    KindPattern("", "Node"),
    KindPattern("", "PersistentVolume"),
    KindPattern("", "ResourceQuota"),
    KindPattern("", "LimitRange"),
    KindPattern("networking.k8s.io", "NetworkPolicy"),
)

KIND_NOT_ALLOWED = "KindNotAllowed"
NAMESPACE_NOT_ALLOWED = "NamespaceNotAllowed"
CLUSTER_SCOPED_NOT_ALLOWED = "ClusterScopedNotAllowed"
ADOPT_NOT_ALLOWED = "AdoptNotAllowed"


@dataclass(frozen=True, slots=True)
class Request:
    """One object an MCR in `from_namespace` would write into one member."""

    from_namespace: str
    group: str
    kind: str
    namespaced: bool
    namespace: str  # "" for cluster-scoped objects

    def describe(self) -> str:
        what = f"{self.group}/{self.kind}" if self.group else self.kind
        return f"{what} in namespace {self.namespace}" if self.namespaced else f"cluster-scoped {what}"


@dataclass(frozen=True, slots=True)
class Denial:
    """Why a delivery is refused: `reason` names the rule (condition reason, Event reason), `message` says how."""

    reason: str
    message: str


def restricted(group: str, kind: str) -> bool:
    return any(p.matches(group, kind) for p in RESTRICTED)


def _kind_ok(rule: PolicyRule, group: str, kind: str) -> bool:
    if rule.kinds is None:
        return not restricted(group, kind)
    return any(p.matches(group, kind) for p in rule.kinds)


def _from_ok(rule: PolicyRule, namespace: str) -> bool:
    return "*" in rule.from_namespaces or namespace in rule.from_namespaces


def _target_ok(rule: PolicyRule, req: Request) -> bool:
    if not req.namespaced:
        return rule.cluster_scoped
    return any(t == "*" or t == req.namespace or (t == SAME_NAMESPACE and req.namespace == req.from_namespace)
               for t in rule.to_namespaces)


def check(policy: DeliveryConfig, req: Request) -> Denial | None:
    """None when `req` may be delivered; otherwise the refusal, naming the rule that refuses it."""
    if not policy.policy:
        return _default(req)
    for rule in policy.policy:
        if _from_ok(rule, req.from_namespace) and _kind_ok(rule, req.group, req.kind) and _target_ok(rule, req):
            return None
    # Name the first requirement no rule for this namespace and kind meets.
    mine = [r for r in policy.policy if _from_ok(r, req.from_namespace)]
    fix = "; an operator can add a rule to delivery.policy in config.yaml"
    if not mine:
        return Denial(NAMESPACE_NOT_ALLOWED, f"delivery.policy: no rule lets MultiClusterResources in namespace "
                                             f"{req.from_namespace} deliver anything{fix}")
    kinds = [r for r in mine if _kind_ok(r, req.group, req.kind)]
    if not kinds:
        return Denial(KIND_NOT_ALLOWED, f"delivery.policy: no rule for namespace {req.from_namespace} allows kind "
                                        f"{_kind(req)} (rules considered: {_where(mine)}){fix}")
    if not req.namespaced:
        return Denial(CLUSTER_SCOPED_NOT_ALLOWED, f"delivery.policy: {req.describe()} is refused: no rule for "
                                                  f"namespace {req.from_namespace} and this kind has clusterScoped: "
                                                  f"true (rules considered: {_where(kinds)}){fix}")
    return Denial(NAMESPACE_NOT_ALLOWED, f"delivery.policy: {req.describe()} is refused: no rule for namespace "
                                         f"{req.from_namespace} and this kind lists namespace {req.namespace} in "
                                         f"toNamespaces (rules considered: {_where(kinds)}){fix}")


def _default(req: Request) -> Denial | None:
    fix = "; an operator can allow it with a delivery.policy rule in config.yaml"
    if restricted(req.group, req.kind):
        return Denial(KIND_NOT_ALLOWED, f"default delivery policy: kind {_kind(req)} is refused (RBAC, admission, "
                                        f"CRD, API service, namespace, quota and network policy kinds are never "
                                        f"delivered by default){fix}")
    if not req.namespaced:
        return Denial(CLUSTER_SCOPED_NOT_ALLOWED, f"default delivery policy: {req.describe()} is refused (only "
                                                  f"namespaced objects are delivered by default){fix}")
    if req.namespace != req.from_namespace:
        return Denial(NAMESPACE_NOT_ALLOWED, f"default delivery policy: {req.describe()} is refused (objects go "
                                             f"only to the MultiClusterResource's own namespace, "
                                             f"{req.from_namespace}; leave metadata.namespace empty or set it to "
                                             f"{req.from_namespace}){fix}")
    return None


def adopt_denial() -> Denial:
    return Denial(ADOPT_NOT_ALLOWED, "spec.conflictResolution: Overwrite (or the annotation "
                                     "multicluster.practice.com/adopt) asks to take over existing objects, which "
                                     "delivery.allowAdopt (off) does not allow; use conflictResolution: Abort (the "
                                     "default) and no adopt annotation, or an operator can set delivery.allowAdopt: "
                                     "true in config.yaml")


def impersonation(namespace: str, service_account: str) -> dict[str, str]:
    """Headers that make a member's API server act as `system:serviceaccount:<namespace>:<name>`.

    Only the user is sent: for a service-account user the API server adds the groups itself
    (system:serviceaccounts, system:serviceaccounts:<namespace>, system:authenticated), so the daemon needs
    `impersonate` on serviceaccounts and nothing on groups."""
    return {"Impersonate-User": f"system:serviceaccount:{namespace}:{service_account}"}


def _kind(req: Request) -> str:
    return f"{req.group}/{req.kind}" if req.group else req.kind


def _where(rules: list[PolicyRule]) -> str:
    return ", ".join(r.where for r in rules)
