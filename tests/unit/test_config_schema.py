"""The config schema is the one declaration of every setting: the `run` command's flags and environment variables
are checked against it, its type errors still name the field, and no secret it holds shows in a repr."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer

from multicluster import cli
from multicluster.config import Overrides, apply_overrides, load_config
from multicluster.config.fields import bound, is_section
from multicluster.config.flags import flag_settings
from multicluster.config.schema import Config
from multicluster.errors import ConfigError

# `run` options that are about the command, not the configuration it builds.
RUN_ONLY = {"--config": "MULTICLUSTER_CONFIG", "--log-level": "MULTICLUSTER_LOG_LEVEL",
            "--debug-mode": "MULTICLUSTER_DEBUG_MODE", "--write-cli-config": None,
            "--ctl-port": "MULTICLUSTER_CTL_PORT"}

KUBECONFIG = """
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: ctx, context: {cluster: c, user: u}}]
current-context: ctx
"""
SECRET = "s3cr3t-9f2a"


def run_options() -> dict[str, Any]:
    group: Any = typer.main.get_command(cli.app)
    return {p.opts[0]: p for p in group.commands["run"].params if p.param_type_name == "option"}


def test_every_run_flag_is_a_schema_field_or_a_run_option() -> None:
    declared: dict[str, tuple[str, str | None]] = {}
    for _, b in flag_settings():
        s = b.setting
        assert s.flag and s.flag_param
        declared[s.flag] = (s.flag_param, s.env)
        if s.file_flag and s.file_flag_param:
            declared[s.file_flag] = (s.file_flag_param, s.file_env)
    options = run_options()
    for flag, option in options.items():
        if flag in RUN_ONLY:
            assert option.envvar == RUN_ONLY[flag], flag
            continue
        assert flag in declared, f"{flag} sets no schema field: declare it with setting(flag=...)"
        param, env = declared[flag]
        assert (option.name, option.envvar) == (param, env), flag
    missing = sorted(set(declared) - set(options))
    assert not missing, f"schema flags that `multicluster run` does not take: {missing}"


def test_every_setting_has_a_key_and_a_doc_and_keys_are_unique() -> None:
    def walk(cls: type) -> None:
        keys = [b.setting.key for b in bound(cls)] + [b.setting.file_key for b in bound(cls) if b.setting.file_key]
        assert len(keys) == len(set(keys)), (cls, keys)
        for b in bound(cls):
            assert b.setting.doc and b.setting.what, (cls, b.name)
            if is_section(b.hint):
                walk(b.hint)

    walk(Config)


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    (tmp_path / "k").write_text(KUBECONFIG)
    return tmp_path / "config.yaml"


def load(config_file: Path, extra: str) -> Config:
    config_file.write_text("clusters: [{metadata: {clusterName: a, configPath: k}}]\n" + extra)
    return load_config(config_file)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("sync: {resyncSeconds: -1}", "sync.resyncSeconds: must be 0 or more, got -1"),
        ("sync: {pageSize: '5'}", "sync.pageSize: expected an integer, got str ('5')"),
        ("sync: {queueSize: 1.5}", "sync.queueSize: expected an integer, got float (1.5)"),
        ("store: {flushInterval: 0}", "store.flushInterval: must be greater than 0, got 0"),
        ("store: {endpoints: [db:1, 3]}", "store.endpoints[1]: expected a string, got int (3)"),
        ("server: {healthPort: 0}", "server.healthPort: 0 is not a port number"),
        ("lease: {enabled: 1}", "lease.enabled: expected true or false, got int (1)"),
        ("lease: [1]", "lease: expected a mapping, got list"),
        ("delivery: {policy: [{kinds: apps/Deployment}]}", "delivery.policy[0].kinds: expected a list of kinds"),
        ("resources: {include: [pods, 3]}", "resources.include[1]: expected a string, got int (3)"),
    ],
)
def test_type_and_bound_errors_name_the_field(config_file: Path, extra: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(config_file, extra)
    assert str(err.value).startswith(message), str(err.value)


def test_no_secret_in_the_repr_of_a_loaded_config(config_file: Path, tmp_path: Path) -> None:
    (tmp_path / "pw").write_text(SECRET + "pw\n")
    cfg = load(config_file, f"server: {{token: {SECRET}, adminTokenFile: pw}}\nstore: {{passwordFile: pw}}\n")
    assert cfg.server.token == SECRET and cfg.store.password == SECRET + "pw"
    cfg = apply_overrides(cfg, Overrides(admin_token=SECRET + "adm", db_password=SECRET + "db"))
    assert cfg.server.admin_token == SECRET + "adm"
    assert SECRET not in repr(cfg) and SECRET not in str(cfg)
    assert SECRET not in repr(Overrides(token=SECRET, token_file=None, db_password=SECRET, admin_token=SECRET))


def test_flag_file_wins_over_the_flag_and_an_empty_file_is_refused(config_file: Path, tmp_path: Path) -> None:
    (tmp_path / "tok").write_text(SECRET + "\n")
    cfg = apply_overrides(load(config_file, ""), Overrides(token="inline", token_file=str(tmp_path / "tok")))
    assert cfg.server.token == SECRET
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match=r"^--admin-token-file: .* is empty"):
        apply_overrides(cfg, Overrides(admin_token_file=str(tmp_path / "empty")))
    # An empty password file is an empty password, as the flag's empty value is.
    assert apply_overrides(cfg, Overrides(db_password_file=str(tmp_path / "empty"))).store.password == ""


def test_unknown_override_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="not a config flag: prot"):
        Overrides(prot=1)


# --------------------------------------------------------------------------------------------------- retry policies


def test_a_retry_policy_overrides_only_the_keys_given(config_file: Path) -> None:
    from multicluster.config import RetryConfig

    cfg = load(config_file, "retry: {write: {max: 20}, watch: {jitter: 0, factor: 3}}")
    assert (cfg.retry.write.initial, cfg.retry.write.max) == (RetryConfig().write.initial, 20.0)
    assert (cfg.retry.watch.jitter, cfg.retry.watch.factor) == (0.0, 3.0)
    assert cfg.retry.discovery == RetryConfig().discovery
    assert load(config_file, "").retry == RetryConfig()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("retry: {write: {factor: 0.5}}", "retry.write.factor: must be 1 or more, got 0.5"),
        ("retry: {write: {jitter: 2}}", "retry.write.jitter: must be 1 or less, got 2"),
        ("retry: {write: {max: 0}}", "retry.write.max: must be greater than 0, got 0"),
        ("retry: {write: {initial: soon}}", "retry.write.initial: expected a number, got str ('soon')"),
        ("retry: {write: {cap: 1}}", 'retry.write: unknown key "cap"'),
        ("retry: {wach: {}}", 'retry: unknown key "wach" (did you mean "watch"?)'),
        ("retry: {write: 5}", "retry.write: expected a mapping with initial, max, factor and jitter"),
    ],
)
def test_bad_retry_policies_name_the_field(config_file: Path, extra: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(config_file, extra)
    assert str(err.value).startswith(message), str(err.value)


def test_retry_policies_are_built_only_by_the_schema() -> None:
    """Every retry loop takes a named policy from the config: no RetryPolicy(...) with numbers anywhere else."""
    import ast

    root = Path(__file__).resolve().parents[2]
    found = []
    for pkg in ("multicluster", "plugin"):
        for path in (root / pkg).rglob("*.py"):
            if path == root / "multicluster" / "config" / "schema.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "RetryPolicy":
                    found.append(f"{path.relative_to(root)}:{node.lineno}")
    assert not found, f"retry policies built outside the config schema: {found}"


def test_the_config_reference_is_generated_from_the_schema() -> None:
    from multicluster.config import reference

    doc = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
    text = doc.read_text()
    assert reference.splice(text) == text, (
        "docs/configuration.md is out of date: python -m multicluster.config.reference --write docs/configuration.md")
    for _, b in flag_settings():  # every flag and variable is in it
        assert f"`{b.setting.flag}`" in text and f"`{b.setting.env}`" in text


# The daemon side reads the environment only through its config package. cliconfig.py is the commands' own reader
# (the kubectl-multicluster config file, $KUBECONFIG); demo.py and testing/ prepare the environment of the
# processes they start.
ENV_READERS = ("multicluster/config/", "multicluster/cliconfig.py", "multicluster/demo.py", "multicluster/testing/")


def test_only_the_config_reads_the_environment() -> None:
    import ast

    root = Path(__file__).resolve().parents[2]
    found = []
    for path in sorted((root / "multicluster").rglob("*.py")):
        rel = str(path.relative_to(root))
        if rel.startswith(ENV_READERS):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            reads = (isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "environb")) or (
                isinstance(node, ast.ImportFrom) and node.module == "os"
                and any(a.name in ("environ", "getenv") for a in node.names))
            if reads:
                found.append(f"{rel}:{node.lineno}")
    assert not found, f"environment read outside multicluster.config (declare a setting with env=...): {found}"


def test_env_only_settings_win_over_the_file_and_bad_values_name_the_variable(config_file: Path) -> None:
    from multicluster.config import apply_env

    cfg = load(config_file, "daemon: {logFormat: json, stateDir: st}\nlease: {identity: from-file}\n")
    assert cfg.daemon.state_dir == config_file.parent / "st" and cfg.lease.identity == "from-file"
    env = {"MULTICLUSTER_LOG_FORMAT": "text", "POD_NAME": "pod-1", "MULTICLUSTER_SQLITE_WRITER": "thread",
           "MULTICLUSTER_STATE_DIR": str(config_file.parent / "elsewhere"), "MULTICLUSTER_EVENT_LOOP": ""}
    cfg = apply_env(cfg, env)
    assert (cfg.daemon.log_format, cfg.lease.identity, cfg.store.sqlite_writer) == ("text", "pod-1", "thread")
    assert cfg.daemon.state_dir == config_file.parent / "elsewhere" and cfg.daemon.event_loop == "uvloop"
    with pytest.raises(ConfigError, match=r'^MULTICLUSTER_LOG_FORMAT: "jsn" is not one of text, json'):
        apply_env(cfg, {"MULTICLUSTER_LOG_FORMAT": "jsn"})
