"""The `real` suite: questions about real third-party inputs, read from a devsuite tasks file.

The other suites are generated (tasks.py); this one is read from a `tasks.jsonl` in the format of
../shared/devsuite (its README). Contexts are loaded by the CLI's own loader, so a method sees what
`rlm-local ask QUESTION PATH` would, and answers are scored by the `score.py` beside the tasks
file, so a row's score is the one `python3 score.py` gives.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from benchmarks import timing
from benchmarks.machine import machine_name
from benchmarks.methods import METHODS, MethodResult
from rlm_local.engine import load_inputs
from rlm_local.errors import InputError

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TASKS = REPO_ROOT.parent / "shared" / "devsuite" / "tasks.jsonl"
REQUIRED = ("id", "family", "question", "answer", "scorer", "context_path", "context_kind")
ANSWER_CHARS = 80  # of each answer in the per-task list


class SuiteError(Exception):
    """A tasks file, selection or context the suite cannot use; the message is one sentence."""


@dataclass(frozen=True)
class RealTask:
    id: str
    family: str
    task_type: str
    question: str
    context_path: Path  # absolute
    context_kind: str  # "file" or "dir"
    record: dict[str, Any]  # the task line as read: what the suite's scorer takes


@dataclass
class RealSuite:
    path: Path  # the tasks file, absolute
    digest: str  # of its bytes: rows of an edited tasks file are another group
    tasks: list[RealTask]
    scorer: ModuleType = field(repr=False)

    def score(self, task: RealTask, answer: str | None) -> float:
        """The suite scorer's score; a scorer that fails on a task is the tasks file's fault."""
        try:
            return float(self.scorer.score_task(task.record, answer))
        except Exception as exc:
            raise SuiteError(
                f"score.py cannot score task {task.id} ({type(exc).__name__}: {exc})."
            ) from exc


def evidence_holds(suite: RealSuite, task: RealTask, evidence: list[dict[str, Any]]) -> float:
    """How much of the gold answer the evidence's texts and paths hold, folded as score.py folds:
    a list answer by the share of its items, a number as a whole number, text as a substring."""
    fold = getattr(suite.scorer, "fold", str.lower)
    blob = fold("\n".join(f"{item.get('path', '')}\n{item.get('text', '')}" for item in evidence))
    gold = task.record["answer"]
    golds = gold if isinstance(gold, list) else [gold, *(task.record.get("aliases") or [])]

    def held(value: object) -> bool:
        wanted = fold(str(value))
        if isinstance(value, int | float) and not isinstance(value, bool):
            return re.search(rf"(?<![\d.]){re.escape(wanted)}(?![\d])", blob) is not None
        return bool(wanted) and wanted in blob

    if isinstance(gold, list):
        return sum(map(held, golds)) / len(golds) if golds else 0.0
    return float(any(map(held, golds)))


def replay_evidence(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The evidence the current engine code finds in the kept traces of `rlm` rows (no models):
    per row, its id, score, evidence_holds and evidence. Rows whose trace is gone are left out."""
    from rlm_local.engine.evidence import Recorder, gather
    from rlm_local.trace import read_trace

    suites: dict[str, RealSuite] = {}
    contexts: dict[Path, str | dict[str, str]] = {}
    replayed = []
    for row in rows:
        trace = Path(row.get("trace_path") or "")
        if row.get("method") != "rlm" or not trace.is_file():
            continue
        source = row.get("tasks_file") or str(DEFAULT_TASKS)
        suite = suites[source] = suites.get(source) or load_suite(source)
        task = next((t for t in suite.tasks if t.id == row["id"]), None)
        if task is None:
            continue
        if task.context_path not in contexts:
            contexts[task.context_path] = load_context(task)
        seen = Recorder()
        for event in read_trace(trace):
            seen(event)
        found = gather(row.get("answer"), task.question, contexts[task.context_path],
                       seen.observations, "-")  # fmt: skip
        evidence = [item.to_dict() for item in found]
        held = evidence_holds(suite, task, evidence)
        replayed.append({**row, "evidence_holds": held, "evidence": evidence})
    return replayed


