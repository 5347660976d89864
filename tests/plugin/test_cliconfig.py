"""The plugin's config file: both formats of the Go original, and a writer that never overwrites."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import yaml

from multicluster.cliconfig import (
    CliConfig,
    config_path,
    ensure_cli_config,
    load_cli_config,
    parse_cli_config,
)
from multicluster.errors import ConfigError


@pytest.mark.parametrize(("text", "host", "port", "legacy"), [
    ("server: 31888\n", "localhost", 31888, True),
    ("server: '8888'\n", "localhost", 8888, True),
    ("server: 10.0.0.5:9000\n", "10.0.0.5", 9000, True),
    ("server: http://example.com:1234/\n", "example.com", 1234, True),
    ("serverIP: localhost\nserverPort: 31888\nmasterClusterKubeConfigPath: /root/.kube/config\n",
     "localhost", 31888, False),
    ("serverIP: 192.168.1.9\nserverPort: '30000'\n", "192.168.1.9", 30000, False),
    ("serverPort: 4000\n", "localhost", 4000, False),
    ("serverIP: myhost\n", "myhost", 31888, False),
    ("", "localhost", 31888, False),
    ("# only a comment\n", "localhost", 31888, False),
])
def test_both_formats(text: str, host: str, port: int, legacy: bool) -> None:
    cfg = parse_cli_config(text)
    assert (cfg.host, cfg.port, cfg.legacy) == (host, port, legacy)
    assert cfg.server_url == f"http://{host}:{port}"


def test_new_format_fields() -> None:
    cfg = parse_cli_config("serverIP: a\nserverPort: 1\nmasterClusterKubeConfigPath: /k\ntoken: t0k\nother: x\n")
    assert cfg == CliConfig(host="a", port=1, master_kubeconfig="/k", token="t0k")
    assert "t0k" not in repr(cfg)


def test_ipv6_host_is_bracketed() -> None:
    assert parse_cli_config("serverIP: '::1'\nserverPort: 5\n").server_url == "http://[::1]:5"


@pytest.mark.parametrize(("text", "message"), [
    ("server: abc\n", "is not a port number"),
    ("server: 70000\n", "70000 is not a port number"),
    ("serverPort: true\n", "expected a port number"),
    ("serverPort: [1\n", "not valid YAML"),
    ("- a\n- b\n", "expected a mapping"),
    ("serverPort: 0\n", "0 is not a port number"),
])
def test_bad_files(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_cli_config(text, Path("/x/config"))


def test_path_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MULTICLUSTER_CLI_CONFIG", str(tmp_path / "c"))
    assert config_path() == tmp_path / "c"
    monkeypatch.delenv("MULTICLUSTER_CLI_CONFIG")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert config_path() == tmp_path / ".multi-cluster-operator" / "config"


def test_load_missing_is_none(tmp_path: Path) -> None:
    assert load_cli_config(tmp_path / "nope") is None


def test_ensure_writes_new_format_0600_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "home" / ".multi-cluster-operator" / "config"
    monkeypatch.setenv("MULTICLUSTER_CLI_CONFIG", str(path))
    assert ensure_cli_config(31888, "0.0.0.0", "/root/.kube/config", "s3") == path
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    data = yaml.safe_load(path.read_text())
    assert data == {"serverIP": "localhost", "serverPort": 31888, "masterClusterKubeConfigPath": "/root/.kube/config",
                    "token": "s3"}
    loaded = load_cli_config()
    assert loaded is not None and (loaded.host, loaded.port, loaded.token) == ("localhost", 31888, "s3")
    # Never overwrites, whatever the caller passes.
    assert ensure_cli_config(1, "other", "", "x") is None
    assert yaml.safe_load(path.read_text())["serverPort"] == 31888


def test_ensure_keeps_a_users_old_format_file(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text("server: 31888\n")
    assert ensure_cli_config(9999, path=path) is None
    assert path.read_text() == "server: 31888\n"


def test_ensure_without_token_omits_it(tmp_path: Path) -> None:
    path = tmp_path / "d" / "config"
    ensure_cli_config(31888, "10.1.2.3", path=path)
    assert yaml.safe_load(path.read_text()) == {"serverIP": "10.1.2.3", "serverPort": 31888,
                                                "masterClusterKubeConfigPath": ""}


def test_ensure_reports_unwritable_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OSError):
        ensure_cli_config(31888, path=blocker / "sub" / "config")
