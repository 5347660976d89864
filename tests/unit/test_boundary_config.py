"""Trust-boundary configuration: token scopes, browser checks, secure-by-default binding, and secrets that never
show in a repr or a log. The start-up rules run `multicluster run` as a real subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from multicluster.config import (
    Overrides,
    ServerConfig,
    StoreConfig,
    apply_overrides,
    check_exposure,
    load_config,
)
from multicluster.errors import ConfigError
from multicluster.testing.harness import free_port

KUBECONFIG = """
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: ctx, context: {cluster: c, user: u}}]
current-context: ctx
"""
SECRET = "s3cr3t-value-9d1e"


def write_config(d: Path, server: str = "") -> Path:
    (d / "k1").write_text(KUBECONFIG)
    p = d / "config.yaml"
    p.write_text(
        "clusters:\n- metadata: {clusterName: c1, configPath: k1}\n"
        f"store: {{type: sqlite, path: {d / 'mc.db'}}}\n" + (f"server: {server}\n" if server else "")
    )
    return p


def test_server_keys_parse(tmp_path: Path) -> None:
    (tmp_path / "admin").write_text(f"{SECRET}\n")
    (tmp_path / "read").write_text("r\n")
    cfg = load_config(write_config(tmp_path, "{tokenFile: read, adminTokenFile: admin, "
                                             "allowedOrigins: ['https://dash.example/'], allowedHosts: [mc.svc], "
                                             "insecureAllowUnauthenticated: true}"))
    s = cfg.server
    assert s.token == "r" and s.admin_token == SECRET
    assert s.allowed_origins == ("https://dash.example",) and s.allowed_hosts == ("mc.svc",)
    assert s.insecure_allow_unauthenticated is True
    cfg = load_config(write_config(tmp_path, "{adminToken: a}"))
    assert cfg.server.admin_token == "a" and cfg.server.token is None and cfg.server.allowed_origins == ()


@pytest.mark.parametrize(
    ("server", "field"),
    [
        ("{allowedOrigins: 5}", "server.allowedOrigins"),
        ("{allowedOrigins: ['evil.example']}", "server.allowedOrigins[0]"),  # not scheme://host
        ("{allowedHosts: [1]}", "server.allowedHosts[0]"),
        ("{adminToken: 5}", "server.adminToken"),
        ("{adminTokenFile: /nonexistent/x}", "server.adminTokenFile"),
        ("{insecureAllowUnauthenticated: yes-please}", "server.insecureAllowUnauthenticated"),
        ("{token: same, adminToken: same}", "server.adminToken"),
    ],
)
def test_bad_server_keys_name_the_field(tmp_path: Path, server: str, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write_config(tmp_path, server))
    assert str(err.value).startswith(field + ":"), str(err.value)


def test_no_secret_in_any_repr() -> None:
    ov = Overrides(token=SECRET, admin_token=SECRET + "a", db_password=SECRET + "b", bind="0.0.0.0")
    assert SECRET not in repr(ov) and "0.0.0.0" in repr(ov)
    assert SECRET not in repr(ServerConfig(token=SECRET, admin_token=SECRET))
    assert SECRET not in repr(StoreConfig(password=SECRET))


def test_overrides_set_tokens_and_hatch(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path))
    cfg = apply_overrides(cfg, Overrides(token="r", admin_token="a", insecure_allow_unauthenticated=True))
    assert cfg.server.token == "r" and cfg.server.admin_token == "a" and cfg.server.insecure_allow_unauthenticated


@pytest.mark.parametrize(
    ("server", "refused", "warnings"),
    [
        (ServerConfig(), False, 0),
        (ServerConfig(bind="localhost"), False, 0),
        (ServerConfig(bind="::1"), False, 0),
        (ServerConfig(bind="0.0.0.0"), True, 0),
        (ServerConfig(bind="::"), True, 0),
        (ServerConfig(bind="10.0.0.5"), True, 0),
        (ServerConfig(bind="0.0.0.0", admin_token="a"), True, 0),  # reads would still be open to everyone
        (ServerConfig(bind="0.0.0.0", token="t"), False, 1),  # no TLS: tokens in clear
        (ServerConfig(bind="0.0.0.0", token="t", cert_dir=Path("/certs")), False, 0),
        (ServerConfig(bind="0.0.0.0", insecure_allow_unauthenticated=True), False, 2),
    ],
)
def test_exposure_rules(server: ServerConfig, refused: bool, warnings: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    if refused:
        with pytest.raises(ConfigError) as err:
            check_exposure(server)
        text = str(err.value)
        assert "--bind" in text and "server.token" in text and "--insecure-allow-unauthenticated" in text
        return
    assert len(check_exposure(server)) == warnings


def test_loopback_inside_a_pod_says_nothing_outside_can_reach_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Go original's deploy.yaml starts it without --address or a bind (it listened on :8888 for its Service);
    with our loopback default the same args give a pod whose API no Service reaches: say so at start."""
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    (warning,) = check_exposure(ServerConfig())
    assert "127.0.0.1" in warning and "--bind 0.0.0.0" in warning and "--token-file" in warning, warning
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST")
    assert check_exposure(ServerConfig()) == []


