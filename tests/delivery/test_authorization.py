"""Who may deliver what (issue #16, authorization): the default delivery policy, operator rules in config.yaml,
impersonation of `spec.serviceAccountName` in each member, and `adopt` as an operator switch.

Real harness: cluster1 is the master, cluster2/3 are members; their API servers run RBAC, so an impersonated
service account gets exactly what each member's own Roles grant it.
"""

from __future__ import annotations

from typing import Any

import pytest

from multicluster.delivery import ADOPT_ANNOTATION, MANAGED_BY_LABEL, OWNER_ANNOTATION
from multicluster.kube import ClusterClient
from tests.delivery.helpers import Env, MakeEnv, eventually

pytestmark = pytest.mark.integration

ALL = ["cluster1", "cluster2", "cluster3"]
MEMBERS = ["cluster2", "cluster3"]
RBAC = "/apis/rbac.authorization.k8s.io/v1"


def cm(name: str, namespace: str | None = None, **data: str) -> dict[str, Any]:
    md = {"name": name} | ({"namespace": namespace} if namespace else {})
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": md, "data": data or {"k": "v"}}


def cluster_role(name: str) -> dict[str, Any]:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": name},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]}


def deployment(name: str) -> dict[str, Any]:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
                "metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}


async def condition(env: Env, name: str, ctype: str, status: str, timeout: float = 20.0) -> dict[str, Any]:
    """Until the CR's condition `ctype` has `status` for its current generation."""
    async def check() -> dict[str, Any] | None:
        cr = await env.get_cr(name) or {}
        st = cr.get("status") or {}
        if st.get("observedGeneration") != (cr.get("metadata") or {}).get("generation"):
            return None
        return next((c for c in st.get("conditions") or [] if c["type"] == ctype and c["status"] == status), None)
    return await eventually(check, timeout=timeout, what=f"{name} condition {ctype}={status}")


async def nowhere(env: Env, path: str) -> None:
    for c in ALL:
        assert await env.get(c, path) is None, f"{path} was written in {c}"


async def test_default_policy_refuses_other_namespace_and_cluster_scoped_kinds(make_env: MakeEnv) -> None:
    env = await make_env()
    # A template naming another namespace: refused in every cluster, nothing written anywhere.
    await env.apply_cr(env.cr("elsewhere", cm("x-cm", namespace="kube-system"), clusters=ALL))
    denied = await condition(env, "elsewhere", "Denied", "True")
    assert denied["reason"] == "NamespaceNotAllowed"
    assert "kube-system" in denied["message"] and f"own namespace, {env.ns}" in denied["message"]
    st = await env.status("elsewhere")
    assert st["applied"] == "0/3" and {e["phase"] for e in st["clusters"]} == {"Denied"}
    await env.event("Denied", "cluster cluster2: NamespaceNotAllowed: default delivery policy")
    await nowhere(env, "/api/v1/namespaces/kube-system/configmaps/x-cm")

    # A ClusterRole (RBAC kind, cluster-scoped): refused by the kind rule.
    role = f"mc-{env.ns}"
    await env.apply_cr(env.cr("role", cluster_role(role), clusters=ALL))
    denied = await condition(env, "role", "Denied", "True")
    assert denied["reason"] == "KindNotAllowed" and "rbac.authorization.k8s.io/ClusterRole" in denied["message"]
    await env.event("Denied", "KindNotAllowed")
    await nowhere(env, f"{RBAC}/clusterroles/{role}")

    # Fixing the template (own namespace) lifts the refusal: the condition turns False and the copies arrive.
    await env.apply_cr(env.cr("elsewhere", cm("x-cm"), clusters=ALL))
    await env.wait_applied("elsewhere", "3/3")
    assert (await condition(env, "elsewhere", "Denied", "False"))["reason"] == "Allowed"


