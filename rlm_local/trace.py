"""One JSONL file per run: every turn, cell and sub-call, flushed as it happens.

A run that is killed midway still leaves everything up to its last event on disk. The readers
below accept such torn traces and traces of older versions: every field is optional, so `runs`
commands can always show what was recorded.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from rlm_local.errors import RlmLocalError
from rlm_local.evidence_view import read_evidence

TAIL_BYTES = 256 * 1024  # where `summarize` looks for the run_end line before reading it all
# run_end's "timing" (and each model's in "timing_by_model"): the fields of engine.timing.RunTiming
TIMING_KEYS = (
    "load_s",
    "prompt_eval_s",
    "prompt_tokens",
    "restored_tokens",
    "generation_s",
    "sandbox_s",
    "sub_calls_s",
)
# What a turn, read or sub_call event records of its model call (engine.timing.CallSplit)
CALL_TIMING_KEYS = (
    "load_s",
    "prompt_eval_s",
    "generation_s",
    "evaluated_tokens",
    "restored_tokens",
)


class RunNotFoundError(RlmLocalError):
    """A run id that names no trace, or names several."""


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]


class TraceWriter:
    """Appends events to runs/<id>.jsonl; used as a listener of the engine's events."""

    def __init__(self, runs_dir: Path, run_id: str) -> None:
        runs_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path = runs_dir / f"{run_id}.jsonl"
        self._fh: TextIO | None = self.path.open("a", encoding="utf-8")

    def __call__(self, event: dict[str, Any]) -> None:
        if self._fh is None:
            return
        record = {"t": round(time.time(), 3), **event}
        self._fh.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
        self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


# -- reading ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    path: Path
    started: float
    question: str
    answer: str | None
    turns: int
    sub_calls: int
    seconds: float | None
    status: str = "unfinished"  # answered, no_answer, unfinished (no run_end: killed), cancelled
    mode: str | None = None
    cache_hits: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.run_id,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.started)),
            "question": self.question,
            "answer": self.answer,
            "status": self.status,
            "mode": self.mode,
            "turns": self.turns,
            "sub_calls": self.sub_calls,
            "cache_hits": self.cache_hits,
            "seconds": self.seconds,
            "path": str(self.path),
        }


def _parse_line(line: str) -> dict[str, Any] | None:
    try:
        event = json.loads(line)
    except ValueError:
        return None  # a run killed mid-write leaves at most one torn last line
    return event if isinstance(event, dict) else None


def read_trace(path: Path) -> list[dict[str, Any]]:
    events = []
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if (event := _parse_line(line)) is not None:
                events.append(event)
    return events


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _first_and_end(path: Path) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The run_start line and, when the run finished, the run_end line, without reading the
    middle: a trace holds every sub-call's prompt, so `runs list` must not read megabytes each."""
    with path.open("rb") as fh:
        first = _parse_line(fh.readline().decode("utf-8", "replace")) or {}
        size = fh.seek(0, os.SEEK_END)
        fh.seek(max(0, size - TAIL_BYTES))
        tail = fh.read().decode("utf-8", "replace").splitlines()
    for line in reversed(tail[-3:]):
        event = _parse_line(line)
        if event is not None and event.get("type") == "run_end":
            return first, event
    return first, None


