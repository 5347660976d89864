"""The daemon's side of aggregation on the master cluster: the serving certificate, the APIService (and, outside
a cluster, the Service) the master's API server proxies through, the master's front-proxy configuration, and the
reviews the master answers about users.

`multicluster run --apiservice` (server.apiService) registers the APIService
`v1alpha1.clusters.multicluster.practice.com`, pointing at Service `<namespace>/<service>` on the daemon's port
with the CA of the daemon's serving certificate as its caBundle. In a cluster the Service is the chart's; outside
one (server.apiServiceExternalName) the daemon creates a Service of type ExternalName naming that host: the
aggregator's default resolver dials an ExternalName Service's host, while with --enable-aggregator-routing it
dials EndpointSlices, which may not hold loopback addresses.

The daemon changes only objects it created: it labels them multicluster.practice.com/managed=true and leaves
an object with that name but without the label alone (and says so). On shutdown it removes nothing: the master
then answers 503 for the group until a daemon serves it again, which is what an aggregated server that is down
looks like, and a restart does not make the group vanish from discovery for a moment.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import logging
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from multicluster.api.kube.paths import GROUP, VERSION
from multicluster.config import ServerConfig
from multicluster.errors import ClusterError, ConfigError, KubeAPIError, NotFound
from multicluster.kube import ClusterClient

log = logging.getLogger(__name__)

APISERVICE_NAME = f"{VERSION}.{GROUP}"
MANAGED_BY = ("multicluster.practice.com/managed", "true")
_REVIEW_PATHS = {"tokenreviews": "/apis/authentication.k8s.io/v1/tokenreviews",
                 "subjectaccessreviews": "/apis/authorization.k8s.io/v1/subjectaccessreviews"}


@dataclass(frozen=True, slots=True)
class Registration:
    """Where the APIService points: server.apiServiceNamespace/apiServiceName, and the ExternalName host outside a
    cluster (empty: the Service exists)."""

    namespace: str
    service: str
    external_name: str = ""

    @classmethod
    def from_server(cls, server: ServerConfig) -> Registration:
        return cls(server.api_service_namespace, server.api_service_name, server.api_service_external_name)


@dataclass(frozen=True, slots=True)
class ServingCert:
    cert_file: Path
    key_file: Path
    ca_pem: bytes  # what the APIService's caBundle holds
    generated_dir: Path | None = None  # removed at shutdown


def service_names(cfg: Registration) -> list[str]:
    """The names the aggregator checks the serving certificate against (it dials <service>.<namespace>.svc)."""
    base = f"{cfg.service}.{cfg.namespace}.svc"
    return [base, f"{base}.cluster.local", "localhost"]


def serving_cert(server: ServerConfig) -> ServingCert:
    """The certificate from server.certDir (tls.crt, tls.key, and ca.crt for the caBundle when present, else
    tls.crt itself), or a CA and serving certificate generated for this run in a private directory."""
    if server.cert_dir is not None:
        d = server.cert_dir
        ca = d / "ca.crt" if (d / "ca.crt").exists() else d / "tls.crt"
        try:
            return ServingCert(d / "tls.crt", d / "tls.key", ca.read_bytes())
        except OSError as exc:
            raise ConfigError(f"server.certDir: cannot read {ca}: {exc.strerror or exc}") from exc
    d = Path(tempfile.mkdtemp(prefix="multicluster-serving-"))  # 0700
    cfg = Registration.from_server(server)
    cert_pem, key_pem, ca_pem = _generate(service_names(cfg))
    for name, data in (("tls.crt", cert_pem), ("tls.key", key_pem)):
        (d / name).touch(mode=0o600)
        (d / name).write_bytes(data)
    log.info("serving the API with a generated certificate for %s (its CA goes into the APIService's caBundle)",
             ", ".join(service_names(cfg)))
    return ServingCert(d / "tls.crt", d / "tls.key", ca_pem, generated_dir=d)


def remove_generated(cert: ServingCert) -> None:
    if cert.generated_dir is not None:
        shutil.rmtree(cert.generated_dir, ignore_errors=True)


def _generate(names: list[str]) -> tuple[bytes, bytes, bytes]:
    """(certificate, key, CA certificate) PEMs: a CA made for this run signs a serving certificate for `names`
    and 127.0.0.1. The CA's key is never written anywhere."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"multicluster-serving-ca@{int(now.timestamp())}")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=365))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    sans.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    return (cert.public_bytes(pem),
            key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
            ca.public_bytes(pem))