async def test_operator_rules_allow_what_the_default_refuses(make_env: MakeEnv) -> None:
    env = await make_env(delivery={"policy": [
        {},
        {"fromNamespaces": ["unrelated"], "kinds": ["*"], "toNamespaces": ["*"], "clusterScoped": True},
        {"kinds": ["rbac.authorization.k8s.io/ClusterRole"], "toNamespaces": [], "clusterScoped": True},
        {"kinds": ["ConfigMap"], "toNamespaces": ["kube-system"]},
    ]})
    role = f"mc-{env.ns}"
    await env.apply_cr(env.cr("role", cluster_role(role), clusters=ALL))
    await env.apply_cr(env.cr("sys", cm(f"{env.ns}-cm", namespace="kube-system"), clusters=ALL))
    await env.wait_applied("role", "3/3")
    await env.wait_applied("sys", "3/3")
    for c in ALL:
        live = await env.get(c, f"{RBAC}/clusterroles/{role}")
        assert live and live["metadata"]["annotations"][OWNER_ANNOTATION] == f"{env.ns}/role"
        assert await env.get(c, f"/api/v1/namespaces/kube-system/configmaps/{env.ns}-cm")
    # Still refused: what no rule names (a ClusterRoleBinding), with the rules considered in the message.
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": role},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
               "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": env.ns}]}
    await env.apply_cr(env.cr("bind", binding, clusters=ALL))
    denied = await condition(env, "bind", "Denied", "True")
    assert denied["reason"] == "KindNotAllowed" and "delivery.policy[0], delivery.policy[2]" in denied["message"]
    await nowhere(env, f"{RBAC}/clusterrolebindings/{role}")
    # Deleting the CRs removes the cluster-scoped and the kube-system copies they delivered.
    for name in ("role", "sys", "bind"):
        await env.delete_cr(name)

    async def cleaned() -> bool:
        return all([await env.get(c, f"{RBAC}/clusterroles/{role}") is None for c in ALL]
                   + [await env.get(c, f"/api/v1/namespaces/kube-system/configmaps/{env.ns}-cm") is None
                      for c in ALL])
    await eventually(cleaned, what="copies removed")


