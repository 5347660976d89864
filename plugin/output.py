"""What the plugin prints besides results: one red `error:` line (plus a `hint:` line) and the exit code, and
yellow warnings, all on stderr. Every command reports through here, so every failure looks the same.

rich and typer are imported only when needed: on a terminal for the colours, and for typer.Exit when a command
fails. A `list` whose stderr is a pipe or a file never loads them, since their import is a large part of a
short command's run time; the text written there is what rich writes to a non-terminal (the markup removed).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, NoReturn, TextIO

from multicluster.errors import MulticlusterError

if TYPE_CHECKING:
    from rich.console import Console


class UsageError(MulticlusterError):
    """Wrong flags or arguments: exit code 2."""


def is_terminal(stream: TextIO) -> bool:
    """Whether rich would colour `stream`: TTY_COMPATIBLE, then FORCE_COLOR, then isatty (rich's order)."""
    tty_compatible = os.environ.get("TTY_COMPATIBLE", "")
    if tty_compatible in ("0", "1"):
        return tty_compatible == "1"
    force_color = os.environ.get("FORCE_COLOR")
    if force_color is not None:
        return force_color != ""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def stderr() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def _styled(style: str, prefix: str, text: str) -> None:
    """One line on stderr: `prefix text` in `style` on a terminal, plain text elsewhere."""
    if not is_terminal(sys.stderr):
        sys.stderr.write(f"{prefix}{text}\n")
        sys.stderr.flush()
        return
    from rich.markup import escape

    stderr().print(f"[{style}]{escape(prefix + text)}[/]" if style else escape(prefix + text))


def report(exc: MulticlusterError) -> None:
    """The error and its hint, without exiting (commands that carry on with the next object)."""
    if is_terminal(sys.stderr):
        from rich.markup import escape

        stderr().print(f"[bold red]error:[/] [red]{escape(exc.message)}[/]")
    else:
        sys.stderr.write(f"error: {exc.message}\n")
    if exc.hint:
        _styled("dim", "hint: ", exc.hint)
    sys.stderr.flush()


def fail(exc: MulticlusterError) -> NoReturn:
    import typer

    report(exc)
    raise typer.Exit(2 if isinstance(exc, UsageError) else 1)


def warn(message: str) -> None:
    _styled("yellow", "warning: ", message)


def note(message: str) -> None:
    """A plain line on stderr ("No resources found.")."""
    _styled("", "", message)


def out(line: str) -> None:
    sys.stdout.write(line + "\n")


@contextmanager
def reported() -> Iterator[None]:
    """Turn every project error into one red line and an exit code."""
    try:
        yield
    except MulticlusterError as exc:
        fail(exc)
