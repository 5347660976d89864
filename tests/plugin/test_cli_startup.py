"""A plain `list` runs without typer, click, rich or yaml and prints what the typer app prints; pages are
fetched one ahead while the current one is printed."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from multicluster.api import build_app
from plugin.client import Client, Endpoint
from tests.api.dataset import Dataset
from tests.api.helpers import Backend

HEAVY = ("typer", "click", "rich", "yaml")
REPORT_IMPORTS = (
    "import sys\n"
    "from plugin.cli import main\n"
    "try:\n"
    "    main()\n"
    "finally:\n"
    f"    print('LOADED', sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r}), file=sys.stderr)\n"
)
# The same arguments through the typer app, which is what every command went through before.
VIA_TYPER = ("from plugin import COMPLETE_VAR, PROG\nfrom plugin.app import app\n"
             "app(prog_name=PROG, complete_var=COMPLETE_VAR)\n")


async def run(url: str, tmp_path: Path, code: str, *args: str) -> tuple[int, str, str]:
    env = {**os.environ, "MULTICLUSTER_SERVER": url, "MULTICLUSTER_CLI_CONFIG": str(tmp_path / "none"),
           "NO_PROXY": "127.0.0.1", "COLUMNS": "200"}
    for name in ("MULTICLUSTER_TOKEN", "FORCE_COLOR", "TTY_COMPATIBLE"):
        env.pop(name, None)
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code, *args, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_plain_list_loads_no_cli_framework(url: str, tmp_path: Path) -> None:
    code, _, err = await run(url, tmp_path, REPORT_IMPORTS, "list", "pods", "-n", "default", "--no-headers")
    assert code == 0, err
    assert "LOADED []" in err, err
    # An error is still one line and an exit code (typer is loaded then, for its Exit).
    code, _, err = await run(url, tmp_path, REPORT_IMPORTS, "list", "nosuchtype")
    assert code == 1 and err.startswith("error: "), err


@pytest.mark.parametrize("args", [
    ["list", "pods"],
    ["list", "pods", "-o", "wide", "--no-headers"],
    ["list", "configmaps", "-A", "--limit", "4", "--chunk-size=3"],
    ["list", "deploy", "-c", "cluster1", "--cluster", "cluster2", "-o", "name"],
    ["list", "pods", "web-0", "--clusterName=cluster2", "-o", "json"],
    ["list", "pods", "-n", "no-such-namespace"],
    ["list", "pods", "-l", "app=nothing", "-o", "yaml"],
    ["list", "nosuchtype"],
    ["list", "pods", "-o", "table"],
    ["list", "clusters", "-o", "name"],
    ["list", "pods", "--name", "a", "b"],
])
async def test_fast_list_prints_what_typer_prints(url: str, tmp_path: Path, dataset: Dataset,
                                                  args: list[str]) -> None:
    fast = await run(url, tmp_path, "from plugin.cli import main\nmain()\n", *args)
    typer = await run(url, tmp_path, VIA_TYPER, *args)
    if "wide" in args:
        # -o wide shows ages, which may tick between the two runs.
        assert (fast[0], fast[2]) == (typer[0], typer[2])
        assert [line.split()[:2] for line in fast[1].splitlines()] == [
            line.split()[:2] for line in typer[1].splitlines()]
    else:
        assert fast == typer


@pytest.fixture
async def counted(backend: Backend) -> AsyncIterator[tuple[str, list[str]]]:
    """The API server, recording the continue token of every /v1/resources request it answers."""
    seen: list[str] = []

    @web.middleware
    async def record(request: web.Request, handler: web.RequestHandler) -> web.StreamResponse:
        if request.path == "/v1/resources":
            seen.append(request.query.get("continue", ""))
        return await handler(request)

    app = build_app(backend)
    app.middlewares.append(record)
    srv = TestServer(app, host="127.0.0.1")
    await srv.start_server()
    yield f"http://127.0.0.1:{srv.port}", seen
    await srv.close()


async def test_next_page_is_fetched_while_this_one_is_printed(counted: tuple[str, list[str]]) -> None:
    url, seen = counted
    client = Client(Endpoint(url, "the test"))
    pages = client.resources("pods", page_size=2)
    first = await asyncio.to_thread(next, pages)
    assert first.get("continue")
    # The caller holds page 1 and has not asked for page 2: it is on its way already.
    for _ in range(200):
        if len(seen) >= 2:
            break
        await asyncio.sleep(0.025)
    assert len(seen) == 2, seen
    assert seen[1] == first["continue"]
    rest = await asyncio.to_thread(list, pages)
    assert sum(len(p["items"]) for p in [first, *rest]) == 15
    assert len(seen) == 1 + len(rest)  # nothing asked beyond the last page


def test_fast_list_knows_lists_flags_as_typer_declares_them() -> None:
    """fast_list's table of flags is the typer command's: same spellings, parameters, values and bounds."""
    import typer.main

    from plugin.app import app
    from plugin.cli import _LIST_FLAGS

    command = typer.main.get_command(app).commands["list"]  # type: ignore[attr-defined]
    declared: dict[str, tuple[str, object]] = {}
    for param in command.params:
        if param.param_type_name != "option" or param.name == "help":
            continue
        if param.is_flag or getattr(param, "is_bool_flag", False):
            kind: object = "bool"
        elif param.multiple:
            kind = "many"
        elif param.min is not None or param.max is not None:  # list's only numbers are bounded ints
            kind = (param.min, param.max)
        else:
            kind = "str"
        for flag in param.opts:
            declared[flag] = (str(param.name), kind)
    assert declared == _LIST_FLAGS