def resolve_tasks_path(given: str | None) -> Path:
    """--tasks FILE (or a folder holding tasks.jsonl); by default the devsuite beside the repo,
    found from this file rather than the working directory."""
    path = Path(given).expanduser() if given else DEFAULT_TASKS
    if path.is_dir():
        path = path / "tasks.jsonl"
    if not path.is_file():
        hint = "" if given else "; give another tasks file with --tasks FILE"
        raise SuiteError(f"The real suite's tasks file {path} does not exist{hint}.")
    return path.resolve()


def load_scorer(folder: Path) -> ModuleType:
    """The suite's own score.py, imported from its folder (never copied), so scores match it."""
    path = folder / "score.py"
    if not path.is_file():
        raise SuiteError(f"No score.py beside the tasks file in {folder}: the suite needs one.")
    spec = importlib.util.spec_from_file_location("devsuite_score", path)
    if spec is None or spec.loader is None:
        raise SuiteError(f"{path} cannot be imported as a Python module.")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise SuiteError(f"{path} failed to import ({type(exc).__name__}: {exc}).") from exc
    if not callable(getattr(module, "score_task", None)):
        raise SuiteError(f"{path} has no score_task(task, prediction) function.")
    return module


def _parse_line(line: str, where: str, folder: Path) -> RealTask:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise SuiteError(f"{where} is not valid JSON ({exc.msg}).") from None
    if not isinstance(record, dict):
        raise SuiteError(f"{where} is not a JSON object.")
    missing = [key for key in REQUIRED if key not in record]
    if missing:
        raise SuiteError(f"{where} lacks {', '.join(missing)}.")
    if record["context_kind"] not in ("file", "dir"):
        raise SuiteError(f"{where}: context_kind must be 'file' or 'dir'.")
    return RealTask(
        id=str(record["id"]),
        family=str(record["family"]),
        task_type=str(record.get("task_type", "untyped")),
        question=str(record["question"]),
        context_path=(folder / str(record["context_path"])).resolve(),
        context_kind=record["context_kind"],
        record=record,
    )


def load_suite(given: str | None = None) -> RealSuite:
    path = resolve_tasks_path(given)
    data = path.read_bytes()
    try:
        lines = data.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise SuiteError(f"{path} is not UTF-8 text.") from None
    tasks = [
        _parse_line(line, f"{path}:{number}", path.parent)
        for number, line in enumerate(lines, 1)
        if line.strip()
    ]
    if not tasks:
        raise SuiteError(f"{path} holds no tasks.")
    seen: set[str] = set()
    for task in tasks:
        if task.id in seen:
            raise SuiteError(f"Task id {task.id} appears twice in {path}.")
        seen.add(task.id)
    scorer = load_scorer(path.parent)
    known = set(getattr(scorer, "SCORERS", ())) or {t.record["scorer"] for t in tasks}
    unknown = sorted({str(t.record["scorer"]) for t in tasks} - known)
    if unknown:
        raise SuiteError(f"{path} names scorers its score.py lacks: {', '.join(unknown)}.")
    suite = RealSuite(path, hashlib.sha256(data).hexdigest()[:12], tasks, scorer)
    for task in tasks:  # a malformed answer fails here, not hours into a run
        gold = task.record["answer"]
        suite.score(task, json.dumps(gold) if isinstance(gold, list) else str(gold))
    return suite


