"""A private MariaDB server for tests and benchmarks (Debian's mariadb-server package, not a mock).

Each instance has its own data directory, socket and loopback port, so tests can restart or stop it to inject
faults without touching any system-wide database.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from multicluster.testing.harness import free_port, progress


def _which(*names: str) -> str:
    for n in names:
        p = shutil.which(n) or (f"/usr/sbin/{n}" if Path(f"/usr/sbin/{n}").exists() else None)
        if p:
            return p
    raise RuntimeError(
        f"MariaDB is not installed ({' / '.join(names)} not found); install it with "
        "`apt-get install -y mariadb-server mariadb-client`"
    )


@dataclass
class MariaDB:
    workdir: Path
    port: int = 0
    user: str = "multicluster"
    password: str = "multicluster-test"
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def socket(self) -> Path:
        return self.workdir / "mysqld.sock"

    def __enter__(self) -> MariaDB:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        data = self.workdir / "data"
        fresh = not (data / "mysql").exists()
        if fresh:
            progress(f"initialising MariaDB data directory {data}")
            subprocess.run(
                [
                    _which("mariadb-install-db", "mysql_install_db"),
                    f"--datadir={data}",
                    "--user=root",
                    "--auth-root-authentication-method=socket",
                    "--skip-test-db",
                ],
                check=True,
                capture_output=True,
            )
        if not self.port:
            self.port = free_port()
        progress(f"starting MariaDB on 127.0.0.1:{self.port}")
        self.proc = subprocess.Popen(
            [
                _which("mariadbd", "mysqld"),
                "--no-defaults",
                f"--datadir={data}",
                f"--socket={self.socket}",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                "--user=root",
                f"--pid-file={self.workdir / 'mysqld.pid'}",
                f"--log-error={self.workdir / 'error.log'}",
                "--innodb-buffer-pool-size=512M",
                "--innodb-flush-log-at-trx-commit=2",
                "--max-connections=500",
                "--skip-name-resolve",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._wait()
        if fresh:
            self.sql(
                f"CREATE USER IF NOT EXISTS '{self.user}'@'127.0.0.1' IDENTIFIED BY '{self.password}';"
                f"GRANT ALL PRIVILEGES ON *.* TO '{self.user}'@'127.0.0.1'; FLUSH PRIVILEGES;"
            )

    def _wait(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"mariadbd exited with {self.proc.returncode}; see {self.workdir / 'error.log'}")
            res = subprocess.run(
                [_which("mariadb-admin", "mysqladmin"), f"--socket={self.socket}", "-uroot", "ping"],
                capture_output=True,
                check=False,
            )
            if res.returncode == 0:
                return
            time.sleep(0.3)
        raise RuntimeError(f"MariaDB did not start within {timeout:.0f}s; see {self.workdir / 'error.log'}")

    def sql(self, statement: str) -> str:
        res = subprocess.run(
            [_which("mariadb", "mysql"), f"--socket={self.socket}", "-uroot", "-N", "-B", "-e", statement],
            capture_output=True,
            text=True,
            check=False,
        )
        if res.returncode != 0:
            raise RuntimeError(f"mariadb: {res.stderr.strip()}")
        return res.stdout

    def create_database(self, name: str) -> str:
        self.sql(f"DROP DATABASE IF EXISTS `{name}`; CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        return name

    def stop(self) -> None:
        if self.proc is not None:
            stop_server(self.proc)
        self.proc = None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    """Stop a mariadbd the way it shuts down cleanly (SIGTERM), killing it when it has not within 30 s."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
