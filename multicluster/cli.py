"""`multicluster run`: the daemon's command line. Accepts the Go original's flags so its manifests keep working;
every flag can also come from the environment (MULTICLUSTER_*), and the DB password from a file.

The original parses flags with pflag, so its manifests write `--flag=value` and booleans as `--lease-mode`,
`--lease-mode=true` or `--lease-mode=false` (Go's strconv.ParseBool spellings). Click takes `--flag=value` and
`--flag value` as they are; PflagCommand rewrites the `=true|false` forms of boolean flags into click's
`--flag`/`--no-flag` before parsing. pflag has no single-dash long flags (`-lease-mode` is the shorthand `-l`
followed by more shorthands there), so neither do we."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
import typer.core

from multicluster.cliexit import fail
from multicluster.config import (
    Config,
    Overrides,
    apply_env,
    apply_overrides,
    check_exposure,
    load_config,
    scrub_secret_env,
)
from multicluster.config.flags import secret_flags
from multicluster.errors import ConfigError, MulticlusterError
from multicluster.kubeconfig_cmd import kubeconfig

app = typer.Typer(add_completion=False, no_args_is_help=True, help="multicluster daemon")


def _run(main: Coroutine[Any, Any, None], event_loop: str) -> None:
    """Run the daemon on uvloop when it is installed: its C event loop and TLS cut the CPU the event loop
    thread spends per list page and watch event; the standard loop is the fallback, or the choice with
    daemon.eventLoop: asyncio (MULTICLUSTER_EVENT_LOOP=asyncio, for debugging)."""
    try:
        import uvloop
        if event_loop == "asyncio":
            raise ImportError("asyncio chosen")
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)


def _warn_secret_flags(ctx: typer.Context) -> None:
    """A WARNING (never the value) for every secret given as a flag rather than a file or the environment: a value
    on the command line shows in `ps` and /proc/PID/cmdline to every local user, and in a Deployment's pod spec."""
    log = logging.getLogger("multicluster.cli")
    for param, flag, file_flag, env in secret_flags():
        # By name: typer ships its own copy of click, whose ParameterSource is not click's.
        source = ctx.get_parameter_source(param)
        if ctx.params.get(param) is not None and source is not None and source.name == "COMMANDLINE":
            log.warning("%s was given on the command line, where other local users can read it (ps, /proc); "
                        "use %s or the %s environment variable", flag, file_flag, env)


# Go's strconv.ParseBool, which pflag uses for `--flag=VALUE` of a boolean flag.
_GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_GO_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def pflag_booleans(command: typer.core.TyperCommand, args: list[str]) -> list[str]:
    """`--flag=true|false` of the command's boolean flags as click's `--flag`/`--no-flag` (a false flag with no
    negative form is dropped: its default is false); the other arguments unchanged."""
    flags: dict[str, tuple[str, str | None]] = {}
    for param in command.params:
        if getattr(param, "is_bool_flag", False):
            negative = getattr(param, "secondary_opts", None) or [None]
            for opt in param.opts:
                flags[opt] = (opt, negative[0])
    out: list[str] = []
    for i, arg in enumerate(args):
        if arg == "--":
            out += args[i:]
            break
        name, eq, value = arg.partition("=")
        if not eq or name not in flags:
            out.append(arg)
            continue
        on, off = flags[name]
        if value in _GO_TRUE:
            out.append(on)
        elif value in _GO_FALSE:
            out += [off] if off else []
        else:
            raise typer.BadParameter(
                f'"{value}" is not true or false (booleans take {on}, {on}=true or {on}=false)', param_hint=f"'{on}'"
            )
    return out