def summarize(path: Path) -> RunSummary:
    start, end = _first_and_end(path)
    if start.get("type") != "run_start" or end is None:  # unfinished or unusual: read it all
        events = read_trace(path)
        start = next((e for e in events if e.get("type") == "run_start"), {})
        end = next((e for e in events if e.get("type") == "run_end"), None)
        turns = sum(1 for e in events if e.get("type") == "turn")
        sub_calls = sum(1 for e in events if e.get("type") == "sub_call")
        cancelled = any(e.get("type") == "cancelled" for e in events)
    else:
        turns, sub_calls = _int(end.get("turns")), _int(end.get("sub_calls"))
        cancelled = False
    unfinished = "cancelled" if cancelled else "unfinished"
    end = end or {}
    return RunSummary(
        run_id=path.stem,
        path=path,
        started=_float(start.get("t")) or os.path.getmtime(path),
        question=str(start.get("question", "")),
        answer=_str(end.get("answer")),
        turns=turns,
        sub_calls=sub_calls,
        seconds=_float(end.get("seconds")),
        status=str(end.get("status") or (unfinished if not end else "answered")),
        mode=_str(end.get("mode") or start.get("mode")),
        cache_hits=_int(end["cache_hits"]) if "cache_hits" in end else None,
    )


def list_runs(runs_dir: Path) -> list[RunSummary]:
    """Every readable run, newest first; a trace that cannot be read is left out, not fatal."""
    if not runs_dir.is_dir():
        return []
    found = []
    for path in runs_dir.glob("*.jsonl"):
        try:
            found.append(summarize(path))
        except OSError:
            continue
    return sorted(found, key=lambda s: (s.started, s.run_id), reverse=True)


def find_run(runs_dir: Path, ref: str) -> Path:
    """A run id, a unique prefix of one, or `last` -> its trace file, or one clear error."""
    traces = sorted(runs_dir.glob("*.jsonl")) if runs_dir.is_dir() else []
    if not traces:
        raise RunNotFoundError(f"There are no runs in {runs_dir} yet; ask a question first.")
    if ref == "last":
        readable = list_runs(runs_dir)
        return readable[0].path if readable else traces[-1]
    exact = runs_dir / f"{ref}.jsonl"
    if exact in traces:
        return exact
    matches = [p for p in traces if p.stem.startswith(ref)] if ref else []
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise RunNotFoundError(
            f"'{ref}' matches {len(matches)} runs ({', '.join(p.stem for p in matches[:3])}"
            f"{', …' if len(matches) > 3 else ''}); give more of the id."
        )
    raise RunNotFoundError(f"There is no run '{ref}'; see `rlm-local runs list`.")


# -- a run as a tree ----------------------------------------------------------------------------


@dataclass
class SubCall:
    index: int  # 1-based, in the order the trace recorded them
    depth: int
    prompt: str
    prompt_chars: int
    answer: str | None
    error: str | None
    cached: bool
    seconds: float | None
    prompt_tokens: int | None
    completion_tokens: int | None
    timing: dict[str, float] | None = None  # CALL_TIMING_KEYS; None in older traces


@dataclass
class Cell:
    output: str
    error: str | None
    final: str | None
    seconds: float | None
    worker_restarted: bool
    sub_calls: list[SubCall] = field(default_factory=list)
    children: list[NestedRun] = field(default_factory=list)  # rlm_query runs started by it


@dataclass
class Read:
    """The root model's reading of the first step's output; `accepted`: it was copied from that
    output, so it is the run's answer."""

    text: str
    accepted: bool
    cached: bool
    seconds: float | None
    timing: dict[str, float] | None = None  # CALL_TIMING_KEYS; None in older traces

    @property
    def verdict(self) -> str:
        return read_verdict(self.accepted)


def read_verdict(accepted: bool) -> str:
    taken = "the answer, copied from the output" if accepted else "not copied, so code went on"
    return f"read as text by the root model: {taken}"


