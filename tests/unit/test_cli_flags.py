"""`multicluster run` takes the Go original's flags in pflag syntax (booleans bare or `=true|false`, values after
`=` or a space) and each one does its job in the resulting plan; our own flags keep working and unknown flags fail
with a close match. The MySQL pool flags reach a real aiomysql pool on the harness's MariaDB."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from multicluster import cli
from multicluster.config import StoreConfig
from multicluster.errors import ConfigError
from multicluster.testing.mariadb import MariaDB

KUBECONFIG = """
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: ctx, context: {cluster: c, user: u}}]
current-context: ctx
"""

# The `args` of the Go original's deploy/deploy.yaml, in its order and spelling.
DEPLOY_ARGS = [
    "--db-user=root",
    "--db-password=123456",
    "--db-endpoint=10.0.0.16:30110",
    "--db-database=resources",
    "--debug-mode=true",
    "--config=/app/file/config.yaml",
    "--ctl-port=31888",
    "--lease-name=multi-cluster-operator-lease",
    "--lease-namespace=default",
    "--lease-mode=true",
]


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    (tmp_path / "kubeconfig").write_text(KUBECONFIG)
    p = tmp_path / "config.yaml"
    p.write_text("clusters:\n- metadata: {clusterName: tencent1, configPath: kubeconfig, isMaster: true}\n")
    return p


def parse(args: list[str]) -> typer.Context:
    group: Any = typer.main.get_command(cli.app)
    ctx: typer.Context = group.commands["run"].make_context("run", list(args))
    return ctx


def refused(*args: str) -> str:
    """The output of a `run` that must stop at its flags: exit code 2, one message."""
    result = CliRunner().invoke(cli.app, ["run", *args])
    assert result.exit_code == 2, result.output
    return " ".join(result.output.replace("│", " ").split())


def plan(config: Path, *args: str) -> cli.RunPlan:
    return cli.plan(parse(["--config", str(config), *args]).params)


@pytest.mark.parametrize(
    ("args", "enabled"),
    [
        (["--lease-mode"], True),
        (["--lease-mode=true"], True),
        (["--lease-mode=True"], True),
        (["--lease-mode=1"], True),
        (["--lease-mode=t"], True),
        (["--lease-mode=false"], False),
        (["--lease-mode=FALSE"], False),
        (["--lease-mode=0"], False),
        (["--no-lease-mode"], False),
        (["--lease-mode", "--lease-mode=false"], False),  # the last one wins, as in pflag
        ([], False),
    ],
)
def test_booleans_take_pflag_forms(config_file: Path, args: list[str], enabled: bool) -> None:
    assert plan(config_file, *args).config.lease.enabled is enabled


def test_every_boolean_flag_takes_a_value(config_file: Path) -> None:
    p = plan(config_file, "--debug-mode=false", "--insecure-allow-unauthenticated=true", "--write-cli-config=false")
    assert p.log_level == "INFO" and not p.write_cli_config
    assert p.config.server.insecure_allow_unauthenticated is True


def test_a_boolean_with_a_bad_value_is_a_usage_error() -> None:
    out = refused("--lease-mode=maybe")
    assert '"maybe" is not true or false' in out and "--lease-mode=true" in out


def test_deploy_yaml_args_verbatim(tmp_path: Path, config_file: Path) -> None:
    args = [a if not a.startswith("--config=") else f"--config={config_file}" for a in DEPLOY_ARGS]
    p = cli.plan(parse(args).params)
    store, lease = p.config.store, p.config.lease
    assert (store.type, store.host, store.port, store.user, store.password, store.database) == (
        "mysql", "10.0.0.16", 30110, "root", "123456", "resources")
    assert (lease.enabled, lease.name, lease.namespace) == (True, "multi-cluster-operator-lease", "default")
    assert p.log_level == "DEBUG"  # --debug-mode=true
    assert p.cli_port == 31888  # --ctl-port: what the plugin's config file names
    assert p.config.server.port == 31888


def test_space_separated_values_and_the_original_defaults(config_file: Path) -> None:
    p = plan(config_file, "--ctl-port", "30001", "--address", "8888", "--HealthPort", "29999",
             "--mysql-max-open-connections", "7")
    assert (p.cli_port, p.config.server.port, p.config.server.health_port) == (30001, 8888, 29999)
    assert p.config.store.pool_size == 7
    # Without --ctl-port the plugin's file names the API port.
    assert plan(config_file, "--address=8888").cli_port == 8888
    assert plan(config_file).config.server.health_port is None


def test_mysql_pool_flags(config_file: Path) -> None:
    p = plan(config_file, "--mysql-max-idle-connections=3", "--mysql-max-open-connections=5",
             "--mysql-max-connection-life-time=1m30s")
    assert (p.config.store.pool_min_size, p.config.store.pool_size) == (3, 5)
    assert p.config.store.connection_max_lifetime == 90.0
    # database/sql lowers MaxIdleConns to MaxOpenConns; so does the plan.
    p = plan(config_file, "--mysql-max-idle-connections=100", "--mysql-max-open-connections=10")
    assert (p.config.store.pool_min_size, p.config.store.pool_size) == (10, 10)
    # Go durations: 0 means connections are never closed for their age.
    assert plan(config_file, "--mysql-max-connection-life-time=0").config.store.connection_max_lifetime == 0
    assert plan(config_file, "--mysql-max-connection-life-time=1h2m0.5s").config.store.connection_max_lifetime == (
        3720.5)
    assert plan(config_file, "--mysql-max-connection-life-time=250ms").config.store.connection_max_lifetime == 0.25


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--mysql-max-connection-life-time=10"], "--mysql-max-connection-life-time"),
        (["--mysql-max-connection-life-time=ten seconds"], "--mysql-max-connection-life-time"),
        (["--mysql-max-open-connections=0"], "--mysql-max-open-connections"),
        (["--mysql-max-idle-connections=-1"], "--mysql-max-idle-connections"),
        (["--HealthPort=0"], "--HealthPort"),
        (["--ctl-port=70000"], "--ctl-port"),
    ],
)
def test_bad_values_name_the_flag(config_file: Path, args: list[str], flag: str) -> None:
    with pytest.raises(ConfigError) as err:
        plan(config_file, *args)
    assert str(err.value).startswith(f"{flag}: ")


def test_unknown_flag_fails_with_a_close_match() -> None:
    out = refused("--lease-mod=true")
    assert "No such option: --lease-mod" in out and "--lease-mode" in out.split("No such option: --lease-mod")[1]
    out = refused("--Healthport=1")
    assert "No such option: --Healthport" in out and "--HealthPort" in out.split("No such option: --Healthport")[1]


def test_environment_still_sets_booleans(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MULTICLUSTER_LEASE_MODE", "true")
    monkeypatch.setenv("MULTICLUSTER_DEBUG_MODE", "true")
    p = plan(config_file)
    assert p.config.lease.enabled and p.log_level == "DEBUG"


def test_secret_flags_still_warn(config_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    ctx = parse(["--config", str(config_file), "--db-password=123456"])
    with caplog.at_level(logging.WARNING, logger="multicluster.cli"):
        cli._warn_secret_flags(ctx)
    assert "--db-password was given on the command line" in caplog.text and "123456" not in caplog.text


async def test_pool_flags_reach_the_aiomysql_pool(mariadb_server: MariaDB, mariadb_database: str) -> None:
    from multicluster.store.mysql import MySQLStore

    db = mariadb_server
    cfg = StoreConfig(type="mysql", host="127.0.0.1", port=db.port, user=db.user, password=db.password,
                      database=mariadb_database, pool_size=5, pool_min_size=3, connection_max_lifetime=7.5)
    store = MySQLStore(cfg)
    await store.open()
    try:
        pool: Any = store._pool
        assert (pool.minsize, pool.maxsize, pool._recycle) == (3, 5, 7.5)
        # minsize connections are opened up front and kept.
        rows = db.sql(f"SELECT COUNT(*) FROM information_schema.processlist WHERE db = '{mariadb_database}'")
        assert int(rows.strip()) >= 3
    finally:
        await store.close()
    never = MySQLStore(StoreConfig(type="mysql", host="127.0.0.1", port=db.port, user=db.user,
                                   password=db.password, database=mariadb_database, connection_max_lifetime=0))
    await never.open()
    try:
        assert never._pool is not None and never._pool._recycle == -1  # aiomysql's "never"
    finally:
        await never.close()


def test_run_gets_past_the_deploy_yaml_args() -> None:
    result = CliRunner().invoke(cli.app, ["run", *DEPLOY_ARGS])
    # Every flag parsed; what stops it is the config file this machine does not have.
    assert result.exit_code == 2, result.output
    assert "error: config file /app/file/config.yaml does not exist" in result.output


def test_pool_keys_in_the_config_file(tmp_path: Path, config_file: Path) -> None:
    from multicluster.config import load_config

    base = config_file.read_text()
    config_file.write_text(base + "store: {type: mysql, poolSize: 6, poolMinSize: 9, connectionMaxLifetime: 0}\n")
    store = load_config(config_file).store
    assert (store.pool_size, store.pool_min_size, store.connection_max_lifetime) == (6, 6, 0.0)
    config_file.write_text(base + "store: {type: mysql, poolMinSize: -1}\n")
    with pytest.raises(ConfigError, match=r"^store.poolMinSize: must be 0 or more, got -1"):
        load_config(config_file)
    config_file.write_text(base + "store: {type: mysql, connectionMaxLifetime: soon}\n")
    with pytest.raises(ConfigError, match=r"store.connectionMaxLifetime"):
        load_config(config_file)
