"""`rlm-local` commands: thin click wrappers over the Python API, terminal output with rich.

stdout carries answers and listings only; progress and notices go to stderr, so
`rlm-local ask ... > answer.txt` works. Each command (group) lives in a module of its own,
imported only when that command is used: `ask`'s flags take their defaults from RunOptions, and
importing the engine for them would double the start-up time of `models`, `cache` and `runs`.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import click
from rich.markup import escape

from rlm_local.cli.common import err
from rlm_local.config import load_settings
from rlm_local.errors import RlmLocalError

# Command name -> the module that defines it (under the same name).
_COMMANDS = {
    "ask": "rlm_local.cli.ask",
    "cache": "rlm_local.cli.cache",
    "chat": "rlm_local.cli.chat",
    "doctor": "rlm_local.cli.doctor",
    "mcp": "rlm_local.cli.mcp",
    "models": "rlm_local.cli.models",
    "runs": "rlm_local.cli.runs",
}


class _LazyGroup(click.Group):
    """A group whose commands are imported when looked up (click's "lazily loading
    subcommands" pattern)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = _COMMANDS.get(cmd_name)
        if module is None:
            return None
        command: click.Command = getattr(importlib.import_module(module), cmd_name)
        return command

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        if args and args[0] not in _COMMANDS:
            # An unknown name: click suggests a close one from self.commands, so fill it.
            for name in self.list_commands(ctx):
                if (command := self.get_command(ctx, name)) is not None:
                    self.add_command(command)
        return super().resolve_command(ctx, args)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rlm-local")
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A models.toml to read after the packaged one (default: $RLM_LOCAL_CONFIG or "
    "~/.config/rlm-local/models.toml).",
)
@click.pass_context
def cli(ctx: click.Context, config_file: Path | None) -> None:
    """Answer questions about inputs far larger than a model's window, with local models only.

    Files live under $RLM_LOCAL_HOME (default ~/.cache/rlm-local): models/, cache/, runs/.
    """
    ctx.ensure_object(dict)
    ctx.obj["settings_factory"] = lambda **kw: load_settings(config_file=config_file, **kw)
    ctx.obj["config_file"] = config_file


def main() -> None:
    """Entry point: a user-caused error is one sentence on stderr and exit status 1."""
    try:
        # Without standalone mode click returns a command's ctx.exit(n) status instead of
        # exiting with it (ask's 2, doctor's 1): pass it on.
        status = cli.main(standalone_mode=False)
        if isinstance(status, int) and status:
            sys.exit(status)
    except click.exceptions.Abort:
        err.print("Interrupted.")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except RlmLocalError as exc:
        err.print(f"[red]Error:[/red] {escape(str(exc))}")
        sys.exit(1)
    except KeyboardInterrupt:
        err.print("Interrupted; the trace of this run so far is under runs/.")
        sys.exit(130)
    except Exception as exc:  # a bug of ours: still one line, with the way to see more
        if os.environ.get("RLM_LOCAL_DEBUG"):
            raise
        err.print(
            f"[red]Internal error:[/red] {type(exc).__name__}: {escape(str(exc))} "
            "(set RLM_LOCAL_DEBUG=1 to see the traceback, and please report it)"
        )
        sys.exit(70)
