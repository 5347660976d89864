"""A private MariaDB Galera cluster for tests and benchmarks: N `mariadbd` processes on loopback, not a mock.

Every node has its own data directory, socket, SQL port, group-communication port and state-transfer ports, so
tests can SIGKILL a node and start it again to watch it rejoin. The first node bootstraps the cluster; the
others join it with a mariabackup state transfer (Debian's `galera-4`, `mariadb-backup` and `socat`; rsync's
daemon would write as `nobody` when started by root), no root-owned service, no network beyond 127.0.0.1.
Failure detection is tuned to seconds so that a killed node leaves the primary component quickly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from multicluster.testing.harness import free_port, progress
from multicluster.testing.mariadb import _which, stop_server

PROVIDERS = ("/usr/lib/galera/libgalera_smm.so", "/usr/lib/libgalera_smm.so", "/usr/lib64/galera-4/libgalera_smm.so")
# Failure detection in seconds instead of Galera's WAN-friendly defaults (a killed node is suspected after 2 s).
_EVS = ("evs.keepalive_period=PT0.5S;evs.inactive_check_period=PT0.5S;evs.suspect_timeout=PT2S;"
        "evs.inactive_timeout=PT4S;evs.install_timeout=PT4S;evs.join_retrans_period=PT0.5S;"
        "gmcast.peer_timeout=PT2S;pc.wait_prim_timeout=PT10S")
SYNCED = 4  # wsrep_local_state: the node is a full member of the primary component


def provider() -> str:
    for p in PROVIDERS:
        if Path(p).exists():
            return p
    raise RuntimeError("the Galera provider (libgalera_smm.so) is not installed; install it with "
                       "`apt-get install -y galera-4 mariadb-backup socat`")


@dataclass
class Node:
    index: int
    workdir: Path
    port: int
    gcomm_port: int
    ist_port: int
    sst_port: int
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def socket(self) -> Path:
        return self.workdir / "mysqld.sock"

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc is not None else 0

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def sql(self, statement: str, timeout: float = 30.0) -> str:
        res = subprocess.run(
            [_which("mariadb", "mysql"), f"--socket={self.socket}", "-uroot", "-N", "-B", "-e", statement],
            capture_output=True, text=True, check=False, timeout=timeout,
        )
        if res.returncode != 0:
            raise RuntimeError(f"mariadb (node {self.index}): {res.stderr.strip()}")
        return res.stdout

    def status(self) -> dict[str, str]:
        """wsrep_* status variables, or {} if the node does not answer."""
        try:
            out = self.sql("SHOW GLOBAL STATUS LIKE 'wsrep_%'", timeout=10)
        except (RuntimeError, subprocess.TimeoutExpired):
            return {}
        return dict(line.split("\t", 1) for line in out.splitlines() if "\t" in line)

    def synced(self) -> bool:
        s = self.status()
        return s.get("wsrep_ready") == "ON" and s.get("wsrep_local_state") == str(SYNCED)


@dataclass
class GaleraCluster:
    workdir: Path
    nodes_count: int = 3
    user: str = "multicluster"
    password: str = "multicluster-test"
    database: str = "multicluster"
    nodes: list[Node] = field(default_factory=list)

    def __enter__(self) -> GaleraCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def endpoints(self) -> list[str]:
        return [n.endpoint for n in self.nodes]

    def _gcomm(self) -> str:
        return "gcomm://" + ",".join(f"127.0.0.1:{n.gcomm_port}" for n in self.nodes)

    def start(self) -> None:
        if self.nodes_count < 1:
            raise ValueError("a Galera cluster needs at least one node")
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.nodes:
            self.nodes = [Node(i, self.workdir / f"node{i}", free_port(), free_port(), free_port(), free_port())
                          for i in range(self.nodes_count)]
        first = self.nodes[0]
        self._init_datadir(first)
        self.start_node(first, bootstrap=True)
        first.sql(
            f"CREATE DATABASE IF NOT EXISTS `{self.database}` CHARACTER SET utf8mb4;"
            f"CREATE USER IF NOT EXISTS '{self.user}'@'127.0.0.1' IDENTIFIED BY '{self.password}';"
            f"GRANT ALL PRIVILEGES ON *.* TO '{self.user}'@'127.0.0.1'; FLUSH PRIVILEGES;"
        )
        for node in self.nodes[1:]:
            self.start_node(node)

    def _init_datadir(self, node: Node) -> None:
        data = node.workdir / "data"
        if (data / "mysql").exists():
            return
        node.workdir.mkdir(parents=True, exist_ok=True)
        progress(f"initialising Galera node {node.index} data directory {data}")
        subprocess.run(
            [_which("mariadb-install-db", "mysql_install_db"), "--no-defaults", f"--datadir={data}", "--user=root",
             "--auth-root-authentication-method=socket", "--skip-test-db"],
            check=True, capture_output=True,
        )

    def start_node(self, node: Node, *, bootstrap: bool = False, timeout: float = 120.0) -> None:
        """Start (or restart) one node; a joiner receives the data by IST or a mariabackup SST from a donor."""
        if node.alive():
            return
        node.workdir.mkdir(parents=True, exist_ok=True)
        (node.workdir / "data").mkdir(exist_ok=True)
        progress(f"starting Galera node {node.index} on {node.endpoint}" + (" (bootstrap)" if bootstrap else ""))
        options = [
            f"datadir={node.workdir / 'data'}", f"socket={node.socket}", f"port={node.port}",
            "bind-address=127.0.0.1", "user=root", f"pid-file={node.workdir / 'mysqld.pid'}",
            f"log-error={node.workdir / 'error.log'}", "skip-name-resolve", "max-connections=300",
            "innodb-buffer-pool-size=128M", "innodb-log-file-size=64M", "innodb-flush-log-at-trx-commit=2",
            "binlog-format=ROW", "default-storage-engine=InnoDB", "innodb-autoinc-lock-mode=2",
            "wsrep-on=ON", f"wsrep-provider={provider()}", f"wsrep-cluster-address={self._gcomm()}",
            "wsrep-cluster-name=multicluster-test", f"wsrep-node-name=node{node.index}",
            f"wsrep-node-address=127.0.0.1:{node.gcomm_port}",
            f"wsrep-node-incoming-address={node.endpoint}",
            f'wsrep-provider-options="gmcast.listen_addr=tcp://127.0.0.1:{node.gcomm_port};'
            f'ist.recv_addr=127.0.0.1:{node.ist_port};gcache.size=64M;{_EVS}"',
            "wsrep-sst-method=mariabackup", f"wsrep-sst-receive-address=127.0.0.1:{node.sst_port}",
            "wsrep-slave-threads=2",
            # Refuse what Galera cannot replicate safely instead of letting the nodes diverge: a table without a
            # primary key, a table of another engine than InnoDB (error 4165).
            "wsrep-mode=REQUIRED_PRIMARY_KEY,STRICT_REPLICATION",
        ]
        # A private option file, not --no-defaults: the state-transfer scripts read their [sst] group from the
        # server's option file (stderr to a file in the data directory rather than syslog).
        cnf = node.workdir / "my.cnf"
        cnf.write_text("[mysqld]\n" + "".join(f"{o}\n" for o in options) + "[sst]\nsst-syslog=-1\n")
        args = [_which("mariadbd", "mysqld"), f"--defaults-file={cnf}"]
        if bootstrap:
            args.append("--wsrep-new-cluster")
        node.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        self.wait_synced(node, timeout)

    def wait_synced(self, node: Node, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if node.proc is not None and node.proc.poll() is not None:
                raise RuntimeError(f"mariadbd (Galera node {node.index}) exited with {node.proc.returncode}; "
                                   f"see {node.workdir / 'error.log'}")
            if node.synced():
                return
            time.sleep(0.3)
        raise RuntimeError(f"Galera node {node.index} did not reach Synced within {timeout:.0f}s; "
                           f"see {node.workdir / 'error.log'}")

    def sql(self, statement: str) -> str:
        """A statement on the first synced node."""
        for node in self.nodes:
            if node.alive() and node.synced():
                return node.sql(statement)
        raise RuntimeError("no Galera node is synced")

    def create_database(self, name: str) -> str:
        self.sql(f"DROP DATABASE IF EXISTS `{name}`; CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        return name

    def kill(self, node: Node) -> None:
        """SIGKILL: the node vanishes mid-statement, as in a machine crash."""
        if node.proc is not None and node.proc.poll() is None:
            node.proc.send_signal(signal.SIGKILL)
            node.proc.wait()
        node.proc = None

    def write_files(self, out: Path) -> None:
        """DIR/endpoints, DIR/credentials (YAML) and DIR/pids, in the same node order."""
        out.mkdir(parents=True, exist_ok=True)
        (out / "endpoints").write_text("".join(f"{e}\n" for e in self.endpoints))
        creds = out / "credentials"
        creds.write_text(f"user: {self.user}\npassword: {self.password}\ndatabase: {self.database}\n")
        os.chmod(creds, 0o600)
        (out / "pids").write_text("".join(f"{n.pid}\n" for n in self.nodes))

    def stop(self) -> None:
        # Joiners first, the node that bootstrapped last: the cluster shuts down cleanly, one member at a time.
        for node in reversed(self.nodes):
            if node.proc is not None:
                stop_server(node.proc)
            node.proc = None
