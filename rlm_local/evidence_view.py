"""Evidence items as people read them: from `ask --json`, the Python API's result or a trace.

Items are plain dicts here (a trace may be old or hand-edited), so every reader checks their shape.
"""

from __future__ import annotations

from typing import Any


def read_evidence(source: Any) -> list[dict[str, Any]]:
    """run_end's evidence items that have the fields every reader relies on (a hand-edited or
    older trace may have none, or odd ones)."""
    if not isinstance(source, list):
        return []
    return [
        item
        for item in source
        if isinstance(item, dict)
        and isinstance(item.get("path"), str)
        and isinstance(item.get("text"), str)
        and all(isinstance(item.get(k), int) for k in ("line_start", "line_end"))
    ]


def evidence_where(item: dict[str, Any]) -> str:
    """`path:12-14 (page 3)`: where an evidence item stands in the input."""
    start, end = item["line_start"], item["line_end"]
    lines = str(start) if start == end else f"{start}-{end}"
    page = f" (page {item['page']})" if isinstance(item.get("page"), int) else ""
    return f"{item['path']}:{lines}{page}"


EVIDENCE_WHY = {
    "answer_words": "holds the answer's words",
    "sub_call_answer": "read by a sub-call whose answer went into the answer",
    "computed": "lines the code that computed the answer printed or matched",
}


def describe_evidence(items: list[dict[str, Any]], max_lines: int = 8, max_chars: int = 300) -> str:
    """The evidence as text for a terminal: each item's place, why, turn and first lines, each
    cut to `max_chars` (--json keeps them whole)."""
    if not items:
        return "Evidence: no passage of the input was linked to the answer."
    blocks = []
    for item in items:
        why = EVIDENCE_WHY.get(str(item.get("why")), str(item.get("why", "")))
        lines = item["text"].splitlines() or [""]
        shown = [line if len(line) <= max_chars else line[:max_chars] + " …" for line in lines]
        shown = shown[:max_lines] + (
            [f"… {len(lines) - max_lines} more lines"] if len(lines) > max_lines else []
        )
        body = "\n".join(f"    {line}" for line in shown)
        seen = f", {evidence_turn(item)}" if evidence_turn(item) else ""
        blocks.append(f"  {evidence_where(item)} ({why}{seen})\n{body}")
    return "Evidence:\n" + "\n".join(blocks)


def evidence_turn(item: dict[str, Any]) -> str:
    """The turn whose output held the lines: 0 is the first step, which the engine runs."""
    turn = item.get("turn")
    if not isinstance(turn, int):
        return ""
    return "first step" if turn == 0 else f"turn {turn}"
