"""`kubectl multicluster`: query the daemon's API from the command line.

Installed as the console script `kubectl-multicluster`, so kubectl's plugin mechanism runs it for
`kubectl multicluster ...`. It parses flags (plugin.app, typer), calls the API through plugin.client and hands
pages to plugin.printers; it never talks to Kubernetes. Every failure ends as one red `error:` line on stderr
(plus a `hint:` line when there is one) and exit code 1 (2 for usage errors) — never a traceback.

Resource spellings are passed to the server untouched (pods, po, v1.pods, core.v1.pods, apps.v1.deployments,
v1.apps.deployments, apps/v1/deployments, deploy, cm, ...): the daemon resolves them against the clusters' own
discovery, so the plugin and the API can never disagree about a spelling.

Start-up is most of a short command's run time, so this module imports nothing heavy. A `list` whose arguments
fast_list understands (the plain spellings of list's own flags) runs plugin.listing directly, without typer,
click or rich; anything else (help, a usage error, another command) goes through the typer app, which gives
the same answer for the same arguments. The other commands (apply, create, delete, get, edit, join, unjoin)
live in their own modules, each exposing `register(app)`; load_extensions() registers them by name, except for
`list`, `describe` and `completion`, whose start-up would otherwise pay for kubernetes_asyncio without using it.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO, cast

from plugin import COMPLETE_VAR, PROG

if TYPE_CHECKING:
    import typer

BUILTIN = frozenset({"list", "describe", "completion"})

# list's flags as fast_list reads them: flag -> (parameter of run_list, kind). A kind is "str" (one value),
# "many" (repeatable), "bool" (no value) or an int's (lowest, highest) bounds as typer checks them.
_LIST_FLAGS: dict[str, tuple[str, Any]] = {
    "--cluster": ("cluster", "many"), "-c": ("cluster", "many"),
    "--clusterName": ("cluster_name", "str"),
    "--namespace": ("namespace", "str"), "-n": ("namespace", "str"),
    "--name": ("name", "str"),
    "--all-namespaces": ("all_namespaces", "bool"), "-A": ("all_namespaces", "bool"),
    "--selector": ("selector", "str"), "-l": ("selector", "str"),
    "--field-selector": ("field_selector", "str"),
    "--output": ("output", "str"), "-o": ("output", "str"),
    "--limit": ("limit", (0, None)),
    "--chunk-size": ("chunk_size", (1, 5000)),
    "--no-headers": ("no_headers", "bool"),
    "--server": ("server", "str"), "-s": ("server", "str"),
    "--token": ("token", "str"),
    "--watch": ("watch", "bool"), "-w": ("watch", "bool"),
    "--output-watch-events": ("output_watch_events", "bool"),
}


def fast_list(argv: list[str]) -> dict[str, Any] | None:
    """run_list's arguments for `list ...` when every token is one typer reads the same way, else None.

    Only the plain forms are taken: `--flag value`, `--flag=value`, `-f value`, flags without a value, and
    at most two arguments (RESOURCE, NAME). Whatever else (help, `--`, `-nVALUE`, a value starting with `-`,
    an unknown flag, a number typer would refuse or read differently) is left to typer, so its usage errors
    and help stay the only ones."""
    if not argv or argv[0] != "list":
        return None
    kwargs: dict[str, Any] = {}
    positional: list[str] = []
    rest = argv[1:]
    i = 0
    while i < len(rest):
        token = rest[i]
        i += 1
        if not token.startswith("-") or token == "-":
            if token == "-":
                return None
            positional.append(token)
            continue
        flag, eq, value = token.partition("=") if token.startswith("--") else (token, "", "")
        spec = _LIST_FLAGS.get(flag)
        if spec is None:
            return None
        param, kind = spec
        if kind == "bool":
            if eq:
                return None
            kwargs[param] = True
            continue
        if not eq:
            if i >= len(rest):
                return None
            value = rest[i]
            i += 1
        if value.startswith("-"):
            return None
        if kind == "many":
            kwargs.setdefault(param, []).append(value)
        elif kind == "str":
            kwargs[param] = value
        else:
            low, high = kind
            if not (value.isascii() and value.isdigit()):
                return None
            number = int(value)
            if number < low or (high is not None and number > high):
                return None
            kwargs[param] = number
    if len(positional) > 2:
        return None
    kwargs.update(zip(("resource", "name_arg"), positional, strict=False))
    return kwargs


class _QuietFlush:
    """A stream whose flush ignores a closed pipe, as typer leaves stdout and stderr after one: the flush at
    exit would otherwise print a BrokenPipeError."""

    def __init__(self, wrapped: TextIO) -> None:
        self.wrapped = wrapped

    def flush(self) -> None:
        try:
            self.wrapped.flush()
        except OSError as exc:
            if exc.errno != errno.EPIPE:
                raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wrapped, name)


def _run_fast(kwargs: dict[str, Any]) -> None:
    """run_list with typer's handling of its outcome: exit codes, Ctrl-C (130) and a closed pipe (1)."""
    from plugin.listing import Selection, run_list

    try:
        run_list(Selection.take(kwargs), **kwargs)
    except KeyboardInterrupt:
        sys.exit(130)
    except OSError as exc:
        if exc.errno != errno.EPIPE:
            raise
        sys.stdout = cast(TextIO, _QuietFlush(sys.stdout))
        sys.stderr = cast(TextIO, _QuietFlush(sys.stderr))
        sys.exit(1)
    except Exception as exc:
        # A failure was reported by plugin.output.fail, which raised typer.Exit (it imported typer to do so).
        exit_type = getattr(sys.modules.get("typer"), "Exit", None)
        if exit_type is not None and isinstance(exc, exit_type):
            sys.exit(exc.exit_code)
        raise


def load_extensions(argv: list[str]) -> None:
    """Register the commands of other modules, unless argv names one of ours."""
    command = next((a for a in argv if not a.startswith("-")), None)
    if command in BUILTIN:
        return
    from plugin import edit_cmd, join_cmds, manifest_cmds
    from plugin.app import app

    for module in (manifest_cmds, edit_cmd, join_cmds):
        module.register(app)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    args = sys.argv[1:] if argv is None else argv
    fast = None if os.environ.get(COMPLETE_VAR) else fast_list(args)
    if fast is not None:
        try:
            _run_fast(fast)
        except BrokenPipeError:
            sys.stderr.close()
            sys.exit(0)
        return
    from plugin.app import app

    load_extensions(args)
    if os.environ.get(COMPLETE_VAR):
        # A completion request from the script `completion` printed: typer answers it once its shells are known.
        from typer._completion_classes import completion_init

        completion_init()
    try:
        app(args=argv, prog_name=PROG, complete_var=COMPLETE_VAR)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        # `kubectl multicluster list pods | head`: stop quietly, like kubectl.
        sys.stderr.close()
        sys.exit(0)


def __getattr__(name: str) -> typer.Typer:
    """`plugin.cli.app`, the typer application, built on first use (tests invoke it)."""
    if name == "app":
        from plugin.app import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


run: Callable[[], None] = main

if __name__ == "__main__":  # pragma: no cover
    main()
