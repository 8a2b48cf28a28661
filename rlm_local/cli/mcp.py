"""`rlm-local mcp`: `ask` and the runs served to an MCP client over stdio."""

from __future__ import annotations

import click
from rich.markup import escape

from rlm_local.cli.common import err, settings_for
from rlm_local.cli.run_flags import max_file_mb_flag
from rlm_local.engine import InputOptions
from rlm_local.errors import RlmLocalError


@click.command()
@click.option(
    "--root",
    "roots",
    multiple=True,
    required=True,
    help="A directory the MCP client may read (repeat for more); nothing outside is read.",
)
@click.option("--profile", help="A model pair from models.toml [profiles] (e.g. large).")
@click.option("--no-cache", is_flag=True, help="Neither read nor write the model-call cache.")
@max_file_mb_flag(InputOptions())
@click.pass_context
def mcp(
    ctx: click.Context,
    roots: tuple[str, ...],
    profile: str | None,
    no_cache: bool,
    max_file_mb: float,
) -> None:
    """Serve `ask` and the runs to an MCP client (chat apps, editors, agents) over stdio.

    The client starts this command itself; see the README for its configuration. Its tools:
    ask (question, paths, budgets), list_runs and show_run.
    """
    from rlm_local.api import RLM

    try:
        from rlm_local.mcp_server import McpSettings, real_roots, serve
    except ImportError as exc:
        raise RlmLocalError(
            f"The MCP server needs the mcp package ({exc}); install it with "
            "pip install 'rlm-local[mcp]'."
        ) from None

    settings = settings_for(ctx, profile=profile, use_cache=not no_cache)
    served = McpSettings(real_roots(roots), InputOptions(max_file_mb=max_file_mb))
    where = escape(", ".join(map(str, served.roots)))
    err.print(f"[dim]rlm-local MCP server on stdio; it may read {where}[/dim]")
    serve(RLM(settings), served)
