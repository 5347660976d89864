"""The plain manifests (manifests/rbac.yaml, deploy.yaml, mariadb.yaml): least-privilege RBAC, a Deployment whose
args and env our own CLI accepts, and an embedded config.yaml that passes the daemon's validator. The safe
defaults themselves (no wildcards, token Secret, ClusterIP, NetworkPolicies, ...) are in test_least_privilege.py."""

from __future__ import annotations

from pathlib import Path

import typer.main
import yaml

from multicluster.cli import app
from multicluster.config import parse_config
from multicluster.config.env import env_settings

from .conftest import MANIFESTS, NAMESPACE, Doc, container, find, load_docs

RBAC = load_docs(MANIFESTS / "rbac.yaml")
DEPLOY = load_docs(MANIFESTS / "deploy.yaml")
MARIADB = load_docs(MANIFESTS / "mariadb.yaml")

READ = {"get", "list", "watch"}
WRITE = {"create", "update", "patch", "delete"}
CR_GROUP = "mulitcluster.practice.com"


def _rules(kind: str, name: str) -> list[Doc]:
    return list(find(RBAC, kind, name)["rules"])


def _granted(rules: list[Doc], group: str, resource: str, name: str | None = None) -> set[str]:
    """Verbs granted on every object of group/resource (name None), or on the one called `name`."""
    verbs: set[str] = set()
    for r in rules:
        if (group in r["apiGroups"] or "*" in r["apiGroups"]) and (resource in r["resources"] or "*" in r["resources"]):
            if r.get("resourceNames") and name not in r["resourceNames"]:
                continue
            verbs |= set(r["verbs"])
    return verbs


def test_every_namespaced_object_lives_in_multicluster_system() -> None:
    for doc in RBAC + DEPLOY + MARIADB:
        if doc["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding"):
            assert doc["metadata"].get("namespace") == NAMESPACE, doc["metadata"]


def test_rbac_has_no_wildcard_verbs_and_writes_only_what_it_owns() -> None:
    main = _rules("ClusterRole", "multicluster")
    for doc in RBAC:
        for rule in doc.get("rules", []):
            assert "*" not in rule["verbs"], rule
            if "*" in rule["resources"] or "*" in rule["apiGroups"]:
                assert set(rule["verbs"]) <= READ, f"wildcard resources must be read-only: {rule}"
    # reads every mirrored type except Secrets, writes nothing outside its own API
    assert _granted(main, "apps", "deployments") == READ
    assert _granted(main, "", "secrets") == set()
    assert _granted(main, "coordination.k8s.io", "leases") == READ, "leases belong in the namespaced Role"
    for res in ("multiclusterresources", "multiclusters"):
        assert _granted(main, CR_GROUP, res) == READ | WRITE
    for sub in ("multiclusterresources/status", "multiclusters/status"):
        assert {"update", "patch"} <= _granted(main, CR_GROUP, sub)
    assert "update" in _granted(main, CR_GROUP, "multiclusterresources/finalizers")
    assert _granted(main, "apiextensions.k8s.io", "customresourcedefinitions") == READ
    ours = f"multiclusterresources.{CR_GROUP}"
    assert _granted(main, "apiextensions.k8s.io", "customresourcedefinitions", ours) == READ | {"create", "update",
                                                                                               "patch"}
    assert _granted(main, "", "events") == {"create", "patch"}


def test_delivery_role_is_separate_and_lease_role_is_namespaced() -> None:
    delivery = _rules("ClusterRole", "multicluster-delivery")
    assert _granted(delivery, "apps", "deployments") >= {"create", "update", "patch", "delete"}
    # the controller reads its copies back (GET before apply, a label-selected watch): read and write, nothing else
    assert all(set(r["verbs"]) <= READ | WRITE for r in delivery)
    lease = find(RBAC, "Role", "multicluster-leader-election")
    assert lease["metadata"]["namespace"] == NAMESPACE
    assert _granted(lease["rules"], "coordination.k8s.io", "leases") == READ | WRITE
    sa = find(RBAC, "ServiceAccount", "multicluster")["metadata"]
    for kind, name in (("ClusterRoleBinding", "multicluster"), ("ClusterRoleBinding", "multicluster-delivery"),
                       ("RoleBinding", "multicluster-leader-election")):
        binding = find(RBAC, kind, name)
        assert binding["roleRef"]["name"] == name
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["name"], "namespace": sa["namespace"]}]


