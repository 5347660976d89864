"""Fixtures for the deployment artifacts: the plain manifests, helm (built from its Go module) and a real API server
that judges every object through server-side dry-run apply."""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from multicluster.testing import harness as harness_mod
from multicluster.testing.harness import Harness

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"
CHART = MANIFESTS / "chart"
BUILD_HELM = REPO / "multicluster" / "testing" / "build-helm.sh"
NAMESPACE = "multicluster-system"
RELEASE = "multicluster"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# What the chart needs to render the example MariaDB too (its passwords are generated).
MARIADB_VALUES = ["mariadb.enabled=true"]

Doc = dict[str, Any]


def load_docs(path: Path) -> list[Doc]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def find(docs: list[Doc], kind: str, name: str | None = None) -> Doc:
    hits = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(hits) == 1, f"expected one {kind} {name or ''}, found {len(hits)}"
    return hits[0]


def container(deploy: Doc) -> Doc:
    containers = deploy["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


# ------------------------------------------------------------------------------------------------ helm


@dataclass
class Helm:
    binary: Path

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.binary), *args], capture_output=True, text=True, timeout=120, check=False)

    def template(self, *values: str, namespace: str = NAMESPACE, release: str = RELEASE,
                 extra: tuple[str, ...] = ()) -> list[Doc]:
        args = ["template", release, str(CHART), "--namespace", namespace, *extra]
        for v in values:
            args += ["--set", v]
        res = self.run(*args)
        assert res.returncode == 0, f"helm template failed:\n{res.stderr}"
        return [d for d in yaml.safe_load_all(res.stdout) if d]


@pytest.fixture(scope="session")
def helm() -> Helm:
    """helm built by build-helm.sh (cached in ~/.cache/multicluster/testbin/helm-<version>/)."""
    res = subprocess.run(["bash", str(BUILD_HELM)], stdout=subprocess.PIPE, text=True, check=False)
    if res.returncode != 0 or not res.stdout.strip():
        msg = f"building helm failed (exit {res.returncode}); run bash {BUILD_HELM.relative_to(REPO)}"
        if IN_CI:
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    return Helm(Path(res.stdout.strip().splitlines()[-1]))


# ------------------------------------------------------------------------------------------------ dry-run


class ApplyError(AssertionError):
    pass


@dataclass
class DryRunner:
    """Server-side apply with dryRun=All against one harness API server: schema validation, defaulting, admission
    (including PodSecurity "restricted", whose verdict on pod templates comes back as Warning headers)."""

    harness: Harness
    cluster: str

    def call(self, method: str, path: str, body: Any = None, content_type: str = "application/json",
             token: str = harness_mod.ADMIN_TOKEN) -> tuple[int, Any, list[str]]:
        server = self.harness.servers[self.cluster]
        ctx = ssl.create_default_context(cafile=str(self.harness.pki / "ca.crt"))
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(server.url + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {token}")
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", content_type)
        # The requests here are reads and dry runs, so one that the loaded harness's TLS connection drops before an
        # answer (an EOF in the handshake or the write) is sent again; an HTTP answer is never retried.
        for attempt in range(3):
            try:
                return self._send(req, ctx)
            except urllib.error.HTTPError:
                raise
            except urllib.error.URLError as exc:
                if attempt == 2 or not isinstance(exc.reason, OSError):
                    raise
                time.sleep(0.5)
        raise AssertionError("unreachable")

    @staticmethod
    def _send(req: urllib.request.Request, ctx: ssl.SSLContext) -> tuple[int, Any, list[str]]:
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=30) as r:
                return r.status, json.loads(r.read() or b"null"), r.headers.get_all("Warning") or []
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                payload = json.loads(raw)
            except ValueError:
                payload = raw.decode(errors="replace")
            return exc.code, payload, exc.headers.get_all("Warning") or []

    def resource_path(self, doc: Doc) -> str:
        api_version, kind = doc["apiVersion"], doc["kind"]
        base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
        status, discovery, _ = self.call("GET", base)
        if status != 200:
            raise ApplyError(f"{kind}: the server does not serve {api_version} (HTTP {status})")
        matches = [r for r in discovery["resources"] if r["kind"] == kind and "/" not in r["name"]]
        if not matches:
            raise ApplyError(f"{kind}: no such kind in {api_version}")
        res, name = matches[0], doc["metadata"]["name"]
        if res["namespaced"]:
            ns = doc["metadata"].get("namespace")
            if not ns:
                raise ApplyError(f"{kind} {name}: namespaced but metadata.namespace is missing")
            return f"{base}/namespaces/{ns}/{res['name']}/{name}"
        if doc["metadata"].get("namespace"):
            raise ApplyError(f"{kind} {name}: cluster-scoped but has metadata.namespace")
        return f"{base}/{res['name']}/{name}"

    def apply(self, doc: Doc, *, dry_run: bool = True) -> tuple[Doc, list[str]]:
        """(Dry-run) apply one object; returns what the server (would) store and its warnings. Raises on rejection."""
        # force: an object a test's daemon already applied (the CRD, field manager "multicluster") would otherwise
        # conflict; what is checked here is whether the server accepts the manifest, not who owns its fields.
        path = self.resource_path(doc) + "?fieldManager=multicluster-deploy-test&fieldValidation=Strict&force=true"
        if dry_run:
            path += "&dryRun=All"
        status, body, warnings = self.call("PATCH", path, doc, content_type="application/apply-patch+yaml")
        if status >= 300:
            message = body.get("message") if isinstance(body, dict) else body
            raise ApplyError(f"{doc['kind']} {doc['metadata']['name']} rejected (HTTP {status}): {message}")
        return body, warnings