# --------------------------------------------------------------------------------------------------- `multicluster run`


def run_daemon(args: list[str], env: dict[str, str] | None = None, *, wait_for: str | None = None,
               timeout: float = 60) -> tuple[int | None, str]:
    """Run `multicluster run`; with wait_for, stop it (SIGTERM) once that text is in its log."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("MULTICLUSTER_")}
    full_env.update(env or {})
    full_env["MULTICLUSTER_STATE_DIR"] = str(Path(args[args.index("--config") + 1]).parent / "state")
    cmd = [sys.executable, "-m", "multicluster", "run", "--no-write-cli-config", "--address", str(free_port()), *args]
    if wait_for is None:
        res = subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=timeout, check=False)
        return res.returncode, res.stderr
    log = Path(args[args.index("--config") + 1]).parent / "daemon.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, env=full_env, stdout=subprocess.DEVNULL, stderr=fh)
    try:
        deadline = time.monotonic() + timeout
        while wait_for not in log.read_text() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode, log.read_text()


def test_wildcard_bind_without_a_token_refuses_to_start(tmp_path: Path) -> None:
    code, err = run_daemon(["--config", str(write_config(tmp_path)), "--bind", "0.0.0.0"])
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "--bind" in lines[0] and "server.token" in lines[0] and "--insecure-allow-unauthenticated" in lines[0]
    # Same for the config file's bind.
    code, err = run_daemon(["--config", str(write_config(tmp_path, "{bind: 0.0.0.0}"))])
    assert code == 2 and "--insecure-allow-unauthenticated" in err, err


def test_the_escape_hatch_starts_with_a_warning(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    code, log = run_daemon(["--config", str(cfg), "--bind", "0.0.0.0", "--insecure-allow-unauthenticated"],
                           wait_for="API listening")
    assert "API listening" in log, log
    assert "WARNING" in log and "without authentication" in log, log
    assert code == 0, log


def test_a_secret_flag_warns_without_the_value(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    code, log = run_daemon(["--config", str(cfg), "--token", SECRET, "--admin-token", SECRET + "A",
                            "--db-password", SECRET + "B", "--log-level", "DEBUG"], wait_for="API listening")
    assert "API listening" in log, log
    assert SECRET not in log, log
    for flag, better in (("--token", "--token-file"), ("--admin-token", "--admin-token-file"),
                         ("--db-password", "--db-password-file")):
        assert any(flag in line and better in line and "WARNING" in line for line in log.splitlines()), (flag, log)
    # From the environment: no warning.
    code, log = run_daemon(["--config", str(cfg)], env={"MULTICLUSTER_TOKEN": SECRET}, wait_for="API listening")
    assert "API listening" in log and SECRET not in log, log
    assert "--token-file" not in log and code == 0, log


def test_token_files_from_flags(tmp_path: Path) -> None:
    (tmp_path / "tok").write_text(f"{SECRET}\n")
    (tmp_path / "adm").write_text(f"{SECRET}A\n")
    cfg = write_config(tmp_path)
    code, log = run_daemon(["--config", str(cfg), "--bind", "0.0.0.0", "--token-file", str(tmp_path / "tok"),
                            "--admin-token-file", str(tmp_path / "adm")], wait_for="API listening")
    assert "API listening" in log and "bearer token required" in log, log
    assert SECRET not in log and "in clear" in log, log
    assert not any("WARNING" in line and "--token-file" in line for line in log.splitlines()), log
    code, err = run_daemon(["--config", str(cfg), "--token-file", str(tmp_path / "missing")])
    assert code == 2 and "--token-file" in err and SECRET not in err, err