def test_deployment_runs_two_probed_locked_down_replicas() -> None:
    deploy = find(DEPLOY, "Deployment", "multicluster")
    pod = deploy["spec"]["template"]["spec"]
    c = container(deploy)
    assert deploy["spec"]["replicas"] == 2
    assert pod["serviceAccountName"] == find(RBAC, "ServiceAccount")["metadata"]["name"]
    assert c["args"] == ["--config", "/etc/multicluster/config.yaml", "--bind", "0.0.0.0",
                         "--token-file", "/etc/multicluster/api/token",
                         "--admin-token-file", "/etc/multicluster/api/adminToken", "--lease-mode",
                         "--lease-name", "multicluster-leader", "--lease-namespace", NAMESPACE,
                         "--no-write-cli-config"]
    assert c["ports"] == [{"name": "server", "containerPort": 31888, "protocol": "TCP"}]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "server"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "server"}
    assert set(c["resources"]) == {"requests", "limits"}
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    kubeconfigs = volumes[mounts["/etc/multicluster/kubeconfigs"]["name"]]["secret"]
    assert kubeconfigs["secretName"] == "multicluster-kubeconfigs"
    cm = volumes[mounts["/etc/multicluster/config.yaml"]["name"]]["configMap"]["name"]
    assert "config.yaml" in find(DEPLOY, "ConfigMap", cm)["data"]
    # the DB password never appears in args, env or the ConfigMap: a file from a Secret
    env = {e["name"]: e for e in c["env"]}
    password = Path(env["MULTICLUSTER_DB_PASSWORD_FILE"]["value"])
    db = volumes[mounts[str(password.parent)]["name"]]["secret"]
    assert db["secretName"] == "multicluster-db"
    assert db["items"] == [{"key": "password", "path": password.name}]
    assert not any("password" in a for a in c["args"])


def test_services_keep_the_seeds_port() -> None:
    pod_labels = find(DEPLOY, "Deployment")["spec"]["template"]["metadata"]["labels"]
    svc = find(DEPLOY, "Service", "multicluster")
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["ports"] == [{"name": "server", "protocol": "TCP", "port": 31888, "targetPort": 31888}]
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    node = find(load_docs(MANIFESTS / "service-nodeport.yaml"), "Service")
    assert node["metadata"]["namespace"] == NAMESPACE
    assert node["spec"]["ports"] == [
        {"name": "server", "protocol": "TCP", "port": 31888, "targetPort": 31888, "nodePort": 31888}
    ]
    assert node["spec"]["selector"].items() <= pod_labels.items()


def test_deployment_args_and_env_are_accepted_by_multicluster_run() -> None:
    """Parse the container's args with our real click command (no daemon starts) and check every MULTICLUSTER_*
    env var is one the CLI reads, so a renamed flag cannot silently break the manifest."""
    c = container(find(DEPLOY, "Deployment"))
    run = typer.main.get_command(app).commands["run"]  # type: ignore[attr-defined]  # typer vendors its click
    ctx = run.make_context("run", list(c["args"]))
    assert str(ctx.params["config"]) == "/etc/multicluster/config.yaml"
    assert ctx.params["bind"] == "0.0.0.0"
    assert ctx.params["lease_mode"] is True
    assert ctx.params["lease_name"] == "multicluster-leader"
    assert ctx.params["lease_namespace"] == NAMESPACE
    assert ctx.params["write_cli_config"] is False
    assert ctx.params["token_file"] is not None and ctx.params["admin_token_file"] is not None
    known = {p.envvar for p in run.params if getattr(p, "envvar", None)}
    known |= {b.setting.env for _, b in env_settings()}  # the config's environment-only settings
    for e in c["env"]:
        if e["name"].startswith("MULTICLUSTER_"):
            assert e["name"] in known, f"{e['name']} is not read by `multicluster run`"


def test_configmap_config_passes_the_validator() -> None:
    text = find(DEPLOY, "ConfigMap", "multicluster-config")["data"]["config.yaml"]
    cfg = parse_config(yaml.safe_load(text), Path("/etc/multicluster"), check_files=False)
    assert cfg.master is not None
    assert cfg.store.type == "mysql"
    svc = find(MARIADB, "Service")["metadata"]
    assert cfg.store.host == f"{svc['name']}.{svc['namespace']}.svc"
    assert cfg.store.port == 3306
    assert cfg.server.port == 31888
    for cluster in cfg.clusters:
        assert cluster.config_path == Path(f"/etc/multicluster/kubeconfigs/{cluster.name}.kubeconfig")


def test_mariadb_example_matches_what_the_daemon_expects() -> None:
    sts = find(MARIADB, "StatefulSet")
    c = container(sts)
    assert c["image"] == "mariadb:10.11"
    assert sts["spec"]["serviceName"] == find(MARIADB, "Service")["metadata"]["name"]
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
    # the Secret is created by the documented command (keys password and root-password), never shipped
    env = {e["name"]: e for e in c["env"]}
    refs = {name: env[name]["valueFrom"]["secretKeyRef"] for name in ("MARIADB_PASSWORD", "MARIADB_ROOT_PASSWORD")}
    assert refs == {"MARIADB_PASSWORD": {"name": "multicluster-db", "key": "password"},
                    "MARIADB_ROOT_PASSWORD": {"name": "multicluster-db", "key": "root-password"}}
    assert "--from-literal=password=" in (MANIFESTS / "mariadb.yaml").read_text()
    cfg = yaml.safe_load(find(DEPLOY, "ConfigMap")["data"]["config.yaml"])["store"]
    assert env["MARIADB_USER"]["value"] == cfg["user"]
    assert env["MARIADB_DATABASE"]["value"] == cfg["database"]
    # the daemon's password is the MariaDB user's password
    daemon = find(DEPLOY, "Deployment")["spec"]["template"]["spec"]
    db_volume = next(v for v in daemon["volumes"] if v["name"] == "db-password")["secret"]
    assert refs["MARIADB_PASSWORD"] == {"name": db_volume["secretName"], "key": db_volume["items"][0]["key"]}
