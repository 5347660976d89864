"""Config validation: every bad input gets one message naming the field (and the CLI exits 2)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from multicluster.cli import app
from multicluster.config import DEFAULT_EXCLUDE, Overrides, apply_overrides, load_config
from multicluster.daemon import Daemon
from multicluster.errors import ConfigError

KUBECONFIG = """
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443", certificate-authority-data: Zm9v}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: ctx, context: {cluster: c, user: u}}, {name: other, context: {cluster: c, user: u}}]
current-context: ctx
"""


@pytest.fixture
def d(tmp_path: Path) -> Path:
    (tmp_path / "k1").write_text(KUBECONFIG)
    (tmp_path / "k2").write_text(KUBECONFIG)
    return tmp_path


def write(d: Path, text: str) -> Path:
    p = d / "config.yaml"
    p.write_text(text)
    return p


SEED = """
clusters:
- metadata:
    clusterName: tencent1
    insecure: false
    configPath: k1
- metadata:
    clusterName: tencent2
    insecure: true
    isMaster: true
    configPath: {d}/k2
    resources: [{{rType: apps/v1/deployments}}]
"""


def test_seed_format_loads_with_relative_and_absolute_paths(d: Path) -> None:
    cfg = load_config(write(d, SEED.format(d=d)))
    assert [c.name for c in cfg.clusters] == ["tencent1", "tencent2"]
    assert cfg.clusters[0].config_path == d / "k1"
    assert cfg.clusters[1].insecure is True
    assert cfg.master is not None and cfg.master.name == "tencent2"
    assert cfg.clusters[1].include == ("apps/v1/deployments",)
    assert cfg.server.port == 31888 and cfg.server.bind == "127.0.0.1"
    assert cfg.store.type == "sqlite" and cfg.store.path == d / "multicluster.db"
    assert cfg.exclude == DEFAULT_EXCLUDE


def test_change_retention(d: Path) -> None:
    base = "clusters: [{metadata: {clusterName: a, configPath: k1}}]\n"
    assert load_config(write(d, base)).store.change_retention == 10_000
    assert load_config(write(d, base + "store: {changeRetention: 50}")).store.change_retention == 50


def test_watch_bounds(d: Path) -> None:
    base = "clusters: [{metadata: {clusterName: a, configPath: k1}}]\n"
    server = load_config(write(d, base)).server
    assert (server.watch_queue, server.watch_heartbeat_seconds) == (1_000, 15.0)
    server = load_config(write(d, base + "server: {watchQueue: 50, watchHeartbeatSeconds: 2.5}")).server
    assert (server.watch_queue, server.watch_heartbeat_seconds) == (50, 2.5)
    # The daemon's hub closes a watcher at that many waiting events.
    assert Daemon(load_config(write(d, base + "server: {watchQueue: 50}"))).hub.queue_limit == 50


def test_no_master_means_query_only(d: Path) -> None:
    cfg = load_config(write(d, "clusters: [{metadata: {clusterName: a, configPath: k1}}]"))
    assert cfg.master is None


def test_tilde_expansion(d: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(d))
    cfg = load_config(write(d, "clusters: [{metadata: {clusterName: a, configPath: ~/k1}}]"))
    assert cfg.clusters[0].config_path == d / "k1"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("clusters: [", "YAML syntax error at line"),
        ("", "configuration is empty"),
        ("clusters: []", "clusters: the list is empty"),
        ("clustres: []", 'unknown key "clustres" (did you mean "clusters"?)'),
        ("clusters: [{metadata: {clusterName: a, configPath: k1, isMastr: true}}]", 'did you mean "isMaster"'),
        (
            "clusters: [{metadata: {clusterName: a, configPath: k1, insecure: 'yes'}}]",
            "insecure: expected true or false",
        ),
        ("clusters: [{metadata: {clusterName: '', configPath: k1}}]", "clusterName: is required"),
        ("clusters: [{metadata: {configPath: k1}}]", "clusterName: is required"),
        ("clusters: [{metadata: {clusterName: Bad_Name, configPath: k1}}]", "is not a valid cluster name"),
        (
            "clusters: [{metadata: {clusterName: a, configPath: k1}}, {metadata: {clusterName: a, configPath: k2}}]",
            'clusters[1].metadata.clusterName: "a" is used twice',
        ),
        (
            "clusters: [{metadata: {clusterName: a, configPath: k1, isMaster: true}}, "
            "{metadata: {clusterName: b, configPath: k2, isMaster: true}}]",
            "more than one cluster has isMaster",
        ),
        ("clusters: [{metadata: {clusterName: a}}]", "configPath: is required outside a Kubernetes pod"),
        ("clusters: [{metadata: {clusterName: a, configPath: nope}}]", "does not exist"),
        ("clusters: [{metadata: {clusterName: a, configPath: config.yaml}}]", "is not a kubeconfig"),
        ("clusters: [{metadata: {clusterName: a, configPath: k1, context: ctz}}]", 'context "ctz" not found'),
        ("clusters: [{metadata: {clusterName: a, configPath: k1}}]\nserver: {port: 70000}", "not a port number"),
        ("clusters: [{metadata: {clusterName: a, configPath: k1}}]\nserver: {port: true}", "got a boolean"),
        ("clusters: [{metadata: {clusterName: a, configPath: k1}}]\nstore: {type: postgres}", 'store.type: "postgres"'),
        ("clusters: [{metadata: {clusterName: a, configPath: k1}}]\nsync: {pageSize: 0}", "greater than 0"),
        ("clusters: [{metadata: {clusterName: a, configPath: k1}}]\nstore: {changeRetention: 0}",
         "store.changeRetention"),
        ("clusters: [{metadata: {clusterName: a, configPath: k1}}]\nserver: {watchQueue: 0}", "server.watchQueue"),
        ("clusters: [{metadata: {clusterName: a, configPath: k1}}]\nserver: {watchHeartbeatSeconds: -1}",
         "server.watchHeartbeatSeconds"),
        ("clusters: {metadata: {}}", "clusters: expected a list"),
        ("clusters: [{metadata: {clusterName: a, configPath: k1, resources: [{rType: 3}]}}]", "rType: expected"),
    ],
)
def test_bad_config_names_the_field(d: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(d, text))
    assert expected in str(err.value)


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("/nonexistent/config.yaml")


def test_unreadable_kubeconfig(d: Path) -> None:
    (d / "k1").chmod(0)
    import os

    if os.geteuid() == 0:  # root reads anything; use a directory instead to force a read failure
        (d / "kdir").mkdir()
        with pytest.raises(ConfigError, match="is not a file"):
            load_config(write(d, "clusters: [{metadata: {clusterName: a, configPath: kdir}}]"))
    else:
        with pytest.raises(ConfigError, match="cannot be read"):
            load_config(write(d, "clusters: [{metadata: {clusterName: a, configPath: k1}}]"))


def test_overrides_from_seed_flags(d: Path) -> None:
    cfg = load_config(write(d, SEED.format(d=d)))
    cfg = apply_overrides(
        cfg,
        Overrides(
            address=8888,
            db_endpoint="10.0.0.16:30110",
            db_user="u",
            db_password="s3cret-pw",
            db_database="resources",
            lease_mode=True,
            lease_name="l",
        ),
    )
    assert cfg.server.port == 8888
    assert (cfg.store.type, cfg.store.host, cfg.store.port, cfg.store.user) == ("mysql", "10.0.0.16", 30110, "u")
    assert cfg.store.password == "s3cret-pw" and "s3cret-pw" not in repr(cfg.store)
    assert cfg.lease.enabled and cfg.lease.name == "l"
    with pytest.raises(ConfigError, match="HOST:PORT"):
        apply_overrides(cfg, Overrides(db_endpoint="nohost"))


def test_cli_exit_code_2_and_one_line(d: Path) -> None:
    res = CliRunner().invoke(app, ["check-config", "--config", str(write(d, "clusters: []"))])
    assert res.exit_code == 2
    assert "error: clusters: the list is empty" in res.output
    ok = CliRunner().invoke(app, ["check-config", "--config", str(write(d, SEED.format(d=d)))])
    assert ok.exit_code == 0, ok.output
    assert "2 clusters, master tencent2" in ok.output


def test_server_auth_and_api_service(d: Path) -> None:
    """server.auth and the server.apiService* keys (issue 19): defaults, flags, and bad values named."""
    cfg = load_config(write(d, SEED.format(d=d)))
    assert cfg.server.auth == "token" and not cfg.server.api_service and not cfg.server.kubernetes_identities
    cfg = load_config(write(d, SEED.format(d=d) + "server: {auth: kubernetes}\n"))
    assert cfg.server.kubernetes_identities and not cfg.server.api_service
    text = ("server: {apiService: true, apiServiceNamespace: mc, apiServiceName: api, apiServiceExternalName: "
            "localhost, frontProxyReloadSeconds: 5}\n")
    s = load_config(write(d, SEED.format(d=d) + text)).server
    assert (s.api_service, s.api_service_namespace, s.api_service_name, s.api_service_external_name,
            s.front_proxy_reload_seconds, s.kubernetes_identities) == (True, "mc", "api", "localhost", 5.0, True)
    assert (s.api_service_namespace, s.api_service_name) != ("multicluster-system", "multicluster")
    defaults = load_config(write(d, SEED.format(d=d))).server
    assert (defaults.api_service_namespace, defaults.api_service_name) == ("multicluster-system", "multicluster")
    on = apply_overrides(defaults_cfg := load_config(write(d, SEED.format(d=d))),
                         Overrides(apiservice=True, auth="kubernetes")).server
    assert on.api_service and on.auth == "kubernetes" and defaults_cfg.server.auth == "token"
    for text, expected in [
        ("server: {auth: ldap}\n", "server.auth: 'ldap' is not one of token, kubernetes"),
        ("server: {apiServiceNamespace: Bad_NS}\n", "server.apiServiceNamespace"),
        ("server: {apiServiceExternalName: 'a b'}\n", "server.apiServiceExternalName"),
        ("server: {frontProxyReloadSeconds: 0}\n", "server.frontProxyReloadSeconds"),
        ("server: {apiService: yes please}\n", "server.apiService"),
    ]:
        with pytest.raises(ConfigError) as err:
            load_config(write(d, SEED.format(d=d) + text))
        assert expected in str(err.value), (text, str(err.value))
    with pytest.raises(ConfigError, match="--auth"):
        apply_overrides(load_config(write(d, SEED.format(d=d))), Overrides(auth="basic"))
