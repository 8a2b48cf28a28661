"""What the command modules share: the two consoles, the settings, a byte progress bar, and
text from models or traces made safe and short for the terminal."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from rlm_local.config import Settings

err = Console(stderr=True, highlight=False, soft_wrap=True)
# Tables piped to a file or another program are not cut to 80 columns.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)

# C0/C1 control characters (but newline and tab) in model output could drive the terminal.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def settings_for(ctx: click.Context, **overrides: Any) -> Settings:
    """The settings of this invocation (--config, environment, then `overrides`)."""
    base: Settings = ctx.obj["settings_factory"](**overrides)
    return base


@contextmanager
def byte_progress(enabled: bool) -> Iterator[Callable[[str, int, int | None], None]]:
    """A progress bar for pulls and hashing; silent when stderr is not a terminal."""
    if not enabled:
        yield lambda description, done, total: None
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    ) as progress:
        task = progress.add_task("", total=None)

        def update(description: str, done: int, total: int | None) -> None:
            progress.update(task, description=description, completed=done, total=total)

        yield update


def safe(text: object) -> str:
    """Text from a trace, with control characters shown as \\xNN instead of sent raw."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))


def head(text: str | None, limit: int) -> str:
    """The text on one line, cut to `limit` characters."""
    line = " ".join(safe(text or "").split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def cut(text: str, limit: int | None) -> str:
    """The text cut to `limit` characters, saying how many more `--full` would show."""
    text = safe(text).rstrip()
    if limit is None or len(text) <= limit:
        return text
    return f"{text[:limit]}\n… ({len(text) - limit:,} more characters; `--full` shows them)"


def count(n: object, word: str) -> str:
    """'1 turn', '3 turns', '? turns' for an unknown number."""
    return f"{n if n is not None else '?'} {word}{'' if n == 1 else 's'}"


def secs(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"
