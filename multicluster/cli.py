"""`multicluster run`: the daemon's command line. Accepts the Go original's flags so its manifests keep working;
every flag can also come from the environment (MULTICLUSTER_*), and the DB password from a file."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any

import typer

from multicluster.config import Overrides, apply_overrides, load_config
from multicluster.errors import MulticlusterError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="multicluster daemon")


def _run(main: Coroutine[Any, Any, None]) -> None:
    """Run the daemon on uvloop when it is installed: its C event loop and TLS cut the CPU the event loop
    thread spends per list page and watch event; the standard loop is the fallback, or the choice with
    MULTICLUSTER_EVENT_LOOP=asyncio (for debugging)."""
    try:
        import uvloop
        if os.environ.get("MULTICLUSTER_EVENT_LOOP") == "asyncio":
            raise ImportError("asyncio chosen")
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)


def _fail(msg: str, hint: str | None = None, code: int = 2) -> None:
    typer.secho(f"error: {msg}", fg="red", err=True)
    if hint:
        typer.echo(f"hint: {hint}", err=True)
    raise typer.Exit(code)


@app.command()
def run(
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
        typer.Option("--token", envvar="MULTICLUSTER_TOKEN", help="require this bearer token", show_default=False),
    ] = None,
    store: Annotated[str | None, typer.Option("--store", envvar="MULTICLUSTER_STORE", help="sqlite or mysql")] = None,
    sqlite_path: Annotated[str | None, typer.Option("--sqlite-path", envvar="MULTICLUSTER_SQLITE_PATH")] = None,
    db_endpoint: Annotated[
        str | None,
        typer.Option(
            "--db-endpoint", envvar="MULTICLUSTER_DB_ENDPOINT", help="MySQL HOST:PORT (selects the mysql store)"
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
        bool | None, typer.Option("--lease-mode/--no-lease-mode", envvar="MULTICLUSTER_LEASE_MODE")
    ] = None,
    lease_name: Annotated[str | None, typer.Option("--lease-name", envvar="MULTICLUSTER_LEASE_NAME")] = None,
    lease_namespace: Annotated[
        str | None, typer.Option("--lease-namespace", envvar="MULTICLUSTER_LEASE_NAMESPACE")
    ] = None,
    cert_dir: Annotated[
        str | None,
        typer.Option("--cert-dir", envvar="MULTICLUSTER_CERT_DIR", help="serve HTTPS with tls.crt/tls.key from here"),
    ] = None,
    log_level: Annotated[str, typer.Option("--log-level", envvar="MULTICLUSTER_LOG_LEVEL")] = "INFO",
    write_cli_config: Annotated[
        bool,
        typer.Option(
            "--write-cli-config/--no-write-cli-config", help="create ~/.multi-cluster-operator/config when missing"
        ),
    ] = True,
) -> None:
    """Sync every configured cluster into the store, serve the query API, and deliver MultiClusterResources."""
    from multicluster import logsetup

    logsetup.setup(log_level)
    password = db_password
    if db_password_file is not None:
        try:
            password = db_password_file.read_text().strip()
        except OSError as exc:
            _fail(f"--db-password-file: cannot read {db_password_file}: {exc.strerror}")
    try:
        cfg = load_config(config)
        cfg = apply_overrides(
            cfg,
            Overrides(
                port=address,
                bind=bind,
                token=token,
                db_endpoint=db_endpoint,
                db_user=db_user,
                db_password=password,
                db_database=db_database,
                sqlite_path=sqlite_path,
                store_type=store,
                lease_mode=lease_mode,
                lease_name=lease_name,
                lease_namespace=lease_namespace,
                cert_dir=cert_dir,
            ),
        )
    except MulticlusterError as exc:
        _fail(str(exc), exc.hint)
    if write_cli_config:
        _write_cli_config(cfg)
    from multicluster.daemon import Daemon

    try:
        _run(Daemon(cfg).serve_forever())
    except MulticlusterError as exc:
        _fail(str(exc), exc.hint, code=1)
    except OSError as exc:
        _fail(f"{exc.strerror or exc}", "is another daemon already listening on that port? use --address", code=1)


def _write_cli_config(cfg: object) -> None:
    try:
        from multicluster import cliconfig
    except ImportError:
        return
    from multicluster.config import Config

    assert isinstance(cfg, Config)
    master = cfg.master
    host = "localhost" if cfg.server.bind in ("127.0.0.1", "0.0.0.0", "::", "localhost") else cfg.server.bind  # noqa: S104
    try:
        cliconfig.ensure_cli_config(
            port=cfg.server.port,
            host=host,
            master_kubeconfig=str(master.config_path) if master and master.config_path else "",
            token=cfg.server.token,
        )
    except OSError as exc:
        typer.echo(f"warning: could not write the kubectl-multicluster config: {exc}", err=True)


@app.command("check-config")
def check_config(
    config: Annotated[Path, typer.Option("--config", envvar="MULTICLUSTER_CONFIG")] = Path("config/config.yaml"),
) -> None:
    """Validate a config file (and the kubeconfigs it names) without starting anything."""
    try:
        cfg = load_config(config)
    except MulticlusterError as exc:
        _fail(str(exc), exc.hint)
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