class PflagCommand(typer.core.TyperCommand):
    """A command that also parses pflag's boolean syntax (see the module docstring)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, pflag_booleans(self, args))


@app.command(cls=PflagCommand)
def run(
    ctx: typer.Context,
    config: Annotated[Path, typer.Option("--config", envvar="MULTICLUSTER_CONFIG", help="daemon config.yaml")] = Path(
        "config/config.yaml"
    ),
    address: Annotated[
        int | None, typer.Option("--address", "--port", envvar="MULTICLUSTER_PORT", help="HTTP port (default 31888)")
    ] = None,
    bind: Annotated[
        str | None, typer.Option("--bind", envvar="MULTICLUSTER_BIND", help="listen address (default 127.0.0.1)")
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="MULTICLUSTER_TOKEN",
            show_default=False,
            help="read token: every route but /healthz and /readyz requires it (prefer --token-file or the env var)",
        ),
    ] = None,
    token_file: Annotated[
        Path | None, typer.Option("--token-file", envvar="MULTICLUSTER_TOKEN_FILE", help="read the token from a file")
    ] = None,
    admin_token: Annotated[
        str | None,
        typer.Option(
            "--admin-token",
            envvar="MULTICLUSTER_ADMIN_TOKEN",
            show_default=False,
            help="when set, POST /v1/join and DELETE /v1/unjoin require this token (prefer --admin-token-file)",
        ),
    ] = None,
    admin_token_file: Annotated[
        Path | None,
        typer.Option(
            "--admin-token-file", envvar="MULTICLUSTER_ADMIN_TOKEN_FILE", help="read the admin token from a file"
        ),
    ] = None,
    insecure_allow_unauthenticated: Annotated[
        bool | None,
        typer.Option(
            "--insecure-allow-unauthenticated",
            envvar="MULTICLUSTER_INSECURE_ALLOW_UNAUTHENTICATED",
            help="allow a non-loopback --bind without a token (anyone who reaches the port can read and change "
            "membership); logs a warning at every start",
            show_default=False,
        ),
    ] = None,
    store: Annotated[str | None, typer.Option("--store", envvar="MULTICLUSTER_STORE", help="sqlite or mysql")] = None,
    sqlite_path: Annotated[str | None, typer.Option("--sqlite-path", envvar="MULTICLUSTER_SQLITE_PATH")] = None,
    db_endpoint: Annotated[
        str | None,
        typer.Option(
            "--db-endpoint", envvar="MULTICLUSTER_DB_ENDPOINT",
            help="MySQL HOST:PORT, or the nodes of a cluster as h1:p1,h2:p2,h3:p3 (selects the mysql store)",
        ),
    ] = None,
    db_user: Annotated[str | None, typer.Option("--db-user", envvar="MULTICLUSTER_DB_USER")] = None,
    db_password: Annotated[
        str | None,
        typer.Option(
            "--db-password",
            envvar="MULTICLUSTER_DB_PASSWORD",
            show_default=False,
            help="prefer --db-password-file or the env var",
        ),
    ] = None,
    db_password_file: Annotated[
        Path | None, typer.Option("--db-password-file", envvar="MULTICLUSTER_DB_PASSWORD_FILE")
    ] = None,
    db_database: Annotated[str | None, typer.Option("--db-database", envvar="MULTICLUSTER_DB_DATABASE")] = None,
    lease_mode: Annotated[
        bool | None,
        typer.Option(
            "--lease-mode/--no-lease-mode",
            envvar="MULTICLUSTER_LEASE_MODE",
            help="leader election and sharded informers across replicas (also --lease-mode=true|false)",
        ),
    ] = None,
    lease_name: Annotated[str | None, typer.Option("--lease-name", envvar="MULTICLUSTER_LEASE_NAME")] = None,
    lease_namespace: Annotated[
        str | None, typer.Option("--lease-namespace", envvar="MULTICLUSTER_LEASE_NAMESPACE")
    ] = None,
    cert_dir: Annotated[
        str | None,
        typer.Option("--cert-dir", envvar="MULTICLUSTER_CERT_DIR", help="serve HTTPS with tls.crt/tls.key from here"),
    ] = None,
    apiservice: Annotated[
        bool | None,
        typer.Option(
            "--apiservice/--no-apiservice",
            envvar="MULTICLUSTER_APISERVICE",
            help="register the Kubernetes API with the master's API server (APIService) and serve it HTTPS with "
            "front-proxy authentication and the master's RBAC (server.apiService)",
            show_default=False,
        ),
    ] = None,
    auth: Annotated[
        str | None,
        typer.Option("--auth", envvar="MULTICLUSTER_AUTH", help="token (the static tokens) or kubernetes (also "
                     "users' own tokens of the master, checked with a TokenReview; server.auth)",
                     show_default=False),
    ] = None,
    log_level: Annotated[str, typer.Option("--log-level", envvar="MULTICLUSTER_LOG_LEVEL")] = "INFO",
    debug_mode: Annotated[
        bool,
        typer.Option(
            "--debug-mode/--no-debug-mode",
            envvar="MULTICLUSTER_DEBUG_MODE",
            help="log at DEBUG (wins over --log-level)",
        ),
    ] = False,
    write_cli_config: Annotated[
        bool,
        typer.Option(
            "--write-cli-config/--no-write-cli-config", help="create ~/.multi-cluster-operator/config when missing"
        ),
    ] = True,
    ctl_port: Annotated[
        int | None,
        typer.Option(
            "--ctl-port",
            envvar="MULTICLUSTER_CTL_PORT",
            help="port the plugin's config file names (default: the API port); e.g. a NodePort in front of the API",
            show_default=False,
        ),
    ] = None,
    health_port: Annotated[
        int | None,
        typer.Option(
            "--HealthPort",
            "--health-port",
            envvar="MULTICLUSTER_HEALTH_PORT",
            help="also serve /healthz and /readyz (and nothing else) on this port",
            show_default=False,
        ),
    ] = None,
    mysql_max_idle_connections: Annotated[
        int | None,
        typer.Option(
            "--mysql-max-idle-connections",
            envvar="MULTICLUSTER_MYSQL_MAX_IDLE_CONNECTIONS",
            help="MySQL connections opened at start and kept while idle (store.poolMinSize)",
            show_default=False,
        ),
    ] = None,
    mysql_max_open_connections: Annotated[
        int | None,
        typer.Option(
            "--mysql-max-open-connections",
            envvar="MULTICLUSTER_MYSQL_MAX_OPEN_CONNECTIONS",
            help="MySQL connections open at most (store.poolSize)",
            show_default=False,
        ),
    ] = None,
    mysql_max_connection_life_time: Annotated[
        str | None,
        typer.Option(
            "--mysql-max-connection-life-time",
            envvar="MULTICLUSTER_MYSQL_MAX_CONNECTION_LIFE_TIME",
            help="reopen a pooled MySQL connection unused this long, a Go duration: 10s, 1m30s, 0 = never "
            "(store.connectionMaxLifetime)",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Sync every configured cluster into the store, serve the query API, and deliver MultiClusterResources."""
    from multicluster import logsetup

    try:
        rp = plan(ctx.params)
    except MulticlusterError as exc:
        fail(str(exc), exc.hint)
    logsetup.setup(rp.log_level, rp.config.daemon.log_format)
    _warn_secret_flags(ctx)
    try:
        check_exposure(rp.config.server)
    except MulticlusterError as exc:
        fail(str(exc), exc.hint)
    # The config holds the secrets now: exec plugins of configured kubeconfigs and child processes inherit the
    # environment and must not see them.
    scrub_secret_env()
    if rp.write_cli_config:
        _write_cli_config(rp.config, rp.cli_port)
    from multicluster.daemon import Daemon

    try:
        _run(Daemon(rp.config).serve_forever(), rp.config.daemon.event_loop)
    except MulticlusterError as exc:
        fail(str(exc), exc.hint, code=1)
    except OSError as exc:
        fail(f"{exc.strerror or exc}", "is another daemon already listening on that port? use --address", code=1)


