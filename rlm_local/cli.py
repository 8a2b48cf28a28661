"""`rlm-local` commands: thin click wrappers over the Python API, terminal output with rich.

stdout carries answers and listings only; progress and notices go to stderr, so
`rlm-local ask ... > answer.txt` works.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from rlm_local.cache import CallCache
from rlm_local.config import Settings, load_settings
from rlm_local.errors import RlmLocalError
from rlm_local.models import ModelStore
from rlm_local.models.prefixes import PrefixStore
from rlm_local.trace import Turn, describe_timing, find_run, list_runs, load_run, read_verdict

err = Console(stderr=True, highlight=False, soft_wrap=True)
# Tables piped to a file or another program are not cut to 80 columns.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)


def _settings(ctx: click.Context, **overrides: Any) -> Settings:
    base: Settings = ctx.obj["settings_factory"](**overrides)
    return base


@contextmanager
def _byte_progress(enabled: bool) -> Iterator[Callable[[str, int, int | None], None]]:
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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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


# -- ask ----------------------------------------------------------------------------------------


class _Progress:
    """Live status on stderr from the engine's events; --verbose adds each cell's code/output."""

    def __init__(self, verbose: bool, quiet: bool) -> None:
        self.verbose = verbose
        self.quiet = quiet
        self.status = None if quiet else err.status("starting…")
        self.turn = 0  # the top-level turn number
        self.sub_calls = 0
        self.cached = 0
        self.budget: dict[str, Any] = {}  # max_turns, max_sub_calls, max_seconds of the run

    def __enter__(self) -> _Progress:
        if self.status is not None:
            self.status.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.status is not None:
            self.status.stop()

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "turn":
            if not event.get("depth"):
                self.turn = int(event.get("turn", self.turn + 1))
            self.cached += int(bool(event.get("cached")))
        elif kind == "sub_call":
            self.sub_calls += 1
            self.cached += int(bool(event.get("cached")))
        elif kind == "run_start":
            self.budget = event.get("options") or {}
            err.print(f"[dim]mode {event['mode']}: {escape(str(event['context']))}[/dim]")
        if kind == "cell" and self.verbose:
            depth = "  " * int(event.get("depth", 0))
            name = f"turn {event['turn']}" if event.get("turn") else "first step, run by the engine"
            err.rule(f"{depth}{name} (depth {event['depth']})", style="dim")
            err.print(event["code"], markup=False)
            if event.get("output"):
                err.print("[dim]── output ──[/dim]")
                err.print(event["output"].rstrip(), markup=False)
            if event.get("error"):
                err.print(f"[red]error:[/red] {escape(str(event['error']))}", markup=True)
        if kind == "read" and self.verbose:
            err.print(f"[dim]── {read_verdict(bool(event.get('accepted')))} ──[/dim]")
            err.print(str(event.get("text", "")).rstrip(), markup=False)
        if self.status is not None:
            what = {
                "turn": "root model wrote code",
                "first_step": "running the first step",
                "read": "root model read the first step's output",
                "cell": "ran the code",
                "classify": "labelled items",
            }.get(str(kind), "asked the sub-model" if kind == "sub_call" else str(kind))
            self.status.update(self._line(float(event.get("elapsed", 0)), what))

    def _line(self, elapsed: float, what: str) -> str:
        """Done/budget for turns and sub-calls, and the time the budget leaves at most: an RLM
        run stops at FINAL, so a budget bound is the only honest ETA."""
        b = self.budget

        def of(key: str) -> str:
            return f"/{b[key]}" if isinstance(b.get(key), int) else ""

        left = ""
        if isinstance(b.get("max_seconds"), int | float):
            left = f" (at most {max(0.0, b['max_seconds'] - elapsed):.0f} s left)"
        return (
            f"turn {self.turn}{of('max_turns')} · {self.sub_calls}{of('max_sub_calls')} "
            f"sub-calls · {self.cached} cached · {elapsed:.0f} s{left} · {escape(what)}"
        )


_RUN_FLAGS = (
    click.option("--root", help="Root model: a name from `models list` or a .gguf path."),
    click.option("--sub", help="Sub-model for llm_query: a name or a .gguf path."),
    click.option(
        "--labeller", help="Model for classify: a name or a .gguf path (default: the root model)."
    ),
    click.option("--profile", help="A model pair from models.toml [profiles] (e.g. large)."),
    click.option(
        "--mode",
        type=click.Choice(["auto", "rlm", "direct"]),
        default="auto",
        show_default=True,
        help="direct: the root model reads the whole input; auto: direct only for short inputs.",
    ),
    click.option(
        "--max-turns",
        type=click.IntRange(1, 200),
        default=10,
        show_default=True,
        help="Root-model turns; the last one asks for the best answer so far.",
    ),
    click.option(
        "--max-sub-calls",
        type=click.IntRange(0, 100000),
        default=100,
        show_default=True,
        help="Sub-model calls allowed in the whole run (llm_query; one per classify batch; one "
        "per rlm_query run).",
    ),
    click.option(
        "--max-seconds",
        type=click.FloatRange(1),
        default=1800.0,
        show_default=True,
        help="Wall-clock budget of the run; when the next step would run past it, that step "
        "is the last and must answer.",
    ),
    click.option(
        "--max-depth",
        type=click.IntRange(0, 5),
        default=1,
        show_default=True,
        help="Levels of rlm_query recursion; at the limit rlm_query becomes llm_query.",
    ),
    click.option(
        "--no-label-vote",
        is_flag=True,
        help="classify labels each text once, instead of in up to 3 batches by majority (faster).",
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
        type=click.Choice(["answer", "hint", "off"]),
        default="answer",
        show_default=True,
        help="The root model reads that search's passages before writing code: answer keeps an "
        "answer copied from them (else code starts from a look at the data); hint offers it and "
        "the passages to the code turns; off skips the reading and shows them the passages.",
    ),
    click.option(
        "--plays",
        type=click.IntRange(1, 9),
        default=1,
        show_default=True,
        help="Plays of the code turns: the greedy one, then more from sampled first programs "
        "while no answer leads, within half the time budget; most plays' answer wins (1: the "
        "greedy play alone).",
    ),
    click.option(
        "--read-samples",
        type=click.IntRange(0, 16),
        default=4,
        show_default=True,
        help="Seeded readings at temperature beside the greedy one: a copied answer counts only "
        "when all but one of them also find one stated in the passages (0: the greedy reading "
        "alone decides).",
    ),
    click.option(
        "--skip-check",
        "skip_checks",
        multiple=True,
        metavar="NAME",
        help="A check on the answer that never sends it back, e.g. unfounded; repeatable. The "
        "checks: gave_up, echoed, named, restated, raised, capped_count, empty, unread, unfounded, "
        "copied.",
    ),
    click.option(
        "--cell-timeout",
        type=click.FloatRange(0.5),
        default=60.0,
        show_default=True,
        help="Seconds one code cell may run before its worker is replaced.",
    ),
    click.option(
        "--cell-bridge-calls",
        type=click.IntRange(0),
        default=1000,
        show_default=True,
        help="Calls of llm_query, rlm_query, classify, ... one code cell may make.",
    ),
    click.option(
        "--cell-bridge-seconds",
        type=click.FloatRange(1),
        default=900.0,
        show_default=True,
        help="Seconds of such calls in one code cell, after which it may make no more.",
    ),
    click.option("--include", multiple=True, help="Glob of files to read from directories."),
    click.option("--exclude", multiple=True, help="Glob of files to skip."),
    click.option(
        "--max-file-mb",
        type=click.FloatRange(0.001),
        default=64.0,
        show_default=True,
        help="Larger input files are skipped with a notice.",
    ),
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
    click.option(
        "--no-cache",
        is_flag=True,
        help="Neither read nor write the caches (model calls, texts of converted documents).",
    ),
    click.option(
        "-v", "--verbose", is_flag=True, help="Show each cell's code and output on stderr."
    ),
    click.option("-q", "--quiet", is_flag=True, help="No progress on stderr."),
)


def _run_flags(command: Callable[..., Any]) -> Callable[..., Any]:
    """The model, budget and input flags `ask` and `chat` share."""
    for flag in reversed(_RUN_FLAGS):
        command = flag(command)
    return command


@dataclass(frozen=True)
class _Prepared:
    settings: Settings
    options: Any  # RunOptions (imported late, with the engine)
    context: str | dict[str, str]
    documents: list[Any]  # Conversion: which converter read each document, and how long
    files: int  # files read


def _prepare(ctx: click.Context, inputs: tuple[str, ...], flags: dict[str, Any]) -> _Prepared:
    """Settings, run options and the loaded input from the shared flags."""
    from rlm_local.engine import InputOptions, load_inputs

    try:
        options = _run_options(flags)
    except ValueError as error:
        raise click.UsageError(f"--skip-check: {error}") from None
    settings = _settings(
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
            password=_pdf_password(flags["ask_password"], reads_stdin=inputs == ("-",)),
            ocr=flags["ocr"],
        ),
    )
    for notice in loaded.notices:
        err.print(f"[yellow]note:[/yellow] {escape(notice)}")
    return _Prepared(settings, options, loaded.context, loaded.conversions, len(loaded.sources))


def _run_options(flags: dict[str, Any]) -> Any:
    """The RunOptions the flags ask for (ValueError for an unknown check name)."""
    from rlm_local.engine import RunOptions
    from rlm_local.sandbox import SandboxLimits

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


def _run_footer(result: Any) -> None:
    s = result.stats
    err.print(
        f"[dim]{result.mode} · {_count(s.turns, 'turn')} · {_count(s.sub_calls, 'sub-call')} · "
        f"{_count(s.cache_hits, 'cache hit')} · {result.seconds:.1f} s · "
        f"trace {escape(str(result.trace_path))}[/dim]"
    )


@cli.command()
@click.argument("question")
@click.argument("inputs", nargs=-1)
@_run_flags
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with the result.")
@click.pass_context
def ask(
    ctx: click.Context, question: str, inputs: tuple[str, ...], as_json: bool, **flags: Any
) -> None:
    """Answer QUESTION about INPUT files, directories, or standard input ('-' or a pipe).

    One file becomes `context` as a str; several files or a directory become a dict of
    path -> text. PDF, DOCX, XLSX, PPTX, ODT, HTML, EML/MBOX and CSV files are converted to text
    (PDF, DOCX and XLSX need `pip install 'rlm-local[docs]'`). The answer alone goes to stdout.
    """
    # The engine (sandbox, llama.cpp) is imported here, so model and cache commands start fast.
    from rlm_local.api import RLM

    if not inputs:
        if sys.stdin.isatty():
            raise RlmLocalError("Give an input file or directory, or pipe text into rlm-local.")
        inputs = ("-",)
    prepared = _prepare(ctx, inputs, flags)
    quiet = flags["quiet"]
    with (
        RLM(prepared.settings, prepared.options) as rlm,
        _Progress(flags["verbose"], quiet or as_json) as progress,
    ):
        result = rlm.ask(
            question, prepared.context, on_event=progress, documents=prepared.documents
        )
    if as_json:
        data = result.to_dict()
        data["inputs"] = {
            "files": prepared.files,
            "documents": [asdict(c) for c in prepared.documents],
        }
        click.echo(json.dumps(data, ensure_ascii=False))
    elif result.answer is not None:
        click.echo(result.answer)
    if not quiet:
        _run_footer(result)
    if result.answer is None:
        err.print(
            "[red]No answer within the budget;[/red] raise --max-turns or --max-seconds, "
            f"or read the trace: rlm-local runs show {result.run_id}"
        )
        ctx.exit(2)


def _pdf_password(ask: bool, reads_stdin: bool) -> str | None:
    """$RLM_LOCAL_PDF_PASSWORD, else with --password a hidden prompt on the terminal; never a
    command-line value, which other users can read in the process list."""
    from rlm_local.documents import PASSWORD_ENV

    if env := os.environ.get(PASSWORD_ENV):
        return env
    if not ask:
        return None
    if reads_stdin or not sys.stdin.isatty():
        raise RlmLocalError(
            f"--password asks at a terminal, and there is none here; set {PASSWORD_ENV} instead."
        )
    return click.prompt("PDF password", hide_input=True, err=True) or None


# -- chat -----------------------------------------------------------------------------------------


@cli.command()
@click.argument("inputs", nargs=-1, required=True)
@_run_flags
@click.pass_context
def chat(ctx: click.Context, inputs: tuple[str, ...], **flags: Any) -> None:
    """Ask questions in a row about INPUTS, loaded once, at a prompt with line editing and history.

    Each line is a question; the root model is told the earlier questions and answers, and the
    sandbox worker (with the variables earlier code left) stays. Ctrl-C stops the current
    answer; Ctrl-D or `exit` ends the session.
    """
    from rlm_local.api import RLM
    from rlm_local.chat import ChatIO, chat_loop, history_file

    if "-" in inputs:
        raise RlmLocalError("chat reads questions from standard input; give input files instead.")
    prepared = _prepare(ctx, inputs, flags)

    def answer(result: Any) -> None:
        if result.answer is not None:
            click.echo(result.answer)
        else:
            err.print("[red]No answer within the budget.[/red]")
        if not flags["quiet"]:
            _run_footer(result)

    def progress() -> _Progress:
        return _Progress(flags["verbose"], flags["quiet"])

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
            rlm.session(prepared.context) as session,
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


# -- mcp ------------------------------------------------------------------------------------------


@cli.command()
@click.option(
    "--root",
    "roots",
    multiple=True,
    required=True,
    help="A directory the MCP client may read (repeat for more); nothing outside is read.",
)
@click.option("--profile", help="A model pair from models.toml [profiles] (e.g. large).")
@click.option("--no-cache", is_flag=True, help="Neither read nor write the model-call cache.")
@click.option(
    "--max-file-mb",
    type=click.FloatRange(0.001),
    default=64.0,
    show_default=True,
    help="Larger input files are skipped with a notice.",
)
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
    from rlm_local.engine import InputOptions

    try:
        from rlm_local.mcp_server import McpSettings, real_roots, serve
    except ImportError as exc:
        raise RlmLocalError(
            f"The MCP server needs the mcp package ({exc}); install it with "
            "pip install 'rlm-local[mcp]'."
        ) from None

    settings = _settings(ctx, profile=profile, use_cache=not no_cache)
    served = McpSettings(real_roots(roots), InputOptions(max_file_mb=max_file_mb))
    where = escape(", ".join(map(str, served.roots)))
    err.print(f"[dim]rlm-local MCP server on stdio; it may read {where}[/dim]")
    serve(RLM(settings), served)


# -- models -------------------------------------------------------------------------------------


@cli.group()
def models() -> None:
    """List, pull, verify, import and remove local GGUF models."""


def _store(ctx: click.Context) -> ModelStore:
    settings = _settings(ctx)
    return ModelStore(settings.registry, settings.models_dir)


@models.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def models_list(ctx: click.Context, as_json: bool) -> None:
    """Show each known model, its role, and whether it is present and verified."""
    settings = _settings(ctx)
    store = ModelStore(settings.registry, settings.models_dir)
    named = [(settings.root, "root"), (settings.sub, "sub"), (settings.labeller, "labeller")]
    roles: dict[str, str] = {}
    for name, role in named:  # the labeller is listed only when set apart from the root model
        if name:
            roles[name] = f"{roles[name]}, {role}" if name in roles else role
    rows = store.list()
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "name": r.name,
                        "role": roles.get(r.name),
                        "size": r.size or r.spec.size,
                        "present": r.present,
                        "verified": r.verified,
                        "path": str(r.path),
                        "problem": r.problem,
                    }
                    for r in rows
                ]
            )
        )
        return
    table = Table(box=None, pad_edge=False)
    for column in ("name", "role", "size", "state", "path"):
        table.add_column(column)
    for r in rows:
        size = r.size or r.spec.size
        state = (
            "[green]verified[/green]"
            if r.verified
            else ("[red]unverified[/red]" if r.present else "[dim]not pulled[/dim]")
        )
        if r.spec.server is not None:
            size_text, state, where = (
                "served",
                "[green]server[/green]",
                " ".join(r.spec.server.base_urls),
            )
        else:
            size_text = f"{size / 1e9:.2f} GB" if size else "?"
            where = str(r.path) if r.present else ""
        table.add_row(r.name, roles.get(r.name, ""), size_text, state, where)
    out.print(table)
    for r in rows:
        if r.problem:
            err.print(f"[yellow]{r.problem}[/yellow]")


@models.command("pull")
@click.argument("names", nargs=-1)
@click.option("--all", "pull_all", is_flag=True, help="Every model in the registry.")
@click.option("--force", is_flag=True, help="Download again even if a verified copy exists.")
@click.pass_context
def models_pull(ctx: click.Context, names: tuple[str, ...], pull_all: bool, force: bool) -> None:
    """Download models (default: the models the roles use) and verify their sha256."""
    settings = _settings(ctx)
    store = ModelStore(settings.registry, settings.models_dir)
    if pull_all:
        names = tuple(settings.registry.models)
    elif not names:
        names = tuple(settings.models_in_use())
    for name in names:
        started = time.monotonic()
        with _byte_progress(err.is_terminal) as progress:
            outcome = store.pull(name, progress, force=force)
        if outcome.downloaded:
            err.print(
                f"[green]pulled[/green] {name} from {outcome.origin} "
                f"in {time.monotonic() - started:.0f} s"
            )
        else:
            err.print(f"{name} is already present and verified")


@models.command("verify")
@click.argument("names", nargs=-1)
@click.pass_context
def models_verify(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Hash present models in full and compare with the registry (default: all present)."""
    store = _store(ctx)
    names = names or tuple(s.name for s in store.list() if s.present)
    if not names:
        err.print("No model is present; run `rlm-local models pull`.")
        return
    for name in names:
        with _byte_progress(err.is_terminal) as progress:
            store.verify(name, progress)
        err.print(f"[green]verified[/green] {name}")


