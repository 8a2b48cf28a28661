"""`rlm-local mcp` through the MCP SDK's own client: in-process (JSON-RPC over memory streams)
with scripted models, and over stdio against the real command as an MCP client spawns it."""

from __future__ import annotations

import itertools
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.server.mcpserver import MCPServer
from scripted import ScriptedModel

from benchmarks.haystack import niah_text
from rlm_local.api import RLM
from rlm_local.config import load_settings
from rlm_local.engine import RunOptions, prompts
from rlm_local.errors import InputError
from rlm_local.mcp_server import McpSettings, PathRefused, build_server, confine, real_roots
from rlm_local.models import ResolvedModel
from rlm_local.trace import list_runs

REPO = Path(__file__).parent.parent
TEXT = "alpha beta. The secret code is 4417. gamma delta. " * 20


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """allowed/ (the root) beside secret/, with symlinks from the one into the other."""
    root = tmp_path / "allowed"
    (root / "docs").mkdir(parents=True)
    (root / "notes.txt").write_text(TEXT)
    (root / "docs" / "a.txt").write_text(TEXT)
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "key.txt").write_text("the private key is 9999\n")
    (root / "link.txt").symlink_to(outside / "key.txt")
    (root / "linkdir").symlink_to(outside, target_is_directory=True)
    (root / "inner.txt").symlink_to(root / "notes.txt")  # stays inside: allowed
    return root


def _server(root_dir: Path, root: ScriptedModel, sub: ScriptedModel | None = None, **opts: Any):
    sub = sub or ScriptedModel(answer=lambda p: "sub-answer")
    rlm = RLM(
        load_settings(),
        RunOptions(mode="rlm", first_search=False, skip_checks=("unfounded",), **opts),
        root=root,
        sub=sub,
    )
    return build_server(rlm, McpSettings(real_roots([str(root_dir)]))), rlm


def _session(server: MCPServer | StdioServerParameters, steps: Callable[[Client], Awaitable[Any]]):
    async def go() -> Any:
        async with Client(server, mode="legacy") as client:
            return await steps(client)

    return anyio.run(go)


def _text(result: Any) -> str:
    return " ".join(getattr(block, "text", "") for block in result.content)


# -- which paths -------------------------------------------------------------------------------


def test_confine_resolves_symlinks_and_refuses_what_leaves_the_roots(tree: Path) -> None:
    roots = real_roots([str(tree)])
    notes = str(tree / "notes.txt")
    assert confine(["notes.txt"], roots) == [notes]  # relative: from the first root
    assert confine([str(tree / "inner.txt"), "docs"], roots) == [notes, str(tree / "docs")]
    outside = tree.parent / "secret" / "key.txt"
    for path in (str(outside), "../secret/key.txt", "link.txt", "linkdir/key.txt", "linkdir"):
        with pytest.raises(PathRefused, match="outside the directories this server may read"):
            confine([path], roots)
    with pytest.raises(PathRefused, match="outside"):
        confine(["notes.txt", "/etc/passwd"], roots)  # one bad path refuses the call
    missing = (("missing.txt", "does not exist"), ("-", "does not exist"), (" ", "not a path"))
    for path, message in missing:
        with pytest.raises(PathRefused, match=message):
            confine([path], roots)
    with pytest.raises(PathRefused, match="at least one path"):
        confine([], roots)
    with pytest.raises(InputError, match="not a directory"):
        real_roots([str(tree / "nowhere")])


# -- in-process client, scripted models -----------------------------------------------------------


