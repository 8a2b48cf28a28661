"""`python -m benchmarks run`: tasks x methods on the same models, raw JSONL and a markdown table.

    python -m benchmarks run --suite niah --sizes 8k,32k --n 5 --no-cache
    python -m benchmarks run --suite real --family logs --methods rlm --no-cache

The `real` suite is read from a tasks file (benchmarks/real.py), the others are generated.

Raw rows go to benchmarks/results/<suite>[-<tag>].jsonl (appended; each row names its machine and
commit); the table benchmarks/results/<suite>[-<tag>].md is rebuilt from all rows of that file.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from benchmarks import backend, real, timing
from benchmarks.machine import machine, machine_name
from benchmarks.methods import METHODS
from benchmarks.real import method_label
from benchmarks.tasks import SUITES, make_tasks, score
from rlm_local.api import RLM
from rlm_local.config import load_settings
from rlm_local.engine import RunOptions
from rlm_local.models import ModelStore

RESULTS = Path(__file__).parent / "results"
err = Console(stderr=True)


def parse_size(text: str) -> int:
    text = text.strip().lower()
    for suffix, factor in (("k", 1024), ("m", 1024 * 1024)):
        if text.endswith(suffix):
            return int(float(text[:-1]) * factor)
    return int(text)


def commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], capture_output=True, text=True, cwd=Path(__file__).parent.parent
        ).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    # Results files change with every run; only code changes make a row's commit "dirty".
    changed = git(
        "status", "--porcelain", "--untracked-files=no", "--", ".", ":!benchmarks/results"
    )
    return head + ("-dirty" if changed else "")


def _names(name: str, value: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in value.split(",") if part.strip())
    try:
        RunOptions(**{name: names})  # checks the names
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{name}: {error}") from None
    return names


def engine_option(text: str) -> tuple[str, Any]:
    """`NAME=VALUE` for one field of RunOptions, the value read as the field's type."""
    name, sep, value = text.partition("=")
    defaults = {f.name: getattr(RunOptions(), f.name) for f in fields(RunOptions)}
    simple = [n for n, v in defaults.items() if isinstance(v, bool | int | float | str | tuple)]
    if not sep or name not in simple:
        raise argparse.ArgumentTypeError(
            f"expected NAME=VALUE with NAME one of {', '.join(sorted(simple))}"
        )
    default = defaults[name]
    hint = get_type_hints(RunOptions)[name]
    choices = get_args(hint) if get_origin(hint) is Literal else ()
    if choices and value not in choices:
        raise argparse.ArgumentTypeError(f"{name} takes one of {', '.join(choices)}")
    try:
        if isinstance(default, tuple):  # names, comma-separated: skip_checks=unfounded,echoed
            return name, _names(name, value)
        if isinstance(default, bool):
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(value)
            return name, value.lower() in ("true", "1")
        return name, type(default)(value) if default is not None else value
    except ValueError:
        kinds = {bool: "true or false", int: "a whole number", float: "a number"}
        kind = kinds.get(type(default), "text")
        raise argparse.ArgumentTypeError(f"{name} takes {kind}, not {value!r}") from None


def run(args: argparse.Namespace) -> Path:
    args.engine = dict(getattr(args, "engine", None) or [])
    if args.methods is None:  # chunked on a real suite is hundreds of sub-calls a task
        args.methods = "rlm,direct" if args.suite == "real" else "rlm,direct,chunked"
    for m in args.methods.split(","):
        if m not in METHODS:
            raise SystemExit(f"unknown method {m!r}; choose from {', '.join(METHODS)}")
    real_run = None
    if args.suite != "real" and (args.tasks or args.family or args.only or args.resume):
        raise SystemExit("error: --tasks, --family, --only and --resume apply to --suite real.")
    if args.suite == "real":  # the tasks file is checked before any model loads
        try:
            real_run = real.plan(
                args.tasks, args.family, args.only, args.methods.split(","), args.resume
            )
        except real.SuiteError as exc:
            raise SystemExit(f"error: {exc}") from None
    settings = load_settings(use_cache=not args.no_cache, use_prefix_cache=not args.no_prefix_cache)
    if args.home:
        settings = settings.with_overrides(home=Path(args.home))
    options = RunOptions(
        max_turns=args.max_turns,
        max_sub_calls=args.max_sub_calls,
        max_seconds=args.max_seconds,
        root_grammar=args.root_grammar,
        **args.engine,
    )
    with contextlib.ExitStack() as stack:
        if args.scripted:
            from benchmarks.scripted import scripted_models

            root, sub = scripted_models()
            rlm = RLM(settings, options, root=root, sub=sub)
        elif args.sub_servers:
            from benchmarks.servers import sub_servers
            from rlm_local.models.remote import OpenAIModel

            store = ModelStore(settings.registry, settings.models_dir)
            spec = stack.enter_context(sub_servers(store.resolve(settings.sub), args.sub_servers))
            rlm = RLM(settings, options, sub=OpenAIModel(spec))
        else:
            rlm = RLM(settings, options)
        return _run_jobs(args, rlm, real_run)


