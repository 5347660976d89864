"""The `make_env` fixture: a namespace-scoped Controller on the real harness (see tests/delivery/helpers.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from multicluster.config import parse_config
from multicluster.delivery import Controller, DeliveryOptions
from multicluster.kube import ClusterClient
from multicluster.tasks import Supervisor
from multicluster.testing.harness import Harness
from tests.delivery.helpers import Env, MakeEnv, default_options


@pytest.fixture
async def make_env(harness: Harness, unique: str) -> AsyncIterator[MakeEnv]:
    """make_env(names={"tencent1": "cluster1", ...}, extra={"ghost": kubeconfig_path}, delivery={config.yaml's
    `delivery:` section}, **DeliveryOptions)."""
    envs: list[Env] = []
    clients_all: list[ClusterClient] = []
    ns = f"dlv-{unique}"
    for name in harness.servers:
        harness.request(name, "POST", "/api/v1/namespaces", {"metadata": {"name": ns}})

    async def factory(names: Mapping[str, str] | None = None, extra: Mapping[str, Path] | None = None,
                      master: str | None = None, delivery: Mapping[str, Any] | None = None, **opts: Any) -> Env:
        mapping = dict(names or {n: n for n in harness.servers})
        master_name = master or next(iter(mapping))
        clusters = [{"metadata": {"clusterName": cname, "configPath": str(harness.servers[h].kubeconfig),
                                  "isMaster": cname == master_name}} for cname, h in mapping.items()]
        clusters += [{"metadata": {"clusterName": cname, "configPath": str(path)}}
                     for cname, path in (extra or {}).items()]
        config = parse_config({"clusters": clusters, "delivery": delivery}, harness.workdir)
        clients = {c.name: ClusterClient(c, request_timeout=10) for c in config.clusters}
        clients_all.extend(clients.values())
        options = DeliveryOptions(**{**default_options(ns), **opts})
        env = Env(harness, ns, config, clients, Controller(config, clients, Supervisor("test"), options), mapping)
        envs.append(env)
        await env.start()
        return env

    yield factory
    for env in envs:
        await env.stop()
    for c in clients_all:
        await c.close()
