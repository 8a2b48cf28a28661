"""`rlm-local runs`: past runs (the JSONL traces in runs/) as a table, a tree or an HTML page."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
from rich.markup import escape
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from rlm_local.cli.common import count, cut, err, head, out, safe, secs, settings_for
from rlm_local.evidence_view import EVIDENCE_WHY, evidence_turn, evidence_where
from rlm_local.trace import (
    Read,
    RunRecord,
    RunSummary,
    SubCall,
    Turn,
    describe_timing,
    find_run,
    list_runs,
    load_run,
)

SHOWN_CHARS = 1500  # of code, outputs and answers in `runs show` without --full


@click.group()
def runs() -> None:
    """Past runs: each question's turns, cells and sub-calls (JSONL traces in runs/).

    ID is a run id, a unique prefix of one, or `last`.
    """


# -- list -----------------------------------------------------------------------------------------


def _runs_table(summaries: list[RunSummary]) -> Table:
    table = Table(box=None, pad_edge=False)
    for column in ("id", "time", "question", "answer", "turns", "sub-calls", "seconds"):
        justify = "right" if column in ("turns", "sub-calls", "seconds") else "left"
        table.add_column(column, justify=justify, no_wrap=column in ("id", "time"))
    for s in summaries:
        if s.answer is not None:
            answer = Text(head(s.answer, 40))
        else:
            answer = Text("(no answer)" if s.status == "no_answer" else f"({s.status})", "dim")
        table.add_row(
            s.run_id,
            time.strftime("%Y-%m-%d %H:%M", time.localtime(s.started)),
            Text(head(s.question, 40)),
            answer,
            str(s.turns),
            str(s.sub_calls),
            secs(s.seconds),
        )
    return table


@runs.command("list")
@click.option("-n", "--limit", type=click.IntRange(1), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON array of runs.")
@click.pass_context
def runs_list(ctx: click.Context, limit: int, as_json: bool) -> None:
    """The latest runs, newest first."""
    summaries = list_runs(settings_for(ctx).runs_dir)[:limit]
    if as_json:
        click.echo(json.dumps([s.to_dict() for s in summaries], ensure_ascii=False))
        return
    if not summaries:
        err.print("No runs yet; `rlm-local ask` records each run.")
        return
    out.print(_runs_table(summaries))


# -- show -----------------------------------------------------------------------------------------


def _turn_label(turn: Turn) -> Text:
    facts = ["cached" if turn.cached else f"model {secs(turn.seconds)} s"] if turn.number else []
    if turn.prompt_tokens is not None:
        facts.append(f"{turn.prompt_tokens}→{turn.completion_tokens or 0} tokens")
    if turn.compacted:
        facts.append("conversation compacted")
    if turn.repeated_code is not None:
        facts.append("resampled a repeated cell")
    depth = f" (depth {turn.depth})" if turn.depth else ""
    return Text.assemble(
        (f"{turn.title}{depth}", "bold cyan"), (" · " + " · ".join(facts) if facts else "", "dim")
    )


def _code(code: str) -> Syntax:
    width = max(len(line) for line in code.splitlines() or [""]) + 1
    return Syntax(
        code,
        "python",
        theme="ansi_dark",
        background_color="default",
        word_wrap=True,
        code_width=width,
    )


def _cell_node(node: Tree, turn: Turn, limit: int | None) -> Tree:
    """The cell's status, output, error and FINAL under the turn; sub-calls go under it."""
    cell = turn.cell
    if cell is None:
        return node.add(Text("cell did not finish (the run was interrupted)", "yellow"))
    status = Text(f"cell {secs(cell.seconds)} s", "green" if not cell.error else "red")
    if cell.worker_restarted:
        status.append(" · worker restarted", "yellow")
    holder = node.add(status)
    if cell.output.strip():
        holder.add(Text(cut(cell.output, limit), "dim"))
    if cell.error:
        holder.add(Text.assemble(("error: ", "red"), cut(cell.error, limit)))
    if cell.final is not None:
        holder.add(Text.assemble(("FINAL: ", "bold green"), cut(cell.final, limit)))
    return holder


def _sub_call_line(call: SubCall) -> Text:
    timing = "cached" if call.cached else f"{secs(call.seconds)} s"
    reply = call.error if call.error else call.answer
    return Text.assemble(
        (f"↳ sub-call {call.index}", "magenta"),
        (f" ({call.prompt_chars:,} chars, {timing}): ", "dim"),
        head(reply, 120),
    )


def _read_line(read: Read, limit: int | None) -> Text:
    timing = "cached" if read.cached else f"{secs(read.seconds)} s"
    return Text.assemble(
        (read.verdict, "bold green" if read.accepted else "dim"),
        (f" ({timing}): ", "dim"),
        cut(read.text, limit),
    )


