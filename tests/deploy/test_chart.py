"""The Helm chart (manifests/chart) renders the same objects as the plain manifests, and its values do what
values.yaml says. helm itself comes from build-helm.sh (built from helm.sh/helm/v3)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from multicluster.config import parse_config

from .conftest import CHART, MANIFESTS, MARIADB_VALUES, NAMESPACE, Doc, Helm, container, find, load_docs, normalize

# Secrets the chart generates with random values; the plain manifests document a `kubectl create secret` instead.
GENERATED_SECRETS = {"multicluster-api": ["adminToken", "token"], "multicluster-db": ["password", "root-password"]}


def _by_key(docs: list[Doc]) -> dict[tuple[str, str, str], Doc]:
    out: dict[tuple[str, str, str], Doc] = {}
    for d in docs:
        if d["kind"] == "Namespace":  # the chart leaves namespaces to `helm install --create-namespace`
            continue
        if d["kind"] == "Secret" and d["metadata"]["name"] in GENERATED_SECRETS:
            assert sorted(d["data"]) == GENERATED_SECRETS[d["metadata"]["name"]]
            continue
        out[(d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"])] = normalize(d)
    return out


def _assert_same(rendered: list[Doc], plain: list[Doc]) -> None:
    got, want = _by_key(rendered), _by_key(plain)
    assert sorted(got) == sorted(want), "the chart and the plain manifests produce different objects"
    for key, doc in want.items():
        assert got[key] == doc, f"{key} differs between the chart and manifests/"


def test_helm_lint_strict(helm: Helm) -> None:
    for values in ([], MARIADB_VALUES):
        args = ["lint", "--strict", str(CHART), "--namespace", NAMESPACE]
        for v in values:
            args += ["--set", v]
        res = helm.run(*args)
        assert res.returncode == 0, res.stdout + res.stderr


def test_defaults_render_the_plain_manifests(helm: Helm) -> None:
    plain = load_docs(MANIFESTS / "rbac.yaml") + load_docs(MANIFESTS / "deploy.yaml")
    _assert_same(helm.template(), plain)


def test_mariadb_enabled_adds_the_plain_mariadb(helm: Helm) -> None:
    plain = load_docs(MANIFESTS / "rbac.yaml") + load_docs(MANIFESTS / "deploy.yaml") + load_docs(
        MANIFESTS / "mariadb.yaml")
    _assert_same(helm.template(*MARIADB_VALUES), plain)


def test_rendered_config_passes_the_validator(helm: Helm) -> None:
    clusters = '[{"metadata": {"clusterName": "hub", "configPath": "/etc/multicluster/kubeconfigs/custom"}},' \
               ' {"metadata": {"clusterName": "cluster2", "isMaster": true}}]'
    docs = helm.template("db.host=db.example.com", "db.port=3307", "containerPort=8080",
                         extra=("--set-json", f"config.clusters={clusters}"))
    text = find(docs, "ConfigMap")["data"]["config.yaml"]
    cfg = parse_config(yaml.safe_load(text), Path("/etc/multicluster"), check_files=False)
    assert (cfg.store.type, cfg.store.host, cfg.store.port) == ("mysql", "db.example.com", 3307)
    assert cfg.server.port == 8080
    assert [(c.name, str(c.config_path)) for c in cfg.clusters] == [
        ("hub", "/etc/multicluster/kubeconfigs/custom"),
        ("cluster2", "/etc/multicluster/kubeconfigs/cluster2.kubeconfig"),
    ]
    assert cfg.master is not None and cfg.master.name == "cluster2"
    deploy = find(docs, "Deployment")
    assert container(deploy)["ports"][0]["containerPort"] == 8080
    assert find(docs, "Service")["spec"]["ports"][0]["targetPort"] == 8080


def test_in_cluster_entry_has_no_config_path(helm: Helm, monkeypatch: pytest.MonkeyPatch) -> None:
    clusters = '[{"metadata": {"clusterName": "home", "inCluster": true, "isMaster": true}},' \
               ' {"metadata": {"clusterName": "edge"}}]'
    docs = helm.template(extra=("--set-json", f"config.clusters={clusters}"))
    raw = yaml.safe_load(find(docs, "ConfigMap")["data"]["config.yaml"])
    assert raw["clusters"][0] == {"metadata": {"clusterName": "home", "isMaster": True}}
    monkeypatch.setattr("multicluster.config.checks.in_cluster", lambda: True)  # as inside the pod
    cfg = parse_config(raw, Path("/etc/multicluster"), check_files=False)
    assert [(c.name, c.config_path) for c in cfg.clusters] == [
        ("home", None), ("edge", Path("/etc/multicluster/kubeconfigs/edge.kubeconfig"))]
    both = '[{"metadata": {"clusterName": "home", "inCluster": true, "configPath": "/x"}}]'
    res = helm.run("template", "x", str(CHART), "--set-json", f"config.clusters={both}")
    assert res.returncode != 0 and "exclude each other" in res.stderr


def test_config_change_rolls_the_pods(helm: Helm) -> None:
    def checksum(*values: str) -> str:
        return str(find(helm.template(*values), "Deployment")["spec"]["template"]["metadata"]["annotations"][
            "checksum/config"])

    assert checksum() == checksum("replicaCount=3")
    assert checksum() != checksum("config.sync.pageSize=100")


def test_leader_election_values(helm: Helm) -> None:
    docs = helm.template("leaderElection.leaseName=elect", "leaderElection.leaseNamespace=kube-system",
                         "replicaCount=3")
    deploy = find(docs, "Deployment")
    assert deploy["spec"]["replicas"] == 3
    args = container(deploy)["args"]
    assert args[args.index("--lease-name") + 1] == "elect"
    assert args[args.index("--lease-namespace") + 1] == "kube-system"
    assert find(docs, "Role")["metadata"]["namespace"] == "kube-system"
    assert find(docs, "RoleBinding")["subjects"][0]["namespace"] == NAMESPACE

    off = helm.template("leaderElection.enabled=false")
    assert not any(a.startswith("--lease") for a in container(find(off, "Deployment"))["args"])
    assert not [d for d in off if d["kind"] in ("Role", "RoleBinding")]


def test_secret_values(helm: Helm) -> None:
    docs = helm.template("kubeconfigs.files.cluster1\\.kubeconfig=apiVersion: v1", "db.existingSecret=shared-db",
                         "db.passwordKey=pw", "apiToken.existingSecret=tok", "apiToken.tokenKey=read",
                         "apiToken.adminTokenKey=admin")
    pod = find(docs, "Deployment")["spec"]["template"]["spec"]
    kube_secret = find(docs, "Secret")
    assert list(kube_secret["data"]) == ["cluster1.kubeconfig"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["kubeconfigs"]["secret"]["secretName"] == kube_secret["metadata"]["name"]
    assert volumes["db-password"]["secret"] == {"secretName": "shared-db", "defaultMode": 288,
                                                "items": [{"key": "pw", "path": "password"}]}
    assert volumes["api-tokens"]["secret"] == {"secretName": "tok", "defaultMode": 288, "items": [
        {"key": "read", "path": "token"}, {"key": "admin", "path": "adminToken"}]}
    # no db.password and no chart MariaDB: the chart references the Secret but never invents a password
    assert [d["metadata"]["name"] for d in helm.template() if d["kind"] == "Secret"] == ["multicluster-api"]
    given = find(helm.template("db.password=s3cret"), "Secret", "multicluster-db")
    assert given["data"] == {"password": "czNjcmV0"}


def test_service_and_image_values(helm: Helm) -> None:
    docs = helm.template("service.type=ClusterIP", "service.port=80", "image.repository=registry.example/mc",
                         "image.tag=1.2.3", "rbac.deliveryRules[0].apiGroups[0]=networking.k8s.io",
                         "rbac.deliveryRules[0].resources[0]=ingresses", "rbac.deliveryRules[0].verbs[0]=patch")
    port = find(docs, "Service")["spec"]["ports"][0]
    assert find(docs, "Service")["spec"]["type"] == "ClusterIP"
    assert port["port"] == 80 and "nodePort" not in port
    assert container(find(docs, "Deployment"))["image"] == "registry.example/mc:1.2.3"
    assert find(docs, "ClusterRole", "multicluster-delivery")["rules"] == [
        {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"], "verbs": ["patch"]}]


def test_other_release_names_prefix_every_object(helm: Helm) -> None:
    docs = helm.template(*MARIADB_VALUES, release="prod", namespace="ops")
    for d in docs:
        assert d["metadata"]["name"].startswith("prod-multicluster"), d["metadata"]["name"]
        if d["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            assert d["metadata"]["namespace"] == "ops"
    cfg = yaml.safe_load(find(docs, "ConfigMap")["data"]["config.yaml"])
    assert cfg["store"]["host"] == "prod-multicluster-mariadb.ops.svc"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["tls.enabled=true"], "tls.secretName is required"),
        (["rbac.readRules[0].apiGroups[0]=*", "rbac.readRules[0].resources[0]=pods"], "/rbac/readRules/0/apiGroups/0"),
        (["rbac.readRules[0].apiGroups[0]=", "rbac.readRules[0].resources[0]=pods/exec"],
         "/rbac/readRules/0/resources/0"),
        (["rbac.deliveryRules[0].apiGroups[0]=apps", "rbac.deliveryRules[0].resources[0]=*",
          "rbac.deliveryRules[0].verbs[0]=patch"], "/rbac/deliveryRules/0/resources/0"),
        (["config.clusters=null"], "config.clusters must list at least one cluster"),
        (["replicaCount=two"], "replicaCount"),
    ],
)
def test_bad_values_fail_to_render(helm: Helm, values: list[str], message: str) -> None:
    args = ["template", "x", str(CHART)]
    for v in values:
        args += ["--set", v]
    res = helm.run(*args)
    assert res.returncode != 0
    assert message in res.stderr


APISERVICE = ("apiService.enabled=true", "tls.enabled=true", "tls.secretName=mc-tls")


def test_api_service_renders_what_manifests_apiservice_yaml_holds(helm: Helm) -> None:
    """apiService.enabled: the objects of manifests/apiservice.yaml, the daemon run with --apiservice and
    server.apiServiceNamespace/apiServiceName naming the release's Service, ca.crt mounted for the caBundle; it
    refuses to render without TLS (replicas with generated certificates would each put another CA in the
    caBundle)."""
    base = helm.template("tls.enabled=true", "tls.secretName=mc-tls")
    docs = helm.template(*APISERVICE)
    added = _by_key([d for d in docs if _by_key([d]).keys() - _by_key(base).keys()])
    assert added == _by_key(load_docs(MANIFESTS / "apiservice.yaml"))
    args = container(find(docs, "Deployment", "multicluster"))["args"]
    assert "--apiservice" in args and "--cert-dir" in args
    volume = next(v for v in find(docs, "Deployment", "multicluster")["spec"]["template"]["spec"]["volumes"]
                  if v["name"] == "tls")
    assert {"key": "ca.crt", "path": "ca.crt"} in volume["secret"]["items"]
    cfg = yaml.safe_load(find(docs, "ConfigMap", "multicluster-config")["data"]["config.yaml"])
    assert (cfg["server"]["apiServiceNamespace"], cfg["server"]["apiServiceName"]) == (NAMESPACE, "multicluster")
    assert "auth" not in cfg["server"]
    cfg = yaml.safe_load(find(helm.template(*APISERVICE, "apiService.auth=kubernetes"), "ConfigMap",
                              "multicluster-config")["data"]["config.yaml"])
    assert cfg["server"]["auth"] == "kubernetes"
    res = helm.run("template", "multicluster", str(CHART), "--namespace", NAMESPACE, "--set", "apiService.enabled=true")
    assert res.returncode != 0 and "apiService.enabled needs tls.enabled" in res.stderr
