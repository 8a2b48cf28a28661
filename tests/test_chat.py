"""`rlm-local chat`: the loop with scripted models, and the real command driven through stdin,
including Ctrl-C (SIGINT) during an answer."""

from __future__ import annotations

import _thread
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cli_runner import run_cli
from scripted import ScriptedModel

from rlm_local.api import RLM
from rlm_local.chat import ChatIO, chat_loop
from rlm_local.config import load_settings
from rlm_local.engine import RunOptions, RunResult
from rlm_local.session import Exchange, earlier_block
from rlm_local.trace import list_runs

REPO = Path(__file__).parent.parent
TEXT = "alpha beta. The secret code is 4417. gamma delta. " * 20


class Terminal:
    """Lines to read (an exception instance is raised instead), and what was shown."""

    def __init__(self, *lines: str | BaseException) -> None:
        self.lines = list(lines)
        self.answers: list[str | None] = []
        self.notes: list[str] = []
        self.events: list[str] = []

    def read(self, prompt: str) -> str:
        if not self.lines:
            raise EOFError
        line = self.lines.pop(0)
        if isinstance(line, BaseException):
            raise line
        return line

    @contextlib.contextmanager
    def progress(self) -> Iterator[Any]:
        yield lambda event: self.events.append(event["type"])

    def io(self) -> ChatIO:
        def answer(result: RunResult) -> None:
            self.answers.append(result.answer)

        return ChatIO(self.read, answer, self.notes.append, self.progress)


def _rlm(root: ScriptedModel, sub: ScriptedModel | None = None) -> RLM:
    sub = sub or ScriptedModel(answer=lambda p: "sub-answer")
    return RLM(load_settings(), RunOptions(mode="rlm", first_search=False), root=root, sub=sub)


def test_each_line_is_a_question_on_the_same_session(tmp_home: Path) -> None:
    root = ScriptedModel(["n = context.count('secret')\nFINAL(str(n))", "FINAL(str(n * 2))"])
    terminal = Terminal(
        "How many secrets?", "", KeyboardInterrupt(), "   ", "And twice that?", "exit", "never?"
    )
    with _rlm(root).session(TEXT) as session:
        answered = chat_loop(session, terminal.io())
    assert answered == 2 and terminal.answers == ["20", "40"]
    assert terminal.lines == ["never?"]  # `exit` ended the session
    earlier = earlier_block([Exchange("How many secrets?", "20")])
    assert "20" in earlier and earlier in root.calls[1][1]["content"]  # told the first Q and A
    assert terminal.events.count("run_start") == 2  # progress listened to both runs


def test_a_failed_question_is_one_sentence_and_the_session_goes_on(tmp_home: Path) -> None:
    terminal = Terminal("q1?", "q2?")
    direct = RunOptions(mode="direct")  # the input does not fit the root model's window
    rlm = RLM(load_settings(), direct, root=ScriptedModel(n_ctx=300), sub=ScriptedModel())
    with rlm.session(TEXT) as session:
        assert chat_loop(session, terminal.io()) == 0
    assert terminal.answers == []
    assert len(terminal.notes) == 2 and terminal.notes[0].startswith("Error: The input is too long")


def test_ctrl_c_stops_the_answer_not_the_session(tmp_home: Path) -> None:
    def root_reply(last: str) -> str:
        return "FINAL('second')" if "Question: second?" in last else "print(llm_query('go'))"

    def sub_reply(prompt: str) -> str:
        _thread.interrupt_main()  # Ctrl-C while the first answer runs
        time.sleep(0.3)
        return "nothing"

    terminal = Terminal("first?", "second?")
    rlm = _rlm(ScriptedModel(answer=root_reply), ScriptedModel(answer=sub_reply))
    with rlm.session(TEXT) as session:
        assert chat_loop(session, terminal.io()) == 1
    assert terminal.answers == ["second"]
    assert "Stopping this answer after the current step…" in terminal.notes
    assert "Stopped. Ask another question, or exit." in terminal.notes
    statuses = [run.status for run in list_runs(load_settings().runs_dir)]
    assert statuses == ["answered", "cancelled"]