async def grant_configmaps(client: ClusterClient, ns: str, subject: dict[str, Any]) -> None:
    """In one member: a Role on ConfigMaps only (namespace `ns`), bound to `subject`."""
    await client.request("POST", f"{RBAC}/namespaces/{ns}/roles", body={
        "metadata": {"name": "cm-only"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"],
                   "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]}]})
    await client.request("POST", f"{RBAC}/namespaces/{ns}/rolebindings", body={
        "metadata": {"name": "cm-only"}, "subjects": [subject],
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cm-only"}})


async def test_service_account_impersonation_lets_each_member_decide(make_env: MakeEnv) -> None:
    env = await make_env()
    sa = "deployer"
    # cluster2 grants the account by name; cluster3 grants its namespace's service-account group (the API server
    # derives that group from the impersonated user); the master grants nothing.
    await grant_configmaps(env.client("cluster2"), env.ns, {"kind": "ServiceAccount", "name": sa,
                                                            "namespace": env.ns})
    await grant_configmaps(env.client("cluster3"), env.ns, {"kind": "Group", "name": f"system:serviceaccounts:{env.ns}",
                                                            "apiGroup": "rbac.authorization.k8s.io"})

    def as_sa(obj: dict[str, Any]) -> dict[str, Any]:
        obj["spec"]["serviceAccountName"] = sa
        return obj

    await env.apply_cr(as_sa(env.cr("cms", cm("sa-cm"), clusters=ALL)))
    await env.apply_cr(as_sa(env.cr("dep", deployment("sa-dep"), clusters=MEMBERS)))

    async def cms_phases() -> dict[str, str] | None:
        st = await env.status("cms")
        got = {e["name"]: e["phase"] for e in st.get("clusters") or []}
        return got if got == {"cluster1": "Forbidden", "cluster2": "Applied", "cluster3": "Applied"} else None
    await eventually(cms_phases, what="ConfigMap applied where the account may, Forbidden on the master")
    st = await env.status("cms")
    master = next(e for e in st["clusters"] if e["name"] == "cluster1")
    assert f'"system:serviceaccount:{env.ns}:{sa}"' in master["message"]  # the member's own reason
    assert await env.get("cluster1", env.cm_path("sa-cm")) is None
    for c in MEMBERS:
        copy = await env.get(c, env.cm_path("sa-cm"))
        assert copy and copy["metadata"]["labels"][MANAGED_BY_LABEL] == "multicluster"

    # A kind the account may not write: Forbidden with the member's reason, nothing written.
    applied = await condition(env, "dep", "Applied", "False")
    assert applied["reason"] == "Forbidden"
    assert 'cannot get resource "deployments"' in applied["message"] and f"system:serviceaccount:{env.ns}:{sa}" \
        in applied["message"]
    for c in MEMBERS:
        assert await env.get(c, f"/apis/apps/v1/namespaces/{env.ns}/deployments/sa-dep") is None
    await env.event("Forbidden", "cluster cluster2: cannot read Deployment")

    # Deletion goes through the account too (it may delete ConfigMaps): the copies go, the CRs go.
    await env.delete_cr("cms")
    await env.delete_cr("dep")

    async def gone() -> bool:
        return (await env.get_cr("cms") is None and await env.get_cr("dep") is None
                and all([await env.get(c, env.cm_path("sa-cm")) is None for c in MEMBERS]))
    await eventually(gone, what="CRs and copies deleted")


async def test_adopt_is_an_operator_switch_and_adopted_objects_are_released(make_env: MakeEnv) -> None:
    env = await make_env()
    c2 = env.client("cluster2")
    foreign = cm("theirs", namespace=env.ns, k="before")
    foreign["metadata"]["labels"] = {"team": "a"}
    await c2.request("POST", f"/api/v1/namespaces/{env.ns}/configmaps", body=foreign)
    adopt = {ADOPT_ANNOTATION: "true"}

    await env.apply_cr(env.cr("take", cm("theirs", k="ours"), clusters=MEMBERS, annotations=adopt))
    denied = await condition(env, "take", "Denied", "True")
    assert denied["reason"] == "AdoptNotAllowed" and "delivery.allowAdopt" in denied["message"]
    await env.event("Denied", "AdoptNotAllowed")
    live = await env.get("cluster2", env.cm_path("theirs"))
    assert live and live["data"] == {"k": "before"} and OWNER_ANNOTATION not in (live["metadata"].get("annotations")
                                                                               or {})
    assert await env.get("cluster3", env.cm_path("theirs")) is None
    await env.stop()

    # With the switch on (a new controller, same namespace): cluster2's object is adopted, cluster3's created.
    env = await make_env(delivery={"allowAdopt": True})
    await env.wait_applied("take", "2/2")
    await condition(env, "take", "Denied", "False")
    adopted = await env.get("cluster2", env.cm_path("theirs"))
    assert adopted and adopted["data"] == {"k": "ours"}
    assert adopted["metadata"]["annotations"]["multicluster.practice.com/adopted"] == "true"
    created = await env.get("cluster3", env.cm_path("theirs"))
    assert created and "multicluster.practice.com/adopted" not in created["metadata"]["annotations"]
    # A hand edit is still reverted, and the adopted mark survives our applies.
    await c2.request("PATCH", env.cm_path("theirs"), body={"data": {"k": "edited"}},
                     content_type="application/merge-patch+json")

    async def reverted() -> bool:
        obj = await env.get("cluster2", env.cm_path("theirs")) or {}
        return obj.get("data") == {"k": "ours"}
    await eventually(reverted, what="hand edit reverted")

    # Deleting the CR releases the adopted object (content kept, our marks gone) and deletes the one it created.
    await env.delete_cr("take")

    async def released() -> dict[str, Any] | None:
        if await env.get_cr("take") is not None or await env.get("cluster3", env.cm_path("theirs")) is not None:
            return None
        return await env.get("cluster2", env.cm_path("theirs"))
    kept = await eventually(released, what="CR gone, cluster3 copy deleted")
    assert kept["data"] == {"k": "ours"} and kept["metadata"]["labels"] == {"team": "a"}
    assert not any(k.startswith("multicluster.practice.com/") for k in kept["metadata"].get("annotations") or {})
    assert kept["metadata"]["managedFields"]  # the other writers' entries stay
    assert all((m["manager"], m["operation"]) != ("multicluster", "Apply") for m in kept["metadata"]["managedFields"])
