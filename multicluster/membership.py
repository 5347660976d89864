"""Cluster membership at runtime: join/unjoin (persisted), health probes, and MultiCluster objects on the master.

Joined clusters live in a state directory next to the config file (`<config dir>/multicluster-state/`, or
MULTICLUSTER_STATE_DIR): one `<name>.kubeconfig` per cluster with mode 0600 and `members.yaml` listing them, so
they come back after a restart. Kubeconfig contents are never logged. An uploaded kubeconfig is data: it is parsed
from an allow-list (multicluster.kubeconfig) at the join and again at every restore, only the parsed connection is
written to the state dir, and the cluster is `trusted=False`, so kubernetes_asyncio's loader never reads it.

Health: every cluster's `/readyz` is probed every `interval` seconds with a timeout. One success makes it Ready;
`failure_threshold` consecutive failures make it NotReady (the server answered, but not ready) or Unreachable (no
answer). With the defaults (5 s, 3 failures) a dead cluster is reported within ~15-20 s. The result feeds the
query API's freshness block, /v1/clusters, and `status` of the cluster's MultiCluster object on the master.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from multicluster.config import ClusterConfig
from multicluster.errors import ClusterError, KubeAPIError, MembershipError, MulticlusterError, NotFound
from multicluster.kube import APPLY_PATCH, MERGE_PATCH, ClusterClient, failure_summary
from multicluster.kubeconfig import KubeconfigError, parse_kubeconfig
from multicluster.logsetup import cluster_logger
from multicluster.registry import ClusterRegistry
from multicluster.types import JoinAnswer, UnjoinAnswer, VersionInfo

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_VERSION = re.compile(r"^v?[0-9A-Za-z.+-]{1,64}$")
MC_GROUP = "mulitcluster.practice.com"
MC_PATH = f"/apis/{MC_GROUP}/v1alpha1/namespaces/default/multiclusters"
FIELD_MANAGER = "multicluster-membership"


@dataclass
class Probe:
    status: str = "Unknown"  # Ready | NotReady | Unreachable | Unknown
    reason: str = ""
    last_probe: float = 0.0
    last_transition: float = 0.0
    failures: int = 0


class Membership:
    def __init__(
        self, registry: ClusterRegistry, *, interval: float = 5.0, timeout: float = 3.0, failure_threshold: int = 3
    ) -> None:
        self.registry = registry
        self.interval = interval
        self.timeout = timeout
        self.failure_threshold = failure_threshold
        self.probes: dict[str, Probe] = {}
        self.joined: dict[str, ClusterConfig] = {}
        self._lock = asyncio.Lock()
        self.publish = True  # only the leader writes MultiCluster objects (lease mode toggles this)
        src = registry.config.source
        default = (src.parent if src else Path.cwd()) / "multicluster-state"
        self.state_dir = registry.config.daemon.state_dir or default

    # ------------------------------------------------------------------ persistence

    @property
    def _members_file(self) -> Path:
        return self.state_dir / "members.yaml"

    def load(self) -> list[ClusterConfig]:
        """Clusters joined in earlier runs, untrusted like at their join: each kubeconfig goes through the
        allow-list parser, and one it refuses (written by an older version, or planted) is skipped with an error
        naming the key, never handed to a loader. Entries whose kubeconfig is gone or broken are skipped too."""
        if not self._members_file.exists():
            return []
        try:
            entries = yaml.safe_load(self._members_file.read_text()) or []
        except (OSError, yaml.YAMLError) as exc:
            log.error("cannot read %s: %s; joined clusters are not restored", self._members_file, exc)
            return []
        if not isinstance(entries, list):
            log.error("%s is not a list of joined clusters; none is restored", self._members_file)
            return []
        out = []
        for e in entries:
            try:
                cfg = ClusterConfig(
                    name=str(e["name"]),
                    config_path=Path(e["configPath"]),
                    insecure=bool(e.get("insecure", False)),
                    trusted=False,
                )
                assert cfg.config_path is not None
                parse_kubeconfig(cfg.config_path.read_bytes())
            except KubeconfigError as exc:
                cluster_logger(log, str(e["name"])).error(
                    "joined cluster not restored: its kubeconfig %s is refused: %s (%s); remove it from %s "
                    "and join the cluster again with an inline kubeconfig",
                    e["configPath"], exc.message, exc.hint, self._members_file,
                )
                continue
            except (KeyError, TypeError, AttributeError, OSError) as exc:
                log.error(
                    "joined cluster entry %r cannot be restored: %s",
                    e.get("name") if isinstance(e, dict) else e,
                    exc.strerror if isinstance(exc, OSError) else exc,
                )
                continue
            out.append(cfg)
            self.joined[cfg.name] = cfg
        return out

    def _save(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        data = [
            {"name": c.name, "configPath": str(c.config_path), "insecure": c.insecure} for c in self.joined.values()
        ]
        tmp = self._members_file.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(yaml.safe_dump(data))
        tmp.replace(self._members_file)

    # ------------------------------------------------------------------ join / unjoin

    async def join(self, name: str, kubeconfig: bytes, *, insecure: bool = False, wait: bool = True) -> JoinAnswer:
        """Validate, persist and start syncing a new cluster. Returns a summary for the API response."""
        async with self._lock:
            name = (name or "").strip()
            if not name:
                raise MembershipError("cluster name is empty", hint="pass ?cluster=NAME")
            if not _NAME.match(name):
                raise MembershipError(
                    f'"{name}" is not a valid cluster name',
                    hint="use lowercase letters, digits and '-', at most 63 characters",
                )
            if name in self.registry:
                raise MembershipError(
                    f"cluster {name} is already a member",
                    status=409,
                    hint=f"unjoin it first: DELETE /v1/unjoin?cluster={name}",
                )
            if not kubeconfig.strip():
                raise MembershipError("the kubeconfig is empty", hint="upload it as multipart field `kubeconfig`")
            if len(kubeconfig) > 1024 * 1024:
                raise MembershipError("the kubeconfig is larger than 1 MiB")
            # The upload is data: parsed from an allow-list, never handed to kubernetes_asyncio's loader (which
            # runs exec/auth-provider commands and reads local files). Messages name keys, never values.
            try:
                spec = parse_kubeconfig(kubeconfig)
            except KubeconfigError as exc:
                cluster_logger(log, name).warning("join refused: %s", exc.message)
                raise
            self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, tmpname = tempfile.mkstemp(prefix=f".{name}-", suffix=".kubeconfig", dir=self.state_dir)
            tmp = Path(tmpname)
            try:
                with os.fdopen(fd, "wb") as fh:
                    # Only the parsed connection is kept: nothing else of the upload reaches the disk.
                    fh.write(spec.to_yaml())
                os.chmod(tmp, 0o600)
                cluster = ClusterConfig(name=name, config_path=tmp, insecure=insecure, trusted=False)
                version: VersionInfo = {}
                if wait:
                    client = ClusterClient(cluster, request_timeout=10)
                    try:
                        version = await client.server_version()
                    except (MulticlusterError, ValueError) as exc:  # ValueError: an answer that is not JSON
                        # The caller learns what failed; paths, TLS library text and remote bodies go to the log.
                        cluster_logger(log, name).warning("join: %s cannot be used: %s", spec.server, exc)
                        raise MembershipError(
                            f"cluster {name} cannot be reached with that kubeconfig: {failure_summary(exc)}",
                            hint="check the server address and credentials (the daemon's log has the details), "
                            "or pass wait=false to join anyway",
                        ) from None
                    finally:
                        await client.close()
                final = self.state_dir / f"{name}.kubeconfig"
                tmp.replace(final)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            cluster = ClusterConfig(name=name, config_path=final, insecure=insecure, trusted=False)
            self.joined[name] = cluster
            self._save()
            self.registry.add(cluster)
            # gitVersion comes from a server the caller chose: echo it only when it looks like a version.
            git_version = version.get("gitVersion")
            shown = git_version if isinstance(git_version, str) and _VERSION.match(git_version) else ""
            cluster_logger(log, name).info("joined%s", f" ({shown})" if shown else "")
            return {
                "res": "join cluster successful",
                "cluster": name,
                "version": shown,
                "persisted": True,
            }

    async def unjoin(self, name: str) -> UnjoinAnswer:
        async with self._lock:
            master = self.registry.config.master
            if master is not None and name == master.name:
                raise MembershipError(
                    f"cannot unjoin {name}: it is the master cluster",
                    hint="the master holds the MultiClusterResources; change isMaster in config",
                )
            if self.registry.config.cluster(name) is not None:
                # The operator's file is the source of truth for these: an HTTP caller must not be able to drop
                # (and purge) a cluster that would silently come back at the next restart.
                source = self.registry.config.source
                raise MembershipError(
                    f"cannot unjoin {name}: it is listed in {source.name if source else 'the config file'}",
                    status=409,
                    hint="remove it from config.yaml and restart the daemon (or send it SIGHUP to reload); "
                    "only clusters added with POST /v1/join can be unjoined over HTTP",
                )
            if name not in self.registry:
                raise MembershipError(
                    f"cluster {name} is not a member", status=404, hint="GET /v1/clusters lists the members"
                )
            removal = await self.registry.remove(name)
            joined = self.joined.pop(name, None)
            if joined is not None:
                self._save()
                if joined.config_path is not None:
                    joined.config_path.unlink(missing_ok=True)
            self.probes.pop(name, None)
            out: UnjoinAnswer = {"res": "unjoin cluster successful", "cluster": name, "rowsDeleted": removal.rows}
            if removal.kept_for:
                # Lease mode: the store is shared and other replicas still sync this cluster (it was joined there
                # too); purging would delete rows they keep current. The last replica to unjoin it purges.
                out["note"] = (f"this replica stopped syncing {name}; its rows stay in the shared store because "
                               f"replicas {', '.join(removal.kept_for)} still sync it (unjoin it there too)")
                out["keptFor"] = list(removal.kept_for)
                cluster_logger(log, name).info("unjoined on this replica; rows kept for %s",
                                               ", ".join(removal.kept_for))
            else:
                await self._delete_multicluster(name)
                cluster_logger(log, name).info("unjoined; %d rows purged", removal.rows)
            return out

    # ------------------------------------------------------------------ health

    async def run(self) -> None:
        """Probe every member forever; keep MultiCluster objects on the master up to date."""
        while True:
            names = list(self.registry.syncs)
            await asyncio.gather(*(self._probe(n) for n in names), return_exceptions=True)
            await self._publish(names)
            await asyncio.sleep(self.interval)

    async def _probe(self, name: str) -> None:
        sync = self.registry.syncs.get(name)
        if sync is None:
            return
        p = self.probes.setdefault(name, Probe())
        now = time.time()
        ok, status, reason = False, "Unreachable", ""
        try:
            await sync.client.request_bytes("GET", "/readyz", timeout=self.timeout)
            ok = True
        except ClusterError as exc:
            reason = exc.reason
        except KubeAPIError as exc:
            status, reason = "NotReady", f"/readyz answered {exc.status}: {exc.message}"
        p.last_probe = now
        if ok:
            p.failures = 0
            new, p.reason = "Ready", ""
        else:
            p.failures += 1
            p.reason = reason
            new = status if p.failures >= self.failure_threshold else p.status
            if new == "Unknown" and p.failures >= self.failure_threshold:
                new = status
        if new != p.status:
            cluster_logger(log, name).log(
                logging.INFO if new == "Ready" else logging.WARNING,
                "cluster is %s%s",
                new,
                f" ({p.reason})" if p.reason else "",
            )
            p.status, p.last_transition = new, now
        health = self.registry.tracker.cluster(name)
        if ok:
            self.registry.tracker.contact(name)
        elif p.status != "Ready":
            self.registry.tracker.fail(name, f"cluster {name}: {p.status}: {p.reason}")
        health.status = p.status

    # ------------------------------------------------------------------ MultiCluster objects

    async def _publish(self, names: list[str]) -> None:
        client = self.registry.master_client()
        if client is None or not self.publish:
            return
        for name in names:
            sync = self.registry.syncs.get(name)
            if sync is None:
                continue
            h = self.registry.tracker.cluster(name)
            p = self.probes.get(name, Probe())
            body = {
                "apiVersion": f"{MC_GROUP}/v1alpha1",
                "kind": "MultiCluster",
                "metadata": {
                    "name": name,
                    "namespace": "default",
                    "labels": {"multicluster.practice.com/managed-by": "multicluster"},
                },
                "spec": {
                    "name": name,
                    "host": h.host or sync.client.host,
                    "platform": h.platform,
                    "version": h.version,
                    "isMaster": "true" if sync.cluster.is_master else "false",
                },
            }
            status = {
                "status": {
                    "status": p.status,
                    "reason": p.reason,
                    "lastProbeTime": _rfc3339(p.last_probe) if p.last_probe else None,
                    "lastTransitionTime": _rfc3339(p.last_transition) if p.last_transition else None,
                }
            }
            try:
                await client.request(
                    "PATCH",
                    f"{MC_PATH}/{name}",
                    params={"fieldManager": FIELD_MANAGER, "force": "true"},
                    body=body,
                    content_type=APPLY_PATCH,
                )
                await client.request("PATCH", f"{MC_PATH}/{name}/status", body=status, content_type=MERGE_PATCH)
            except NotFound:
                log.debug("MultiCluster CRD not installed on the master yet")
                return
            except (ClusterError, KubeAPIError) as exc:
                cluster_logger(log, name).debug("updating its MultiCluster object failed: %s", exc)

    async def _delete_multicluster(self, name: str) -> None:
        client = self.registry.master_client()
        if client is None:
            return
        with contextlib.suppress(NotFound, ClusterError, KubeAPIError):
            await client.request("DELETE", f"{MC_PATH}/{name}")


def _rfc3339(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
