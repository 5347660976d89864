"""Certificates for the harness API servers, made with the openssl command line (no extra Python dependency)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def _run(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _signed(d: Path, name: str, subject: str, extensions: str) -> None:
    """A 2048-bit key `name.key` and a certificate `name.crt` for `subject`, signed by the harness CA."""
    (d / f"{name}.ext").write_text(extensions)
    _run("req", "-newkey", "rsa:2048", "-nodes", "-subj", subject, "-keyout", f"{name}.key", "-out", f"{name}.csr",
         cwd=d)
    _run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
         "-days", "3650", "-extfile", f"{name}.ext", "-out", f"{name}.crt", cwd=d)


FRONT_PROXY_CLIENT = "front-proxy-client"  # the CN the API servers' request-header authentication allows


def make_pki(d: Path) -> None:
    """CA, a serving cert for 127.0.0.1/localhost, an admin client cert (system:masters), a service-account key,
    and the front-proxy pair aggregation needs (see make_front_proxy)."""
    d.mkdir(parents=True, exist_ok=True)
    make_front_proxy(d)
    if (d / "admin.crt").exists():
        return
    _run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650", "-subj", "/CN=multicluster-harness-ca",
         "-keyout", "ca.key", "-out", "ca.crt", cwd=d)
    _signed(d, "server", "/CN=kube-apiserver",
            "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default.svc\n"
            "extendedKeyUsage=serverAuth\n")
    _signed(d, "admin", "/O=system:masters/CN=harness-admin", "extendedKeyUsage=clientAuth\n")
    _run("genrsa", "-out", "sa.key", "2048", cwd=d)
    _run("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=d)


def make_front_proxy(d: Path) -> None:
    """A CA of its own for the request-header (front-proxy) chain and the client certificate the API server
    presents to aggregated API servers. It is separate from the harness CA on purpose: an aggregated server trusts
    every certificate this CA signs to carry any user name in X-Remote-User, so no ordinary client may hold one."""
    if (d / "front-proxy-client.crt").exists():
        return
    _run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650", "-subj", "/CN=multicluster-front-proxy-ca",
         "-keyout", "front-proxy-ca.key", "-out", "front-proxy-ca.crt", cwd=d)
    (d / "front-proxy-client.ext").write_text("extendedKeyUsage=clientAuth\n")
    _run("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={FRONT_PROXY_CLIENT}", "-keyout",
         "front-proxy-client.key", "-out", "front-proxy-client.csr", cwd=d)
    _run("x509", "-req", "-in", "front-proxy-client.csr", "-CA", "front-proxy-ca.crt", "-CAkey", "front-proxy-ca.key",
         "-CAcreateserial", "-days", "3650", "-extfile", "front-proxy-client.ext", "-out", "front-proxy-client.crt",
         cwd=d)
