"""`rlm-local mcp`: rlm-local as tools of an MCP client (chat apps, editors, agents) over stdio.

An MCP client is a less trusted caller than the person at the terminal: it may read only under
the roots given on the command line (symlinks resolved before the check), and it sees only the
runs that an MCP server started on inputs under those roots, not the user's other runs.
"""

# No `from __future__ import annotations`: the SDK reads the tools' annotations, some of which
# (the paths' description) are built when the server is.
import contextlib
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import anyio
import anyio.from_thread
import anyio.to_thread
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field
from typing_extensions import TypedDict

from rlm_local.api import RLM
from rlm_local.engine import InputOptions, RunOptions, RunResult, load_inputs
from rlm_local.errors import InputError, RlmLocalError, RunCancelled
from rlm_local.trace import RunNotFoundError, Turn, find_run, list_runs, load_run

VIA = "mcp"  # the `via` of the "inputs" event this server writes into each trace
TEXT_LIMIT = 2000  # characters of code, output or answer shown per item by show_run
T = TypeVar("T")


class PathRefused(RlmLocalError):
    """A path the MCP client may not read: outside every root, or reaching out via a symlink."""


@dataclass(frozen=True)
class McpSettings:
    roots: tuple[Path, ...]  # real (symlink-free) directories
    inputs: InputOptions = field(default_factory=InputOptions)


def real_roots(dirs: list[str] | tuple[str, ...]) -> tuple[Path, ...]:
    """The roots as real directories; a missing one is a user error, not an empty root."""
    if not dirs:
        raise InputError("Give at least one --root directory the MCP client may read.")
    roots = []
    for raw in dirs:
        real = Path(os.path.realpath(Path(raw).expanduser()))
        if not real.is_dir():
            raise InputError(f"--root {raw} is not a directory.")
        roots.append(real)
    return tuple(dict.fromkeys(roots))


def _inside(real: Path, roots: tuple[Path, ...]) -> bool:
    return any(real == root or real.is_relative_to(root) for root in roots)


def confine(paths: list[str], roots: tuple[Path, ...]) -> list[str]:
    """Each path as a real path under a root; relative paths are taken from the first root."""
    where = ", ".join(map(str, roots))
    if not paths:
        raise PathRefused(f"Give at least one path under {where}.")
    confined = []
    for raw in paths:
        if not raw.strip() or "\x00" in raw:
            raise PathRefused(f"{raw!r} is not a path.")
        path = Path(raw).expanduser()
        real = Path(os.path.realpath(path if path.is_absolute() else roots[0] / path))
        if not _inside(real, roots):
            raise PathRefused(f"{raw} is outside the directories this server may read ({where}).")
        if not real.exists():
            raise PathRefused(f"{raw} does not exist.")
        confined.append(str(real))
    return confined


# -- which runs the client may see ----------------------------------------------------------------


def _inputs_event(trace: Path) -> dict[str, Any]:
    """The "inputs" event that follows run_start, or {} (a run of the CLI or the Python API)."""
    try:
        with trace.open(encoding="utf-8", errors="replace") as fh:
            for _, line in zip(range(3), fh, strict=False):
                try:
                    event = json.loads(line)
                except ValueError:
                    return {}
                if isinstance(event, dict) and event.get("type") == "inputs":
                    return event
    except OSError:
        pass
    return {}


def visible(trace: Path, roots: tuple[Path, ...]) -> bool:
    """A run an MCP server started on inputs that are all under these roots."""
    event = _inputs_event(trace)
    paths = event.get("paths")
    if event.get("via") != VIA or not isinstance(paths, list) or not paths:
        return False
    return all(isinstance(p, str) and _inside(Path(p), roots) for p in paths)


# -- progress -----------------------------------------------------------------------------------


