"""How the daemon's commands end on an error: one red line, an optional hint, and an exit code."""

from __future__ import annotations

from typing import NoReturn

import typer


def fail(msg: str, hint: str | None = None, code: int = 2) -> NoReturn:
    typer.secho(f"error: {msg}", fg="red", err=True)
    if hint:
        typer.echo(f"hint: {hint}", err=True)
    raise typer.Exit(code)
