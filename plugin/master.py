"""The plugin's one way to the MASTER cluster (apply, create, delete, get and edit of MultiClusterResources and
other objects there); every other command talks to the daemon's HTTP API only (plugin.client).

The master is found, in order, from `--kubeconfig`, or `masterClusterKubeConfigPath` in the CLI config file
(~/.multi-cluster-operator/config, moved by MULTICLUSTER_CLI_CONFIG). There is deliberately no fallback to
~/.kube/config: applying to whatever cluster happens to be current is how CRs end up in the wrong place.

This module is the only plugin module that imports the daemon's Kubernetes client (multicluster.kube), its
cluster config and its resource-type resolver (multicluster.gvr); the layering test holds it to that.
"""

from __future__ import annotations

import os
from pathlib import Path

from multicluster import gvr as gvrmod
from multicluster.cliconfig import config_path, load_cli_config
from multicluster.config import ClusterConfig
from multicluster.errors import ConfigError, GVRError, KubeAPIError, MulticlusterError
from multicluster.gvr import APIResource
from multicluster.kube import APPLY_PATCH, MERGE_PATCH, ClusterClient

__all__ = ["APPLY_PATCH", "MERGE_PATCH", "APIResource", "MasterClient", "MasterError", "connect", "find_kind",
           "master_kubeconfig", "resolve_type", "server_message", "type_name"]

MasterClient = ClusterClient


class MasterError(MulticlusterError):
    """Something the master cluster does not have or refused."""


def master_kubeconfig(flag: str | None) -> Path:
    """--kubeconfig, else masterClusterKubeConfigPath from the CLI config file."""
    if flag:
        return Path(os.path.expanduser(flag))
    cfg = load_cli_config()
    where = config_path()
    if cfg is None:
        raise ConfigError(f"no master cluster: {where} does not exist and --kubeconfig was not given",
                          hint="pass --kubeconfig FILE, or put `masterClusterKubeConfigPath: FILE` in that file")
    if not cfg.master_kubeconfig:
        raise ConfigError(f"no master cluster: {where} has no masterClusterKubeConfigPath",
                          hint="add `masterClusterKubeConfigPath: /path/to/master/kubeconfig`, or pass --kubeconfig")
    path = Path(os.path.expanduser(cfg.master_kubeconfig))
    return path if path.is_absolute() else where.parent / path


async def connect(kubeconfig: str | None, context: str | None) -> MasterClient:
    path = master_kubeconfig(kubeconfig)
    if not path.exists():
        raise ConfigError(f"master kubeconfig {path} does not exist")
    client = ClusterClient(ClusterConfig(name="master", config_path=path, context=context))
    await client.connect()
    return client


def find_kind(resources: list[APIResource], api_version: str, kind: str) -> APIResource | None:
    group, _, version = api_version.rpartition("/")
    return next((r for r in resources if r.gvr.group == group and r.gvr.version == version and r.kind == kind), None)


async def resolve_type(client: MasterClient, text: str) -> APIResource:
    """The resource a kubectl spelling names on the master (rr, mcr, cm, deployments.apps, apps/v1/deployments)."""
    try:
        return gvrmod.resolve(text, await client.discover(), require_list_watch=False)
    except GVRError:
        try:
            return gvrmod.resolve(text, await client.discover(refresh=True), require_list_watch=False)
        except GVRError as exc:
            raise MasterError(f'the master cluster doesn\'t have a resource type "{text}"',
                              hint=exc.hint) from None


def type_name(r: APIResource) -> str:
    """kubectl's TYPE in `TYPE/NAME` output: `configmap`, `multiclusterresource.mulitcluster.practice.com`."""
    return f"{r.kind.lower()}.{r.gvr.group}" if r.gvr.group else r.kind.lower()


def server_message(exc: KubeAPIError) -> str:
    return str(exc.body.get("message") or exc.message)
