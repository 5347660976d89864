"""Front-proxy authentication over real TLS handshakes: only a client certificate from the master's current
request-header CA, with an allowed name, makes the X-Remote-* headers count; a rotated CA takes over without a
restart (new connections use it, connections verified by the old one stop counting)."""

from __future__ import annotations

import datetime
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from multicluster.api.auth.frontproxy import FrontProxy, RequestHeaderConfig, parse_configmap
from multicluster.apiservice import _generate
from multicluster.errors import ConfigError, NotAuthenticated
from multicluster.testing.harness import free_port

PEM = serialization.Encoding.PEM


def _ca(name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True).sign(key, hashes.SHA256()))
    return cert, key


def _client(d: Path, ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey], cn: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(ca[0].subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca[1], hashes.SHA256()))
    name = f"{cn}-{cert.serial_number}"
    (d / f"{name}.crt").write_bytes(cert.public_bytes(PEM))
    (d / f"{name}.key").write_bytes(key.private_bytes(PEM, serialization.PrivateFormat.PKCS8,
                                                      serialization.NoEncryption()))
    return d / f"{name}.crt", d / f"{name}.key"


def _config(ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]) -> RequestHeaderConfig:
    return RequestHeaderConfig(ca_pem=ca[0].public_bytes(PEM).decode(), allowed_names=frozenset({"front-proxy-client"}),
                               user_headers=("X-Remote-User",), group_headers=("X-Remote-Group",),
                               extra_prefixes=("X-Remote-Extra-",))


class Server:
    def __init__(self, proxy: FrontProxy, url: str, serving_ca: bytes) -> None:
        self.proxy, self.url, self.serving_ca = proxy, url, serving_ca

    def session(self, cert: tuple[Path, Path] | None = None) -> aiohttp.ClientSession:
        ctx = ssl.create_default_context(cadata=self.serving_ca.decode())
        if cert is not None:
            ctx.load_cert_chain(*cert)
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx))


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    cert, key, ca = _generate(["multicluster.mc.svc", "localhost"])
    (tmp_path / "tls.crt").write_bytes(cert)
    (tmp_path / "tls.key").write_bytes(key)
    proxy = FrontProxy(tmp_path / "tls.crt", tmp_path / "tls.key")

    async def who(request: web.Request) -> web.StreamResponse:
        try:
            user = proxy.identity(request)
        except NotAuthenticated as exc:
            return web.json_response({"refused": exc.message}, status=401)
        if user is None:
            return web.json_response({"user": None})
        return web.json_response({"user": user.name, "groups": list(user.groups), "extra": dict(user.extra)})

    app = web.Application()
    app.router.add_get("/", who)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=proxy.ssl_context).start()
    try:
        yield Server(proxy, f"https://localhost:{port}/", ca)
    finally:
        await runner.cleanup()


HEADERS = {"X-Remote-User": "alice", "X-Remote-Group": "devs", "X-Remote-Extra-Scopes%2fA": "x"}