@pytest.fixture(scope="session")
def dry_run(harness: Harness) -> Iterator[DryRunner]:
    """The last harness cluster, with namespace multicluster-system really created (dry-run needs it), enforcing
    the PodSecurity "restricted" profile; deleted afterwards."""
    runner = DryRunner(harness, list(harness.servers)[-1])
    labels = {f"pod-security.kubernetes.io/{m}": "restricted" for m in ("enforce", "warn", "audit")}
    status, body, _ = runner.call("POST", "/api/v1/namespaces",
                                  {"apiVersion": "v1", "kind": "Namespace",
                                   "metadata": {"name": NAMESPACE, "labels": labels}})
    created = status == 201
    if status == 409:  # left over from an interrupted run: make sure it enforces the profile
        status, body, _ = runner.call("PATCH", f"/api/v1/namespaces/{NAMESPACE}", {"metadata": {"labels": labels}},
                                      content_type="application/merge-patch+json")
    assert status in (200, 201), body
    yield runner
    if created:
        runner.call("DELETE", f"/api/v1/namespaces/{NAMESPACE}")


# ------------------------------------------------------------------------------------------------ comparison

HELM_ONLY_LABELS = ("helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/version")
HELM_ONLY_ANNOTATIONS = ("checksum/config",)


def normalize(doc: Doc) -> Doc:
    """Drop what only Helm adds (its labels, the config checksum) and spell data the same way, so a rendered object
    can be compared with its plain manifest."""
    doc = json.loads(json.dumps(doc))

    def clean(meta: Doc | None) -> None:
        if not meta:
            return
        for key, drop in (("labels", HELM_ONLY_LABELS), ("annotations", HELM_ONLY_ANNOTATIONS)):
            values = {k: v for k, v in (meta.get(key) or {}).items() if k not in drop}
            if values:
                meta[key] = values
            else:
                meta.pop(key, None)

    clean(doc.get("metadata"))
    template = (doc.get("spec") or {}).get("template")
    if isinstance(template, dict):
        clean(template.get("metadata"))
    for claim in (doc.get("spec") or {}).get("volumeClaimTemplates") or []:
        clean(claim.get("metadata"))
    if doc["kind"] == "Secret" and "stringData" in doc:
        data = doc.setdefault("data", {})
        for k, v in doc.pop("stringData").items():
            data[k] = base64.b64encode(v.encode()).decode()
    if doc["kind"] == "ConfigMap":
        doc["data"] = {k: yaml.safe_load(v) if k.endswith(".yaml") else v for k, v in doc["data"].items()}
    return doc
