"""Safe defaults in every shipped manifest and in the chart (issue #14): RBAC that grants exactly what it says
(no `*`, no subresource reads, Secrets only on request, CRD writes only to our CRDs), the API token from a
Secret as files, a ClusterIP Service, NetworkPolicies, no fixed password anywhere, no ServiceAccount token in the
pod unless a cluster entry needs it, and a pod that writes only to its volumes."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
import yaml

from .conftest import CHART, MANIFESTS, NAMESPACE, REPO, Doc, Helm, container, find, load_docs

READ = {"get", "list", "watch"}
CR_GROUP = "mulitcluster.practice.com"
API_SECRET = "multicluster-api"
TOKEN_ARGS = ["--token-file", "/etc/multicluster/api/token", "--admin-token-file", "/etc/multicluster/api/adminToken"]
OUR_CRDS = sorted(d["metadata"]["name"] for d in load_docs(MANIFESTS / "crds.yaml"))
PLAIN_FILES = sorted(p.name for p in MANIFESTS.glob("*.yaml"))
IN_CLUSTER = '[{"metadata": {"clusterName": "home", "inCluster": true, "isMaster": true}}, ' \
             '{"metadata": {"clusterName": "edge"}}]'

# Chart values that change which objects and rules render: every variant must stay free of wildcards.
VARIANTS: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    ("defaults", (), ()),
    ("mariadb", ("mariadb.enabled=true",), ()),
    ("store-secrets", ("config.sync.storeSecrets=true",), ()),
    ("in-cluster", (), ("--set-json", f"config.clusters={IN_CLUSTER}")),
    ("nodeport", ("service.type=NodePort", "service.nodePort=31888"), ()),
    ("tls", ("tls.enabled=true", "tls.secretName=mc-tls"), ()),
    ("apiservice", ("apiService.enabled=true", "tls.enabled=true", "tls.secretName=mc-tls"), ()),
    ("no-leader-election", ("leaderElection.enabled=false",), ()),
    ("existing-secrets", ("apiToken.existingSecret=tok", "db.existingSecret=db", "mariadb.enabled=true"), ()),
]


def plain(*names: str) -> list[Doc]:
    return [d for n in (names or PLAIN_FILES) for d in load_docs(MANIFESTS / n)]


def rules_of(docs: list[Doc]) -> list[Doc]:
    return [r for d in docs if d["kind"] in ("ClusterRole", "Role") for r in d.get("rules", [])]


def granted(rules: list[Doc], group: str, resource: str, name: str | None = None) -> set[str]:
    """Verbs the rules grant on group/resource: on every object (name None) or on the object called `name`."""
    verbs: set[str] = set()
    for r in rules:
        if group not in r.get("apiGroups", []) or resource not in r.get("resources", []):
            continue
        names = r.get("resourceNames")
        if names and (name is None or name not in names):
            continue
        verbs |= set(r["verbs"])
    return verbs


def pod_of(docs: list[Doc]) -> Doc:
    return dict(find(docs, "Deployment")["spec"]["template"]["spec"])


def daemon_config(docs: list[Doc]) -> dict[str, Any]:
    cm = find(docs, "ConfigMap")
    cfg: dict[str, Any] = yaml.safe_load(cm["data"]["config.yaml"])
    return cfg


def rendered(helm: Helm, values: tuple[str, ...] = (), extra: tuple[str, ...] = ()) -> list[Doc]:
    return helm.template(*values, extra=extra)


# ------------------------------------------------------------------------------------------------ RBAC


def assert_no_wildcards(docs: list[Doc]) -> None:
    rules = rules_of(docs)
    assert rules
    for rule in rules:
        for key in ("apiGroups", "resources", "verbs", "resourceNames"):
            assert not any("*" in str(v) for v in rule.get(key) or []), f"`*` in {key}: {rule}"


def assert_reads_name_no_subresource(docs: list[Doc]) -> None:
    for rule in rules_of(docs):
        if set(rule["verbs"]) & READ:
            subs = [r for r in rule["resources"] if "/" in r]
            assert not subs, f"a read rule grants subresources {subs}: {rule}"


def assert_crd_writes_only_ours(docs: list[Doc]) -> None:
    rules = rules_of(docs)
    assert granted(rules, "apiextensions.k8s.io", "customresourcedefinitions") <= READ
    for crd in OUR_CRDS:
        assert {"create", "update", "patch"} <= granted(rules, "apiextensions.k8s.io", "customresourcedefinitions",
                                                       crd), crd
    assert granted(rules, "apiextensions.k8s.io", "customresourcedefinitions", "widgets.example.com") <= READ
    for rule in rules:
        if "customresourcedefinitions" in rule["resources"] and set(rule["verbs"]) - READ:
            assert sorted(rule.get("resourceNames") or []) == OUR_CRDS, rule


def read_types(docs: list[Doc]) -> set[tuple[str, str]]:
    """(group, resource) pairs the ClusterRoles let the daemon list and watch everywhere."""
    rules = [r for d in docs if d["kind"] == "ClusterRole" for r in d.get("rules", [])]
    return {(g, res) for r in rules if {"list", "watch"} <= set(r["verbs"]) and not r.get("resourceNames")
            for g in r["apiGroups"] for res in r["resources"]}


def include_types(cfg: dict[str, Any]) -> set[tuple[str, str]]:
    """The config's resources.include entries as (group, resource): `v1/pods` is core, `deployments.apps` kubectl's
    resource.group form (the two spellings the shipped configs use)."""
    out = set()
    for entry in cfg["resources"]["include"]:
        if entry.startswith("v1/"):
            out.add(("", entry[3:]))
        else:
            resource, _, group = entry.partition(".")
            assert group, f"{entry}: spell core types v1/NAME and others NAME.GROUP"
            out.add((group, resource))
    return out


def assert_config_syncs_what_rbac_reads(docs: list[Doc], *, secrets: bool) -> None:
    """A type the config selects but RBAC does not grant keeps its informer in Forbidden (and the cluster not
    ready); a type granted but not selected is privilege for nothing. The two lists are the same."""
    cfg = daemon_config(docs)
    assert cfg["resources"]["include"], "an empty include syncs every type, including ones RBAC does not grant"
    reads = read_types(docs)
    delivered = {(g, r) for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"].endswith("delivery")
                 for rule in d["rules"] for g in rule["apiGroups"] for r in rule["resources"]}
    own = {(CR_GROUP, "multiclusterresources"), (CR_GROUP, "multiclusters")}
    include = include_types(cfg)
    assert include <= reads, f"selected but not readable: {sorted(include - reads)}"
    assert reads - own - include <= delivered, f"readable but never synced: {sorted(reads - own - include - delivered)}"
    assert (("", "secrets") in reads) is secrets
    assert cfg["sync"]["storeSecrets"] is secrets


def test_plain_rbac_has_no_wildcards_and_no_subresource_reads() -> None:
    docs = plain()
    assert_no_wildcards(docs)
    assert_reads_name_no_subresource(docs)
    assert_crd_writes_only_ours(docs)


@pytest.mark.parametrize(("values", "extra"), [(v, e) for _, v, e in VARIANTS], ids=[n for n, _, _ in VARIANTS])
def test_chart_rbac_has_no_wildcards_and_no_subresource_reads(helm: Helm, values: tuple[str, ...],
                                                               extra: tuple[str, ...]) -> None:
    docs = rendered(helm, values, extra)
    assert_no_wildcards(docs)
    assert_reads_name_no_subresource(docs)
    assert_crd_writes_only_ours(docs)


def test_plain_secrets_are_read_only_with_the_opt_in_file() -> None:
    base = plain("rbac.yaml")
    assert not granted(rules_of(base), "", "secrets")
    assert_config_syncs_what_rbac_reads(base + plain("deploy.yaml"), secrets=False)
    opt_in = plain("rbac-secrets.yaml")
    assert granted(rules_of(opt_in), "", "secrets") == READ
    binding = find(opt_in, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == find(opt_in, "ClusterRole")["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "multicluster", "namespace": NAMESPACE}]


def test_chart_grants_secrets_only_with_store_secrets(helm: Helm) -> None:
    default = rendered(helm)
    assert not granted(rules_of(default), "", "secrets")
    assert_config_syncs_what_rbac_reads(default, secrets=False)
    on = rendered(helm, ("config.sync.storeSecrets=true",))
    assert granted(rules_of(on), "", "secrets") == READ
    assert_config_syncs_what_rbac_reads(on, secrets=True)


def test_chart_read_rules_drive_the_config(helm: Helm) -> None:
    docs = rendered(helm, extra=("--set-json", 'rbac.readRules=[{"apiGroups": [""], "resources": ["pods"]}, '
                                               '{"apiGroups": ["apps"], "resources": ["deployments"]}]'))
    assert daemon_config(docs)["resources"]["include"] == ["v1/pods", "deployments.apps"]
    assert read_types(docs) - {(CR_GROUP, "multiclusterresources"), (CR_GROUP, "multiclusters")} >= {
        ("", "pods"), ("apps", "deployments")}
    bad = helm.run("template", "x", str(CHART), "--set-json", 'rbac.readRules=[{"apiGroups": ["*"], '
                                                              '"resources": ["*"]}]')
    assert bad.returncode != 0, "a wildcard read rule must be refused"


def test_delivery_and_lease_rules_are_kept() -> None:
    docs = plain("rbac.yaml")
    delivery = find(docs, "ClusterRole", "multicluster-delivery")["rules"]
    assert {"get", "list", "watch", "create", "update", "patch", "delete"} <= granted(delivery, "apps", "deployments")
    lease = find(docs, "Role", "multicluster-leader-election")
    assert {"get", "create", "update"} <= granted(lease["rules"], "coordination.k8s.io", "leases")
    main = find(docs, "ClusterRole", "multicluster")["rules"]
    assert {"patch", "update"} <= granted(main, CR_GROUP, "multiclusterresources/status")
    assert {"create", "patch"} <= granted(main, "", "events")


# ------------------------------------------------------------------------------------------------ the API token


def assert_token_files_wired(docs: list[Doc], secret: str) -> None:
    pod = pod_of(docs)
    c = container({"spec": {"template": {"spec": pod}}})
    args = c["args"]
    for flag, path in zip(TOKEN_ARGS[::2], TOKEN_ARGS[1::2], strict=True):
        assert flag in args and args[args.index(flag) + 1] == path, args
    assert args[args.index("--bind") + 1] == "0.0.0.0"
    assert not [e for e in c.get("env", []) if e["name"] in ("MULTICLUSTER_TOKEN", "MULTICLUSTER_ADMIN_TOKEN")]
    mount = next(m for m in c["volumeMounts"] if m["mountPath"] == "/etc/multicluster/api")
    assert mount.get("readOnly") is True
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])["secret"]
    assert volume["secretName"] == secret
    assert not volume.get("optional"), "without the Secret the pod must not start"
    files = {i["key"]: i["path"] for i in volume.get("items") or []} or {"token": "token", "adminToken": "adminToken"}
    assert sorted(files.values()) == ["adminToken", "token"]


def test_plain_deployment_reads_the_tokens_from_the_secret() -> None:
    assert_token_files_wired(plain("deploy.yaml"), API_SECRET)


def test_chart_generates_the_token_secret_once(helm: Helm) -> None:
    first, second = rendered(helm), rendered(helm)
    assert_token_files_wired(first, API_SECRET)
    secret = find(first, "Secret", API_SECRET)
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert sorted(secret["data"]) == ["adminToken", "token"]
    token, admin = (secret["data"][k] for k in ("token", "adminToken"))
    assert token != admin
    assert find(second, "Secret", API_SECRET)["data"]["token"] != token, "not random"
    existing = rendered(helm, ("apiToken.existingSecret=my-tokens",))
    assert not [d for d in existing if d["kind"] == "Secret" and d["metadata"]["name"] == API_SECRET]
    assert_token_files_wired(existing, "my-tokens")


def test_docs_create_the_token_secret_with_random_values() -> None:
    text = (REPO / "docs" / "deploy.md").read_text()
    command = re.search(r"kubectl -n multicluster-system create secret generic multicluster-api \\?\s*"
                        r"--from-literal=token=\"?\$\(openssl rand -hex 32\)\"? \\?\s*"
                        r"--from-literal=adminToken=\"?\$\(openssl rand -hex 32\)\"?", text)
    assert command, "docs/deploy.md must show the command that creates Secret multicluster-api"


# ------------------------------------------------------------------------------------------------ Service, TLS


def test_plain_service_is_cluster_ip_and_node_port_is_a_separate_file() -> None:
    svc = find(plain("deploy.yaml"), "Service")
    assert svc["spec"].get("type", "ClusterIP") == "ClusterIP"
    assert "nodePort" not in svc["spec"]["ports"][0]
    node = find(plain("service-nodeport.yaml"), "Service")
    assert node["spec"]["type"] == "NodePort" and node["spec"]["ports"][0]["nodePort"] == 31888
    assert node["spec"]["selector"] == svc["spec"]["selector"]


def test_chart_service_is_cluster_ip_unless_asked(helm: Helm) -> None:
    svc = find(rendered(helm), "Service")
    assert svc["spec"]["type"] == "ClusterIP" and "nodePort" not in svc["spec"]["ports"][0]
    node = find(rendered(helm, ("service.type=NodePort", "service.nodePort=31888")), "Service")
    assert node["spec"]["type"] == "NodePort" and node["spec"]["ports"][0]["nodePort"] == 31888


def test_chart_tls_serves_https_from_a_secret(helm: Helm) -> None:
    docs = rendered(helm, ("tls.enabled=true", "tls.secretName=mc-tls"))
    pod = pod_of(docs)
    c = container({"spec": {"template": {"spec": pod}}})
    args = c["args"]
    assert args[args.index("--cert-dir") + 1] == "/etc/multicluster/tls"
    mount = next(m for m in c["volumeMounts"] if m["mountPath"] == "/etc/multicluster/tls")
    assert next(v for v in pod["volumes"] if v["name"] == mount["name"])["secret"]["secretName"] == "mc-tls"
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"]["scheme"] == "HTTPS", probe
    assert "--cert-dir" not in container(find(rendered(helm), "Deployment"))["args"]
    res = helm.run("template", "x", str(CHART), "--set", "tls.enabled=true")
    assert res.returncode != 0 and "tls.secretName" in res.stderr


# ------------------------------------------------------------------------------------------------ NetworkPolicies


def assert_network_policies(docs: list[Doc], *, mariadb: bool) -> None:
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    deploy = find(docs, "Deployment")
    daemon_labels = deploy["spec"]["template"]["metadata"]["labels"]
    daemon = [p for p in policies if p["spec"]["podSelector"]["matchLabels"].items() <= daemon_labels.items()
              and p["spec"]["podSelector"]["matchLabels"]]
    assert len(daemon) == 1, policies
    spec = daemon[0]["spec"]
    assert spec["policyTypes"] == ["Ingress"]
    port = container(deploy)["ports"][0]["containerPort"]
    for rule in spec["ingress"]:
        assert rule["ports"] == [{"protocol": "TCP", "port": port}], rule
        assert rule.get("from"), f"a rule without `from` admits every source: {rule}"
    if not mariadb:
        return
    sts = find(docs, "StatefulSet")
    db_labels = sts["spec"]["template"]["metadata"]["labels"]
    db = [p for p in policies if p["spec"]["podSelector"]["matchLabels"].items() <= db_labels.items()]
    assert len(db) == 1, policies
    (rule,) = db[0]["spec"]["ingress"]
    assert db[0]["spec"]["policyTypes"] == ["Ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 3306}]
    (peer,) = rule["from"]
    assert peer == {"podSelector": {"matchLabels": find(docs, "Service", deploy["metadata"]["name"])["spec"][
        "selector"]}}, "only the daemon's pods reach the database"


def test_plain_network_policies() -> None:
    assert_network_policies(plain("deploy.yaml", "mariadb.yaml"), mariadb=True)


def test_chart_network_policies(helm: Helm) -> None:
    assert_network_policies(rendered(helm, ("mariadb.enabled=true",)), mariadb=True)
    peers = rendered(helm, extra=("--set-json", 'networkPolicy.ingressFrom=[{"namespaceSelector": {"matchLabels": '
                                                '{"team": "ops"}}}]'))
    assert_network_policies(peers, mariadb=False)
    rule = find(peers, "NetworkPolicy")["spec"]["ingress"][0]
    assert {"namespaceSelector": {"matchLabels": {"team": "ops"}}} in rule["from"]
    assert not [d for d in rendered(helm, ("networkPolicy.enabled=false",)) if d["kind"] == "NetworkPolicy"]


# ------------------------------------------------------------------------------------------------ passwords


SECRETISH = re.compile(r"password|token|secret", re.IGNORECASE)


def test_no_plain_manifest_carries_a_secret_value() -> None:
    for doc in plain():
        if doc["kind"] == "Secret":
            pytest.fail(f"manifests/ ships Secret {doc['metadata']['name']}; document a command that creates it")
        text = yaml.safe_dump(doc)
        assert "change-me" not in text


def test_default_values_hold_no_password() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                # key names (passwordKey) and Secret names are not secrets; values of secret-ish keys are
                if SECRETISH.search(str(k)) and not str(k).endswith("Key") and isinstance(v, str):
                    assert v == "", f"{where}.{k} has a default value"
                walk(v, f"{where}.{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{where}[{i}]")

    walk(values, "values")


def test_chart_generates_the_database_passwords(helm: Helm) -> None:
    first, second = rendered(helm, ("mariadb.enabled=true",)), rendered(helm, ("mariadb.enabled=true",))
    secret = find(first, "Secret", "multicluster-db")
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert sorted(secret["data"]) == ["password", "root-password"]
    assert secret["data"] != find(second, "Secret", "multicluster-db")["data"], "not random"
    # an external database: the chart references the operator's Secret and never invents a password
    assert not [d for d in rendered(helm) if d["kind"] == "Secret" and d["metadata"]["name"] == "multicluster-db"]
    assert not [d for d in rendered(helm, ("mariadb.enabled=true", "db.existingSecret=db"))
                if d["kind"] == "Secret" and d["metadata"]["name"] != API_SECRET]


# ------------------------------------------------------------------------------------------------ the pod


def assert_locked_down(docs: list[Doc], *, automount: bool) -> None:
    pod = pod_of(docs)
    c = container({"spec": {"template": {"spec": pod}}})
    assert pod["automountServiceAccountToken"] is automount
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    # with a read-only root, every path the daemon writes is on a writable volume: /tmp (HOME) and the state dir
    # where joined clusters' kubeconfigs persist (the default, next to the config file, is read-only)
    writable = {m["mountPath"] for m in c["volumeMounts"] if not m.get("readOnly")
                and "emptyDir" in next(v for v in pod["volumes"] if v["name"] == m["name"])}
    env = {e["name"]: e.get("value") for e in c.get("env", [])}
    state = env.get("MULTICLUSTER_STATE_DIR")
    assert state and any(Path(state).is_relative_to(w) for w in writable), (state, writable)
    assert "/tmp" in writable
    # the DB password is a file, not an environment variable every child process inherits
    assert "MULTICLUSTER_DB_PASSWORD" not in env
    password_file = env["MULTICLUSTER_DB_PASSWORD_FILE"]
    assert any(Path(password_file).parent == Path(m["mountPath"]) for m in c["volumeMounts"] if m.get("readOnly"))


def test_plain_pod_is_locked_down() -> None:
    assert_locked_down(plain("deploy.yaml"), automount=False)


def test_chart_pod_is_locked_down_and_mounts_the_token_only_in_cluster(helm: Helm) -> None:
    assert_locked_down(rendered(helm), automount=False)
    assert_locked_down(rendered(helm, extra=("--set-json", f"config.clusters={IN_CLUSTER}")), automount=True)
    assert_locked_down(rendered(helm, ("serviceAccount.automountToken=true",)), automount=True)


def test_shipped_config_accepts_the_service_name_as_host() -> None:
    """Clients reach the daemon as multicluster.multicluster-system.svc: the Host check must accept that name."""
    hosts = daemon_config(plain("deploy.yaml"))["server"]["allowedHosts"]
    svc = find(plain("deploy.yaml"), "Service")["metadata"]["name"]
    for name in (svc, f"{svc}.{NAMESPACE}", f"{svc}.{NAMESPACE}.svc", f"{svc}.{NAMESPACE}.svc.cluster.local"):
        assert name in hosts
    assert "*" not in hosts


def test_chart_config_accepts_the_service_name_as_host(helm: Helm) -> None:
    docs = helm.template(release="prod", namespace="ops", extra=("--set-json", 'api.allowedHosts=["mc.example"]'))
    hosts = daemon_config(docs)["server"]["allowedHosts"]
    assert {"prod-multicluster", "prod-multicluster.ops.svc", "mc.example"} <= set(hosts)


def tls_patch() -> list[dict[str, Any]]:
    """The JSON patch docs/deploy.md gives for TLS with the plain manifests."""
    text = (REPO / "docs" / "deploy.md").read_text()
    block = re.search(r"<!-- tls-patch[^>]*-->\s*```json\n(.*?)```", text, re.DOTALL)
    assert block, "docs/deploy.md lost its tls-patch block"
    ops: list[dict[str, Any]] = json.loads(block.group(1))
    return ops


def tls_patched_deployment() -> Doc:
    return dict(jsonpatch.apply_patch(find(plain("deploy.yaml"), "Deployment"), tls_patch()))


def test_docs_tls_patch_serves_https_like_the_chart(helm: Helm) -> None:
    patched = tls_patched_deployment()
    chart = find(rendered(helm, ("tls.enabled=true", "tls.secretName=multicluster-tls")), "Deployment")
    for deploy in (patched, chart):
        pod = deploy["spec"]["template"]["spec"]
        c = container(deploy)
        assert c["args"][c["args"].index("--cert-dir") + 1] == "/etc/multicluster/tls"
        mount = next(m for m in c["volumeMounts"] if m["mountPath"] == "/etc/multicluster/tls")
        volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
        assert mount["readOnly"] is True and volume["secret"]["secretName"] == "multicluster-tls"
        assert {c[p]["httpGet"]["scheme"] for p in ("startupProbe", "livenessProbe", "readinessProbe")} == {"HTTPS"}
    assert sorted(container(patched)["args"]) == sorted(container(chart)["args"])