# -- the real command ---------------------------------------------------------------------------


def _chat_process(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")]),
        "CHAT_MARKER": str(tmp_path / "first-sub-call"),
    }
    return subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "chat_scripted.py"), "chat", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )


def test_the_chat_command_survives_sigint_during_an_answer(tmp_home: Path, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text(TEXT)
    proc = _chat_process(tmp_path, str(notes), "--mode", "rlm", "--max-turns", "50")
    assert proc.stdin is not None
    proc.stdin.write("first?\nsecond?\n")  # read one at a time, after each answer
    proc.stdin.flush()
    marker = tmp_path / "first-sub-call"
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert marker.exists(), proc.communicate(timeout=10)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)  # closes stdin: EOF after the second
    assert proc.returncode == 0, stderr
    assert stdout.strip() == "the second answer"
    assert "Stopped. Ask another question, or exit." in stderr
    assert "Traceback" not in stderr
    statuses = [run.status for run in list_runs(load_settings().runs_dir)]
    assert statuses == ["answered", "cancelled"]


def test_the_chat_command_ends_at_exit_and_at_eof(tmp_home: Path, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text(TEXT)
    for stdin in ("second?\nexit\nfirst?\n", "second?\nsecond?\n"):
        proc = _chat_process(tmp_path, str(notes), "--mode", "rlm", "-q")
        stdout, stderr = proc.communicate(stdin, timeout=120)
        assert proc.returncode == 0, stderr
        answers = stdout.splitlines()
        assert answers == ["the second answer"] * (1 if "exit" in stdin else 2)


def test_chat_refuses_bad_inputs_in_one_sentence(tmp_home: Path, tmp_path: Path) -> None:
    no_input = run_cli("chat", stdin="q?\n")
    assert no_input.returncode == 2 and "Missing argument" in no_input.stderr
    stdin_input = run_cli("chat", "-", stdin="q?\n")
    assert stdin_input.returncode == 1 and "give input files instead" in stdin_input.stderr
    missing = run_cli("chat", str(tmp_path / "nowhere.txt"), stdin="q?\n")
    assert missing.returncode == 1 and "does not exist" in missing.stderr
    notes = tmp_path / "notes.txt"
    notes.write_text(TEXT)
    no_models = run_cli("chat", str(notes), stdin="q?\n")  # tmp_home has no models
    assert no_models.returncode == 1 and "models pull" in no_models.stderr
    for result in (stdin_input, missing, no_models):
        assert "Traceback" not in result.stderr


def test_at_a_terminal_the_prompt_has_history_kept_between_sessions(
    tmp_home: Path, tmp_path: Path
) -> None:
    """A real pseudo-terminal: readline is used, and the questions land in chat_history."""
    import pty
    import select

    notes = tmp_path / "notes.txt"
    notes.write_text(TEXT)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")]),
        "CHAT_MARKER": str(tmp_path / "marker"),
    }
    argv = [sys.executable, str(REPO / "tests" / "chat_scripted.py"), "chat", str(notes)]
    pid, fd = pty.fork()
    if pid == 0:  # the child: the real command on the terminal
        os.execve(sys.executable, [*argv, "--mode", "rlm"], env)
    seen = b""

    def until(text: bytes, times: int = 1) -> None:
        nonlocal seen
        deadline = time.monotonic() + 30
        while seen.count(text) < times and time.monotonic() < deadline:
            if select.select([fd], [], [], 0.1)[0]:
                with contextlib.suppress(OSError):
                    seen += os.read(fd, 4096)
        assert seen.count(text) >= times, seen.decode(errors="replace")

    until(b"? ")
    os.write(fd, b"second?\r")
    until(b"the second answer")
    until(b"\n? ", 2)  # the next prompt
    os.write(fd, b"\x04")  # Ctrl-D
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert os.WEXITSTATUS(status) == 0, seen.decode(errors="replace")
    assert (tmp_home / "chat_history").read_text().splitlines()[-1] == "second?"