def test_tools_a_successful_ask_with_progress_and_the_runs(tmp_home: Path, tree: Path) -> None:
    root = ScriptedModel(["hits = grep('secret code')\nprint(hits[0])", "FINAL('4417')"])
    server, rlm = _server(tree, root)
    progress: list[tuple[float, str | None]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, message))

    async def steps(client: Client) -> Any:
        tools = await client.list_tools()
        asked = await client.call_tool(
            "ask",
            {"question": "What is the secret code?", "paths": ["notes.txt"], "max_turns": 4},
            progress_callback=on_progress,
        )
        return tools, asked, await client.call_tool("list_runs", {})

    tools, asked, listed = _session(server, steps)
    assert {t.name for t in tools.tools} == {"ask", "list_runs", "show_run"}
    ask_tool = next(t for t in tools.tools if t.name == "ask")
    assert ask_tool.input_schema["required"] == ["question", "paths"]
    assert not asked.is_error, _text(asked)
    answer = asked.structured_content
    assert answer["answer"] == "4417" and answer["status"] == "answered"
    assert answer["turns"] == 2
    [evidence] = answer["evidence"]  # the line the code printed, located by the engine
    assert evidence["path"].endswith("notes.txt") and "4417" in evidence["text"]
    assert evidence["text"] == TEXT.splitlines()[evidence["line_start"] - 1]
    messages = [m for _, m in progress]
    data_look = prompts.describe_context(TEXT).splitlines()[0]  # its size, as the model saw it
    assert messages[0] == f"started in rlm mode: {data_look}"
    assert "turn 1/4: the root model wrote code" in messages
    assert "turn 1's code ran" in messages and "turn 2/4: the root model wrote code" in messages
    values = [v for v, _ in progress]
    assert values == sorted(set(values))  # progress grows with each notification

    # runs: this server's run is listed and shown; a run of the Python API is not the client's
    root.replies.append("FINAL('api')")
    rlm.ask("How long?", TEXT)
    runs = listed.structured_content["result"]
    assert [r["id"] for r in runs] == [answer["run_id"]]
    assert "path" not in runs[0] and runs[0]["answer"] == "4417"

    async def more(client: Client) -> Any:
        shown = await client.call_tool("show_run", {"run_id": answer["run_id"][:-3]})
        last = await client.call_tool("show_run", {"run_id": "last"})
        private = await client.call_tool("show_run", {"run_id": api_run})
        return shown, last, private, await client.call_tool("list_runs", {"limit": 5})

    api_run = list_runs(load_settings().runs_dir)[0].run_id
    assert api_run != answer["run_id"]
    shown, last, private, listed_again = _session(server, more)
    assert not shown.is_error, _text(shown)  # a unique prefix of the id names the run
    run = shown.structured_content
    assert run == last.structured_content
    assert run["question"] == "What is the secret code?" and run["answer"] == "4417"
    assert run["inputs"] == [str(tree / "notes.txt")]
    assert "grep('secret code')" in run["turns"][0]["code"]
    assert "The secret code is 4417" in run["turns"][0]["output"]
    assert private.is_error and "no run" in _text(private)
    assert len(listed_again.structured_content["result"]) == 1


def test_refused_paths_read_nothing_and_run_nothing(tmp_home: Path, tree: Path) -> None:
    root = ScriptedModel([])
    server, _ = _server(tree, root)
    outside = str(tree.parent / "secret" / "key.txt")

    async def steps(client: Client) -> list[Any]:
        results = []
        for paths in ([outside], ["link.txt"], ["linkdir/key.txt"], ["../secret"], ["/etc"]):
            results.append(await client.call_tool("ask", {"question": "Key?", "paths": paths}))
        results.append(await client.call_tool("ask", {"question": "Key?", "paths": []}))
        return results

    results = _session(server, steps)
    for result in results[:5]:
        assert result.is_error
        assert "outside the directories this server may read" in _text(result)
        assert str(tree) in _text(result) and "9999" not in _text(result)
    assert results[5].is_error  # an empty list fails the schema
    assert root.calls == []
    assert list_runs(load_settings().runs_dir) == []  # no run was started


def test_a_run_under_a_narrower_root_only_sees_its_own_runs(tmp_home: Path, tree: Path) -> None:
    wide, _ = _server(tree, ScriptedModel(["FINAL('wide')"]))
    narrow, _ = _server(tree / "docs", ScriptedModel(["FINAL('narrow')"]))

    def asking(path: str) -> Callable[[Client], Awaitable[Any]]:
        async def steps(client: Client) -> Any:
            await client.call_tool("ask", {"question": "q?", "paths": [path]})
            return (await client.call_tool("list_runs", {})).structured_content["result"]

        return steps

    assert [r["answer"] for r in _session(wide, asking("notes.txt"))] == ["wide"]
    # docs/ is under allowed/: the wide server sees both runs, the narrow one only its own
    assert [r["answer"] for r in _session(narrow, asking("a.txt"))] == ["narrow"]
    listed = _session(wide, lambda c: c.call_tool("list_runs", {}))
    assert [r["answer"] for r in listed.structured_content["result"]] == ["narrow", "wide"]