# ---------------------------------------------------------------------------------------------- the master


class MasterReviews:
    """TokenReviews, SubjectAccessReviews and the front-proxy ConfigMap, asked of the master with the daemon's
    own credentials (it needs system:auth-delegator and extension-apiserver-authentication-reader)."""

    def __init__(self, client: ClusterClient) -> None:
        self._client = client

    async def review(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            return await self._client.request("POST", _REVIEW_PATHS[kind], body=body, timeout=10)
        except KubeAPIError as exc:
            raise ClusterError(self._client.name, f"the master refused the daemon's {kind} ({exc.status}): "
                               f"{exc.message[:300]}", hint="bind the daemon's identity to the ClusterRole "
                               "system:auth-delegator on the master (see docs/deploy.md)") from exc

    async def request_header_config(self) -> Mapping[str, str]:
        try:
            cm = await self._client.get("/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication")
        except KubeAPIError as exc:
            raise ClusterError(self._client.name, f"cannot read kube-system/extension-apiserver-authentication "
                               f"({exc.status}): {exc.message[:300]}", hint="bind the daemon's identity to the Role "
                               "extension-apiserver-authentication-reader in kube-system") from exc
        data = cm.get("data")
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _labels() -> dict[str, str]:
    return {MANAGED_BY[0]: MANAGED_BY[1]}


def apiservice_object(cfg: Registration, port: int, ca_pem: bytes) -> dict[str, Any]:
    return {
        "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
        "metadata": {"name": APISERVICE_NAME, "labels": _labels()},
        "spec": {"group": GROUP, "version": VERSION, "groupPriorityMinimum": 1000, "versionPriority": 15,
                 "service": {"namespace": cfg.namespace, "name": cfg.service, "port": port},
                 "caBundle": base64.b64encode(ca_pem).decode()},
    }


def service_object(cfg: Registration, port: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": cfg.service, "namespace": cfg.namespace, "labels": _labels()},
        "spec": {"type": "ExternalName", "externalName": cfg.external_name,
                 "ports": [{"name": "https", "port": port, "protocol": "TCP"}]},
    }


async def register(client: ClusterClient, cfg: Registration, port: int, ca_pem: bytes) -> None:
    """Create or update the Service (outside a cluster) and the APIService on the master."""
    if cfg.external_name:
        await _ensure(client, f"/api/v1/namespaces/{cfg.namespace}/services", service_object(cfg, port))
    await _ensure(client, "/apis/apiregistration.k8s.io/v1/apiservices", apiservice_object(cfg, port, ca_pem))


async def _ensure(client: ClusterClient, collection: str, obj: dict[str, Any]) -> None:
    name = obj["metadata"]["name"]
    what = f"{obj['kind']} {obj['metadata'].get('namespace', '') + '/' if 'namespace' in obj['metadata'] else ''}{name}"
    try:
        current = await client.get(f"{collection}/{name}")
    except NotFound:
        await client.request("POST", collection, body=obj)
        log.info("created %s on the master", what)
        return
    labels = (current.get("metadata") or {}).get("labels") or {}
    if labels.get(MANAGED_BY[0]) != MANAGED_BY[1]:
        raise ClusterError(client.name, f"{what} exists and was not created by multicluster: leaving it alone",
                           hint=f"delete it, or label it {MANAGED_BY[0]}={MANAGED_BY[1]} to let the daemon manage it")
    if current.get("spec", {}) | obj["spec"] == current.get("spec"):
        return
    body = dict(obj)
    body["metadata"] = {**obj["metadata"], "resourceVersion": current["metadata"]["resourceVersion"]}
    if obj["kind"] == "Service":  # the API server keeps what it filled in (clusterIP is immutable)
        body["spec"] = {**current.get("spec", {}), **obj["spec"]}
    await client.request("PUT", f"{collection}/{name}", body=body)
    log.info("updated %s on the master", what)
