"""A run's trace as one self-contained HTML page: readable offline, mailable, safe to open.

Everything shown comes from the trace, which holds model output and document text, so every
string is escaped and the page forbids scripts and remote loads (Content-Security-Policy). Folds
are <details> elements: no JavaScript is needed, and a link to `#turn-N` or `#sub-call-N` opens the
fold it points into.
"""

from __future__ import annotations

import html
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from rlm_local.errors import RlmLocalError
from rlm_local.evidence_view import EVIDENCE_WHY, evidence_turn, evidence_where
from rlm_local.trace import Cell, NestedRun, RunRecord, SubCall, Turn, describe_timing, load_run

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
SUMMARY_CHARS = 100  # of an answer, in a fold's one-line summary

CSS = """
:root { --fg: #1d2329; --muted: #5f6b76; --line: #d8dee4; --bg: #ffffff; --soft: #f5f7f9;
  --ok: #1a7f37; --bad: #b42318; --warn: #9a6700; --accent: #0b5cad; }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 1100px; padding: 24px; color: var(--fg); background: var(--bg);
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 28px 0 8px; }
h3 { font-size: 13px; margin: 12px 0 4px; color: var(--muted); text-transform: uppercase;
  letter-spacing: .04em; }
pre { margin: 0; padding: 10px 12px; background: var(--soft); border: 1px solid var(--line);
  border-radius: 6px; white-space: pre-wrap; overflow-wrap: anywhere;
  font: 13px/1.45 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.meta { color: var(--muted); margin: 0 0 16px; }
.answer pre { font-size: 15px; background: #eef6ee; border-color: #b7dbbd; }
.answer.none pre { background: #fdf0ee; border-color: #f0c0b8; }
table.stats { border-collapse: collapse; }
table.stats th, table.stats td { text-align: left; padding: 2px 16px 2px 0; font-weight: normal; }
table.stats th { color: var(--muted); }
details { border: 1px solid var(--line); border-radius: 6px; margin: 8px 0; background: var(--bg); }
details > summary { cursor: pointer; padding: 6px 10px; list-style-position: inside; }
details[open] > summary { border-bottom: 1px solid var(--line); }
details > .body { padding: 4px 12px 12px; }
details.turn > summary { font-weight: 600; }
details.nested { border-left: 4px solid var(--accent); }
details.sub-call > summary { font-size: 14px; }
.badge { display: inline-block; padding: 0 6px; margin-left: 4px; border-radius: 10px;
  font-size: 12px; font-weight: 600; background: var(--soft); border: 1px solid var(--line);
  color: var(--muted); }
.badge.cached { color: var(--ok); border-color: #9fd3ab; background: #eef6ee; }
.badge.error { color: var(--bad); border-color: #f0c0b8; background: #fdf0ee; }
.badge.final { color: var(--accent); border-color: #a9c8e8; background: #eef4fb; }
.badge.warn { color: var(--warn); border-color: #e8d39a; background: #fdf8e6; }
.head { color: var(--muted); font-weight: normal; }
pre.error { background: #fdf0ee; border-color: #f0c0b8; }
.empty { color: var(--muted); font-style: italic; }
nav a { margin-right: 8px; color: var(--accent); }
footer { margin-top: 32px; color: var(--muted); font-size: 13px; }
"""


def _e(text: object) -> str:
    """Escape for element content and quoted attributes alike."""
    return html.escape(str(text), quote=True)


