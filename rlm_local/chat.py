"""`rlm-local chat`: questions in a row on one loaded input, at a prompt with line editing.

Each answer runs on a thread of its own so that Ctrl-C, which Python delivers to the main thread,
only asks the run to stop at its next step: a llama.cpp call is never cut in the middle, so the
loaded models stay usable for the next question.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from rlm_local.engine import RunResult
from rlm_local.errors import RlmLocalError, RunCancelled
from rlm_local.session import Session

EXIT_WORDS = frozenset({"exit", "quit", ":q"})
HISTORY_LINES = 1000
T = TypeVar("T")


@dataclass(frozen=True)
class ChatIO:
    """How the loop talks to its user; the CLI passes terminal functions, tests pass lists."""

    read: Callable[[str], str]  # input(): raises EOFError at the end, KeyboardInterrupt on Ctrl-C
    answer: Callable[[RunResult], None]
    note: Callable[[str], None]
    progress: Callable[[], AbstractContextManager[Callable[[dict[str, Any]], None]]]


def interruptible(work: Callable[[], T], cancel: threading.Event, note: Callable[[str], None]) -> T:
    """`work()` on a thread; Ctrl-C sets `cancel` and waits for the run to stop at its next step."""
    box: dict[str, Any] = {}
    done = threading.Event()  # not Thread.join: an interrupted join can report a live thread dead

    def target() -> None:
        try:
            box["value"] = work()
        except BaseException as exc:  # handed to the main thread below
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=target, name="rlm-local-answer", daemon=True).start()
    while not done.is_set():
        try:
            done.wait(0.1)
        except KeyboardInterrupt:
            if cancel.is_set():
                note("Still stopping: the model call in progress ends first.")
            else:
                cancel.set()
                note("Stopping this answer after the current step…")
    if "error" in box:
        raise box["error"]
    return box["value"]


def _question(io: ChatIO) -> str | None:
    """The next question; None at the end of the session. Ctrl-C at the prompt clears the line."""
    while True:
        try:
            line = io.read("? ").strip()
        except KeyboardInterrupt:
            io.note("")
            continue
        except EOFError:
            return None
        if line.lower() in EXIT_WORDS:
            return None
        if line:
            return line


def _asking(
    session: Session,
    question: str,
    on_event: Callable[[dict[str, Any]], None],
    cancel: threading.Event,
) -> Callable[[], RunResult]:
    return lambda: session.ask(question, on_event=on_event, cancel=cancel)


def chat_loop(session: Session, io: ChatIO) -> int:
    """Ask each line of input as a question until EOF or `exit`; returns the questions answered.

    A stopped answer or a failed question (one sentence) leaves the session going.
    """
    answered = 0
    while (question := _question(io)) is not None:
        cancel = threading.Event()
        result: RunResult | None = None
        failure = ""
        with io.progress() as progress:  # closed before anything is printed below
            try:
                result = interruptible(
                    _asking(session, question, progress, cancel), cancel, io.note
                )
            except RunCancelled:
                failure = "Stopped. Ask another question, or exit."
            except RlmLocalError as exc:
                failure = f"Error: {exc}"
        if result is None:
            io.note(failure)
            continue
        io.answer(result)
        answered += 1
    return answered


@contextlib.contextmanager
def history_file(path: Path, enabled: bool) -> Iterator[None]:
    """Line editing and a history kept between sessions (GNU readline), at a terminal only."""
    if not enabled:
        yield
        return
    try:
        import readline
    except ImportError:  # a Python built without readline: plain input() still works
        yield
        return
    readline.set_history_length(HISTORY_LINES)
    with contextlib.suppress(OSError):
        readline.read_history_file(path)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            readline.write_history_file(path)