def test_a_cancelled_request_stops_the_run_and_keeps_the_cache(tmp_home: Path, tree: Path) -> None:
    parts = itertools.count(1)
    root = ScriptedModel(answer=lambda _: f"print(llm_query('part {next(parts)}'))")

    def slow_sub(prompt: str) -> str:
        time.sleep(0.3)
        return "nothing here"

    sub = ScriptedModel(answer=slow_sub)
    server, rlm = _server(tree, root, sub, max_turns=50, max_sub_calls=50)
    args = {"question": "q?", "paths": ["notes.txt"]}
    seen: list[str] = []

    async def cancel_after_two_sub_calls(client: Client) -> bool:
        with anyio.CancelScope() as scope:

            async def on_progress(value: float, total: float | None, message: str | None) -> None:
                seen.append(message or "")
                if (message or "").startswith("sub-call 2/"):
                    scope.cancel()

            await client.call_tool("ask", args, progress_callback=on_progress)
        return scope.cancelled_caught

    assert _session(server, cancel_after_two_sub_calls)
    runs_dir = load_settings().runs_dir
    deadline = time.monotonic() + 20
    while list_runs(runs_dir)[0].status != "cancelled" and time.monotonic() < deadline:
        time.sleep(0.1)
    (run,) = list_runs(runs_dir)
    assert run.status == "cancelled"
    assert 2 <= len(sub.calls) <= 4 and len(root.calls) <= 5  # not 50 turns
    computed = len(root.calls) + len(sub.calls)
    assert rlm.cache is not None and rlm.cache.stats().entries == computed

    # The same question again: what the cancelled run computed comes from the cache.
    root.answer = lambda _: "FINAL('done')"
    again = _session(server, lambda c: c.call_tool("ask", args))
    assert not again.is_error, _text(again)
    assert again.structured_content["answer"] == "done"
    assert again.structured_content["cache_hits"] >= computed - 1
    assert len(root.calls) + len(sub.calls) <= computed + 2


# -- over stdio, as an MCP client spawns the server --------------------------------------------


def _stdio(*args: str) -> StdioServerParameters:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
    return StdioServerParameters(command=sys.executable, args=list(args), env=env, cwd=str(REPO))


def test_the_real_command_over_stdio_refuses_and_reports_missing_models(
    tmp_home: Path, tree: Path
) -> None:
    server = _stdio("-m", "rlm_local", "mcp", "--root", str(tree))

    async def steps(client: Client) -> Any:
        tools = await client.list_tools()
        refused = await client.call_tool("ask", {"question": "Key?", "paths": ["link.txt"]})
        no_models = await client.call_tool("ask", {"question": "Key?", "paths": ["notes.txt"]})
        return tools, refused, no_models

    tools, refused, no_models = _session(server, steps)
    assert {t.name for t in tools.tools} == {"ask", "list_runs", "show_run"}
    assert refused.is_error and "outside the directories" in _text(refused)
    # tmp_home has no models: one sentence saying what to do, no traceback
    assert no_models.is_error and "models pull" in _text(no_models)
    assert "Traceback" not in _text(no_models)


def test_an_ask_over_stdio_on_scripted_models(tmp_home: Path, tree: Path) -> None:
    server = _stdio(str(REPO / "tests" / "mcp_scripted_server.py"), str(tree))
    progress: list[str] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(message or "")

    async def steps(client: Client) -> Any:
        asked = await client.call_tool(
            "ask", {"question": "q?", "paths": ["docs"]}, progress_callback=on_progress
        )
        return asked, await client.call_tool("list_runs", {})

    asked, listed = _session(server, steps)
    assert not asked.is_error, _text(asked)
    assert asked.structured_content["answer"] == "20"
    assert "turn 1/10: the root model wrote code" in progress
    assert listed.structured_content["result"][0]["id"] == asked.structured_content["run_id"]


def test_mcp_command_needs_a_real_root(tmp_home: Path, tmp_path: Path) -> None:
    from cli_runner import run_cli

    missing = run_cli("mcp", "--root", str(tmp_path / "nowhere"), stdin="")
    assert missing.returncode == 1 and "is not a directory" in missing.stderr
    assert "Traceback" not in missing.stderr
    none = run_cli("mcp", stdin="")
    assert none.returncode == 2 and "--root" in none.stderr


# -- the real default models (written for the lead's machine; not run by helpers) ---------------


@pytest.mark.models
def test_a_needle_through_the_mcp_server_on_the_default_models(
    tmp_path: Path, root_model_file: ResolvedModel, sub_model_file: ResolvedModel
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "models").symlink_to(root_model_file.path.parent, target_is_directory=True)
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    text, needle = niah_text(120_000, seed=4242)
    (inputs / "big.txt").write_text(text)
    env = {**os.environ, "RLM_LOCAL_HOME": str(home), "PYTHONPATH": str(REPO)}
    server = StdioServerParameters(
        command=sys.executable, args=["-m", "rlm_local", "mcp", "--root", str(inputs)], env=env
    )
    progress: list[str] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(message or "")

    async def steps(client: Client) -> Any:
        return await client.call_tool(
            "ask",
            {"question": needle.question, "paths": ["big.txt"]},
            read_timeout_seconds=900,
            progress_callback=on_progress,
        )

    asked = _session(server, steps)
    assert not asked.is_error, _text(asked)
    assert needle.value in (asked.structured_content["answer"] or "")
    assert progress and progress[0].startswith("started in rlm mode")