@dataclass(frozen=True, slots=True)
class RunPlan:
    """What `run`'s flags amount to: the config the daemon starts with, and what the command does around it."""

    config: Config
    log_level: str
    cli_port: int  # the port written into the plugin's config file
    write_cli_config: bool


def plan(params: Mapping[str, Any]) -> RunPlan:
    """The RunPlan of `run`'s parsed parameters (click's ctx.params). Raises MulticlusterError for a bad value."""
    cfg = load_config(params.get("config") or Path("config/config.yaml"))
    cfg = apply_overrides(apply_env(cfg), Overrides.from_params(params))
    cli_port = params.get("ctl_port")
    if cli_port is not None and not 1 <= cli_port <= 65535:
        raise ConfigError(f"--ctl-port: {cli_port} is not a port number (1-65535)",
                          hint="the port kubectl-multicluster connects to, e.g. 31888")
    return RunPlan(
        config=cfg,
        log_level="DEBUG" if params.get("debug_mode") else str(params.get("log_level") or "INFO"),
        cli_port=cfg.server.port if cli_port is None else cli_port,
        write_cli_config=bool(params.get("write_cli_config", True)),
    )


def _write_cli_config(cfg: Config, port: int) -> None:
    try:
        from multicluster import cliconfig
    except ImportError:
        return
    master = cfg.master
    host = "localhost" if cfg.server.bind in ("127.0.0.1", "0.0.0.0", "::", "localhost") else cfg.server.bind  # noqa: S104
    try:
        cliconfig.ensure_cli_config(
            port=port,
            host=host,
            master_kubeconfig=str(master.config_path) if master and master.config_path else "",
            token=cfg.server.token,
        )
    except OSError as exc:
        typer.echo(f"warning: could not write the kubectl-multicluster config: {exc}", err=True)


app.command("kubeconfig")(kubeconfig)


@app.command("check-config")
def check_config(
    config: Annotated[Path, typer.Option("--config", envvar="MULTICLUSTER_CONFIG")] = Path("config/config.yaml"),
) -> None:
    """Validate a config file (and the kubeconfigs it names) without starting anything."""
    try:
        cfg = load_config(config)
    except MulticlusterError as exc:
        fail(str(exc), exc.hint)
    master = cfg.master.name if cfg.master else "none (query-only)"
    typer.echo(f"ok: {len(cfg.clusters)} clusters, master {master}, store {cfg.store.type}")


@app.command()
def schema() -> None:
    """Print schema.sql (what the daemon applies at start)."""
    sys.stdout.write((Path(__file__).parent / "schema.sql").read_text())


def main() -> None:
    app()


if __name__ == "__main__":
    main()