def _turn_node(parent: Tree, turn: Turn, limit: int | None) -> None:
    node = parent.add(_turn_label(turn))
    if turn.code is not None:
        node.add(_code(cut(turn.code, limit) or "(empty)"))
    elif turn.text is not None:
        node.add(Text(cut(turn.text, limit)))
    work = turn.work
    if work is None:
        if turn.code is not None:
            node.add(Text("did not run (empty, or a repeat)", "dim"))
        return
    holder = _cell_node(node, turn, limit)
    for call in work.sub_calls:
        holder.add(_sub_call_line(call))
    if turn.read is not None:
        holder.add(_read_line(turn.read, limit))
    for child in work.children:
        branch = holder.add(
            Text(
                f"rlm_query run at depth {child.depth} · {count(len(child.turns), 'turn')}", "blue"
            )
        )
        for nested in child.turns:
            _turn_node(branch, nested, limit)


def _run_root(run: RunRecord) -> Tree:
    """The tree's top line: the question, then mode, status, counts, time and start."""
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run.started or 0))
    s = run.stats
    facts = [
        run.mode or "?",
        run.status,
        count(s.get("turns"), "turn"),
        count(s.get("sub_calls"), "sub-call"),
        count(s.get("cache_hits"), "cache hit"),
        f"{secs(run.seconds)} s",
        started,
    ]
    return Tree(
        Text.assemble((safe(run.question), "bold"), ("  " + " · ".join(facts), "dim")),
        guide_style="dim",
    )


def _run_ending(tree: Tree, run: RunRecord, limit: int | None) -> None:
    """After the turns: the plays' answers, fallbacks and re-reads, the answer, the time."""
    if run.votes:
        played = " · ".join("no answer" if a is None else head(a, 60) for a in run.votes)
        tree.add(Text(f"plays' answers: {played}", "dim"))
    if run.fell_back:
        tree.add(Text("the code turns found no answer: the reader's copied answer stands", "dim"))
    for said, read in run.rereads:
        copied = head(read, 60) if read is not None else "nothing copied"
        tree.add(
            Text(
                f"{head(said, 60)} said again after it was sent back; the printed output "
                f"read afresh: {copied}",
                "dim",
            )
        )
    if run.answer is not None:
        tree.add(Text.assemble(("answer: ", "bold green"), cut(run.answer, limit)))
        _evidence_node(tree, run, limit)
    else:
        ending = {"no_answer": "no answer", "cancelled": "cancelled"}.get(run.status, "unfinished")
        tree.add(Text(ending, "bold red"))
    if run.timing is not None:  # older traces have no split
        spent = tree.add(Text("time: " + describe_timing(run.timing), "dim"))
        for role, timing in run.timing_by_model.items():
            spent.add(Text(f"{safe(role)}: {describe_timing(timing, model=True)}", "dim"))


def _evidence_node(tree: Tree, run: RunRecord, limit: int | None) -> None:
    """The input's lines the answer rests on, each with the turn whose output held it."""
    if not run.evidence:
        tree.add(Text("evidence: no passage of the input was linked to the answer", "dim"))
        return
    node = tree.add(Text("evidence", "bold"))
    for item in run.evidence:
        seen = f" · {evidence_turn(item)}" if evidence_turn(item) else ""
        why = EVIDENCE_WHY.get(str(item.get("why")), "")
        place = node.add(Text(f"{safe(evidence_where(item))} · {why}{seen}", "cyan"))
        place.add(Text(cut(item["text"], limit)))


@runs.command("show")
@click.argument("run_id")
@click.option("--full", is_flag=True, help="Do not cut long code, outputs and answers.")
@click.pass_context
def runs_show(ctx: click.Context, run_id: str, full: bool) -> None:
    """The tree of one run: turns -> cells -> sub-calls (and nested rlm_query runs)."""
    run = load_run(find_run(settings_for(ctx).runs_dir, run_id))
    limit = None if full else SHOWN_CHARS
    tree = _run_root(run)
    if run.context:
        tree.add(Text(head(run.context, 160), "dim"))
    for turn in run.turns:
        _turn_node(tree, turn, limit)
    _run_ending(tree, run, limit)
    out.print(tree)
    err.print(f"[dim]trace {escape(str(run.path))} · `rlm-local runs html {run.run_id}`[/dim]")


# -- html -----------------------------------------------------------------------------------------


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

    trace = find_run(settings_for(ctx).runs_dir, run_id)
    click.echo(str(write_report(trace, output, open_all=expand)))
