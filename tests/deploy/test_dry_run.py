"""Every manifest, and every object the chart renders, goes through a real kube-apiserver (v1.37, from the harness)
with server-side apply and dryRun=All: schema and strict field validation, defaulting, RBAC escalation checks and
PodSecurity admission. A manifest Kubernetes would reject fails here, not at `kubectl apply` time."""

from __future__ import annotations

import pytest

from .conftest import MANIFESTS, MARIADB_VALUES, Doc, DryRunner, Helm, load_docs
from .test_least_privilege import tls_patched_deployment

pytestmark = pytest.mark.integration

PLAIN = ["rbac.yaml", "rbac-secrets.yaml", "deploy.yaml", "service-nodeport.yaml", "mariadb.yaml", "crds.yaml"]
IN_CLUSTER = '[{"metadata": {"clusterName": "home", "inCluster": true, "isMaster": true}}]'
# Values that add or change objects: each combination must be accepted as well as the defaults.
CHART_VARIANTS = {
    "defaults": [],
    "with-mariadb": MARIADB_VALUES,
    "store-secrets-nodeport-tls": ["config.sync.storeSecrets=true", "service.type=NodePort", "service.nodePort=31888",
                                   "tls.enabled=true", "tls.secretName=mc-tls"],
}


def _apply_all(dry_run: DryRunner, docs: list[Doc]) -> None:
    assert docs
    problems = []
    for doc in docs:
        try:
            stored, warnings = dry_run.apply(doc)
        except AssertionError as exc:
            problems.append(str(exc))
            continue
        assert stored["kind"] == doc["kind"] and stored["metadata"]["name"] == doc["metadata"]["name"]
        # PodSecurity "restricted" (enforced on the namespace) and deprecations answer with warnings
        problems += [f"{doc['kind']} {doc['metadata']['name']}: warning: {w}" for w in warnings]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", PLAIN)
def test_plain_manifest_is_accepted(dry_run: DryRunner, name: str) -> None:
    path = MANIFESTS / name
    if not path.exists():
        pytest.skip(f"manifests/{name} does not exist yet")
    _apply_all(dry_run, load_docs(path))


@pytest.mark.parametrize("values", list(CHART_VARIANTS.values()), ids=list(CHART_VARIANTS))
def test_chart_objects_are_accepted(dry_run: DryRunner, helm: Helm, values: list[str]) -> None:
    _apply_all(dry_run, helm.template(*values))


def test_chart_in_cluster_objects_are_accepted(dry_run: DryRunner, helm: Helm) -> None:
    _apply_all(dry_run, helm.template(extra=("--set-json", f"config.clusters={IN_CLUSTER}")))


def test_docs_tls_patch_is_accepted(dry_run: DryRunner) -> None:
    _apply_all(dry_run, [tls_patched_deployment()])


def test_a_broken_manifest_is_rejected(dry_run: DryRunner) -> None:
    """The check has teeth: an invalid value and a typo'd field are refused (not silently dropped), and a pod
    template outside PodSecurity "restricted" is reported. (Dry-run does not allocate NodePorts, so a port outside
    30000-32767 would pass here; test_manifests pins 31888.)"""
    svc = next(d for d in load_docs(MANIFESTS / "deploy.yaml") if d["kind"] == "Service")
    svc["spec"]["ports"][0]["name"] = "Server_Port"
    with pytest.raises(AssertionError, match="Server_Port"):
        dry_run.apply(svc)
    deploy = next(d for d in load_docs(MANIFESTS / "deploy.yaml") if d["kind"] == "Deployment")
    deploy["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(AssertionError, match="readinesProbe"):
        dry_run.apply(deploy)
    deploy = next(d for d in load_docs(MANIFESTS / "deploy.yaml") if d["kind"] == "Deployment")
    del deploy["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capabilities"]
    _, warnings = dry_run.apply(deploy)
    assert any("restricted" in w for w in warnings), warnings
