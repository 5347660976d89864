"""What the plugin prints besides results: one red `error:` line (plus a `hint:` line) and the exit code, and
yellow warnings, all on stderr. Every command reports through here, so every failure looks the same."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from multicluster.errors import MulticlusterError


class UsageError(MulticlusterError):
    """Wrong flags or arguments: exit code 2."""


def stderr() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def report(exc: MulticlusterError) -> None:
    """The error and its hint, without exiting (commands that carry on with the next object)."""
    err = stderr()
    err.print(f"[bold red]error:[/] [red]{escape(exc.message)}[/]")
    if exc.hint:
        err.print(f"[dim]hint: {escape(exc.hint)}[/]")


def fail(exc: MulticlusterError) -> NoReturn:
    report(exc)
    raise typer.Exit(2 if isinstance(exc, UsageError) else 1)


def warn(message: str) -> None:
    stderr().print(f"[yellow]warning: {escape(message)}[/]")


def out(line: str) -> None:
    sys.stdout.write(line + "\n")


@contextmanager
def reported() -> Iterator[None]:
    """Turn every project error into one red line and an exit code."""
    try:
        yield
    except MulticlusterError as exc:
        fail(exc)
