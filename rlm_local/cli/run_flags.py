"""The model, budget and input flags `ask` and `chat` share, and what they turn into: settings,
RunOptions and the loaded input. Defaults come from RunOptions, SandboxLimits and InputOptions,
so the help shows what a run without the flag does."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, get_args, get_type_hints

import click
from rich.markup import escape

from rlm_local.cli.common import err, settings_for
from rlm_local.config import Settings
from rlm_local.documents import PASSWORD_ENV, Conversion
from rlm_local.engine import InputOptions, RunOptions, load_inputs
from rlm_local.engine.checks import CHECKS
from rlm_local.errors import RlmLocalError
from rlm_local.sandbox import SandboxLimits


def _choices(field: str) -> tuple[str, ...]:
    """The values a Literal-typed RunOptions field allows."""
    return get_args(get_type_hints(RunOptions)[field])


def _model_flags() -> list[Callable[..., Any]]:
    return [
        click.option("--root", help="Root model: a name from `models list` or a .gguf path."),
        click.option("--sub", help="Sub-model for llm_query: a name or a .gguf path."),
        click.option(
            "--labeller",
            help="Model for classify: a name or a .gguf path (default: the root model).",
        ),
        click.option("--profile", help="A model pair from models.toml [profiles] (e.g. large)."),
    ]


def _budget_flags(run: RunOptions) -> list[Callable[..., Any]]:
    return [
        click.option(
            "--mode",
            type=click.Choice(_choices("mode")),
            default=run.mode,
            show_default=True,
            help="direct: the root model reads the whole input; auto: direct only for short "
            "inputs.",
        ),
        click.option(
            "--max-turns",
            type=click.IntRange(1, 200),
            default=run.max_turns,
            show_default=True,
            help="Root-model turns; the last one asks for the best answer so far.",
        ),
        click.option(
            "--max-sub-calls",
            type=click.IntRange(0, 100000),
            default=run.max_sub_calls,
            show_default=True,
            help="Sub-model calls allowed in the whole run (llm_query; one per classify batch; "
            "one per rlm_query run).",
        ),
        click.option(
            "--max-seconds",
            type=click.FloatRange(1),
            default=run.max_seconds,
            show_default=True,
            help="Wall-clock budget of the run; when the next step would run past it, that step "
            "is the last and must answer.",
        ),
        click.option(
            "--max-depth",
            type=click.IntRange(0, 5),
            default=run.max_depth,
            show_default=True,
            help="Levels of rlm_query recursion; at the limit rlm_query becomes llm_query.",
        ),
    ]


def _strategy_flags(run: RunOptions) -> list[Callable[..., Any]]:
    return [
        click.option(
            "--no-label-vote",
            is_flag=True,
            help="classify labels each text once, instead of in up to 3 batches by majority "
            "(faster).",
        ),
        click.option(
            "--root-grammar",
            is_flag=True,
            help="Hold each root turn to code whose last line prints or answers (a llama.cpp "
            "grammar): fewer turns, slower tokens.",
        ),
        click.option(
            "--no-first-search",
            is_flag=True,
            help="Do not search the input for the question before the first turn.",
        ),
        click.option(
            "--read-first",
            type=click.Choice(_choices("read_first")),
            default=run.read_first,
            show_default=True,
            help="The root model reads that search's passages before writing code: answer keeps "
            "an answer copied from them (else code starts from a look at the data); hint offers "
            "it and the passages to the code turns; off skips the reading and shows them the "
            "passages.",
        ),
        click.option(
            "--plays",
            type=click.IntRange(1, 9),
            default=run.plays,
            show_default=True,
            help="Plays of the code turns: the greedy one, then more from sampled first programs "
            "while no answer leads, within half the time budget; most plays' answer wins (1: the "
            "greedy play alone).",
        ),
        click.option(
            "--read-samples",
            type=click.IntRange(0, 16),
            default=run.read_samples,
            show_default=True,
            help="Seeded readings at temperature beside the greedy one: a copied answer counts "
            "only when all but one of them also find one stated in the passages (0: the greedy "
            "reading alone decides).",
        ),
        click.option(
            "--skip-check",
            "skip_checks",
            multiple=True,
            metavar="NAME",
            help="A check on the answer that never sends it back, e.g. unfounded; repeatable. "
            f"The checks: {', '.join(CHECKS)}.",
        ),
    ]


def _cell_flags(cell: SandboxLimits) -> list[Callable[..., Any]]:
    return [
        click.option(
            "--cell-timeout",
            type=click.FloatRange(0.5),
            default=cell.wall_seconds,
            show_default=True,
            help="Seconds one code cell may run before its worker is replaced.",
        ),
        click.option(
            "--cell-bridge-calls",
            type=click.IntRange(0),
            default=cell.bridge_calls,
            show_default=True,
            help="Calls of llm_query, rlm_query, classify, ... one code cell may make.",
        ),
        click.option(
            "--cell-bridge-seconds",
            type=click.FloatRange(1),
            default=cell.bridge_seconds,
            show_default=True,
            help="Seconds of such calls in one code cell, after which it may make no more.",
        ),
    ]


def _input_flags(inputs: InputOptions) -> list[Callable[..., Any]]:
    return [
        click.option("--include", multiple=True, help="Glob of files to read from directories."),
        click.option("--exclude", multiple=True, help="Glob of files to skip."),
        max_file_mb_flag(inputs),
        click.option(
            "--password",
            "ask_password",
            is_flag=True,
            help="Ask at a prompt for the password of encrypted PDFs (or set "
            "$RLM_LOCAL_PDF_PASSWORD); it is never written to the trace or the cache.",
        ),
        click.option(
            "--ocr",
            is_flag=True,
            help="Read PDF pages without a text layer with tesseract (it must be installed).",
        ),
    ]


def max_file_mb_flag(inputs: InputOptions) -> Callable[..., Any]:
    """--max-file-mb, which `mcp` takes too."""
    return click.option(
        "--max-file-mb",
        type=click.FloatRange(0.001),
        default=inputs.max_file_mb,
        show_default=True,
        help="Larger input files are skipped with a notice.",
    )


def _output_flags() -> list[Callable[..., Any]]:
    return [
        click.option(
            "--no-cache",
            is_flag=True,
            help="Neither read nor write the caches (model calls, texts of converted documents).",
        ),
        click.option(
            "-v", "--verbose", is_flag=True, help="Show each cell's code and output on stderr."
        ),
        click.option("-q", "--quiet", is_flag=True, help="No progress on stderr."),
    ]


def run_flags(command: Callable[..., Any]) -> Callable[..., Any]:
    """The model, budget and input flags `ask` and `chat` share, in the order --help lists them."""
    run = RunOptions()
    flags = [
        *_model_flags(),
        *_budget_flags(run),
        *_strategy_flags(run),
        *_cell_flags(run.sandbox),
        *_input_flags(InputOptions()),
        *_output_flags(),
    ]
    for flag in reversed(flags):
        command = flag(command)
    return command


def run_options(flags: dict[str, Any]) -> RunOptions:
    """The RunOptions the flags ask for (ValueError for an unknown check name)."""
    return RunOptions(
        mode=flags["mode"],
        max_turns=flags["max_turns"],
        max_sub_calls=flags["max_sub_calls"],
        max_seconds=flags["max_seconds"],
        max_depth=flags["max_depth"],
        vote_labels=not flags["no_label_vote"],
        root_grammar=flags["root_grammar"],
        first_search=not flags["no_first_search"],
        read_first=flags["read_first"],
        read_samples=flags["read_samples"],
        plays=flags["plays"],
        skip_checks=tuple(flags["skip_checks"]),
        sandbox=SandboxLimits(
            wall_seconds=flags["cell_timeout"],
            bridge_calls=flags["cell_bridge_calls"],
            bridge_seconds=flags["cell_bridge_seconds"],
        ),
    )


@dataclass(frozen=True)
class Prepared:
    settings: Settings
    options: RunOptions
    context: str | dict[str, str]
    documents: list[Conversion]  # which converter read each document, and how long
    files: int  # files read
    name: str  # the path evidence shows for a single text (LoadedInput.name)


def prepare(ctx: click.Context, inputs: tuple[str, ...], flags: dict[str, Any]) -> Prepared:
    """Settings, run options and the loaded input from the shared flags."""
    try:
        options = run_options(flags)
    except ValueError as error:
        raise click.UsageError(f"--skip-check: {error}") from None
    settings = settings_for(
        ctx,
        root=flags["root"],
        sub=flags["sub"],
        labeller=flags["labeller"],
        profile=flags["profile"],
        use_cache=not flags["no_cache"],
    )
    loaded = load_inputs(
        list(inputs),
        InputOptions(
            include=flags["include"],
            exclude=flags["exclude"],
            max_file_mb=flags["max_file_mb"],
            documents_cache=None if flags["no_cache"] else settings.documents_dir,
            password=pdf_password(flags["ask_password"], reads_stdin=inputs == ("-",)),
            ocr=flags["ocr"],
        ),
    )
    for notice in loaded.notices:
        err.print(f"[yellow]note:[/yellow] {escape(notice)}")
    return Prepared(
        settings, options, loaded.context, loaded.conversions, len(loaded.sources), loaded.name
    )


def pdf_password(ask: bool, reads_stdin: bool) -> str | None:
    """$RLM_LOCAL_PDF_PASSWORD, else with --password a hidden prompt on the terminal; never a
    command-line value, which other users can read in the process list."""
    if env := os.environ.get(PASSWORD_ENV):
        return env
    if not ask:
        return None
    if reads_stdin or not sys.stdin.isatty():
        raise RlmLocalError(
            f"--password asks at a terminal, and there is none here; set {PASSWORD_ENV} instead."
        )
    return click.prompt("PDF password", hide_input=True, err=True) or None
