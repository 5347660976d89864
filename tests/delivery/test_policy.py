"""The delivery policy (multicluster.delivery.policy) and its config section, as pure functions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from multicluster.config import DeliveryConfig, KindPattern, parse_config
from multicluster.delivery import policy
from multicluster.delivery.policy import Request, check
from multicluster.errors import ConfigError

DEFAULT = DeliveryConfig()


def cfg(delivery: Any, tmp_path: Path) -> DeliveryConfig:
    kubeconfig = tmp_path / "k"
    kubeconfig.write_text("")
    data = {"clusters": [{"metadata": {"clusterName": "c1", "configPath": str(kubeconfig)}}], "delivery": delivery}
    return parse_config(data, tmp_path, check_files=False).delivery


def ns(kind: str, namespace: str, *, group: str = "", source: str = "team-a") -> Request:
    return Request(source, group, kind, True, namespace)


def cluster(kind: str, *, group: str = "", source: str = "team-a") -> Request:
    return Request(source, group, kind, False, "")


def test_default_policy_own_namespace_only() -> None:
    assert check(DEFAULT, ns("ConfigMap", "team-a")) is None
    assert check(DEFAULT, ns("Deployment", "team-a", group="apps")) is None
    other = check(DEFAULT, ns("ConfigMap", "kube-system"))
    assert other is not None and other.reason == "NamespaceNotAllowed"
    assert "kube-system" in other.message and "team-a" in other.message and "delivery.policy" in other.message


@pytest.mark.parametrize(("group", "kind", "namespaced"), [
    ("rbac.authorization.k8s.io", "Role", True), ("rbac.authorization.k8s.io", "RoleBinding", True),
    ("rbac.authorization.k8s.io", "ClusterRole", False), ("rbac.authorization.k8s.io", "ClusterRoleBinding", False),
    ("admissionregistration.k8s.io", "MutatingWebhookConfiguration", False),
    ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration", False),
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy", False),
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding", False),
    ("apiextensions.k8s.io", "CustomResourceDefinition", False), ("apiregistration.k8s.io", "APIService", False),
    ("", "Namespace", False), ("scheduling.k8s.io", "PriorityClass", False), ("", "ResourceQuota", True),
    ("", "LimitRange", True), ("networking.k8s.io", "NetworkPolicy", True),
])
def test_default_policy_refuses_restricted_kinds(group: str, kind: str, namespaced: bool) -> None:
    denial = check(DEFAULT, Request("team-a", group, kind, namespaced, "team-a" if namespaced else ""))
    assert denial is not None and denial.reason == "KindNotAllowed" and kind in denial.message


def test_default_policy_refuses_cluster_scoped() -> None:
    denial = check(DEFAULT, cluster("StorageVersionMigration", group="storagemigration.k8s.io"))
    assert denial is not None and denial.reason == "ClusterScopedNotAllowed"


def test_operator_rules(tmp_path: Path) -> None:
    rules = cfg({"allowAdopt": True, "policy": [
        {},  # the default policy's own rule
        {"fromNamespaces": ["platform"], "kinds": ["rbac.authorization.k8s.io/ClusterRole"], "clusterScoped": True,
         "toNamespaces": []},
        {"fromNamespaces": ["platform"], "kinds": ["*"], "toNamespaces": ["kube-system", "<same>"]},
        {"fromNamespaces": ["team-a"], "kinds": ["apps/*"], "toNamespaces": ["*"]},
    ]}, tmp_path)
    assert rules.allow_adopt is True
    assert check(rules, ns("ConfigMap", "team-a")) is None
    assert check(rules, ns("Deployment", "shared", group="apps")) is None
    assert check(rules, cluster("ClusterRole", group="rbac.authorization.k8s.io", source="platform")) is None
    assert check(rules, ns("Role", "kube-system", group="rbac.authorization.k8s.io", source="platform")) is None
    # "*" in an operator rule is the operator's choice: every kind, restricted ones included.
    assert check(rules, ns("NetworkPolicy", "platform", group="networking.k8s.io", source="platform")) is None
    # What no rule grants keeps its reason and names the rules considered.
    d1 = check(rules, cluster("ClusterRole", group="rbac.authorization.k8s.io"))
    assert d1 is not None and d1.reason == "KindNotAllowed" and "delivery.policy[0]" in d1.message
    d2 = check(rules, ns("ConfigMap", "shared"))
    assert d2 is not None and d2.reason == "NamespaceNotAllowed" and "toNamespaces" in d2.message
    d3 = check(rules, cluster("ClusterRoleBinding", group="rbac.authorization.k8s.io", source="platform"))
    assert d3 is not None and d3.reason == "ClusterScopedNotAllowed" and "delivery.policy[2]" in d3.message
    only = cfg({"policy": [{"fromNamespaces": ["platform"]}]}, tmp_path)
    d4 = check(only, ns("ConfigMap", "team-a"))
    assert d4 is not None and d4.reason == "NamespaceNotAllowed" and "namespace team-a" in d4.message


def test_config_defaults_and_kind_spellings(tmp_path: Path) -> None:
    assert cfg(None, tmp_path) == DeliveryConfig()
    rule = cfg({"policy": [{"kinds": ["ConfigMap", "apps/Deployment", "apps/*", "*"]}]}, tmp_path).policy[0]
    assert rule.kinds == (KindPattern("", "ConfigMap"), KindPattern("apps", "Deployment"), KindPattern("apps", "*"),
                          KindPattern("*", "*"))
    assert rule.from_namespaces == ("*",) and rule.to_namespaces == ("<same>",) and rule.cluster_scoped is False


@pytest.mark.parametrize(("delivery", "message"), [
    ([], "delivery: expected a mapping"),
    ({"alowAdopt": True}, 'delivery: unknown key "alowAdopt" (did you mean "allowAdopt"?)'),
    ({"allowAdopt": "yes"}, "delivery.allowAdopt: expected true or false"),
    ({"policy": {}}, "delivery.policy: expected a list of rules"),
    ({"policy": ["x"]}, "delivery.policy[0]: expected a mapping"),
    ({"policy": [{"kind": ["Pod"]}]}, 'delivery.policy[0]: unknown key "kind" (did you mean "kinds"?)'),
    ({"policy": [{}, {"kinds": ["apps/v1/Deployment"]}]}, 'delivery.policy[1].kinds[0]: "apps/v1/Deployment" is not'),
    ({"policy": [{"kinds": ["deployments"]}]}, 'delivery.policy[0].kinds[0]: "deployments" is not a kind'),
    ({"policy": [{"kinds": "Pod"}]}, "delivery.policy[0].kinds: expected a list of kinds"),
    ({"policy": [{"toNamespaces": ["Kube_System"]}]}, 'delivery.policy[0].toNamespaces[0]: "Kube_System" is not a'),
    ({"policy": [{"fromNamespaces": ["<same>"]}]}, 'delivery.policy[0].fromNamespaces[0]: "<same>" is not a'),
    ({"policy": [{"clusterScoped": 1}]}, "delivery.policy[0].clusterScoped: expected true or false"),
])
def test_config_errors_name_the_field(tmp_path: Path, delivery: Any, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        cfg(delivery, tmp_path)
    assert str(err.value).startswith(message) or message in str(err.value), str(err.value)


def test_impersonation_headers_and_adopt_denial() -> None:
    assert policy.impersonation("team-a", "deployer") == {
        "Impersonate-User": "system:serviceaccount:team-a:deployer"}
    d = policy.adopt_denial()
    assert d.reason == "AdoptNotAllowed" and "delivery.allowAdopt" in d.message
