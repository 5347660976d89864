"""`multicluster kubeconfig`: kubectl contexts for the daemon's Kubernetes-compatible API.

A client of a running daemon, not part of it: it reads the cluster list from the daemon (GET /v1/clusters) or,
with --via-master, from the master's APIService as the user, and writes `multicluster` and
`multicluster-<cluster>` contexts into a kubeconfig. multicluster.cli registers it on the command line.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer

from multicluster.cliexit import fail
from multicluster.errors import MulticlusterError


def _read_flag_file(flag: str, path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        value = path.read_text().strip()
    except OSError as exc:
        fail(f"{flag}: cannot read {path}: {exc.strerror or exc}")
    if not value:
        fail(f"{flag}: {path} is empty", "put the secret on the file's first line")
    return value


def kubeconfig(
    out: Annotated[Path | None, typer.Option("--out", help="write a new kubeconfig here instead of merging into "
                                             "$KUBECONFIG (or ~/.kube/config)")] = None,
    server: Annotated[str | None, typer.Option("--server", help="the daemon's URL (default: from the kubectl-"
                                               "multicluster config file, else http://localhost:31888)")] = None,
    token_file: Annotated[Path | None, typer.Option("--token-file", help="read the API token from a file "
                                                    "(default: MULTICLUSTER_TOKEN, else the config file's)")] = None,
    certificate_authority: Annotated[Path | None, typer.Option(
        "--certificate-authority", help="PEM file of the CA that signed the daemon's certificate (server.certDir), "
        "embedded in the kubeconfig")] = None,
    via_master: Annotated[bool, typer.Option(
        "--via-master", help="reach the daemon through the master's API server (multicluster run --apiservice) "
        "with your own credentials for it, from --kubeconfig/--context")] = False,
    master_kubeconfig: Annotated[Path | None, typer.Option(
        "--kubeconfig", help="with --via-master: the kubeconfig that reaches the master (default: $KUBECONFIG, "
        "else ~/.kube/config)")] = None,
    master_context: Annotated[str | None, typer.Option(
        "--context", help="with --via-master: the master's context in it (default: its current context)")] = None,
) -> None:
    """Add kubectl contexts for the daemon's Kubernetes API: `multicluster` (all clusters) and
    `multicluster-<cluster>` (one each). Then: kubectl --context multicluster get pods -A"""
    import urllib.error
    import urllib.request

    import orjson

    from multicluster import cliconfig
    from multicluster.api.kube import contexts

    if via_master:
        _kubeconfig_via_master(out, master_kubeconfig, master_context)
        return

    try:
        cli = cliconfig.load_cli_config()
    except MulticlusterError as exc:
        fail(str(exc), exc.hint)
    url = (server or (cli.server_url if cli else f"http://localhost:{cliconfig.DEFAULT_PORT}")).rstrip("/")
    token = _read_flag_file("--token-file", token_file) or cliconfig.env_token() or \
        (cli.token if cli else None)
    ca_data = None
    if certificate_authority is not None:
        try:
            ca_data = certificate_authority.read_bytes()
        except OSError as exc:
            fail(f"--certificate-authority: cannot read {certificate_authority}: {exc.strerror or exc}")
    ctx = None
    if url.startswith("https:"):
        import ssl

        ctx = ssl.create_default_context(cadata=ca_data.decode() if ca_data else None)
    req = urllib.request.Request(f"{url}/v1/clusters")  # noqa: S310 - the operator's own daemon URL
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=15, context=ctx) as resp:  # noqa: S310
            names = [str(c["name"]) for c in orjson.loads(resp.read())["clusters"]]
    except urllib.error.HTTPError as exc:
        hint = ("pass the daemon's token with --token-file or MULTICLUSTER_TOKEN" if exc.code == 401
                else "check --server")
        fail(f"the daemon at {url} answered {exc.code} {exc.reason} to GET /v1/clusters", hint)
    except (urllib.error.URLError, OSError, ValueError, KeyError, TypeError) as exc:
        reason = getattr(exc, "reason", exc)
        fail(f"cannot read the cluster list from the daemon at {url}: {reason}",
              "start the daemon (multicluster run), or point --server at it")
    if token and url.startswith("http:"):
        typer.echo("warning: kubectl sends no bearer token over plain HTTP, so these contexts get 401 from a daemon "
                   "with a token: serve the API over TLS (server.certDir) and rerun with --server https://... "
                   "--certificate-authority CA.crt", err=True)
    try:
        _write_contexts(out, contexts.entries(url, names, token, ca_data), len(names), "")
    except MulticlusterError as exc:
        fail(str(exc), exc.hint)


def _write_contexts(out: Path | None, new: dict[str, list[dict[str, Any]]], members: int, how: str) -> None:
    """Write `new` to `out`, or merge it into the user's kubeconfig (the previous file kept), and say so."""
    from multicluster import cliconfig
    from multicluster.api.kube import contexts

    try:
        if out is not None:
            contexts.write(out, contexts.merge(contexts.empty(), new), backup=False)
            target, saved = out, None
        else:
            target = cliconfig.kubectl_config_path()
            saved = contexts.write(target, contexts.merge(contexts.load(target), new), backup=True)
    except OSError as exc:
        fail(f"cannot write the kubeconfig: {exc}", "choose another file with --out FILE")
    typer.echo(f"wrote contexts multicluster and {members} multicluster-<cluster>{how} to {target}"
               + (f" (previous file kept as {saved})" if saved else ""))
    typer.echo(f"try: kubectl {'--kubeconfig ' + str(target) + ' ' if out else ''}--context multicluster get pods -A")


def _kubeconfig_via_master(out: Path | None, source: Path | None, context: str | None) -> None:
    """`multicluster kubeconfig --via-master`: contexts through the master's APIService (see contexts.via_master);
    the member list comes from the master too (GET .../v1alpha1/clusters, as the user)."""
    from multicluster import cliconfig
    from multicluster.api.kube import contexts

    source = source or cliconfig.kubectl_config_path()
    try:
        doc = contexts.load(source)
        names = _run_members_via_master(source, context)
        new = contexts.via_master(doc, source, context, names, copy_user=out is not None or
                                  source.resolve() != cliconfig.kubectl_config_path().resolve())
        _write_contexts(out, new, len(names), " (through the master)")
    except MulticlusterError as exc:
        fail(str(exc), exc.hint)
    except OSError as exc:
        fail(f"cannot read the kubeconfig {source}: {exc}", "point --kubeconfig at a readable file")


def _run_members_via_master(source: Path, context: str | None) -> list[str]:
    """The member clusters the master's APIService lists for this kubeconfig's user."""
    from multicluster.api.kube.paths import PREFIX
    from multicluster.config import ClusterConfig
    from multicluster.errors import KubeAPIError, NotFound
    from multicluster.kube import ClusterClient

    async def members() -> list[str]:
        client = ClusterClient(ClusterConfig(name="master", config_path=source, context=context))
        try:
            doc = await client.get(PREFIX)
        except NotFound as exc:
            raise MulticlusterError("the master serves no clusters.multicluster.practice.com API",
                                    hint="start the daemon with --apiservice (server.apiService)") from exc
        except KubeAPIError as exc:
            raise MulticlusterError(f"the master answered {exc.status} to GET {PREFIX}: {exc.message[:300]}",
                                    hint="the APIService must be Available and you need `list` on "
                                    "clusters.clusters.multicluster.practice.com (docs/security.md)") from exc
        finally:
            await client.close()
        return [str(i["metadata"]["name"]) for i in doc.get("items") or [] if isinstance(i, dict)]

    return asyncio.run(members())