async def test_only_the_current_front_proxy_ca_vouches_for_a_user(server: Server, tmp_path: Path) -> None:
    old, new = _ca("front-proxy-ca-1"), _ca("front-proxy-ca-2")
    old_client, new_client = _client(tmp_path, old, "front-proxy-client"), _client(tmp_path, new, "front-proxy-client")
    # Before the master's configuration is known, no certificate is trusted; clients without one still connect.
    async with server.session() as http, http.get(server.url, headers=HEADERS) as r:
        assert await r.json() == {"user": None}
    with pytest.raises(aiohttp.ClientError):
        async with server.session(old_client) as http, http.get(server.url, headers=HEADERS):
            pass
    assert server.proxy.update(_config(old)) and not server.proxy.update(_config(old))
    async with server.session(old_client) as kept:
        async with kept.get(server.url, headers=HEADERS) as r:
            assert await r.json() == {"user": "alice", "groups": ["devs"], "extra": {"scopes/a": ["x"]}}
        async with server.session() as http, http.get(server.url, headers=HEADERS) as r:
            assert await r.json() == {"user": None}  # the headers alone say nothing
        for cert in (new_client, _client(tmp_path, _ca("someone-else"), "front-proxy-client")):
            with pytest.raises(aiohttp.ClientError):
                async with server.session(cert) as http, http.get(server.url, headers=HEADERS):
                    pass
        async with server.session(_client(tmp_path, old, "not-the-proxy")) as http, \
                http.get(server.url, headers=HEADERS) as r:
            refused = (await r.json())["refused"]
            assert r.status == 401 and "not one of the master's requestheader-allowed-names" in refused
        async with server.session(old_client) as http, http.get(server.url) as r:
            assert r.status == 401 and "names no user" in (await r.json())["refused"]
        # The master rotates its CA: new connections need the new one, and the connection the old one verified
        # no longer names users.
        assert server.proxy.update(_config(new))
        async with kept.get(server.url, headers=HEADERS) as r:
            assert r.status == 401 and "no longer publishes" in (await r.json())["refused"]
    with pytest.raises(aiohttp.ClientError):
        async with server.session(old_client) as http, http.get(server.url, headers=HEADERS):
            pass
    async with server.session(new_client) as http, http.get(server.url, headers=HEADERS) as r:
        assert (await r.json())["user"] == "alice"


def test_the_configmap_is_read_strictly() -> None:
    ca = _ca("x")[0].public_bytes(PEM).decode()
    cfg = parse_configmap({"requestheader-client-ca-file": ca, "requestheader-allowed-names": '["a","b"]',
                           "requestheader-username-headers": '["X-User"]', "requestheader-group-headers": "[]"})
    assert cfg.allowed_names == {"a", "b"} and cfg.user_headers == ("X-User",) and cfg.group_headers == ()
    for data, expected in [({}, "no requestheader-client-ca-file"),
                           ({"requestheader-client-ca-file": ca, "requestheader-allowed-names": "a,b"}, "not a JSON"),
                           ({"requestheader-client-ca-file": ca, "requestheader-username-headers": "[1]"},
                            "not a list of strings")]:
        with pytest.raises(ConfigError, match=expected):
            parse_configmap(data)


def _no_master_config(tmp_path: Path) -> Path:
    (tmp_path / "k").write_text("apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: "
                                "'https://127.0.0.1:1'}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: x, "
                                "context: {cluster: c, user: u}}]\ncurrent-context: x\n")
    config = tmp_path / "config.yaml"
    config.write_text("clusters: [{metadata: {clusterName: a, configPath: k}}]\n"
                      f"store: {{type: sqlite, path: {tmp_path / 'store.db'}}}\n")
    return config


@pytest.mark.parametrize("flags", [{"auth": "kubernetes"}, {"apiservice": True}])
async def test_kubernetes_identities_without_a_master_refuse_to_start(tmp_path: Path,
                                                                      flags: dict[str, object]) -> None:
    """The master authenticates users and answers the reviews: without one the daemon says so before it opens
    anything."""
    from multicluster.config import Overrides, apply_overrides, load_config
    from multicluster.daemon import Daemon

    cfg = apply_overrides(load_config(_no_master_config(tmp_path)), Overrides(**flags))
    with pytest.raises(ConfigError, match="need a master cluster"):
        await Daemon(cfg).start()
    assert not (tmp_path / "store.db").exists()


@pytest.mark.parametrize("flag", ["--auth=kubernetes", "--apiservice"])
def test_run_without_a_master_prints_why(tmp_path: Path, flag: str) -> None:
    from typer.testing import CliRunner

    from multicluster.cli import app

    result = CliRunner().invoke(app, ["run", "--config", str(_no_master_config(tmp_path)), flag,
                                      "--no-write-cli-config"])
    assert result.exit_code == 1 and "need a master cluster" in result.output and "isMaster: true" in result.output
