"""The allow-list parser for uploaded kubeconfigs: what it accepts, every key it refuses (with the key's path and a
hint), context selection, and errors that never quote a value."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import yaml

from multicluster.config import scrub_secret_env
from multicluster.kubeconfig import ConnectionSpec, KubeconfigError, parse_kubeconfig

CA_PEM = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
CERT_PEM = b"-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n"
KEY_PEM = b"-----BEGIN EC PRIVATE KEY-----\nMHcC\n-----END EC PRIVATE KEY-----\n"
TOKEN = "s3cret-token-value-7c1f"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def doc(
    cluster: dict[str, Any] | None = None, user: dict[str, Any] | None = None, context: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [
            {
                "name": "c",
                "cluster": {
                    "server": "https://10.0.0.1:6443",
                    "certificate-authority-data": b64(CA_PEM),
                    **(cluster or {}),
                },
            },
        ],
        "users": [{"name": "u", "user": {"token": TOKEN, **(user or {})}}],
        "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u", **(context or {})}}],
        "current-context": "ctx",
    }


def parse(d: dict[str, Any], context: str | None = None) -> ConnectionSpec:
    return parse_kubeconfig(yaml.safe_dump(d).encode(), context)


def refused(d: dict[str, Any] | bytes, context: str | None = None) -> KubeconfigError:
    with pytest.raises(KubeconfigError) as err:
        parse_kubeconfig(d if isinstance(d, bytes) else yaml.safe_dump(d).encode(), context)
    assert err.value.http_status == 400
    return err.value


def test_ca_and_token() -> None:
    spec = parse(doc())
    assert spec.server == "https://10.0.0.1:6443"
    assert spec.ca_data == CA_PEM and spec.token == TOKEN and not spec.insecure_skip_tls_verify
    assert spec.client_cert_data is None and spec.tls_server_name is None
    assert TOKEN not in repr(spec)


def test_client_certificate_insecure_and_tls_server_name() -> None:
    d = doc(
        cluster={"insecure-skip-tls-verify": True, "tls-server-name": "api.internal", "extensions": []},
        user={"client-certificate-data": b64(CERT_PEM), "client-key-data": b64(KEY_PEM)},
    )
    del d["users"][0]["user"]["token"]
    spec = parse(d)
    assert spec.insecure_skip_tls_verify and spec.tls_server_name == "api.internal"
    assert spec.client_cert_data == CERT_PEM and spec.client_key_data == KEY_PEM and spec.token is None
    assert "PRIVATE" not in repr(spec) and "MHcC" not in repr(spec)


def test_to_yaml_round_trips_and_holds_only_the_spec() -> None:
    d = doc(user={"client-certificate-data": b64(CERT_PEM), "client-key-data": b64(KEY_PEM)})
    d["users"].append({"name": "other", "user": {"exec": {"command": "sh"}}})
    spec = parse(d)
    again = parse_kubeconfig(spec.to_yaml())
    assert again == spec
    assert b"exec" not in spec.to_yaml()


def test_context_selection() -> None:
    d = doc()
    d["clusters"].append({"name": "c2", "cluster": {"server": "http://10.0.0.2:8080"}})
    d["users"].append({"name": "anon", "user": {}})
    d["contexts"].append({"name": "second", "context": {"cluster": "c2", "user": "anon"}})
    assert parse(d).server == "https://10.0.0.1:6443"
    second = parse(d, "second")
    assert second.server == "http://10.0.0.2:8080" and second.token is None and second.context == "second"
    d["current-context"] = "second"
    assert parse(d).server == "http://10.0.0.2:8080"
    err = refused(d, "nope")
    assert '"nope"' in str(err) and "ctx, second" in (err.hint or "")


def test_entries_the_context_does_not_select_are_not_read() -> None:
    d = doc()
    d["users"].append({"name": "evil", "user": {"exec": {"command": "/bin/sh"}, "tokenFile": "/etc/shadow"}})
    d["clusters"].append({"name": "evil", "cluster": {"server": "https://x", "proxy-url": "http://p"}})
    assert parse(d).token == TOKEN


REFUSED = [
    ("user", "exec", {"apiVersion": "client.authentication.k8s.io/v1", "command": "/bin/sh"}, "cannot run commands"),
    ("user", "auth-provider", {"name": "oidc", "config": {"cmd-path": "/bin/sh"}}, "cannot run commands"),
    ("user", "tokenFile", "/var/run/secrets/kubernetes.io/serviceaccount/token", "cannot name files"),
    ("user", "client-certificate", "/etc/pki/admin.crt", "cannot name files"),
    ("user", "client-key", "/etc/pki/admin.key", "cannot name files"),
    ("user", "username", "admin", "basic authentication"),
    ("user", "password", "hunter2-value", "basic authentication"),
    ("user", "as", "system:admin", "impersonation"),
    ("user", "as-uid", "0", "impersonation"),
    ("user", "as-groups", ["system:masters"], "impersonation"),
    ("user", "as-user-extra", {"a": ["b"]}, "impersonation"),
    ("user", "tokenfile", "/x", "may use only token, client-certificate-data, client-key-data"),
    ("cluster", "certificate-authority", "/etc/pki/ca.crt", "certificate-authority-data"),
    ("cluster", "proxy-url", "http://attacker:3128", "proxy"),
    ("cluster", "disable-compression-x", True, "may use only server"),
    ("context", "extra", "x", "may use only cluster, user, namespace"),
]


@pytest.mark.parametrize(("where", "key", "value", "hint"), REFUSED, ids=[f"{w}.{k}" for w, k, _, _ in REFUSED])
def test_every_other_key_is_refused_by_path(where: str, key: str, value: Any, hint: str) -> None:
    d = doc(**{where: {key: value}})
    err = refused(d)
    path = {"user": "users[0].user", "cluster": "clusters[0].cluster", "context": "contexts[0].context"}[where]
    assert err.key_path == f"{path}.{key}"
    assert f"`{path}.{key}`" in str(err)
    assert hint in (err.hint or "")
    for text in (str(err), err.hint or ""):
        assert TOKEN not in text and "hunter2" not in text and "/etc/pki" not in text and "/bin/sh" not in text


def test_refused_keys_in_the_entry_wrappers_and_top_level() -> None:
    d = doc()
    d["users"][0]["exec"] = {"command": "x"}
    assert refused(d).key_path == "users[0].exec"
    d = doc()
    d["proxy"] = "x"
    assert refused(d).key_path == "proxy"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"", "not a kubeconfig"),
        (b"{not: [yaml", "not a kubeconfig (YAML error at line 1"),
        (b"apiVersion: v1\nkind: Config\n", "not a kubeconfig"),
        (b"- a\n- b\n", "not a kubeconfig"),
        (b"\xff\xfe", "not UTF-8"),
    ],
)
def test_not_a_kubeconfig(text: bytes, message: str) -> None:
    assert message in str(refused(text))


def test_yaml_errors_never_quote_the_file() -> None:
    text = f"clusters: []\nusers: [{{name: u, user: {{token: {TOKEN}}}}}\ncontexts: [".encode()
    err = refused(text)
    assert "YAML error" in str(err) and TOKEN not in str(err)


def test_missing_and_dangling_pieces() -> None:
    d = doc()
    del d["current-context"]
    err = refused(d)
    assert err.key_path == "current-context" and "no `current-context`" in str(err)
    d = doc(context={"cluster": "gone"})
    err = refused(d)
    assert err.key_path == "contexts[0].context.cluster" and '"gone"' in str(err) and "c" in (err.hint or "")
    d = doc(context={"user": "nobody"})
    assert refused(d).key_path == "contexts[0].context.user"
    d = doc()
    del d["clusters"][0]["cluster"]["server"]
    err = refused(d)
    assert err.key_path == "clusters[0].cluster.server" and "URL" in str(err)
    d = doc(user={"client-certificate-data": b64(CERT_PEM)})
    err = refused(d)
    assert err.key_path == "users[0].user.client-key-data" and "without its pair" in str(err)


@pytest.mark.parametrize(
    "server",
    [
        "file:///etc/passwd",
        "ftp://10.0.0.1",
        "10.0.0.1:6443",
        "https://",
        "https://u:p@10.0.0.1",
        "https://h:99999",
        "unix:///var/run/docker.sock",
        "https://h/?x=1",
    ],
)
def test_server_must_be_an_http_url(server: str) -> None:
    err = refused(doc(cluster={"server": server}))
    assert err.key_path == "clusters[0].cluster.server"
    assert "p@" not in str(err)


def test_values_of_the_wrong_type_or_encoding() -> None:
    err = refused(doc(cluster={"certificate-authority-data": "not base64 !!"}))
    assert err.key_path == "clusters[0].cluster.certificate-authority-data" and "base64" in str(err)
    err = refused(doc(cluster={"insecure-skip-tls-verify": "yes please"}))
    assert err.key_path == "clusters[0].cluster.insecure-skip-tls-verify"
    err = refused(doc(user={"token": ["a", "list"]}))
    assert err.key_path == "users[0].user.token"
    err = refused(doc(user={"token": "two\nlines"}))
    assert err.key_path == "users[0].user.token" and "two" not in str(err)
    err = refused(doc(user={"client-certificate-data": b64(CERT_PEM), "client-key-data": "%%%"}))
    assert err.key_path == "users[0].user.client-key-data" and "%%%" not in str(err)


def test_scrub_secret_env_removes_secret_values_and_keeps_paths() -> None:
    env = {
        "MULTICLUSTER_TOKEN": "a",
        "MULTICLUSTER_ADMIN_TOKEN": "b",
        "MULTICLUSTER_DB_PASSWORD": "c",
        "MULTICLUSTER_TOKEN_FILE": "/run/t",
        "MULTICLUSTER_DB_PASSWORD_FILE": "/run/p",
        "MULTICLUSTER_DB_USER": "root",
        "PATH": "/bin",
    }
    removed = scrub_secret_env(env)
    assert sorted(removed) == ["MULTICLUSTER_ADMIN_TOKEN", "MULTICLUSTER_DB_PASSWORD", "MULTICLUSTER_TOKEN"]
    assert env == {
        "MULTICLUSTER_TOKEN_FILE": "/run/t",
        "MULTICLUSTER_DB_PASSWORD_FILE": "/run/p",
        "MULTICLUSTER_DB_USER": "root",
        "PATH": "/bin",
    }