def _run_jobs(args: argparse.Namespace, rlm: RLM, real_run: real.RealRun | None = None) -> Path:
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = args.suite + (f"-{args.tag}" if args.tag else "")
    if args.sub_servers:
        name += f"-servers{args.sub_servers}"
    raw = out_dir / f"{name}.jsonl"
    info = {
        "machine": machine(),
        "commit": commit(),
        "cache": not args.no_cache,
        "prefix_cache": not args.no_prefix_cache,
        "sub": f"{args.sub_servers} local servers" if args.sub_servers else "in-process",
    }
    if args.engine:  # a lever set away from its default: its rows form a group of their own
        info["engine"] = args.engine
    if real_run is not None:
        return _run_real(rlm, real_run, raw, name, info, args.quiet)
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    methods = args.methods.split(",")
    jobs = [
        (size, task, method)
        for size in sizes
        for task in make_tasks(args.suite, size, args.n, args.first_seed)
        for method in methods
    ]
    with (
        Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=err,
            disable=args.quiet,
        ) as progress,
        raw.open("a", encoding="utf-8") as fh,
    ):
        bar = progress.add_task(name, total=len(jobs))
        for size, task, method in jobs:
            progress.update(bar, description=f"{task.task_id} · {method}")
            started = time.monotonic()
            try:
                result = METHODS[method](rlm, task.question, task.context)
                error = None
            except Exception as exc:  # a failed method is a row with its error, not a crash
                result, error = None, f"{type(exc).__name__}: {exc}"
            row = {
                "suite": args.suite,
                "task": task.task_id,
                "size_tokens": size,
                "method": method,
                "expected": task.answer,
                "score": score(task, result.answer) if result else 0.0,
                "error": error,
                **(asdict(result) if result else {"seconds": time.monotonic() - started}),
                **info,
                "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
            }
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            fh.flush()
            progress.advance(bar)
    rlm.close()
    table = out_dir / f"{name}.md"
    table.write_text(render_table(raw, name), encoding="utf-8")
    err.print(f"raw rows: {raw}\ntable: {table}")
    return table


def _run_real(
    rlm: RLM, real_run: real.RealRun, raw: Path, name: str, info: dict[str, Any], quiet: bool
) -> Path:
    """The real suite's rows; whatever stops it (Ctrl-C: exit 130), the finished rows are kept
    and tabled."""
    failure = None
    try:
        complete = real.run_suite(rlm, real_run, raw, info, quiet)
    except real.SuiteError as exc:
        complete, failure = False, f"error: {exc}"
    finally:
        rlm.close()
    table = raw.with_suffix(".md")
    if raw.exists():
        table.write_text(real.render_table(raw, name), encoding="utf-8")
    err.print(f"raw rows: {raw}\ntable: {table}")
    if failure:
        raise SystemExit(failure)
    if not complete:
        err.print("interrupted: finished rows are kept; rerun with --resume to skip them")
        raise SystemExit(130)
    return table


def replay_evidence(raw: Path) -> None:
    """Prints each replayed row's evidence measure and where its first item stands."""
    rows = [json.loads(line) for line in raw.read_text(encoding="utf-8").splitlines() if line]
    try:
        replayed = real.replay_evidence(rows)
    except real.SuiteError as exc:
        raise SystemExit(f"error: {exc}") from None
    for row in replayed:
        first = row["evidence"][0] if row["evidence"] else {}
        where = f"{first['path']}:{first['line_start']} ({first['why']})" if first else "none"
        print(f"{row['id']}\tscore {row['score']:.2f}\tholds {row['evidence_holds']:.2f}\t{where}")
    print(real.evidence_summary(replayed) or "No row has a trace left to replay.")


