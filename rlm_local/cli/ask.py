"""`rlm-local ask`: one question about the inputs, the answer alone on stdout."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from typing import Any

import click
from rich.markup import escape

from rlm_local.cli.common import count, err
from rlm_local.cli.run_flags import prepare, run_flags
from rlm_local.errors import RlmLocalError
from rlm_local.evidence_view import describe_evidence
from rlm_local.trace import read_verdict

# Engine events shown in the status line, in words (sub_call is "asked the sub-model").
_DOING = {
    "turn": "root model wrote code",
    "first_step": "running the first step",
    "read": "root model read the first step's output",
    "cell": "ran the code",
    "classify": "labelled items",
}


class RunProgress:
    """Live status on stderr from the engine's events; --verbose adds each cell's code/output."""

    def __init__(self, verbose: bool, quiet: bool) -> None:
        self.verbose = verbose
        self.quiet = quiet
        self.status = None if quiet else err.status("starting…")
        self.turn = 0  # the top-level turn number
        self.sub_calls = 0
        self.cached = 0
        self.budget: dict[str, Any] = {}  # max_turns, max_sub_calls, max_seconds of the run

    def __enter__(self) -> RunProgress:
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
            look = str(event["context"])  # the data look: its size line, all of it with -v
            shown = look if self.verbose else look.split("\n", 1)[0]
            err.print(f"[dim]mode {event['mode']}: {escape(shown)}[/dim]")
        if kind == "cell" and self.verbose:
            _show_cell(event)
        if kind == "read" and self.verbose:
            err.print(f"[dim]── {read_verdict(bool(event.get('accepted')))} ──[/dim]")
            err.print(str(event.get("text", "")).rstrip(), markup=False)
        if self.status is not None:
            what = _DOING.get(str(kind), "asked the sub-model" if kind == "sub_call" else str(kind))
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


def _show_cell(event: dict[str, Any]) -> None:
    """One cell's code, output and error on stderr (--verbose)."""
    depth = "  " * int(event.get("depth", 0))
    name = f"turn {event['turn']}" if event.get("turn") else "first step, run by the engine"
    err.rule(f"{depth}{name} (depth {event['depth']})", style="dim")
    err.print(event["code"], markup=False)
    if event.get("output"):
        err.print("[dim]── output ──[/dim]")
        err.print(event["output"].rstrip(), markup=False)
    if event.get("error"):
        err.print(f"[red]error:[/red] {escape(str(event['error']))}", markup=True)


def run_footer(result: Any) -> None:
    """The run's mode, counts, time and trace path on stderr."""
    s = result.stats
    err.print(
        f"[dim]{result.mode} · {count(s.turns, 'turn')} · {count(s.sub_calls, 'sub-call')} · "
        f"{count(s.cache_hits, 'cache hit')} · {result.seconds:.1f} s · "
        f"trace {escape(str(result.trace_path))}[/dim]"
    )


@click.command()
@click.argument("question")
@click.argument("inputs", nargs=-1)
@run_flags
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with the result.")
@click.option(
    "--evidence",
    "show_evidence",
    is_flag=True,
    help="After the answer, print the input's lines it rests on (path:lines, why, turn) on "
    "stderr, so stdout stays the answer alone. --json always has them.",
)
@click.pass_context
def ask(
    ctx: click.Context,
    question: str,
    inputs: tuple[str, ...],
    as_json: bool,
    show_evidence: bool,
    **flags: Any,
) -> None:
    """Answer QUESTION about INPUT files, directories, or standard input ('-' or a pipe).

    One file becomes `context` as a str; several files or a directory become a dict of
    path -> text. PDF, DOCX, XLSX, PPTX, ODT, HTML, EML/MBOX and CSV files are converted to text
    (PDF, DOCX and XLSX need `pip install 'rlm-local[docs]'`). The answer alone goes to stdout.
    """
    # The API and the models' backend are imported only when a question is asked.
    from rlm_local.api import RLM

    if not inputs:
        if sys.stdin.isatty():
            raise RlmLocalError("Give an input file or directory, or pipe text into rlm-local.")
        inputs = ("-",)
    prepared = prepare(ctx, inputs, flags)
    quiet = flags["quiet"]
    with (
        RLM(prepared.settings, prepared.options) as rlm,
        RunProgress(flags["verbose"], quiet or as_json) as progress,
    ):
        result = rlm.ask(
            question,
            prepared.context,
            on_event=progress,
            documents=prepared.documents,
            name=prepared.name,
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
    if show_evidence and not as_json and result.answer is not None:
        click.echo(describe_evidence([e.to_dict() for e in result.evidence]), err=True)
    if not quiet:
        run_footer(result)
    if result.answer is None:
        err.print(
            "[red]No answer within the budget;[/red] raise --max-turns or --max-seconds, "
            f"or read the trace: rlm-local runs show {result.run_id}"
        )
        ctx.exit(2)
