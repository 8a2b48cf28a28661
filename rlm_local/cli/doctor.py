"""`rlm-local doctor`: what stops `ask`, and how to fix it, as lines on stdout or one JSON."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click
from rich.text import Text

from rlm_local.cli.common import byte_progress, err, out, safe

if TYPE_CHECKING:
    from rlm_local.doctor import DoctorReport, Finding

_MARKS = {"ok": ("✓", "green"), "info": ("·", "dim"), "warn": ("!", "yellow"), "fail": ("✗", "red")}


@click.command()
@click.option("--full", is_flag=True, help="Re-hash every present model in full (slow).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object with every finding.")
@click.pass_context
def doctor(ctx: click.Context, full: bool, as_json: bool) -> None:
    """Check llama.cpp, the CPU, models, cache, runs, network settings and disk space.

    Exits 1 when something stops `rlm-local ask` (a missing or corrupt root or sub model).
    """
    from rlm_local.doctor import diagnose

    with byte_progress(full and err.is_terminal and not as_json) as progress:
        report = diagnose(config_file=ctx.obj.get("config_file"), full=full, progress=progress)
    if as_json:
        click.echo(json.dumps(report.to_dict(), ensure_ascii=False))
    else:
        _print_report(report)
    if not report.ready:
        ctx.exit(1)


def _print_report(report: DoctorReport) -> None:
    area_w = max(len(f.area) for f in report.findings)
    subject_w = max(len(safe(f.subject)) for f in report.findings)
    for f in report.findings:
        mark, style = _MARKS[f.level]
        out.print(
            Text.assemble(
                (mark, style),
                f" {f.area:<{area_w}}  {safe(f.subject):<{subject_w}}  {safe(f.detail)}",
            )
        )
    problems = report.problems
    if problems:
        out.print(f"\n[bold]What to do[/bold] ({len(problems)}):")
        for f in problems:
            out.print(_problem_line(f))
    if report.ready:
        out.print("\n[green]ask is ready.[/green]")
    else:
        out.print(
            f"\n[red]ask cannot run until the {len(report.blocking)} problem(s) marked ✗ "
            "are fixed.[/red]"
        )


def _problem_line(f: Finding) -> Text:
    return Text.assemble(
        "  ",
        ("✗ " if f.level == "fail" else "! ", "red" if f.level == "fail" else "yellow"),
        (safe(f.subject), "bold"),
        f": {safe(f.detail)}. ",
        safe(f.fix or ""),
    )