def _head(text: str | None, limit: int = SUMMARY_CHARS) -> str:
    """One line of a long text, for a fold's summary."""
    line = " ".join((text or "").split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _seconds(value: float | None) -> str:
    return "?" if value is None else f"{value:.2f} s" if value < 10 else f"{value:.1f} s"


def _badge(text: str, kind: str = "") -> str:
    return f'<span class="badge {kind}">{_e(text)}</span>'


def _pre(text: str | None, css: str = "") -> str:
    if not text:
        return '<p class="empty">(nothing)</p>'
    return f'<pre class="{css}">{_e(text)}</pre>'


def _highlight(code: str) -> str:
    """Python code as highlighted HTML; Pygments escapes the code itself."""
    try:
        from pygments import highlight
        from pygments.formatters import HtmlFormatter
        from pygments.lexers import PythonLexer
    except ImportError:  # pygments comes with rich; a plain block if it is ever missing
        return f'<div class="code">{_pre(code)}</div>'
    return highlight(code, PythonLexer(), HtmlFormatter(cssclass="code", wrapcode=True))


def _pygments_css() -> str:
    try:
        from pygments.formatters import HtmlFormatter
    except ImportError:
        return ""
    return HtmlFormatter(cssclass="code").get_style_defs(".code")


@dataclass
class _Page:
    """Renders one run; `ids` keeps element ids unique even in odd traces."""

    run: RunRecord
    open_all: bool
    ids: set[str] = field(default_factory=set)

    def _id(self, wanted: str) -> str:
        candidate, n = wanted, 1
        while candidate in self.ids:
            n += 1
            candidate = f"{wanted}-{n}"
        self.ids.add(candidate)
        return candidate

    def _open(self, first: bool = False) -> str:
        return " open" if self.open_all or first else ""

    def sub_call(self, call: SubCall) -> str:
        badges = _badge("cached", "cached") if call.cached else ""
        if call.error:
            badges += _badge(call.error, "error")
        tokens = ""
        if call.prompt_tokens is not None:
            tokens = f" · {call.prompt_tokens} → {call.completion_tokens or 0} tokens"
        summary = (
            f"sub-call {call.index} · {call.prompt_chars:,} "
            f"char{'' if call.prompt_chars == 1 else 's'}"
            f"{'' if call.cached else ' · ' + _e(_seconds(call.seconds))}{_e(tokens)}{badges} "
            f'<span class="head">{_e(_head(call.answer or call.error))}</span>'
        )
        prompt = call.prompt
        cut = call.prompt_chars - len(prompt)
        note = f'<p class="empty">(the trace keeps the first {len(prompt):,} characters)</p>'
        return (
            f'<details class="sub-call"{self._open()}><summary>{summary}</summary>'
            f'<div class="body" id="{self._id(f"sub-call-{call.index}")}">'
            f"<h3>Prompt</h3>{_pre(prompt)}{note if cut > 0 else ''}"
            f"<h3>Answer</h3>{_pre(call.answer if call.error is None else call.error)}"
            "</div></details>"
        )

    def cell(self, cell: Cell, id_base: str, ran: bool) -> str:
        parts = []
        if ran:
            parts.append("<h3>Output</h3>" + _pre(cell.output))
            if cell.error:
                parts.append("<h3>Error</h3>" + _pre(cell.error, "error"))
            if cell.final is not None:
                parts.append("<h3>FINAL</h3>" + _pre(cell.final))
        if cell.sub_calls:
            parts.append(f"<h3>Sub-calls ({len(cell.sub_calls)})</h3>")
            parts.extend(self.sub_call(c) for c in cell.sub_calls)
        for n, child in enumerate(cell.children, 1):
            parts.append(self.nested(child, f"{id_base}-{n}"))
        return "".join(parts)

    def nested(self, child: NestedRun, id_base: str) -> str:
        last = child.turns[-1] if child.turns else None
        final = last.cell.final if last and last.cell else None
        summary = f"rlm_query run at depth {child.depth} · {len(child.turns)} turns" + (
            f' <span class="head">→ {_e(_head(final))}</span>' if final is not None else ""
        )
        body = "".join(self.turn(t, f"{id_base}-{t.number}") for t in child.turns)
        return (
            f'<details class="nested"{self._open()}><summary>{summary}</summary>'
            f'<div class="body">{body}</div></details>'
        )

    def turn(self, turn: Turn, id_base: str, first: bool = False) -> str:
        badges = []
        if turn.cached:
            badges.append(_badge("cached", "cached"))
        if turn.compacted:
            badges.append(_badge("conversation compacted", "warn"))
        if turn.repeated_code is not None:
            badges.append(_badge("resampled a repeat", "warn"))
        work = turn.work
        if turn.cell is not None:
            if turn.cell.error:
                badges.append(_badge("error", "error"))
            if turn.cell.final is not None:
                badges.append(_badge("FINAL", "final"))
            if turn.cell.worker_restarted:
                badges.append(_badge("worker restarted", "warn"))
        if turn.read is not None and turn.read.accepted:
            badges.append(_badge("answer read", "final"))
        facts = [] if turn.cached else [f"model {_seconds(turn.seconds)}"]
        if turn.prompt_tokens is not None:
            facts.append(f"{turn.prompt_tokens} → {turn.completion_tokens or 0} tokens")
        if turn.cell is not None:
            facts.append(f"cell {_seconds(turn.cell.seconds)}")
        if work is not None and work.sub_calls:
            facts.append(f"{len(work.sub_calls)} sub-calls")
        if turn.elapsed is not None:
            facts.append(f"at {_seconds(turn.elapsed)}")
        depth = f" (depth {turn.depth})" if turn.depth else ""
        head = f'<span class="head">· {_e(" · ".join(facts))}</span>' if facts else ""
        summary = f"{turn.title.capitalize()}{depth} {head}{''.join(badges)}"
        parts = []
        if turn.repeated_code is not None:
            parts.append(
                "<h3>Repeated code, resampled</h3>" + _pre(turn.repeated_code or "(empty)")
            )
        if turn.code is not None:
            parts.append("<h3>Code</h3>" + (_highlight(turn.code) if turn.code else _pre("")))
        elif turn.text is not None:
            parts.append("<h3>Reply (the model read the input directly)</h3>" + _pre(turn.text))
        if turn.cell is None and turn.code is not None:
            parts.append('<p class="empty">This code did not run (empty, or a repeat).</p>')
        if work is not None:
            parts.append(self.cell(work, id_base, ran=turn.cell is not None))
        if turn.read is not None:
            parts.append(f"<h3>{_e(turn.read.verdict.capitalize())}</h3>" + _pre(turn.read.text))
        return (
            f'<details class="turn"{self._open(first)}><summary>{summary}</summary>'
            f'<div class="body" id="{self._id(id_base)}">{"".join(parts)}</div></details>'
        )

    def evidence(self) -> str:
        """The input's lines the answer rests on, each linked to the turn whose output held it."""
        if not self.run.evidence:
            return '<p class="empty">No passage of the input was linked to the answer.</p>'
        items = []
        for item in self.run.evidence:
            turn = item.get("turn")
            link = (
                f' · <a href="#turn-{turn}">{evidence_turn(item)}</a>'
                if isinstance(turn, int) and not item.get("depth")
                else ""
            )
            why = EVIDENCE_WHY.get(str(item.get("why")), "")
            head = f"{_e(evidence_where(item))} · {_e(why)}{link}"
            items.append(f'<div class="evidence"><p>{head}</p>{_pre(item["text"])}</div>')
        return "<h3>Evidence</h3>" + "".join(items)

    def stats(self) -> str:
        run, s = self.run, self.run.stats
        rows = [
            ("mode", run.mode or "?"),
            ("status", run.status),
            ("seconds", _seconds(run.seconds) if run.seconds is not None else "unfinished"),
            ("turns", s.get("turns", "?")),
            ("cells", s.get("cells", "?")),
            ("cell errors", s.get("cell_errors", "?")),
            ("sub-calls", s.get("sub_calls", "?")),
            ("cache hits / misses", f"{s.get('cache_hits', '?')} / {s.get('cache_misses', '?')}"),
            (
                "tokens evaluated",
                f"{s.get('prompt_tokens', '?')} in, {s.get('completion_tokens', '?')} out",
            ),
            ("worker restarts", s.get("worker_restarts", "?")),
        ]
        if run.timing is not None:  # older traces have no split
            rows.append(("time", describe_timing(run.timing)))
            rows += [
                (f"time of {role}", describe_timing(timing, model=True))
                for role, timing in run.timing_by_model.items()
            ]
        body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
        return f'<table class="stats">{body}</table>'

    def render(self) -> str:
        run = self.run
        started = (
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run.started)) if run.started else "?"
        )
        answered = run.answer is not None
        answer_text = (
            run.answer
            if answered
            else {
                "no_answer": "No answer within the budget.",
                "unfinished": "The run did not finish (it was interrupted or is still running).",
            }.get(run.status, "No answer.")
        )
        nav = " ".join(
            f'<a href="#turn-{t.number}">{t.number}</a>' for t in run.turns if t.depth == 0
        )
        turns = "".join(
            self.turn(t, f"turn-{t.number}", first=i == 0) for i, t in enumerate(run.turns)
        )
        attached = {c.index for c in _all_sub_calls(run.turns)}
        loose = [c for c in run.sub_calls if c.index not in attached]
        loose_html = (
            "<h2>Sub-calls outside any turn</h2>" + "".join(self.sub_call(c) for c in loose)
            if loose
            else ""
        )
        options = json.dumps(run.options, indent=2, ensure_ascii=False) if run.options else ""
        return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{_e(_head(run.question, 80) or run.run_id)} · rlm-local run</title>
