"""spec.propagateDependencies on the real harness (issue #16): a Deployment's ConfigMap volume and Secret env go
with it, a missing one is named and delivered once it appears, a shared one outlives the first MCR that lets go,
and dropping the reference or deleting the MCR cleans them up."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from multicluster.delivery.dependencies import SOURCE_ANNOTATION
from tests.delivery.helpers import Env, MakeEnv, eventually
from tests.delivery.test_authorization import condition

pytestmark = pytest.mark.integration

MEMBERS = ["cluster2", "cluster3"]
SECRET_VALUE = "hunter2-do-not-log"


def workload(name: str, cm: str | None, secret: str | None) -> dict[str, Any]:
    labels = {"app": name}
    container: dict[str, Any] = {"name": "c", "image": "registry.k8s.io/pause:3.9"}
    spec: dict[str, Any] = {"containers": [container]}
    if cm:
        spec["volumes"] = [{"name": "cfg", "configMap": {"name": cm}}]
        container["volumeMounts"] = [{"name": "cfg", "mountPath": "/cfg"}]
    if secret:
        container["env"] = [{"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": secret, "key": "pw"}}}]
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 0, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": spec}}}


async def on_master(env: Env, kind: str, name: str, **body: Any) -> None:
    plural = {"ConfigMap": "configmaps", "Secret": "secrets"}[kind]
    await env.master.request("POST", f"/api/v1/namespaces/{env.ns}/{plural}",
                             body={"apiVersion": "v1", "kind": kind, "metadata": {"name": name}, **body})


def secret_path(env: Env, name: str) -> str:
    return f"/api/v1/namespaces/{env.ns}/secrets/{name}"


async def absent(env: Env, path: str, clusters: list[str]) -> bool:
    return all([await env.get(c, path) is None for c in clusters])


async def test_dependencies_arrive_with_the_workload_and_are_cleaned_up(make_env: MakeEnv) -> None:
    # The operator lets MCRs without a service account copy Secrets (read with the daemon's credentials).
    env = await make_env(delivery={"secretsWithoutServiceAccount": True})
    await on_master(env, "ConfigMap", "app-cfg", data={"app.conf": "x=1"})
    await on_master(env, "Secret", "app-sec", data={"pw": base64.b64encode(SECRET_VALUE.encode()).decode()})
    cr = env.cr("dep", workload("dep-web", "app-cfg", "app-sec"), clusters=MEMBERS)
    cr["spec"]["propagateDependencies"] = True
    await env.apply_cr(cr)
    await env.wait_applied("dep", "2/2")
    await condition(env, "dep", "Dependencies", "True")
    for c in MEMBERS:
        cm = await env.get(c, env.cm_path("app-cfg"))
        sec = await env.get(c, secret_path(env, "app-sec"))
        assert cm and cm["data"] == {"app.conf": "x=1"}, c
        assert cm["metadata"]["annotations"][SOURCE_ANNOTATION] == f"{env.ns}/app-cfg"
        assert sec and base64.b64decode(sec["data"]["pw"]).decode() == SECRET_VALUE, c
    entry = await env.entry("dep", "cluster2")
    assert {(d["kind"], d["name"]) for d in entry["dependencies"]} == {("ConfigMap", "app-cfg"),
                                                                        ("Secret", "app-sec")}
    # The value is in the members, never in the MCR's status or its Events.
    said = as_text(await env.get_cr("dep")) + as_text(await env.events())
    assert SECRET_VALUE not in said and base64.b64encode(SECRET_VALUE.encode()).decode() not in said

    # A change on the master reaches the members at the next reconcile (here: a template change).
    new_pw = base64.b64encode(b"rotated").decode()
    await env.master.request("PATCH", secret_path(env, "app-sec"), body={"data": {"pw": new_pw}},
                             content_type="application/merge-patch+json")
    # Dropping the ConfigMap reference removes its copies; the Secret stays.
    cr["spec"]["template"] = workload("dep-web", None, "app-sec")
    await env.apply_cr(cr)
    await env.wait_applied("dep", "2/2")

    async def cm_gone() -> bool:
        return await absent(env, env.cm_path("app-cfg"), MEMBERS)
    await eventually(cm_gone, what="unreferenced ConfigMap removed")
    rotated = await env.get("cluster2", secret_path(env, "app-sec"))
    assert rotated and rotated["data"]["pw"] == new_pw
    assert await env.get("cluster1", env.cm_path("app-cfg")) is not None  # the master's own object is untouched

    # Deleting the MCR removes the rest.
    await env.delete_cr("dep")

    async def all_gone() -> bool:
        return await env.get_cr("dep") is None and await absent(env, secret_path(env, "app-sec"), MEMBERS)
    await eventually(all_gone, what="MCR and its Secret copies gone")
    assert await env.get("cluster1", secret_path(env, "app-sec")) is not None


def as_text(obj: Any) -> str:
    return orjson.dumps(obj).decode()


async def test_missing_dependency_is_named_then_delivered_and_shared_ones_outlive_one_user(make_env: MakeEnv) -> None:
    env = await make_env()
    one = env.cr("one", workload("one-web", "shared-cfg", None), clusters=["cluster2"])
    one["spec"]["propagateDependencies"] = True
    await env.apply_cr(one)
    cond = await condition(env, "one", "Dependencies", "False")
    assert cond["reason"] == "DependencyMissing"
    assert f"cluster2: ConfigMap shared-cfg does not exist in namespace {env.ns} on the master" in cond["message"]
    assert (await env.entry("one", "cluster2"))["phase"] == "Applied"  # the workload itself is delivered
    await env.event("DependencyMissing", "cluster2: ConfigMap shared-cfg does not exist")

    await on_master(env, "ConfigMap", "shared-cfg", data={"k": "v"})
    await condition(env, "one", "Dependencies", "True", timeout=60)  # retried with backoff until it appears
    assert await env.get("cluster2", env.cm_path("shared-cfg")) is not None

    two = env.cr("two", workload("two-web", "shared-cfg", None), clusters=["cluster2"])
    two["spec"]["propagateDependencies"] = True
    await env.apply_cr(two)
    await condition(env, "two", "Dependencies", "True")
    await env.delete_cr("one")

    async def one_gone() -> bool:
        return await env.get_cr("one") is None
    await eventually(one_gone, what="first MCR deleted")
    left = await env.get("cluster2", env.cm_path("shared-cfg"))
    assert left is not None and left["data"] == {"k": "v"}  # the other MCR still needs it
    labels = left["metadata"]["labels"]
    assert sum(k.startswith("dependency.multicluster.practice.com/") for k in labels) == 1

    # Switching propagation off releases it too: the last user gone, the copy is deleted.
    two["spec"]["propagateDependencies"] = False
    await env.apply_cr(two)

    async def cm_gone() -> bool:
        return await env.get("cluster2", env.cm_path("shared-cfg")) is None
    await eventually(cm_gone, what="shared ConfigMap deleted with its last user")


async def test_the_delivery_policy_applies_to_dependencies(make_env: MakeEnv) -> None:
    # The operator allows Deployments only: the workload goes, its ConfigMap does not.
    env = await make_env(delivery={"policy": [{"kinds": ["apps/Deployment"]}]})
    await on_master(env, "ConfigMap", "pol-cfg", data={"k": "v"})
    cr = env.cr("pol", workload("pol-web", "pol-cfg", None), clusters=["cluster2"])
    cr["spec"]["propagateDependencies"] = True
    await env.apply_cr(cr)
    cond = await condition(env, "pol", "Dependencies", "False")
    assert cond["reason"] == "DependencyDenied"
    assert "cluster2: ConfigMap pol-cfg: KindNotAllowed" in cond["message"]
    assert (await env.entry("pol", "cluster2"))["phase"] == "Applied"
    assert await env.get("cluster2", env.cm_path("pol-cfg")) is None


async def grant(client: Any, ns: str, sa: str, resources: list[str], verbs: list[str]) -> None:
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    name = f"dep-{'-'.join(resources)}"
    await client.request("POST", f"{rbac}/namespaces/{ns}/roles", body={
        "metadata": {"name": name}, "rules": [{"apiGroups": [""], "resources": resources, "verbs": verbs}]})
    await client.request("POST", f"{rbac}/namespaces/{ns}/rolebindings", body={
        "metadata": {"name": name}, "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}],
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name}})


async def test_secrets_need_a_service_account_by_default(make_env: MakeEnv) -> None:
    """The attack: an author who may create MCRs but not read a Secret names it as a dependency, so the daemon reads
    it with its own credentials and copies it to a member the author can read. By default a Secret is copied only
    for an MCR with spec.serviceAccountName; the ConfigMap beside it still goes."""
    env = await make_env()
    await on_master(env, "ConfigMap", "plain-cfg", data={"k": "v"})
    await on_master(env, "Secret", "loot", data={"pw": base64.b64encode(SECRET_VALUE.encode()).decode()})
    cr = env.cr("thief", workload("thief-web", "plain-cfg", "loot"), clusters=["cluster2"])
    cr["spec"]["propagateDependencies"] = True
    await env.apply_cr(cr)
    cond = await condition(env, "thief", "Dependencies", "False")
    assert cond["reason"] == "DependencyDenied"
    assert "cluster2: Secret loot: SecretNeedsServiceAccount" in cond["message"]
    assert "delivery.secretsWithoutServiceAccount" in cond["message"] and SECRET_VALUE not in cond["message"]
    await env.event("DependencyDenied", "Secret loot: SecretNeedsServiceAccount")
    assert await env.get("cluster2", secret_path(env, "loot")) is None
    assert await env.get("cluster2", env.cm_path("plain-cfg")) is not None


async def test_with_a_service_account_the_master_read_is_its_own(make_env: MakeEnv) -> None:
    """The attack: an author who may not read a Secret on the master names it as a dependency, to have it copied
    to a member they can read. With spec.serviceAccountName the master read is done as that account: refused."""
    env = await make_env()
    sa = "dep-reader"
    await grant(env.master, env.ns, sa, ["configmaps"], ["get"])  # the master: ConfigMaps only, no Secrets
    await grant(env.client("cluster2"), env.ns, sa, ["pods", "configmaps", "secrets"],
                ["get", "list", "watch", "create", "update", "patch", "delete"])
    await on_master(env, "ConfigMap", "visible", data={"k": "v"})
    await on_master(env, "Secret", "hidden", data={"pw": base64.b64encode(SECRET_VALUE.encode()).decode()})
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "reader"}, "spec": {"containers": [{
        "name": "c", "image": "registry.k8s.io/pause:3.9",
        "env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "visible", "key": "k"}}},
                {"name": "B", "valueFrom": {"secretKeyRef": {"name": "hidden", "key": "pw"}}}]}]}}
    cr = env.cr("reader", pod, clusters=["cluster2"])
    cr["spec"]["propagateDependencies"] = True
    cr["spec"]["serviceAccountName"] = sa
    await env.apply_cr(cr)
    cond = await condition(env, "reader", "Dependencies", "False")
    assert cond["reason"] == "DependencyFailed"
    assert "cluster2: Secret hidden: reading it on the master failed" in cond["message"]
    assert f"system:serviceaccount:{env.ns}:{sa}" in cond["message"] and SECRET_VALUE not in cond["message"]
    assert await env.get("cluster2", secret_path(env, "hidden")) is None
    assert await env.get("cluster2", env.cm_path("visible")) is not None  # what the account may read does go


async def test_an_object_that_is_not_a_dependency_copy_is_never_overwritten(make_env: MakeEnv) -> None:
    env = await make_env()
    await env.client("cluster2").request("POST", f"/api/v1/namespaces/{env.ns}/configmaps", body={
        "metadata": {"name": "taken"}, "data": {"theirs": "yes"}})
    await on_master(env, "ConfigMap", "taken", data={"ours": "yes"})
    cr = env.cr("clash", workload("clash-web", "taken", None), clusters=["cluster2"])
    cr["spec"]["propagateDependencies"] = True
    await env.apply_cr(cr)
    cond = await condition(env, "clash", "Dependencies", "False")
    assert cond["reason"] == "DependencyFailed"
    assert f"cluster2: ConfigMap {env.ns}/taken exists and is not a dependency copy" in cond["message"]
    live = await env.get("cluster2", env.cm_path("taken"))
    assert live and live["data"] == {"theirs": "yes"}
    await env.delete_cr("clash")

    async def gone() -> bool:
        return await env.get_cr("clash") is None
    await eventually(gone, what="MCR deleted")
    live = await env.get("cluster2", env.cm_path("taken"))
    assert live and live["data"] == {"theirs": "yes"}  # not deleted with the MCR either
