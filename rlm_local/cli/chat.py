"""`rlm-local chat`: questions in a row about inputs loaded once, at a prompt."""

from __future__ import annotations

import sys
from typing import Any

import click
from rich.markup import escape

from rlm_local.cli.ask import RunProgress, run_footer
from rlm_local.cli.common import err
from rlm_local.cli.run_flags import prepare, run_flags
from rlm_local.errors import RlmLocalError


@click.command()
@click.argument("inputs", nargs=-1, required=True)
@run_flags
@click.pass_context
def chat(ctx: click.Context, inputs: tuple[str, ...], **flags: Any) -> None:
    """Ask questions in a row about INPUTS, loaded once, at a prompt with line editing and history.

    Each line is a question; the root model is told the earlier questions and answers, and the
    sandbox worker (with the variables earlier code left) stays. Ctrl-C stops the current
    answer; Ctrl-D or `exit` ends the session.
    """
    # Looked up when the command runs: tests/chat_scripted.py replaces rlm_local.api.RLM first.
    from rlm_local.api import RLM
    from rlm_local.chat import ChatIO, chat_loop, history_file

    if "-" in inputs:
        raise RlmLocalError("chat reads questions from standard input; give input files instead.")
    prepared = prepare(ctx, inputs, flags)

    def answer(result: Any) -> None:
        if result.answer is not None:
            click.echo(result.answer)
        else:
            err.print("[red]No answer within the budget.[/red]")
        if not flags["quiet"]:
            run_footer(result)

    def progress() -> RunProgress:
        return RunProgress(flags["verbose"], flags["quiet"])

    interactive = sys.stdin.isatty()
    io = ChatIO(
        read=input if interactive else _read_piped_line,
        answer=answer,
        note=lambda text: err.print(escape(text)),
        progress=progress,
    )
    with RLM(prepared.settings, prepared.options) as rlm:
        # Resolving the models first: a missing one ends the session before the first prompt.
        _ = (rlm.root, rlm.sub, rlm.labeller)
        with (
            rlm.session(prepared.context, prepared.name) as session,
            history_file(prepared.settings.home / "chat_history", enabled=interactive),
        ):
            if interactive:
                err.print("[dim]Ask about the input; Ctrl-C stops an answer, Ctrl-D ends.[/dim]")
            chat_loop(session, io)


def _read_piped_line(prompt: str) -> str:
    """input() without the prompt: questions piped in are not echoed back as prompts."""
    line = sys.stdin.readline()
    if not line:
        raise EOFError
    return line.rstrip("\n")
