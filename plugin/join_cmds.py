"""`kubectl-multicluster join NAME --file KUBECONFIG` and `unjoin NAME`: runtime membership through the daemon
API (the Go original's commands, each with its own error messages).

Both need the daemon's admin scope when it has one (server.adminToken): they send --admin-token,
$MULTICLUSTER_ADMIN_TOKEN or the config file's `adminToken:`, else the read token. A refusal (401/403) is one
line saying which token to pass."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import orjson
import typer

from plugin.client import ApiError, Client, PluginError, find_endpoint
from plugin.output import fail, reported

_ADMIN_HELP = "daemon admin token (or $MULTICLUSTER_ADMIN_TOKEN, or `adminToken:` in the config file)"


@contextmanager
def _refusals(what: str) -> Iterator[None]:
    """401/403 become one line naming the token to pass (the server's hint is about the API, not the plugin)."""
    try:
        yield
    except ApiError as exc:
        if exc.status not in (401, 403):
            raise
        need = "the admin token" if exc.status == 403 else "a valid token"
        fail(PluginError(f"the daemon refused to {what} ({exc.status}: {exc.message}); pass {need} with "
                         "--admin-token, $MULTICLUSTER_ADMIN_TOKEN or `adminToken:` in the config file"))


def join_cmd(
    name: Annotated[str, typer.Argument(help="name for the new cluster (lowercase DNS label)")],
    file: Annotated[Path, typer.Option("--file", "-f", help="the cluster's kubeconfig")],
    insecure: Annotated[bool, typer.Option("--insecure", help="skip TLS verification of the cluster")] = False,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="join even if the cluster cannot be reached now")] = False,
    server: Annotated[str | None, typer.Option("--server", help="daemon URL")] = None,
    token: Annotated[str | None, typer.Option("--token", help="daemon bearer token")] = None,
    admin_token: Annotated[str | None, typer.Option("--admin-token", help=_ADMIN_HELP, show_default=False)] = None,
) -> None:
    """Add a cluster to the running daemon (persisted across restarts)."""
    with reported():
        try:
            kubeconfig = file.read_text()
        except OSError as exc:
            fail(PluginError(f"cannot read {file}: {exc.strerror or exc}", hint="pass the kubeconfig with --file"))
        body = orjson.dumps({"cluster": name, "kubeconfig": kubeconfig, "insecure": insecure})
        params = [("cluster", name), ("insecure", str(insecure).lower()), ("wait", str(not no_wait).lower())]
        client = Client(find_endpoint(server, token, admin=True, admin_token=admin_token))
        with _refusals(f"join {name}"):
            out = orjson.loads(client.send("POST", "/v1/join", params, body=body, content_type="application/json"))
        version = f" ({out['version']})" if out.get("version") else ""
        typer.echo(f"cluster {name} joined{version}; `kubectl-multicluster list clusters` shows its sync progress")


def unjoin_cmd(
    name: Annotated[str, typer.Argument(help="cluster to remove")],
    server: Annotated[str | None, typer.Option("--server", help="daemon URL")] = None,
    token: Annotated[str | None, typer.Option("--token", help="daemon bearer token")] = None,
    admin_token: Annotated[str | None, typer.Option("--admin-token", help=_ADMIN_HELP, show_default=False)] = None,
) -> None:
    """Remove a cluster from the running daemon and purge its rows."""
    with reported():
        client = Client(find_endpoint(server, token, admin=True, admin_token=admin_token))
        with _refusals(f"unjoin {name}"):
            out = orjson.loads(client.send("DELETE", "/v1/unjoin", [("cluster", name)]))
        typer.echo(f"cluster {name} unjoined; {out.get('rowsDeleted', 0)} rows removed")
        if out.get("note"):
            typer.echo(f"note: {out['note']}", err=True)


def register(app: typer.Typer) -> None:
    app.command("join")(join_cmd)
    app.command("unjoin")(unjoin_cmd)