@dataclass
class Turn:
    depth: int
    number: int
    code: str | None = None  # None in direct mode, where the model's reply is `text`
    text: str | None = None
    cached: bool = False
    seconds: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    timing: dict[str, float] | None = None  # CALL_TIMING_KEYS; None in older traces
    elapsed: float | None = None  # seconds since the run started, when the reply came
    repeated_code: str | None = None  # a repeated cell that was resampled away
    compacted: bool = False  # the conversation was cut to fit the window before this turn
    cell: Cell | None = None  # None when the code was empty or a repeat, so it did not run
    read: Read | None = None  # the first step's output read as text by the root model
    # Sub-calls and rlm_query runs of this turn's code while it runs, before its cell event
    # (or for good, when the run was killed midway).
    pending: Cell | None = None

    @property
    def title(self) -> str:
        """Turn 0 is the first step, which the engine writes and runs before the first turn."""
        return f"turn {self.number}" if self.number else "first step, run by the engine"

    @property
    def work(self) -> Cell | None:
        """Where this turn's sub-calls and nested runs are: its cell, else the pending one."""
        return self.cell or self.pending

    def ensure_work(self) -> Cell:
        if self.cell is not None:
            return self.cell
        if self.pending is None:
            self.pending = _new_cell()
        return self.pending


@dataclass
class NestedRun:
    """An rlm_query run at depth >= 1: its own turns on a piece of the context."""

    depth: int
    turns: list[Turn] = field(default_factory=list)


@dataclass
class RunRecord:
    """Everything a trace says about one run, nested as it happened."""

    run_id: str
    path: Path
    started: float | None
    question: str
    mode: str | None
    context: str
    options: dict[str, Any]
    answer: str | None
    status: str  # answered, no_answer, unfinished, cancelled
    seconds: float | None
    stats: dict[str, Any]  # the run_end counters: turns, cells, sub_calls, cache_hits, ...
    turns: list[Turn]
    sub_calls: list[SubCall]  # every sub-call, flat, in trace order
    events: int
    timing: dict[str, float] | None = None  # run_end's TIMING_KEYS; None in older traces
    timing_by_model: dict[str, dict[str, float]] = field(default_factory=dict)  # root, sub, ...
    votes: list[str | None] = field(default_factory=list)  # each play's answer, with --plays
    fell_back: bool = False  # the code turns found no answer: the reader's copied one stands
    # A sent-back answer said again, and what a fresh reading of the printed output copied.
    rereads: list[tuple[str, str | None]] = field(default_factory=list)
    evidence: list[dict[str, Any]] = field(default_factory=list)  # run_end's, checked in shape


def _new_cell(event: dict[str, Any] | None = None) -> Cell:
    event = event or {}
    return Cell(
        output=str(event.get("output") or ""),
        error=_str(event.get("error")),
        final=_str(event.get("final")),
        seconds=_float(event.get("seconds")),
        worker_restarted=bool(event.get("worker_restarted")),
    )


def _tokens(event: dict[str, Any], key: str) -> int | None:
    return _int(event[key]) if key in event else None


def _numbers(source: Any, keys: tuple[str, ...]) -> dict[str, float] | None:
    """The numeric `keys` found in `source` (a dict from the trace), or None when it has none:
    a trace older than the timing split, or a field a newer version wrote oddly."""
    if not isinstance(source, Mapping):
        return None
    found = {key: value for key in keys if (value := _float(source.get(key))) is not None}
    return found or None


def _timing_by_model(source: Any) -> dict[str, dict[str, float]]:
    if not isinstance(source, Mapping):
        return {}
    parsed = {str(role): _numbers(value, TIMING_KEYS) for role, value in source.items()}
    return {role: timing for role, timing in parsed.items() if timing is not None}