def progress_message(event: dict[str, Any], options: RunOptions, sub_calls: int) -> str | None:
    """One engine event in words for a progress notification; None for events not worth one."""
    kind = event.get("type")
    depth = int(event.get("depth") or 0)
    nested = f" (rlm_query, depth {depth})" if depth else ""
    if kind == "run_start":
        about = str(event.get("context") or "").split(". It starts")[0].splitlines()[:1]
        return f"started in {event.get('mode')} mode: {about[0][:160] if about else 'the input'}"
    if kind == "first_step":
        return "running the first step (a search of the input)"
    if kind == "read":
        return "the root model read the first step's output"
    if kind == "turn":
        return f"turn {event.get('turn')}/{options.max_turns}{nested}: the root model wrote code"
    if kind == "cell":
        state = "failed" if event.get("error") else "ran"
        return f"turn {event.get('turn')}'s code {state}{nested}"
    if kind == "sub_call":
        return f"sub-call {sub_calls}/{options.max_sub_calls}{nested}"
    if kind == "classify":
        return f"labelled {event.get('items')} items{nested}"
    return None


class ProgressRelay:
    """An engine listener (on the run's thread) that sends progress to the client's request."""

    def __init__(self, send: Callable[[float, str], None], options: RunOptions) -> None:
        self.send = send
        self.options = options
        self.count = 0
        self.sub_calls = 0

    def __call__(self, event: dict[str, Any]) -> None:
        self.sub_calls += event.get("type") == "sub_call"
        message = progress_message(event, self.options, self.sub_calls)
        if message is not None:
            self.count += 1  # progress must grow with every notification
            self.send(self.count, message)


# -- running a question off the event loop --------------------------------------------------------


async def run_cancellable(work: Callable[[], T], cancel: threading.Event) -> T:
    """`work` on a thread; when the client cancels, set `cancel` (the run stops at its next step)
    and wait for the thread, so the models are free before the next question."""
    done = threading.Event()

    def target() -> T:
        try:
            return work()
        finally:
            done.set()

    try:
        return await anyio.to_thread.run_sync(target, abandon_on_cancel=True)
    except anyio.get_cancelled_exc_class():
        cancel.set()
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(done.wait)
        raise


def _sender(ctx: Context) -> Callable[[float, str], None]:
    def send(progress: float, message: str) -> None:
        with contextlib.suppress(Exception):  # a lost notification must not end the run
            anyio.from_thread.run(ctx.report_progress, progress, None, message)

    return send


# -- results ------------------------------------------------------------------------------------


class AskResult(TypedDict):
    answer: str | None
    status: str  # answered or no_answer
    mode: str
    run_id: str | None
    seconds: float
    turns: int
    sub_calls: int
    cache_hits: int
    notices: list[str]
    evidence: list[dict[str, Any]]  # the input's lines the answer rests on (path, lines, text)


def _ask_result(result: RunResult, notices: list[str]) -> AskResult:
    s = result.stats
    return AskResult(
        answer=result.answer,
        status=result.status,
        mode=result.mode,
        run_id=result.run_id,
        seconds=result.seconds,
        turns=s.turns,
        sub_calls=s.sub_calls,
        cache_hits=s.cache_hits,
        notices=notices,
        evidence=[item.to_dict() for item in result.evidence],
    )


def _cut(text: str | None) -> str | None:
    if text is None or len(text) <= TEXT_LIMIT:
        return text
    return f"{text[:TEXT_LIMIT]}… ({len(text) - TEXT_LIMIT:,} more characters)"


def _turn_dict(turn: Turn) -> dict[str, Any]:
    work = turn.work
    cell = turn.cell
    return {
        "turn": turn.number,
        "depth": turn.depth,
        "code": _cut(turn.code),
        "text": _cut(turn.text),
        "cached": turn.cached,
        "output": _cut(cell.output) if cell else None,
        "error": _cut(cell.error) if cell else None,
        "final": _cut(cell.final) if cell else None,
        "sub_calls": len(work.sub_calls) if work else 0,
        "rlm_query_runs": len(work.children) if work else 0,
    }


def show(trace: Path) -> dict[str, Any]:
    """One run as plain data: what `rlm-local runs show` prints, with long texts cut."""
    run = load_run(trace)
    return {
        "id": run.run_id,
        "question": run.question,
        "answer": run.answer,
        "status": run.status,
        "mode": run.mode,
        "seconds": run.seconds,
        "context": run.context,
        "inputs": _inputs_event(trace).get("paths", []),
        "stats": run.stats,
        "turns": [_turn_dict(turn) for turn in run.turns],
    }


# -- the server ---------------------------------------------------------------------------------