@models.command("import")
@click.argument("name")
@click.argument("file", type=click.Path(path_type=Path))
@click.pass_context
def models_import(ctx: click.Context, name: str, file: Path) -> None:
    """Copy a GGUF FILE in as model NAME (for air-gapped machines); its sha256 must match."""
    store = _store(ctx)
    with _byte_progress(err.is_terminal) as progress:
        store.import_file(name, file, progress)
    err.print(f"[green]imported[/green] {file} as {name}")


@models.command("rm")
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def models_rm(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Delete downloaded models."""
    store = _store(ctx)
    for name in names:
        removed = store.remove(name)
        err.print(f"removed {name}" if removed else f"{name} was not present")


# -- cache --------------------------------------------------------------------------------------


@cli.group()
def cache() -> None:
    """Inspect or clear the on-disk caches: model calls, and local models' evaluated prompts."""


def _cache(ctx: click.Context) -> tuple[Settings, CallCache, PrefixStore]:
    settings = _settings(ctx)
    prefixes = PrefixStore(settings.prefixes_dir, settings.prefix_cache_mb)
    return settings, CallCache(settings.cache_dir, settings.cache_size_mb), prefixes


@cache.command("stats")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def cache_stats(ctx: click.Context, as_json: bool) -> None:
    """Entries, size on disk, and hits/misses since the cache was created."""
    settings, call_cache, prefixes = _cache(ctx)
    stats, prefix_stats = call_cache.stats(), prefixes.stats()
    if as_json:
        prefix_data = {**asdict(prefix_stats), "directory": str(prefix_stats.directory)}
        prefix_data["limit_bytes"] = settings.prefix_cache_mb << 20
        data = {**asdict(stats), "directory": str(stats.directory), "prefixes": prefix_data}
        click.echo(json.dumps(data))
        return
    total = stats.hits + stats.misses
    rate = f"{100 * stats.hits / total:.0f}%" if total else "n/a"
    click.echo(f"directory  {stats.directory}")
    click.echo(f"entries    {stats.entries}")
    click.echo(f"size       {stats.size_bytes / 1e6:.1f} MB")
    click.echo(f"hits       {stats.hits}")
    click.echo(f"misses     {stats.misses}")
    click.echo(f"hit rate   {rate}")
    click.echo("evaluated prompt prefixes")
    click.echo(f"directory  {prefix_stats.directory}")
    click.echo(f"entries    {prefix_stats.entries}")
    click.echo(
        f"size       {prefix_stats.size_bytes / 1e6:.1f} MB "
        f"(limit {settings.prefix_cache_mb} MB, RLM_LOCAL_PREFIX_CACHE_MB)"
    )


@cache.command("clear")
@click.option("--model", help="Only the entries of this model (a name or .gguf path).")
@click.pass_context
def cache_clear(ctx: click.Context, model: str | None) -> None:
    """Delete cached model calls and evaluated prompt prefixes."""
    settings, call_cache, prefixes = _cache(ctx)
    identity = None
    if model:
        identity = ModelStore(settings.registry, settings.models_dir).resolve(model).sha256
    removed = call_cache.clear(identity)
    removed_prefixes = prefixes.clear(identity)
    err.print(f"removed {removed} entries and {removed_prefixes} prompt prefixes")


@cache.command("path")
@click.pass_context
def cache_path(ctx: click.Context) -> None:
    """Print the cache directory."""
    click.echo(str(_settings(ctx).cache_dir))


# -- runs ---------------------------------------------------------------------------------------

# C0/C1 control characters (but newline and tab) in model output could drive the terminal.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _safe(text: object) -> str:
    """Text from a trace, with control characters shown as \\xNN instead of sent raw."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))


def _head(text: str | None, limit: int) -> str:
    line = " ".join(_safe(text or "").split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _cut(text: str, limit: int | None) -> str:
    text = _safe(text).rstrip()
    if limit is None or len(text) <= limit:
        return text
    return f"{text[:limit]}\n… ({len(text) - limit:,} more characters; `--full` shows them)"


def _count(n: object, word: str) -> str:
    return f"{n if n is not None else '?'} {word}{'' if n == 1 else 's'}"


def _secs(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


@cli.group()
def runs() -> None:
    """Past runs: each question's turns, cells and sub-calls (JSONL traces in runs/).

    ID is a run id, a unique prefix of one, or `last`.
    """


@runs.command("list")
@click.option("-n", "--limit", type=click.IntRange(1), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON array of runs.")
@click.pass_context
def runs_list(ctx: click.Context, limit: int, as_json: bool) -> None:
    """The latest runs, newest first."""
    summaries = list_runs(_settings(ctx).runs_dir)[:limit]
    if as_json:
        click.echo(json.dumps([s.to_dict() for s in summaries], ensure_ascii=False))
        return
    if not summaries:
        err.print("No runs yet; `rlm-local ask` records each run.")
        return
    table = Table(box=None, pad_edge=False)
    for column in ("id", "time", "question", "answer", "turns", "sub-calls", "seconds"):
        justify = "right" if column in ("turns", "sub-calls", "seconds") else "left"
        table.add_column(column, justify=justify, no_wrap=column in ("id", "time"))
    for s in summaries:
        if s.answer is not None:
            answer = Text(_head(s.answer, 40))
        else:
            answer = Text("(no answer)" if s.status == "no_answer" else f"({s.status})", "dim")
        table.add_row(
            s.run_id,
            time.strftime("%Y-%m-%d %H:%M", time.localtime(s.started)),
            Text(_head(s.question, 40)),
            answer,
            str(s.turns),
            str(s.sub_calls),
            _secs(s.seconds),
        )
    out.print(table)


def _turn_node(parent: Tree, turn: Turn, limit: int | None) -> None:
    facts = ["cached" if turn.cached else f"model {_secs(turn.seconds)} s"] if turn.number else []
    if turn.prompt_tokens is not None:
        facts.append(f"{turn.prompt_tokens}→{turn.completion_tokens or 0} tokens")
    if turn.compacted:
        facts.append("conversation compacted")
    if turn.repeated_code is not None:
        facts.append("resampled a repeated cell")
    depth = f" (depth {turn.depth})" if turn.depth else ""
    label = Text.assemble(
        (f"{turn.title}{depth}", "bold cyan"), (" · " + " · ".join(facts) if facts else "", "dim")
    )
    node = parent.add(label)
    if turn.code is not None:
        code = _cut(turn.code, limit) or "(empty)"
        width = max(len(line) for line in code.splitlines() or [""]) + 1
        node.add(
            Syntax(
                code,
                "python",
                theme="ansi_dark",
                background_color="default",
                word_wrap=True,
                code_width=width,
            )
        )
    elif turn.text is not None:
        node.add(Text(_cut(turn.text, limit)))
    work = turn.work
    if work is None:
        if turn.code is not None:
            node.add(Text("did not run (empty, or a repeat)", "dim"))
        return
    if turn.cell is not None:
        cell = turn.cell
        status = Text(f"cell {_secs(cell.seconds)} s", "green" if not cell.error else "red")
        if cell.worker_restarted:
            status.append(" · worker restarted", "yellow")
        holder = node.add(status)
        if cell.output.strip():
            holder.add(Text(_cut(cell.output, limit), "dim"))
        if cell.error:
            holder.add(Text.assemble(("error: ", "red"), _cut(cell.error, limit)))
        if cell.final is not None:
            holder.add(Text.assemble(("FINAL: ", "bold green"), _cut(cell.final, limit)))
    else:
        holder = node.add(Text("cell did not finish (the run was interrupted)", "yellow"))
    for call in work.sub_calls:
        timing = "cached" if call.cached else f"{_secs(call.seconds)} s"
        reply = call.error if call.error else call.answer
        holder.add(
            Text.assemble(
                (f"↳ sub-call {call.index}", "magenta"),
                (f" ({call.prompt_chars:,} chars, {timing}): ", "dim"),
                _head(reply, 120),
            )
        )
    if turn.read is not None:
        timing = "cached" if turn.read.cached else f"{_secs(turn.read.seconds)} s"
        holder.add(
            Text.assemble(
                (turn.read.verdict, "bold green" if turn.read.accepted else "dim"),
                (f" ({timing}): ", "dim"),
                _cut(turn.read.text, limit),
            )
        )
    for child in work.children:
        branch = holder.add(
            Text(
                f"rlm_query run at depth {child.depth} · {_count(len(child.turns), 'turn')}", "blue"
            )
        )
        for nested in child.turns:
            _turn_node(branch, nested, limit)


@runs.command("show")
@click.argument("run_id")
@click.option("--full", is_flag=True, help="Do not cut long code, outputs and answers.")
@click.pass_context
def runs_show(ctx: click.Context, run_id: str, full: bool) -> None:
    """The tree of one run: turns -> cells -> sub-calls (and nested rlm_query runs)."""
    run = load_run(find_run(_settings(ctx).runs_dir, run_id))
    limit = None if full else 1500
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run.started or 0))
    s = run.stats
    facts = [
        run.mode or "?",
        run.status,
        _count(s.get("turns"), "turn"),
        _count(s.get("sub_calls"), "sub-call"),
        _count(s.get("cache_hits"), "cache hit"),
        f"{_secs(run.seconds)} s",
        started,
    ]
    tree = Tree(
        Text.assemble((_safe(run.question), "bold"), ("  " + " · ".join(facts), "dim")),
        guide_style="dim",
    )
    if run.context:
        tree.add(Text(_head(run.context, 160), "dim"))
    for turn in run.turns:
        _turn_node(tree, turn, limit)
    if run.votes:
        played = " · ".join("no answer" if a is None else _head(a, 60) for a in run.votes)
        tree.add(Text(f"plays' answers: {played}", "dim"))
    if run.fell_back:
        tree.add(Text("the code turns found no answer: the reader's copied answer stands", "dim"))
    for said, read in run.rereads:
        copied = _head(read, 60) if read is not None else "nothing copied"
        tree.add(
            Text(
                f"{_head(said, 60)} said again after it was sent back; the printed output "
                f"read afresh: {copied}",
                "dim",
            )
        )
    if run.answer is not None:
        tree.add(Text.assemble(("answer: ", "bold green"), _cut(run.answer, limit)))
    else:
        ending = {"no_answer": "no answer", "cancelled": "cancelled"}.get(run.status, "unfinished")
        tree.add(Text(ending, "bold red"))
    if run.timing is not None:  # older traces have no split
        spent = tree.add(Text("time: " + describe_timing(run.timing), "dim"))
        for role, timing in run.timing_by_model.items():
            spent.add(Text(f"{_safe(role)}: {describe_timing(timing, model=True)}", "dim"))
    out.print(tree)
    err.print(f"[dim]trace {escape(str(run.path))} · `rlm-local runs html {run.run_id}`[/dim]")


@runs.command("html")
@click.argument("run_id")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The page to write (default: runs/<id>.html next to the trace).",
)
@click.option("--expand", is_flag=True, help="Open every fold (for printing).")
@click.pass_context
def runs_html(ctx: click.Context, run_id: str, output: Path | None, expand: bool) -> None:
    """Write one run as one self-contained HTML page (no network, no JavaScript); print its path."""
    from rlm_local.report import write_report

    trace = find_run(_settings(ctx).runs_dir, run_id)
    click.echo(str(write_report(trace, output, open_all=expand)))


# -- doctor -------------------------------------------------------------------------------------

_MARKS = {"ok": ("✓", "green"), "info": ("·", "dim"), "warn": ("!", "yellow"), "fail": ("✗", "red")}


@cli.command()
@click.option("--full", is_flag=True, help="Re-hash every present model in full (slow).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object with every finding.")
@click.pass_context
def doctor(ctx: click.Context, full: bool, as_json: bool) -> None:
    """Check llama.cpp, the CPU, models, cache, runs, network settings and disk space.

    Exits 1 when something stops `rlm-local ask` (a missing or corrupt root or sub model).
    """
    from rlm_local.doctor import diagnose

    with _byte_progress(full and err.is_terminal and not as_json) as progress:
        report = diagnose(config_file=ctx.obj.get("config_file"), full=full, progress=progress)
    if as_json:
        click.echo(json.dumps(report.to_dict(), ensure_ascii=False))
    else:
        area_w = max(len(f.area) for f in report.findings)
        subject_w = max(len(_safe(f.subject)) for f in report.findings)
        for f in report.findings:
            mark, style = _MARKS[f.level]
            out.print(
                Text.assemble(
                    (mark, style),
                    f" {f.area:<{area_w}}  {_safe(f.subject):<{subject_w}}  {_safe(f.detail)}",
                )
            )
        problems = report.problems
        if problems:
            out.print(f"\n[bold]What to do[/bold] ({len(problems)}):")
            for f in problems:
                out.print(
                    Text.assemble(
                        "  ",
                        (
                            "✗ " if f.level == "fail" else "! ",
                            "red" if f.level == "fail" else "yellow",
                        ),
                        (_safe(f.subject), "bold"),
                        f": {_safe(f.detail)}. ",
                        _safe(f.fix or ""),
                    )
                )
        if report.ready:
            out.print("\n[green]ask is ready.[/green]")
        else:
            out.print(
                f"\n[red]ask cannot run until the {len(report.blocking)} problem(s) marked ✗ "
                "are fixed.[/red]"
            )
    if not report.ready:
        ctx.exit(1)


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
