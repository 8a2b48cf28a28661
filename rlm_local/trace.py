"""One JSONL file per run: every turn, cell and sub-call, flushed as it happens.

A run that is killed midway still leaves everything up to its last event on disk.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO


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


def read_trace(path: Path) -> list[dict[str, Any]]:
    events = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            try:
                events.append(json.loads(line))
            except ValueError:
                continue  # a run killed mid-write leaves at most one torn last line
    return events


def summarize(path: Path) -> RunSummary:
    events = read_trace(path)
    start = next((e for e in events if e.get("type") == "run_start"), {})
    end = next((e for e in events if e.get("type") == "run_end"), {})
    return RunSummary(
        run_id=path.stem,
        path=path,
        started=float(start.get("t", os.path.getmtime(path))),
        question=str(start.get("question", "")),
        answer=end.get("answer"),
        turns=sum(1 for e in events if e.get("type") == "turn"),
        sub_calls=sum(1 for e in events if e.get("type") == "sub_call"),
        seconds=end.get("seconds"),
    )


def list_runs(runs_dir: Path) -> list[RunSummary]:
    if not runs_dir.is_dir():
        return []
    return sorted(
        (summarize(p) for p in runs_dir.glob("*.jsonl")), key=lambda s: s.started, reverse=True
    )