def _names(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def select(tasks: list[RealTask], families: str | None, only: str | None) -> list[RealTask]:
    """--family F,F and --only ID,ID (both: their intersection); unknown names are an error."""
    chosen = tasks
    for wanted, attribute, what in ((families, "family", "family"), (only, "id", "task id")):
        names = _names(wanted)
        if not names:
            continue
        known = {getattr(t, attribute) for t in tasks}
        unknown = [name for name in names if name not in known]
        if unknown:
            raise SuiteError(
                f"Unknown {what} {', '.join(unknown)}; known: {', '.join(sorted(known))}."
            )
        chosen = [t for t in chosen if getattr(t, attribute) in names]
    if not chosen:
        raise SuiteError("No task matches both --family and --only.")
    return chosen


def check_context(task: RealTask) -> None:
    path = task.context_path
    if task.context_kind == "dir" and not path.is_dir():
        raise SuiteError(f"Task {task.id}: the folder {path} does not exist.")
    if task.context_kind == "file" and not path.is_file():
        raise SuiteError(f"Task {task.id}: the file {path} does not exist.")


def load_context(task: RealTask) -> str | dict[str, str]:
    """A file's text, or a folder's files keyed by their path inside it, as the CLI loads them."""
    check_context(task)
    try:
        return load_inputs([str(task.context_path)]).context
    except InputError as exc:
        raise SuiteError(f"Task {task.id}: {exc}") from None


def _size(context: str | dict[str, str]) -> int:
    return len(context) if isinstance(context, str) else sum(map(len, context.values()))


def finished(raw: Path, suite: RealSuite, info: dict[str, Any]) -> set[tuple[str, str]]:
    """(task id, method) already in the results for this commit, machine and tasks file, without
    an error: what --resume skips."""
    if not raw.exists():
        return set()
    where = machine_name(info["machine"])
    return {
        (row["id"], row["method"])
        for row in read_rows(raw)
        if row.get("suite") == "real"
        and row.get("tasks_sha") == suite.digest
        and row.get("commit") == info["commit"]
        and (row.get("engine") or {}) == (info.get("engine") or {})
        and machine_name(row["machine"]) == where
        and not row.get("error")
    }


def run_one(
    rlm: Any, suite: RealSuite, task: RealTask, method: str, context: str | dict[str, str]
) -> dict[str, Any]:
    """One row: the method's measurements and the suite scorer's score; a failure is a row."""
    started = time.monotonic()
    result: MethodResult | None
    try:
        result = METHODS[method](rlm, task.question, context)
        error = None
    except Exception as exc:  # a failed method is a row with its error, not a crash
        result, error = None, f"{type(exc).__name__}: {exc}"
    return {
        "suite": "real",
        "task": task.id,
        "id": task.id,
        "family": task.family,
        "task_type": task.task_type,
        "method": method,
        "question": task.question,
        "expected": task.record["answer"],
        "score": suite.score(task, result.answer) if result else 0.0,
        "evidence_holds": evidence_holds(suite, task, result.evidence) if result else 0.0,
        "error": error,
        "context_chars": _size(context),
        "tasks_file": str(suite.path),
        "tasks_sha": suite.digest,
        **(asdict(result) if result else {"seconds": round(time.monotonic() - started, 2)}),
    }


def run_tasks(
    rlm: Any,
    suite: RealSuite,
    jobs: list[tuple[RealTask, str]],
    write: Callable[[dict[str, Any]], None],
    on_job: Callable[[str], None] = lambda _: None,
) -> int:
    """Runs the jobs in order, each row written as soon as it is finished (so Ctrl-C keeps it);
    returns how many ran. Each context is loaded once a run (tasks share them; ~2.5 MB in all)."""
    contexts: dict[Path, str | dict[str, str]] = {}
    done = 0
    for task, method in jobs:
        on_job(f"{task.id} · {method}")
        if task.context_path not in contexts:
            contexts[task.context_path] = load_context(task)
        write(run_one(rlm, suite, task, method, contexts[task.context_path]))
        done += 1
    return done


def rescore(rows: list[dict[str, Any]], scored_at: str) -> int:
    """Scores stored answers again with the current score.py of each row's tasks file; a changed
    row records the commit that rescored it."""
    suites: dict[str, RealSuite] = {}
    changed = 0
    for row in rows:
        source = row.get("tasks_file") or str(DEFAULT_TASKS)
        if source not in suites:
            suites[source] = load_suite(source)
        suite = suites[source]
        task = next((t for t in suite.tasks if t.id == row["id"]), None)
        if task is None:
            raise SuiteError(f"Task {row['id']} is no longer in {source}.")
        new = suite.score(task, row.get("answer")) if not row.get("error") else 0.0
        if new != row["score"]:
            row.update(score=new, scored_at=scored_at)
            changed += 1
    return changed


# -- the table ----------------------------------------------------------------------------------


def read_rows(raw: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in raw.read_text(encoding="utf-8").splitlines() if line]


def method_label(row: dict[str, Any]) -> str:
    """The method, with the engine options its run set away from their defaults."""
    engine = row.get("engine") or {}
    shown = {n: ",".join(v) if isinstance(v, list) else v for n, v in sorted(engine.items())}
    label = row["method"] + "".join(f" {name}={value}" for name, value in shown.items())
    return label + (" no-prefix-cache" if row.get("prefix_cache") is False else "")


def _groups(rows: Iterable[dict[str, Any]]) -> dict[tuple[str, ...], list[dict[str, Any]]]:
    """Rows by method x commit x machine x tasks file (never averaged across them); a task run
    more than once in a group counts once, by its latest row."""
    latest: dict[tuple[str, ...], dict[str, dict[str, Any]]] = defaultdict(dict)
    for row in rows:
        key = (method_label(row), row["commit"], machine_name(row["machine"]), row["tasks_sha"])
        latest[key].pop(row["id"], None)  # a rerun moves the task to its latest position
        latest[key][row["id"]] = row
    return {key: list(by_id.values()) for key, by_id in latest.items()}


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return sum(values) / len(values) if values else 0.0


def summarise(group: list[dict[str, Any]]) -> dict[str, Any]:
    """The means score.py prints, over the tasks run: per family, per type, overall, macro."""
    by_family: dict[str, list[float]] = defaultdict(list)
    by_type: dict[str, list[float]] = defaultdict(list)
    for row in group:
        by_family[row["family"]].append(row["score"])
        by_type[row["task_type"]].append(row["score"])
    families = {name: (len(v), _mean(v)) for name, v in sorted(by_family.items())}
    seconds = [row["seconds"] for row in group]
    return {
        "families": families,
        "types": {name: (len(v), _mean(v)) for name, v in sorted(by_type.items())},
        "overall": _mean(row["score"] for row in group),
        "macro": _mean(mean for _, mean in families.values()),
        "median_s": statistics.median(seconds),
        "max_s": max(seconds),
        "errors": sum(1 for row in group if row.get("error")),
    }


def _cell(text: object) -> str:
    flat = " ".join(str(text).split()).replace("|", "\\|")
    return flat if len(flat) <= ANSWER_CHARS else flat[: ANSWER_CHARS - 1] + "…"


def _held(row: dict[str, Any]) -> str:
    return f"{row['evidence_holds']:.2f}" if "evidence_holds" in row else "–"


def evidence_summary(rows: list[dict[str, Any]]) -> str:
    """The evidence measure of rows, in one sentence (the table's, on its own)."""
    return _evidence_line(rows).strip()


def _evidence_line(group: list[dict[str, Any]]) -> str:
    """The evidence measure, for rows that recorded it: how much of the gold the evidence held,
    on all tasks and on those answered right."""
    measured = [r for r in group if "evidence_holds" in r]
    if not measured:
        return ""
    right = [r["evidence_holds"] for r in measured if r["score"] >= 1]
    computed = sum(1 for r in measured if (r.get("evidence") or [{}])[0].get("why") == "computed")
    return (
        f" Evidence holds the gold answer: {_mean(r['evidence_holds'] for r in measured):.2f} "
        f"of {len(measured)} tasks, {_mean(right):.2f} of the {len(right)} answered right; "
        f"{sum(1 for r in measured if not r.get('evidence'))} without evidence, {computed} "
        "resting on the lines their code counted."
    )


def _group_section(key: tuple[str, ...], group: list[dict[str, Any]]) -> list[str]:
    method, commit, where, digest = key
    s = summarise(group)
    lines = [
        f"## {method} · {commit} · {where}",
        "",
        f"{len(group)} tasks (tasks file {digest}), {s['errors']} errors, "
        f"cache {'on' if all(r['cache'] for r in group) else 'off (or mixed)'}; seconds per "
        f"task: median {s['median_s']:.1f}, max {s['max_s']:.1f}; mean turns "
        f"{_mean(r.get('turns', 0) for r in group):.1f}, sub-calls "
        f"{_mean(r.get('sub_calls', 0) for r in group):.1f}, tokens evaluated "
        f"{_mean(r.get('prompt_tokens', 0) for r in group):,.0f}.{_evidence_line(group)}",
        "",
        "| group | n | mean score |",
        "| --- | --- | --- |",
    ]
    lines += [f"| family {f} | {n} | {m:.2f} |" for f, (n, m) in s["families"].items()]
    lines += [f"| type {t} | {n} | {m:.2f} |" for t, (n, m) in s["types"].items()]
    lines += [
        f"| **overall** | {len(group)} | **{s['overall']:.2f}** |",
        f"| mean of family means | {len(s['families'])} families | {s['macro']:.2f} |",
        "",
        "| id | family | type | score | evidence | seconds | answer |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in group:
        said = f"error: {row['error']}" if row.get("error") else row.get("answer")
        lines.append(
            f"| {row['id']} | {row['family']} | {row['task_type']} | {row['score']:.2f} "
            f"| {_held(row)} | {row['seconds']:.1f} | {_cell('' if said is None else said)} |"
        )
    return lines + [""]


def render_table(raw: Path, title: str) -> str:
    """A summary line per method x commit x machine, then each one's means and per-task list."""
    rows = [row for row in read_rows(raw) if row.get("suite") == "real"]
    groups = _groups(rows)
    order = sorted(groups, key=lambda k: (k[0], min(r["time"] for r in groups[k])))
    families = sorted({row["family"] for row in rows})
    files = sorted({f"{r['tasks_file']} ({r['tasks_sha']})" for r in rows})
    lines = [
        f"# {title}",
        "",
        f"Tasks: {'; '.join(files)}. Scores by the suite's own score.py; a task run more than "
        "once in a group counts once (its latest row). Rows of different commits, machines or "
        "tasks files are never averaged together.",
        "",
        "| method | commit | machine | n | overall | mean of family means | "
        + " | ".join(families)
        + f" | median s | max s | {timing.header()} | errors |",
        "| --- " * (9 + len(timing.COLUMNS) + len(families)) + "|",
    ]
    for key in order:
        s = summarise(groups[key])
        per_family = [f"{s['families'][f][1]:.2f}" if f in s["families"] else "–" for f in families]
        lines.append(
            f"| {key[0]} | {key[1]} | {key[2]} | {len(groups[key])} | {s['overall']:.2f} "
            f"| {s['macro']:.2f} | " + " | ".join(per_family) + f" | {s['median_s']:.1f} "
            f"| {s['max_s']:.1f} | {timing.cells(groups[key])} | {s['errors']} |"
        )
    lines.append("")
    for key in order:
        lines += _group_section(key, groups[key])
    return "\n".join(lines)


# -- a run --------------------------------------------------------------------------------------


@dataclass
class RealRun:
    """What `python -m benchmarks run --suite real` was asked for, checked before models load."""

    suite: RealSuite
    tasks: list[RealTask]
    methods: list[str]
    resume: bool = False


def plan(tasks_file: str | None, families: str | None, only: str | None, methods: list[str],
         resume: bool) -> RealRun:  # fmt: skip
    suite = load_suite(tasks_file)
    tasks = select(suite.tasks, families, only)
    for task in tasks:
        check_context(task)
    return RealRun(suite, tasks, methods, resume)


def run_suite(rlm: Any, run: RealRun, raw: Path, info: dict[str, Any], quiet: bool) -> bool:
    """Appends a row per task x method to `raw` (tasks in file order, methods within a task);
    returns False when Ctrl-C stopped it, with every finished row kept."""
    err = Console(stderr=True)
    skip = finished(raw, run.suite, info) if run.resume else set()
    jobs = [(t, m) for t in run.tasks for m in run.methods if (t.id, m) not in skip]
    if skip:
        err.print(f"--resume: {len(run.tasks) * len(run.methods) - len(jobs)} finished rows kept")
    with (
        Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=err,
            disable=quiet,
        ) as progress,
        raw.open("a", encoding="utf-8") as fh,
    ):
        bar = progress.add_task(raw.stem, total=len(jobs))

        def write(row: dict[str, Any]) -> None:
            row = {**row, **info, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            fh.flush()
            progress.advance(bar)

        try:
            run_tasks(rlm, run.suite, jobs, write, lambda d: progress.update(bar, description=d))
        except KeyboardInterrupt:
            return False
    return True