def rescore(raw: Path) -> int:
    """Scores every row's stored answer again (its task regenerated from its seed, or for the
    real suite read from its tasks file), so a corrected scorer applies to old rows too; a
    changed row records the scorer's commit."""
    rows = [json.loads(line) for line in raw.read_text(encoding="utf-8").splitlines() if line]
    scorer = commit()
    if rows and rows[0].get("suite") == "real":
        try:
            changed = real.rescore(rows, scorer)
        except real.SuiteError as exc:
            raise SystemExit(f"error: {exc}") from None
        raw.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
        return changed
    changed = 0
    for row in rows:
        seed = int(row["task"].rsplit("-", 1)[1])
        task = make_tasks(row["suite"], row["size_tokens"], 1, seed)[0]
        new = score(task, row.get("answer")) if not row.get("error") else 0.0
        if new != row["score"]:
            row.update(score=new, scored_at=scorer)
            changed += 1
    raw.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return changed


def render_table(raw: Path, title: str) -> str:
    rows = [json.loads(line) for line in raw.read_text(encoding="utf-8").splitlines() if line]
    groups: dict[tuple[int, str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:  # rows of different commits or machines are never averaged together
        key = (row["size_tokens"], method_label(row), row["commit"], machine_name(row["machine"]))
        groups[key].append(row)
    machines = sorted({f"{machine_name(r['machine'])}, {r['machine']['llama']}" for r in rows})
    commits = sorted({r["commit"] for r in rows})
    lines = [
        f"# {title}",
        "",
        f"Machine: {'; '.join(machines)}. Commit(s): {', '.join(commits)}. "
        f"Cache: {'on' if all(r['cache'] for r in rows) else 'off (or mixed)'}.",
        "",
        f"| size (tokens) | method | commit | machine | score | n | median s | {timing.header()} "
        "| turns | sub-calls | tokens evaluated | cache hit rate | errors | notes |",
        "| --- " * (13 + len(timing.COLUMNS)) + "|",
    ]
    first_run = {key: min(r["time"] for r in group) for key, group in groups.items()}
    for (size, method, commit, where), group in sorted(
        groups.items(), key=lambda item: (item[0][0], item[0][1], first_run[item[0]])
    ):
        hits = sum(r.get("cache_hits", 0) for r in group)
        misses = sum(r.get("cache_misses", 0) for r in group)
        notes = sorted({n for r in group for n in r.get("notes", [])})
        lines.append(
            f"| {size:,} | {method} | {commit} | {where} "
            f"| {statistics.mean(r['score'] for r in group):.2f} "
            f"| {len(group)} | {statistics.median(r['seconds'] for r in group):.1f} "
            f"| {timing.cells(group)} "
            f"| {statistics.mean(r.get('turns', 0) for r in group):.1f} "
            f"| {statistics.mean(r.get('sub_calls', 0) for r in group):.1f} "
            f"| {statistics.median(r.get('prompt_tokens', 0) for r in group):,.0f} "
            f"| {hits / (hits + misses) if hits + misses else 0:.0%} "
            f"| {sum(1 for r in group if r.get('error'))} "
            f"| {'; '.join(notes)[:120]} |"
        )
    return "\n".join(lines) + "\n"


def _table(raw: Path) -> str:
    first = next((line for line in raw.read_text(encoding="utf-8").splitlines() if line), "{}")
    if json.loads(first).get("suite") == "real":
        return real.render_table(raw, raw.stem)
    return render_table(raw, raw.stem)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run a suite and write results/<suite>.jsonl and .md")
    r.add_argument("--suite", choices=sorted([*SUITES, "real"]), required=True)
    r.add_argument("--sizes", default="8k", help="comma-separated token counts, e.g. 8k,32k,1m")
    r.add_argument("--n", type=int, default=5, help="tasks per size")
    r.add_argument(
        "--first-seed",
        type=int,
        default=1,
        help="seed of the first task; e.g. 3 with --n 3 adds seeds 3-5 to a run of seeds 1-2",
    )
    r.add_argument("--methods", default=None, help="default rlm,direct,chunked (real: rlm,direct)")
    r.add_argument(
        "--tasks",
        help="real suite: a tasks.jsonl in the devsuite format (default ../shared/devsuite)",
    )
    r.add_argument("--family", help="real suite: only these families, e.g. code,logs")
    r.add_argument("--only", help="real suite: only these task ids, e.g. code-01,logs-zk-08")
    r.add_argument(
        "--resume",
        action="store_true",
        help="real suite: skip tasks already in the results for this commit and method",
    )
    r.add_argument("--no-cache", action="store_true", help="honest timing: no cache reads/writes")
    r.add_argument(
        "--no-prefix-cache",
        action="store_true",
        help="evaluate every system prompt afresh (the prefix cache stays on with --no-cache)",
    )
    r.add_argument("--max-turns", type=int, default=10)
    r.add_argument("--max-sub-calls", type=int, default=100)
    r.add_argument("--max-seconds", type=float, default=900.0, help="wall budget of one rlm run")
    r.add_argument(
        "--root-grammar", action="store_true", help="root turns under the code-cell grammar"
    )
    r.add_argument(
        "--engine",
        type=engine_option,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set an engine option (a RunOptions field), e.g. read_first=hint; repeatable",
    )
    r.add_argument("--tag", default="", help="suffix of the result files, e.g. baseline")
    r.add_argument("--out", default=str(RESULTS))
    r.add_argument("--home", help="RLM_LOCAL_HOME for this run (cache and traces)")
    r.add_argument("--scripted", action="store_true", help="scripted models (smoke test only)")
    r.add_argument(
        "--sub-servers",
        type=int,
        default=0,
        help="serve the sub-model from N local llama_cpp.server processes (127.0.0.1)",
    )
    r.add_argument("--quiet", action="store_true")
    lab = sub.add_parser(
        "labels", help="classify's label accuracy on OOLONG-style instances (results/labels.*)"
    )
    lab.add_argument("--model", choices=["sub", "root"], default="sub")
    lab.add_argument("--size", default="32k", help="records of this size (tokens)")
    lab.add_argument("--n", type=int, default=5, help="seeds 1..n (the oolong suite's tasks)")
    lab.add_argument("--out", default=str(RESULTS))
    lab.add_argument("--scripted", action="store_true", help="scripted model (smoke test only)")
    lab.add_argument("--no-vote", action="store_true", help="one labelling pass (no vote)")
    backend.add_commands(sub)
    t = sub.add_parser("table", help="rebuild a markdown table from a results .jsonl")
    t.add_argument("raw", type=Path)
    rs = sub.add_parser(
        "rescore", help="score a results .jsonl's stored answers again with the current scorer"
    )
    rs.add_argument("raw", type=Path)
    ev = sub.add_parser(
        "evidence",
        help="find the evidence of a real-suite results .jsonl's rlm rows again from their kept "
        "traces, with the current code (no models), and print the measure per task",
    )
    ev.add_argument("raw", type=Path)
    args = parser.parse_args(argv)
    if args.command == "evidence":
        replay_evidence(args.raw)
        return
    if args.command == "rescore":
        changed = rescore(args.raw)
        args.raw.with_suffix(".md").write_text(_table(args.raw), encoding="utf-8")
        err.print(f"{changed} rows scored differently; table: {args.raw.with_suffix('.md')}")
        return
    if args.command == "table":
        if args.raw.stem == "labels":
            from benchmarks import labels

            lines = args.raw.read_text(encoding="utf-8").splitlines()
            table = labels.render([json.loads(line) for line in lines if line])
        else:
            table = _table(args.raw)
        args.raw.with_suffix(".md").write_text(table, encoding="utf-8")
        return
    if args.command == "labels":
        run_labels(args)
        return
    if args.command in ("backend", "coldstart"):
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        about = {"machine": machine(), "commit": commit(), "time": stamp}
        err.print(f"table: {backend.run_command(args, about)}")
        return
    run(args)


def run_labels(args: argparse.Namespace) -> Path:
    from benchmarks import labels

    settings = load_settings(use_cache=False)
    if args.scripted:
        from benchmarks.scripted import scripted_models

        model, name = scripted_models()[1], "scripted"
    else:
        rlm = RLM(settings)
        model = rlm.sub if args.model == "sub" else rlm.root
        name = settings.sub if args.model == "sub" else settings.root
    size = parse_size(args.size)
    err.print(f"labelling the OOLONG-style instances of seeds 1..{args.n} at {size:,} tokens")
    row = {
        "model": f"{args.model} ({name})",
        "size_tokens": size,
        "seeds": f"1-{args.n}",
        **labels.measure(model, size, list(range(1, args.n + 1)), voting=not args.no_vote),
        "machine": machine(),
        "commit": commit(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    raw = out / "labels.jsonl"
    with raw.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    rows = [json.loads(line) for line in raw.read_text(encoding="utf-8").splitlines() if line]
    table = raw.with_suffix(".md")
    table.write_text(labels.render(rows), encoding="utf-8")
    err.print(f"accuracy {row['accuracy']:.2f}, OOLONG ceiling {row['ceiling']:.2f}")
    err.print(f"table: {table}")
    return table


if __name__ == "__main__":
    main(sys.argv[1:])