<style>{CSS}{_pygments_css()}</style>
</head>
<body>
<header>
<h1 class="question">{_e(run.question) or '<span class="empty">(no question recorded)</span>'}</h1>
<p class="meta">run {_e(run.run_id)} · {_e(started)}</p>
</header>
<section class="answer{"" if answered else " none"}">
<h2>Answer</h2>
<pre id="answer">{_e(answer_text)}</pre>
{self.evidence()}
</section>
<section>
<h2>Run</h2>
{self.stats()}
<details class="input"{self._open()}><summary>Input</summary>
<div class="body">{_pre(run.context)}</div></details>
<details class="options"{self._open()}><summary>Options</summary>
<div class="body">{_pre(options)}</div></details>
</section>
<section class="turns">
<h2>Turns</h2>
<nav>{nav}</nav>
{turns or '<p class="empty">No turn was recorded.</p>'}
{loose_html}
</section>
<footer>rlm-local · trace {_e(run.path.name)} · {run.events} events</footer>
</body>
</html>
"""


def _all_sub_calls(turns: list[Turn]) -> list[SubCall]:
    found: list[SubCall] = []
    for turn in turns:
        if (work := turn.work) is not None:
            found.extend(work.sub_calls)
            for child in work.children:
                found.extend(_all_sub_calls(child.turns))
    return found


def render_html(run: RunRecord, *, open_all: bool = False) -> str:
    """The page for one run; the first turn is open, or every fold with `open_all`."""
    return _Page(run, open_all).render()


def write_report(trace: Path, output: Path | None = None, *, open_all: bool = False) -> Path:
    """Render a trace to `output` (default: the trace's path with .html) and return the path."""
    target = output or trace.with_suffix(".html")
    page = render_html(load_run(trace), open_all=open_all)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # errors="replace": a lone surrogate from a model's output must not lose the whole page.
        with target.open("w", encoding="utf-8", errors="replace") as fh:
            fh.write(page)
    except OSError as exc:
        raise RlmLocalError(
            f"Cannot write {target}: {exc.strerror}; choose another file with -o."
        ) from None
    return target