class _TreeBuilder:
    """Events are flat, each with a depth. Code runs before its cell event is written, so the
    sub-calls and rlm_query turns (depth + 1) that come after a turn event belong to that turn's
    cell; a nested turn numbered 1 starts a new rlm_query run."""

    def __init__(self) -> None:
        self.top: list[Turn] = []
        self.open: dict[int, Turn] = {}  # the latest turn at each depth
        self.nested: dict[int, NestedRun] = {}  # the latest rlm_query run at each depth
        self.repeats: dict[tuple[int, int], str | None] = {}
        self.compactions: set[tuple[int, int]] = set()
        self.sub_calls: list[SubCall] = []

    def _close_below(self, depth: int) -> None:
        for table in (self.open, self.nested):
            for deeper in [d for d in table if d > depth]:
                del table[deeper]

    def turn(self, event: dict[str, Any]) -> None:
        depth, number = _int(event.get("depth")), _int(event.get("turn"), 1)
        key = (depth, number)
        turn = Turn(
            depth=depth,
            number=number,
            code=_str(event.get("code")),
            text=_str(event.get("text")),
            cached=bool(event.get("cached")),
            seconds=_float(event.get("seconds")),
            prompt_tokens=_tokens(event, "prompt_tokens"),
            completion_tokens=_tokens(event, "completion_tokens"),
            timing=_numbers(event, CALL_TIMING_KEYS),
            elapsed=_float(event.get("elapsed")),
            repeated_code=self.repeats.pop(key, None),
            compacted=key in self.compactions,
        )
        self.compactions.discard(key)
        parent = self.open.get(depth - 1) if depth > 0 else None
        if parent is None:  # depth 0, or a nested turn whose parent was not recorded
            self.top.append(turn)
        else:
            current = self.nested.get(depth)
            continues = (
                current is not None and bool(current.turns) and current.turns[-1].number == 0
            )
            if current is None or number == 0 or (number == 1 and not continues):
                current = NestedRun(depth=depth)
                parent.ensure_work().children.append(current)
                self.nested[depth] = current
            current.turns.append(turn)
        self.open[depth] = turn
        self._close_below(depth)

    def cell(self, event: dict[str, Any]) -> None:
        depth = _int(event.get("depth"))
        turn = self.open.get(depth)
        if turn is None:  # a cell without its turn: keep it visible anyway
            turn = Turn(depth=depth, number=_int(event.get("turn"), 1))
            self.top.append(turn)
            self.open[depth] = turn
        cell = _new_cell(event)
        if turn.pending is not None:
            cell.sub_calls, cell.children = turn.pending.sub_calls, turn.pending.children
            turn.pending = None
        if event.get("code") and turn.code is None:
            turn.code = str(event["code"])
        turn.cell = cell

    def sub_call(self, event: dict[str, Any]) -> None:
        prompt = str(event.get("prompt") or "")
        call = SubCall(
            index=len(self.sub_calls) + 1,
            depth=_int(event.get("depth")),
            prompt=prompt,
            prompt_chars=_int(event.get("prompt_chars"), len(prompt)),
            answer=_str(event.get("answer")),
            error=_str(event.get("error")),
            cached=bool(event.get("cached")),
            seconds=_float(event.get("seconds")),
            prompt_tokens=_tokens(event, "prompt_tokens"),
            completion_tokens=_tokens(event, "completion_tokens"),
            timing=_numbers(event, CALL_TIMING_KEYS),
        )
        self.sub_calls.append(call)
        if (turn := self.open.get(call.depth)) is not None:
            turn.ensure_work().sub_calls.append(call)  # else still listed in RunRecord.sub_calls

    def read(self, event: dict[str, Any]) -> None:
        turn = self.open.get(_int(event.get("depth")))
        if turn is not None:  # the first step, whose output was read
            turn.read = Read(
                text=str(event.get("text") or ""),
                accepted=bool(event.get("accepted")),
                cached=bool(event.get("cached")),
                seconds=_float(event.get("seconds")),
                timing=_numbers(event, CALL_TIMING_KEYS),
            )

    def feed(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        key = (_int(event.get("depth")), _int(event.get("turn"), 1))
        if kind in ("turn", "first_step"):  # the first step is turn 0, written by the engine
            self.turn(event)
        elif kind == "repeat":
            self.repeats[key] = _str(event.get("code"))
        elif kind == "compacted":
            self.compactions.add(key)
        elif kind == "cell":
            self.cell(event)
        elif kind == "sub_call":
            self.sub_call(event)
        elif kind == "read":
            self.read(event)


def _unfinished(events: list[dict[str, Any]]) -> str:
    """A run without run_end: stopped by its caller, or killed."""
    return "cancelled" if any(e.get("type") == "cancelled" for e in events) else "unfinished"


def load_run(path: Path) -> RunRecord:
    """A trace file as a tree: turns -> cells -> sub-calls and nested rlm_query runs."""
    try:
        events = read_trace(path)
    except OSError as exc:
        raise RlmLocalError(f"Cannot read the trace {path}: {exc.strerror}.") from None
    start = next((e for e in events if e.get("type") == "run_start"), {})
    end = next((e for e in events if e.get("type") == "run_end"), None)
    builder = _TreeBuilder()
    for event in events:
        builder.feed(event)
    stats_keys = (
        "turns",
        "cells",
        "cell_errors",
        "sub_calls",
        "cache_hits",
        "cache_misses",
        "prompt_tokens",
        "completion_tokens",
        "worker_restarts",
    )
    if end is not None:
        stats = {k: end[k] for k in stats_keys if k in end}
    else:  # a killed run: count what was recorded
        stats = {
            "turns": sum(1 for e in events if e.get("type") == "turn"),
            "cells": sum(1 for e in events if e.get("type") == "cell"),
            "sub_calls": len(builder.sub_calls),
        }
    options = start.get("options")
    return RunRecord(
        run_id=path.stem,
        path=path,
        started=_float(start.get("t")),
        question=str(start.get("question", "")),
        mode=_str((end or {}).get("mode") or start.get("mode")),
        context=str(start.get("context", "")),
        options=options if isinstance(options, dict) else {},
        answer=_str((end or {}).get("answer")),
        status=str((end or {}).get("status") or ("answered" if end else _unfinished(events))),
        seconds=_float((end or {}).get("seconds")),
        stats=stats,
        turns=builder.top,
        sub_calls=builder.sub_calls,
        events=len(events),
        timing=_numbers((end or {}).get("timing"), TIMING_KEYS),
        timing_by_model=_timing_by_model((end or {}).get("timing_by_model")),
        votes=_votes(events),
        fell_back=any(e.get("type") == "fallback" and not e.get("depth") for e in events),
        rereads=[
            (str(e.get("said", "")), _str(e.get("answer")))
            for e in events
            if e.get("type") == "reread" and not e.get("depth")
        ],
        evidence=read_evidence((end or {}).get("evidence")),
    )


def _votes(events: list[dict[str, Any]]) -> list[str | None]:
    """The top-level vote of the plays (`--plays`), if there was one."""
    vote = next((e for e in events if e.get("type") == "vote" and not e.get("depth")), {})
    answers = vote.get("answers")
    return [_str(a) for a in answers] if isinstance(answers, list) else []


# -- where the time went ------------------------------------------------------------------------


def _sec(timing: Mapping[str, float], key: str) -> str:
    return f"{timing[key]:.1f} s" if key in timing else "? s"


def _n(timing: Mapping[str, float], key: str) -> str:
    return f"{timing[key]:,.0f}" if key in timing else "?"


def describe_timing(timing: Mapping[str, float], model: bool = False) -> str:
    """run_end's timing as one line (`model`: one model's, which has no sandbox time, and whose
    sub-call time is shown only when it made some)."""
    parts = [
        f"load {_sec(timing, 'load_s')}",
        f"prompt {_sec(timing, 'prompt_eval_s')} ({_n(timing, 'prompt_tokens')} evaluated, "
        f"{_n(timing, 'restored_tokens')} restored)",
        f"generation {_sec(timing, 'generation_s')}",
    ]
    if not model:
        parts.append(f"sandbox {_sec(timing, 'sandbox_s')}")
    if not model or timing.get("sub_calls_s"):
        parts.append(f"sub-calls {_sec(timing, 'sub_calls_s')}")
    return " · ".join(parts)