def build_server(rlm: RLM, settings: McpSettings) -> MCPServer:
    """The MCP server's tools over one RLM (its models load on the first question)."""
    where = ", ".join(map(str, settings.roots))
    server = MCPServer(
        "rlm-local",
        instructions=(
            "Answers questions about local files far larger than a model's context window, with "
            f"local models only. It may read files and directories under: {where}."
        ),
        log_level="WARNING",
    )
    _add_ask(server, rlm, settings)
    _add_run_tools(server, rlm, settings.roots)
    return server


def _add_ask(server: MCPServer, rlm: RLM, settings: McpSettings) -> None:
    """The ask tool: one question at a time, with progress, stopped when the client cancels."""
    roots = settings.roots
    where = ", ".join(map(str, roots))
    one_at_a_time = anyio.Lock()  # one llama.cpp model serves one call at a time

    @server.tool()
    async def ask(
        question: Annotated[str, Field(min_length=1, description="The question to answer.")],
        paths: Annotated[
            list[str],
            Field(
                min_length=1,
                description=f"Files or directories under {where}; relative paths start there.",
            ),
        ],
        ctx: Context,
        max_turns: Annotated[int | None, Field(ge=1, le=200)] = None,
        max_sub_calls: Annotated[int | None, Field(ge=0, le=100000)] = None,
        max_seconds: Annotated[float | None, Field(ge=1, le=86400)] = None,
        mode: Literal["auto", "rlm", "direct"] | None = None,
    ) -> AskResult:
        """Answer a question about files (however large) with local models; slow: minutes.

        Sends progress while it runs; cancelling the request stops the run.
        """
        try:
            confined = confine(paths, roots)
        except PathRefused as exc:
            raise ToolError(str(exc)) from None
        budgets = {
            "max_turns": max_turns,
            "max_sub_calls": max_sub_calls,
            "max_seconds": max_seconds,
            "mode": mode,
        }
        options = replace(rlm.options, **{k: v for k, v in budgets.items() if v is not None})
        cancel = threading.Event()
        relay = ProgressRelay(_sender(ctx), options)

        def work() -> AskResult:
            loaded = load_inputs(confined, settings.inputs)
            record = {"via": VIA, "paths": confined}
            result = rlm.ask(
                question,
                loaded.context,
                on_event=relay,
                options=options,
                cancel=cancel,
                record=record,
                name=loaded.name,
            )
            return _ask_result(result, loaded.notices)

        async with one_at_a_time:
            try:
                return await run_cancellable(work, cancel)
            except RlmLocalError as exc:
                raise ToolError(str(exc)) from None
            except RunCancelled:  # cancelled by the client: it is not waiting for this answer
                raise ToolError("The run was cancelled.") from None


def _add_run_tools(server: MCPServer, rlm: RLM, roots: tuple[Path, ...]) -> None:
    """list_runs and show_run, over the runs this client may see (`visible`)."""

    @server.tool(name="list_runs")
    def recent_runs(
        limit: Annotated[int, Field(ge=1, le=500)] = 20,
    ) -> list[dict[str, Any]]:
        """The latest runs this server's client may see, newest first (question, answer, status)."""
        summaries = [s for s in list_runs(rlm.settings.runs_dir) if visible(s.path, roots)]
        return [{k: v for k, v in s.to_dict().items() if k != "path"} for s in summaries[:limit]]

    @server.tool()
    def show_run(
        run_id: Annotated[str, Field(description="A run id, a unique prefix of one, or `last`.")],
    ) -> dict[str, Any]:
        """One run: its question, answer, and each turn's code, output and sub-calls."""
        runs_dir = rlm.settings.runs_dir
        try:
            if run_id == "last":
                latest = [s for s in list_runs(runs_dir) if visible(s.path, roots)]
                if not latest:
                    raise RunNotFoundError("There are no runs of this server yet.")
                trace = latest[0].path
            else:
                trace = find_run(runs_dir, run_id)
            if not visible(trace, roots):
                raise RunNotFoundError(f"There is no run '{run_id}' this client may see.")
            return show(trace)
        except RlmLocalError as exc:
            raise ToolError(str(exc)) from None


def serve(rlm: RLM, settings: McpSettings) -> None:
    """Run the server on stdin/stdout until the client closes it; the models close with it."""
    try:
        build_server(rlm, settings).run("stdio")
    finally:
        rlm.close()
