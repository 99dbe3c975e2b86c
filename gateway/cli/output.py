"""Terminal output shared by every `gateway` command: stdout/stderr consoles and the one-line error exit."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print `error: message` as one line on stderr and exit with `code` (2: bad arguments)."""
    err.print(f"error: {message}", markup=False, highlight=False)
    raise typer.Exit(code)
